"""The deep belief network: a stack of Bernoulli RBMs, undirected at the top, directed below."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ebmlab._validation import (
    check_choice,
    check_matrix,
    check_nonnegative_int,
    check_positive_int,
    check_unit_interval,
)
from ebmlab.models.rbm import BernoulliRBM, sample_bernoulli

PROPAGATIONS = ("mean", "sample")


def check_layer_sizes(layer_sizes: object) -> tuple[int, ...]:
    """Return ``layer_sizes`` as a tuple of >= 2 positive ints, else raise naming the argument."""
    if isinstance(layer_sizes, str | bytes) or not isinstance(layer_sizes, Sequence):
        raise TypeError(
            f"layer_sizes must be a sequence of ints such as [784, 500, 500]; got {layer_sizes!r}"
        )
    sizes = tuple(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes must hold at least 2 sizes (visible and one hidden layer); got {sizes!r}"
        )
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"layer_sizes must hold positive integers; got {sizes!r}")
    return sizes


class DBN(nn.Module):
    r"""Deep belief network built from ``len(layer_sizes) - 1`` Bernoulli RBMs.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, visible first, e.g. ``[784, 500, 500, 2000]``. RBM ``l``
        (``dbn.rbms[l]``) has ``n_visible = layer_sizes[l]`` and
        ``n_hidden = layer_sizes[l + 1]``.
    weight_std, generator, dtype, device
        Passed to every :class:`~ebmlab.models.rbm.BernoulliRBM`.

    Notes
    -----
    With layers :math:`h^0 = v, h^1, \dots, h^L`, the generative model is

    .. math:: p(v, h^1, \dots, h^L) = p(h^{L-1}, h^L)
              \prod_{l=1}^{L-1} p(h^{l-1} \mid h^l),

    where :math:`p(h^{L-1}, h^L)` is the top RBM (undirected) and each
    :math:`p(h^{l-1} \mid h^l) = \prod_i \sigma\big((2h^{l-1}_i - 1)(b^{l}_v + W^l h^l)_i\big)`
    is the lower RBM's visible conditional, used as a directed (top-down) layer.
    The recognition (up) pass uses the RBMs' :math:`p(h^l \mid h^{l-1})` (tied weights)
    until :meth:`untie` gives the lower layers recognition weights of their own, as the
    up-down algorithm needs (:mod:`ebmlab.training.updown`); the generative model is
    the same either way. A one-layer DBN is exactly its RBM. State-dict keys are
    ``rbms.<l>.weight``, ``rbms.<l>.visible_bias``, ``rbms.<l>.hidden_bias``, and once
    untied ``recognition.<l>.weight`` (``n_l x n_{l+1}``, oriented as the RBM's) and
    ``recognition.<l>.bias``.

    References
    ----------
    Hinton, G., Osindero, S. & Teh, Y. (2006). A fast learning algorithm for deep
    belief nets. Neural Computation 18(7), 1527-1554.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.rbms = nn.ModuleList(
            BernoulliRBM(
                n_in, n_out, weight_std=weight_std, generator=generator, dtype=dtype, device=device
            )
            for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True)
        )
        self.recognition: nn.ModuleList | None = None  # the lower layers' own up-pass, once untied

    def extra_repr(self) -> str:
        return f"layer_sizes={list(self.layer_sizes)}, tied={self.recognition is None}"

    @torch.no_grad()
    def untie(self) -> None:
        """Give every layer below the top its own recognition weights, starting at the tied ones.

        :math:`p(v)` does not change; the up-pass keeps giving the same results until the
        recognition weights are trained apart (:mod:`ebmlab.training.updown`). A second
        call does nothing.
        """
        if self.recognition is not None:
            return
        self.recognition = nn.ModuleList(RecognitionLayer.from_rbm(rbm) for rbm in self.rbms[:-1])

    def recognition_preactivation(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        r"""Logits of :math:`q(h^{l+1} = 1 \mid h^l = x)` for RBM index ``layer`` = :math:`l`."""
        if self.recognition is not None and layer < self.n_layers - 1:
            return self.recognition[layer](x)
        return self.rbms[layer].hidden_preactivation(x)

    @property
    def n_visible(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_layers(self) -> int:
        """Number of hidden layers (= number of RBMs)."""
        return len(self.rbms)

    @property
    def top(self) -> BernoulliRBM:
        """The top (undirected) RBM."""
        return self.rbms[-1]

    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Raise a clear error unless ``v`` is a finite (batch, n_visible) tensor in [0, 1]."""
        return self.rbms[0].check_visible(v, name)

    def _check_layer(self, layer: int | None) -> int:
        if layer is None:
            return self.n_layers
        check_nonnegative_int("layer", layer)
        if layer > self.n_layers:
            raise ValueError(f"layer must lie in [0, {self.n_layers}] for this DBN; got {layer}")
        return layer

    # ----- recognition (up) pass -----------------------------------------------------------
    def up_pass(
        self,
        v: torch.Tensor,
        *,
        layer: int | None = None,
        propagation: str = "mean",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        r"""Propagate ``v`` up to hidden layer ``layer`` (default: the top).

        ``propagation="mean"`` passes the probabilities :math:`p(h^l = 1 \mid h^{l-1})`
        (mean field); ``"sample"`` passes a binary sample at every layer.
        ``layer=0`` returns ``v`` itself.
        """
        check_choice("propagation", propagation, PROPAGATIONS)
        layer = self._check_layer(layer)
        self.check_visible(v)
        x = v
        for index in range(layer):
            mean = torch.sigmoid(self.recognition_preactivation(x, index))
            x = mean if propagation == "mean" else sample_bernoulli(mean, generator=generator)
        return x

    def transform(self, v: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Mean-field features of hidden layer ``layer`` (default: the top), as in scikit-learn."""
        with torch.no_grad():
            return self.up_pass(v, layer=layer, propagation="mean")

    # ----- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def down_pass(
        self,
        h: torch.Tensor,
        *,
        layer: int,
        mean: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Directed pass from binary states ``h`` of hidden layer ``layer`` to the visible layer.

        Intermediate layers are sampled from :math:`p(h^{l-1} \\mid h^l)`; the visible
        layer is returned as probabilities (``mean=True``, for display) or a sample.
        ``h`` must be a finite (batch, layer_sizes[layer]) tensor in [0, 1].
        """
        layer = self._check_layer(layer)
        check_matrix("h", h, n_columns=self.layer_sizes[layer])
        check_unit_interval("h", h, model="DBN layer")
        x = h
        for l in range(layer - 1, -1, -1):  # noqa: E741
            probabilities = self.rbms[l].mean_v(x)
            x = (
                probabilities
                if (l == 0 and mean)
                else sample_bernoulli(probabilities, generator=generator)
            )
        return x

    @torch.no_grad()
    def sample(
        self,
        n: int,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        init: torch.Tensor | None = None,
        mean: bool = True,
    ) -> torch.Tensor:
        """Draw ``n`` visible samples: Gibbs in the top RBM, then one directed down-pass.

        Parameters
        ----------
        n : int
            Number of samples (independent chains).
        n_steps : int
            Block Gibbs sweeps in the top RBM.
        generator : torch.Generator, optional
            All randomness of the call.
        init : torch.Tensor, optional
            ``(n, n_visible)`` data whose sampled up-pass starts the top chains
            (default: uniform random binary states of the top RBM's visible layer).
        mean : bool
            Return :math:`p(v \\mid h^1)` (for display) rather than a binary sample.
        """
        check_positive_int("n", n)
        check_nonnegative_int("n_steps", n_steps)
        top = self.top
        if init is None:
            start = sample_bernoulli(
                torch.full(
                    (n, top.n_visible), 0.5, dtype=top.weight.dtype, device=top.weight.device
                ),
                generator=generator,
            )
        else:
            if init.shape[0] != n:
                raise ValueError(f"init must have n={n} rows; got shape {tuple(init.shape)}")
            start = self.up_pass(
                init, layer=self.n_layers - 1, propagation="sample", generator=generator
            )
        # Block Gibbs in the top RBM, written out: models sit below the samplers layer.
        visible, visible_mean = start, None
        with torch.no_grad():
            for _ in range(n_steps):
                visible_mean = top.mean_v(top.sample_h(visible, generator=generator))
                visible = sample_bernoulli(visible_mean, generator=generator)
        if self.n_layers == 1 and mean and visible_mean is not None:
            return visible_mean
        return self.down_pass(visible, layer=self.n_layers - 1, mean=mean, generator=generator)


class RecognitionLayer(nn.Module):
    r"""An untied up-pass layer: :math:`q(h = 1 \mid x) = \sigma(x R + r)`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    @classmethod
    def from_rbm(cls, rbm: BernoulliRBM) -> RecognitionLayer:
        """A copy of ``rbm``'s tied recognition: :math:`R = W`, :math:`r = c`."""
        return cls(rbm.weight.detach().clone(), rbm.hidden_bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)  # as the RBM's: bit for bit while tied
