"""A small convolutional classifier for small grayscale (or colour) images.

Used twice in ebmlab: as the domain feature network for FID and the inception
score on 28x28 and 8x8 data (:mod:`ebmlab.metrics.feature_nets`), and as JEM's
CPU-sized backbone, where its logits f(x) define the energy
E(x) = -LogSumExp_y f(x)[y].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ebmlab._validation import check_positive_int

_LEAKY_SLOPE = 0.2


def _conv_block(
    in_channels: int, out_channels: int, *, stride: int, batch_norm: bool
) -> list[nn.Module]:
    # Without batch norm the convolution carries its own bias; with it the bias
    # would be cancelled by the normalisation and is left out.
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=not batch_norm)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(_LEAKY_SLOPE))
    return layers


class SmallCNN(nn.Module):
    r"""Three-stage CNN: features (penultimate layer) and class logits.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for grayscale).
    image_size : int
        Height and width of the (square) input images, >= 4 (e.g. 28 or 8).
    n_classes : int
        Number of output logits.
    width : int
        Channels of the first stage; the stages use ``width``, ``2 width`` and
        ``4 width`` channels.
    n_features : int, optional
        Size of the penultimate (feature) layer; defaults to ``4 * width``.
    batch_norm : bool
        Insert batch normalisation after each convolution. Off by default: JEM
        needs an energy that is a deterministic function of a single input.
    generator : torch.Generator, optional
        Randomness for the initial weights (the global RNG when omitted).

    Notes
    -----
    Layout (``w`` = ``width``, LeakyReLU(0.2) after every layer but the last)::

        conv3x3(C -> w) . conv3x3(w -> w)                      at H x W
        conv3x3/2(w -> 2w) . conv3x3(2w -> 2w)                 at H/2
        conv3x3/2(2w -> 4w) . conv3x3(4w -> 4w)                at H/4
        average pool to 2x2 -> linear(16w -> n_features)       = features(x)
        linear(n_features -> n_classes)                        = logits(x)

    Adaptive pooling to a 2x2 grid makes the parameter count independent of
    ``image_size``, so one class serves 8x8 and 28x28 data.
    Inputs may be images ``(N, C, H, W)`` or flattened rows ``(N, C*H*W)``,
    the layout of :mod:`ebmlab.data`.

    References
    ----------
    Grathwohl, W. et al. (2020). Your classifier is secretly an energy based
    model and you should treat it like one. ICLR (the LeakyReLU, no-batch-norm
    choice for EBM backbones).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        n_classes: int = 10,
        width: int = 16,
        *,
        n_features: int | None = None,
        batch_norm: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.image_size = check_positive_int("image_size", image_size)
        if image_size < 4:
            raise ValueError(f"image_size must be >= 4 (two stride-2 stages); got {image_size!r}")
        self.n_classes = check_positive_int("n_classes", n_classes)
        self.width = check_positive_int("width", width)
        self.n_features = check_positive_int(
            "n_features", 4 * width if n_features is None else n_features
        )
        self.batch_norm = bool(batch_norm)
        w = width
        self.body = nn.Sequential(
            *_conv_block(in_channels, w, stride=1, batch_norm=batch_norm),
            *_conv_block(w, w, stride=1, batch_norm=batch_norm),
            *_conv_block(w, 2 * w, stride=2, batch_norm=batch_norm),
            *_conv_block(2 * w, 2 * w, stride=1, batch_norm=batch_norm),
            *_conv_block(2 * w, 4 * w, stride=2, batch_norm=batch_norm),
            *_conv_block(4 * w, 4 * w, stride=1, batch_norm=batch_norm),
            # A 2x2 grid rather than one global mean keeps coarse layout (where the
            # sleeves are), which a 28x28 classifier needs; 8x8 inputs are 2x2 already.
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * w, self.n_features),
            nn.LeakyReLU(_LEAKY_SLOPE),
        )
        self.head = nn.Linear(self.n_features, n_classes)
        self.reset_parameters(generator=generator)

    def config(self) -> dict[str, int | bool]:
        """Constructor arguments, enough to rebuild the network (e.g. from a JSON sidecar)."""
        return {
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "n_classes": self.n_classes,
            "width": self.width,
            "n_features": self.n_features,
            "batch_norm": self.batch_norm,
        }

    @torch.no_grad()
    def reset_parameters(self, *, generator: torch.Generator | None = None) -> None:
        """He-uniform weights for LeakyReLU(0.2) and zero biases, drawn from ``generator``."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(
                    module.weight, a=_LEAKY_SLOPE, nonlinearity="leaky_relu", generator=generator
                )
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
        # The head is linear (no activation follows), so its gain is 1, not the ReLU's sqrt(2).
        bound = math.sqrt(3.0 / self.n_features)
        nn.init.uniform_(self.head.weight, -bound, bound, generator=generator)

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.in_channels, self.image_size
        if x.ndim == 2 and x.shape[1] == c * s * s:
            return x.reshape(x.shape[0], c, s, s)
        if x.ndim == 4 and tuple(x.shape[1:]) == (c, s, s):
            return x
        raise ValueError(
            f"x must have shape (N, {c}, {s}, {s}) or (N, {c * s * s}); got {tuple(x.shape)}"
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations, shape ``(N, n_features)``."""
        return self.body(self._as_images(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits f(x), shape ``(N, n_classes)``."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits f(x) (same as :meth:`logits`)."""
        return self.logits(x)
