"""A wide residual network without normalisation: JEM's backbone (WRN-28-10).

JEM needs an energy that is a deterministic, smooth-enough function of a single
input: batch normalisation would make :math:`f(x)` depend on the rest of the
batch (and on running statistics that SGLD samples pollute), so it is left out,
and LeakyReLU(0.2) replaces ReLU so input gradients never vanish on half-spaces.
"""

from __future__ import annotations

import torch
from torch import nn

from ebmlab._validation import check_nonnegative_float, check_positive_int

_LEAKY_SLOPE = 0.2


class _Block(nn.Module):
    """Pre-activation residual block: act . conv3x3 . (dropout) . act . conv3x3, plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, dropout: float) -> None:
        super().__init__()
        self.act1 = nn.LeakyReLU(_LEAKY_SLOPE)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.act2 = nn.LeakyReLU(_LEAKY_SLOPE)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        # A 1x1 projection only where the shape changes; otherwise the identity.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(x))
        out = self.conv2(self.act2(self.dropout(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    r"""WRN-``depth``-``widen_factor`` classifier producing logits, with no normalisation.

    Parameters
    ----------
    in_channels : int
        Image channels (1 grayscale, 3 colour).
    image_shape : (int, int)
        Height and width; inputs may be images ``(N, C, H, W)`` or flattened
        rows ``(N, C*H*W)`` (the layout of :mod:`ebmlab.data`).
    n_classes : int
        Number of logits.
    depth : int
        Total depth; ``(depth - 4)`` must be divisible by 6 (28 for WRN-28-10).
    widen_factor : int
        Channel multiplier k: the three groups have 16k, 32k and 64k channels.
    dropout : float
        Dropout between the two convolutions of a block (0 in JEM).
    generator : torch.Generator, optional
        Randomness for the initial weights.

    Notes
    -----
    Layout, with :math:`n = (depth - 4) / 6` blocks per group::

        conv3x3(C -> 16)
        n blocks (16 -> 16k),  stride 1
        n blocks (16k -> 32k), stride 2
        n blocks (32k -> 64k), stride 2
        LeakyReLU(0.2) . global average pool . linear(64k -> n_classes)

    References
    ----------
    Zagoruyko, S. & Komodakis, N. (2016). Wide residual networks. BMVC.
    Grathwohl, W. et al. (2020). Your classifier is secretly an energy based
    model and you should treat it like one. ICLR, section 5 (WRN-28-10, no
    batch norm).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_shape: tuple[int, int] = (32, 32),
        n_classes: int = 10,
        *,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        if len(image_shape) != 2:
            raise ValueError(f"image_shape must be (height, width); got {image_shape!r}")
        self.image_shape = (
            check_positive_int("image_shape[0]", int(image_shape[0])),
            check_positive_int("image_shape[1]", int(image_shape[1])),
        )
        self.n_classes = check_positive_int("n_classes", n_classes)
        check_positive_int("depth", depth)
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (e.g. 10, 16, 28); got {depth!r}")
        self.depth, self.widen_factor = depth, check_positive_int("widen_factor", widen_factor)
        dropout = check_nonnegative_float("dropout", dropout)
        n_blocks = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1)]
        for group in range(3):
            for i in range(n_blocks):
                layers.append(
                    _Block(
                        widths[group] if i == 0 else widths[group + 1],
                        widths[group + 1],
                        stride=(1 if group == 0 else 2) if i == 0 else 1,
                        dropout=dropout,
                    )
                )
        layers += [nn.LeakyReLU(_LEAKY_SLOPE), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[3], n_classes)
        self.reset_parameters(generator=generator)

    @torch.no_grad()
    def reset_parameters(self, *, generator: torch.Generator | None = None) -> None:
        r"""He-normal convolutions (for LeakyReLU(0.2)), zero biases, a small uniform head.

        Without normalisation every residual block adds its branch's variance to
        the signal's; scaling each block's last convolution by
        :math:`1/\sqrt{n_{blocks}}` (as Fixup does) keeps the logits' scale
        O(1) at initialisation whatever the depth.
        """
        blocks = [m for m in self.modules() if isinstance(m, _Block)]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(
                    module.weight, a=_LEAKY_SLOPE, nonlinearity="leaky_relu", generator=generator
                )
                nn.init.zeros_(module.bias)
        for block in blocks:
            block.conv2.weight.mul_(len(blocks) ** -0.5)
        bound = self.head.in_features**-0.5
        nn.init.uniform_(self.head.weight, -bound, bound, generator=generator)
        nn.init.zeros_(self.head.bias)

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        c, (h, w) = self.in_channels, self.image_shape
        if x.ndim == 2 and x.shape[1] == c * h * w:
            return x.reshape(x.shape[0], c, h, w)
        if x.ndim == 4 and tuple(x.shape[1:]) == (c, h, w):
            return x
        raise ValueError(
            f"x must have shape (N, {c}, {h}, {w}) or (N, {c * h * w}); got {tuple(x.shape)}"
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate activations, shape ``(N, 64 * widen_factor)``."""
        return self.body(self._as_images(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits f(x), shape ``(N, n_classes)``."""
        return self.head(self.features(x))
