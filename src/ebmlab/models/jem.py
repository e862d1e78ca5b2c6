r"""JEM: a classifier read as an energy-based model of (x, y) and of x.

A classifier's logits :math:`f(x) \in \mathbb R^K` define

.. math:: p(x, y) = \frac{e^{f(x)[y]}}{Z}, \qquad
          p(x) = \frac{\sum_y e^{f(x)[y]}}{Z}, \qquad
          p(y \mid x) = \operatorname{softmax}(f(x))[y],

so in this library's sign convention (:math:`p = e^{-E}/Z`)
:math:`E(x, y) = -f(x)[y]` and :math:`E(x) = -\operatorname{LogSumExp}_y f(x)[y]`.
The softmax classifier ignores the free shift of the logits; JEM uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ebmlab._validation import check_choice, check_finite_tensor, check_positive_int

BACKBONES = ("small-cnn", "wrn", "mlp")


def energy_from_logits(logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``-logsumexp(logits)`` (``y`` None) or ``-logits[y]``, shape (batch,)."""
    if y is None:
        return -torch.logsumexp(logits, dim=1)
    return -logits.gather(1, y.long().view(-1, 1)).squeeze(1)


class JEM(nn.Module):
    r"""Joint energy-based model around any module that maps inputs to logits.

    Parameters
    ----------
    classifier : nn.Module
        Maps a batch ``x`` to logits of shape (batch, n_classes), e.g.
        :class:`~ebmlab.models.nets.small_cnn.SmallCNN`,
        :class:`~ebmlab.models.nets.wide_resnet.WideResNet` or an
        :class:`~ebmlab.models.nets.mlp.MLP`.
    n_classes : int
        Number of classes (the classifier's output width, checked on every call).

    Notes
    -----
    :math:`E(x) = -\log \sum_y e^{f(x)[y]}`, :math:`E(x, y) = -f(x)[y]`,
    hence :math:`E(x) = -\log \sum_y e^{-E(x, y)}` and
    :math:`\log p(y \mid x) = E(x) - E(x, y)`. Calling the module returns the
    logits, so ``DistributedDataParallel(JEM(...))`` works unchanged.

    References
    ----------
    Grathwohl, W. et al. (2020). Your classifier is secretly an energy based
    model and you should treat it like one. ICLR, section 2 (eqs. 4-5).
    """

    def __init__(self, classifier: nn.Module, n_classes: int) -> None:
        super().__init__()
        if not isinstance(classifier, nn.Module):
            raise TypeError(
                f"classifier must be an nn.Module producing logits; got {type(classifier).__name__}"
            )
        self.classifier = classifier
        self.n_classes = check_positive_int("n_classes", n_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`f(x)`, shape (batch, n_classes)."""
        logits = self.classifier(x)
        if logits.ndim != 2 or logits.shape != (x.shape[0], self.n_classes):
            raise ValueError(
                f"classifier must return logits of shape ({x.shape[0]}, {self.n_classes}); "
                f"got {tuple(logits.shape)}"
            )
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits (so wrappers such as DDP see one forward)."""
        return self.logits(x)

    def check_labels(self, y: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Raise unless ``y`` holds ``batch_size`` integer classes in [0, n_classes)."""
        if (
            not isinstance(y, torch.Tensor)
            or y.dtype not in (torch.int32, torch.int64)
            or y.shape != (batch_size,)
        ):
            raise ValueError(f"y must be an integer tensor of shape ({batch_size},); got {y!r:.80}")
        if batch_size and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(
                f"y must lie in [0, {self.n_classes - 1}]; got min={int(y.min())}, "
                f"max={int(y.max())}"
            )
        return y

    def energy(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`E(x)` (``y`` None) or :math:`E(x, y) = -f(x)[y]`, shape (batch,)."""
        if y is not None:
            self.check_labels(y, x.shape[0])
        return energy_from_logits(self.logits(x), y)

    def log_prob_y(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(y \mid x)` for every class: log-softmax of the logits, (batch, n_classes).

        ``x`` must be a non-empty floating tensor without NaN or inf.
        """
        check_finite_tensor("x", x)
        return torch.log_softmax(self.logits(x), dim=1)

    def log_px_unnormalised(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x) + \log Z = -E(x)`: the OOD score ``log_px``.

        ``x`` must be a non-empty floating tensor without NaN or inf. (:meth:`energy`
        and :meth:`logits` do not check: SGLD calls them at every step.)
        """
        check_finite_tensor("x", x)
        return -self.energy(x)


def build_classifier(
    backbone: str,
    *,
    image_shape: tuple[int, int],
    n_classes: int,
    in_channels: int = 1,
    width: int = 16,
    depth: int = 28,
    widen_factor: int = 10,
    hidden_sizes: Sequence[int] = (256, 256),
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A backbone by name: ``small-cnn`` (``width``), ``wrn`` (``depth``, ``widen_factor``), ``mlp``.

    The MLP uses LeakyReLU(0.2) like the others (JEM's choice for EBM backbones).
    """
    check_choice("backbone", backbone, BACKBONES)
    height, width_px = (int(s) for s in image_shape)
    if backbone == "small-cnn":
        from ebmlab.models.nets.small_cnn import SmallCNN

        if height != width_px:
            raise ValueError(f"backbone small-cnn needs square images; got {image_shape!r}")
        return SmallCNN(in_channels, height, n_classes, width, generator=generator)
    if backbone == "wrn":
        from ebmlab.models.nets.wide_resnet import WideResNet

        return WideResNet(
            in_channels,
            (height, width_px),
            n_classes,
            depth=depth,
            widen_factor=widen_factor,
            generator=generator,
        )
    from ebmlab.models.nets.mlp import MLP

    return MLP(
        in_channels * height * width_px,
        n_classes,
        hidden_sizes=list(hidden_sizes),
        activation="leaky_relu",
        generator=generator,
    )
