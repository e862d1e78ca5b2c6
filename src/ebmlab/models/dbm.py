r"""The deep Boltzmann machine: binary layers, each connected to its neighbours only."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._validation import (
    check_matrix,
    check_nonempty,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_smoothing,
    check_unit_interval,
)
from ebmlab.models._init import gaussian_weight
from ebmlab.models.enumeration import enumerate_binary
from ebmlab.models.rbm import sample_bernoulli

#: Largest number of units :meth:`DBM.free_energy` enumerates by default (2**20 states).
MAX_ENUMERATED_UNITS = 20


@dataclass
class MeanFieldResult:
    """The mean-field posterior of a DBM's hidden layers given visible data.

    Attributes
    ----------
    means : list of torch.Tensor
        :math:`\\mu_1, \\dots, \\mu_{L}`, one (batch, n_l) tensor per hidden layer.
    n_iterations : int
        Sweeps run (each updates the odd, then the even hidden layers).
    residual : float
        :math:`\\max_{l, n, j} |\\sigma(\\text{input}_l(\\mu))_{nj} - \\mu_{l, nj}|` at the
        returned means: how far they are from the fixed point.
    converged : bool
        ``residual < tolerance``.
    """

    means: list[torch.Tensor]
    n_iterations: int
    residual: float
    converged: bool


class DBM(nn.Module):
    r"""Deep Boltzmann machine with binary units in every layer.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_visible, n_hidden_1, ..., n_hidden_L]``, at least two entries.
    weight_std : float
        Standard deviation of the initial Gaussian weights (Hinton's guide: 0.01).
    generator : torch.Generator, optional
        Randomness for the initial weights.
    dtype, device
        Parameter dtype (default float32) and device.

    Notes
    -----
    Layers :math:`x_0 = v, x_1 = h_1, \dots, x_L = h_L`; ``weights[l]`` is :math:`W_l`,
    shape ``(n_l, n_{l+1})``, and ``biases[l]`` is :math:`b_l`. The energy is

    .. math:: E(x_0, \dots, x_L) = -\sum_{l=0}^{L-1} x_l^\top W_l x_{l+1}
              - \sum_{l=0}^{L} b_l^\top x_l, \qquad p(x) = e^{-E(x)} / Z.

    Each layer depends only on its neighbours,

    .. math:: p(x_{l,j} = 1 \mid x_{l-1}, x_{l+1})
              = \sigma(b_l + W_{l-1}^\top x_{l-1} + W_l x_{l+1})_j,

    so the odd layers are independent given the even ones and back (block Gibbs).
    Summing out one parity analytically gives the tractable marginals

    .. math:: F_{\rm even}(x_0, x_2, \dots) = -\sum_{l\ {\rm even}} b_l^\top x_l
              - \sum_{l\ {\rm odd}} \mathbf 1^\top \operatorname{softplus}(b_l
              + W_{l-1}^\top x_{l-1} + W_l x_{l+1}),

    and :math:`F_{\rm odd}` likewise: :math:`p(x_{\rm even}) = e^{-F_{\rm even}} / Z`.
    The visible free energy :math:`F(v)` needs a sum over the hidden layers of one
    parity: :meth:`free_energy` enumerates it and is meant for tiny models only.

    References
    ----------
    Salakhutdinov, R. & Hinton, G. (2009). Deep Boltzmann machines. AISTATS, section 2.
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
        if isinstance(layer_sizes, str | bytes) or not isinstance(layer_sizes, Sequence):
            raise TypeError(f"layer_sizes must be a list of ints; got {layer_sizes!r}")
        if len(layer_sizes) < 2:
            raise ValueError(
                f"layer_sizes must hold at least 2 sizes (visible and one hidden); got {list(layer_sizes)!r}"
            )
        for index, size in enumerate(layer_sizes):
            check_positive_int(f"layer_sizes[{index}]", size)
        check_nonnegative_float("weight_std", weight_std)
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        dtype = dtype or torch.get_default_dtype()
        pairs = zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True)
        self.weights = nn.ParameterList(
            nn.Parameter(
                gaussian_weight(a, b, weight_std, generator=generator, dtype=dtype, device=device)
            )
            for a, b in pairs
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(n, dtype=dtype, device=device)) for n in self.layer_sizes
        )

    def extra_repr(self) -> str:
        return f"layer_sizes={list(self.layer_sizes)}"

    @property
    def n_layers(self) -> int:
        """Number of layers, the visible one included."""
        return len(self.layer_sizes)

    @property
    def n_visible(self) -> int:
        return self.layer_sizes[0]

    def parity_layers(self, parity: int) -> list[int]:
        """Indices of the even (``parity=0``, the visible layer included) or odd layers."""
        return list(range(parity, self.n_layers, 2))

    @torch.no_grad()
    def init_visible_bias(self, data: torch.Tensor, *, smoothing: float = 1e-2) -> DBM:
        """Set :math:`b_0 = \\operatorname{logit}(p)` from the clipped data means; returns ``self``.

        ``p`` is clipped to ``[smoothing, 1 - smoothing]`` with ``smoothing`` in
        (0, 0.5); ``data`` must be non-empty, finite and in [0, 1].
        """
        check_nonempty("data", self.check_visible(data, "data"))
        check_smoothing(smoothing, data.dtype)
        p = data.mean(0).clamp(smoothing, 1 - smoothing)
        self.biases[0].copy_(torch.log(p) - torch.log1p(-p))
        return self

    # ----- energies ---------------------------------------------------------------------
    def energy(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Joint energy :math:`E(x_0, \\dots, x_L)` of one tensor per layer, shape (batch,)."""
        self._check_states(states)
        energy = -sum(x @ b for x, b in zip(states, self.biases, strict=True))
        for k, weight in enumerate(self.weights):
            energy = energy - ((states[k] @ weight) * states[k + 1]).sum(-1)
        return energy

    def layer_input(self, states: Sequence[torch.Tensor | None], layer: int) -> torch.Tensor:
        """Total input :math:`b_l + W_{l-1}^\\top x_{l-1} + W_l x_{l+1}` to layer ``layer``.

        Only the neighbours of ``layer`` are read; other entries of ``states`` may be None.
        """
        total = self.biases[layer]
        if layer > 0:
            total = total + states[layer - 1] @ self.weights[layer - 1]
        if layer < self.n_layers - 1:
            total = total + states[layer + 1] @ self.weights[layer].t()
        return total

    def _negative_free_energy(
        self, states: Sequence[torch.Tensor | None], summed: Sequence[int]
    ) -> torch.Tensor:
        # log sum over the layers in `summed` (no two adjacent) of e^{-E}: they are
        # independent given the rest, so each unit contributes softplus(its input).
        summed = set(summed)
        total = 0.0
        for k in range(self.n_layers):
            if k in summed:
                total = total + F.softplus(self.layer_input(states, k)).sum(-1)
            else:
                total = total + states[k] @ self.biases[k]
        for k, weight in enumerate(self.weights):
            if k not in summed and k + 1 not in summed:
                total = total + ((states[k] @ weight) * states[k + 1]).sum(-1)
        return total

    def free_energy_even(self, v: torch.Tensor, *hidden_even: torch.Tensor) -> torch.Tensor:
        """:math:`F_{\\rm even}(v, h_2, h_4, \\dots)`: the odd layers summed out, shape (batch,)."""
        return -self._negative_free_energy(self._fill(0, (v, *hidden_even)), self.parity_layers(1))

    def free_energy_odd(self, *hidden_odd: torch.Tensor) -> torch.Tensor:
        """:math:`F_{\\rm odd}(h_1, h_3, \\dots)`: the even layers (``v`` too) summed out."""
        return -self._negative_free_energy(self._fill(1, hidden_odd), self.parity_layers(0))

    def _fill(self, parity: int, given: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
        layers = self.parity_layers(parity)
        if len(given) != len(layers):
            raise ValueError(
                f"expected {len(layers)} tensors for layers {layers}; got {len(given)}"
            )
        states: list[torch.Tensor | None] = [None] * self.n_layers
        for k, x in zip(layers, given, strict=True):
            check_matrix(f"layer {k}", x, n_columns=self.layer_sizes[k])
            states[k] = x
        return states

    def free_energy(
        self, v: torch.Tensor, *, max_units: int = MAX_ENUMERATED_UNITS
    ) -> torch.Tensor:
        """Exact :math:`F(v) = -\\log \\sum_{h} e^{-E(v, h)}` by enumeration (tiny models).

        The hidden layers of the parity with fewer units are enumerated
        (:math:`2^{n}` states, refused above ``2 ** max_units``); the others are
        summed out analytically.
        """

        self.check_visible(v)
        hidden = range(1, self.n_layers)
        odd, even = [k for k in hidden if k % 2], [k for k in hidden if not k % 2]
        enumerated = min(odd, even, key=lambda ls: sum(self.layer_sizes[k] for k in ls))
        n_units = sum(self.layer_sizes[k] for k in enumerated)
        if n_units > max_units:
            raise ValueError(
                f"free_energy enumerates 2**{n_units} hidden states, above max_units={max_units}; "
                "use the mean-field bound (ebmlab.estimators.dbm.dbm_elbo) for large DBMs"
            )
        configs = enumerate_binary(n_units, dtype=v.dtype, device=v.device)
        batch, n_configs = v.shape[0], configs.shape[0]
        states: list[torch.Tensor | None] = [None] * self.n_layers
        states[0] = v.repeat_interleave(n_configs, 0)
        for k, block in zip(
            enumerated, configs.split([self.layer_sizes[k] for k in enumerated], 1), strict=True
        ):
            states[k] = block.repeat(batch, 1)
        summed = [k for k in hidden if k not in enumerated]
        log_weights = self._negative_free_energy(states, summed).reshape(batch, n_configs)
        return -torch.logsumexp(log_weights, dim=1)

    # ----- conditionals -----------------------------------------------------------------
    def mean_layer(self, states: Sequence[torch.Tensor | None], layer: int) -> torch.Tensor:
        """:math:`p(x_l = 1 \\mid x_{l-1}, x_{l+1})`, shape (batch, n_l)."""
        return torch.sigmoid(self.layer_input(states, layer))

    def sample_layer(
        self,
        states: Sequence[torch.Tensor | None],
        layer: int,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw :math:`x_l \\sim p(x_l \\mid x_{l-1}, x_{l+1})`."""
        return sample_bernoulli(self.mean_layer(states, layer), generator=generator)

    @torch.no_grad()
    def bottom_up_means(self, v: torch.Tensor) -> list[torch.Tensor]:
        """The recognition pass that starts mean-field: doubled inputs below the top layer.

        :math:`\\mu_l = \\sigma(b_l + 2 W_{l-1}^\\top \\mu_{l-1})` for the intermediate
        layers (standing in for the missing top-down input, as in pretraining) and
        :math:`\\mu_L = \\sigma(b_L + W_{L-1}^\\top \\mu_{L-1})` for the top one.
        """
        means, below = [], v
        for k in range(1, self.n_layers):
            scale = 1.0 if k == self.n_layers - 1 else 2.0
            below = torch.sigmoid(self.biases[k] + scale * (below @ self.weights[k - 1]))
            means.append(below)
        return means

    @torch.no_grad()
    def mean_field(
        self,
        v: torch.Tensor,
        *,
        n_iterations: int = 30,
        tolerance: float = 1e-5,
        damping: float = 0.0,
        init: Sequence[torch.Tensor] | None = None,
    ) -> MeanFieldResult:
        r"""Fixed point of the factorised posterior :math:`q(h) = \prod_l \prod_j \mu_{lj}^{h_{lj}}(1-\mu_{lj})^{1-h_{lj}}`.

        Parameters
        ----------
        v : torch.Tensor
            Visible data, shape (batch, n_visible), values in [0, 1].
        n_iterations : int
            Most sweeps; each updates the odd hidden layers, then the even ones.
        tolerance : float
            Stop once the fixed-point residual (see :class:`MeanFieldResult`) is below it.
        damping : float
            In [0, 1): :math:`\mu \leftarrow (1 - d)\, \sigma(\text{input}) + d\, \mu`.
        init : list of torch.Tensor, optional
            Starting means, one per hidden layer (default: :meth:`bottom_up_means`).

        Notes
        -----
        The fixed-point equations :math:`\mu_l = \sigma(b_l + W_{l-1}^\top \mu_{l-1}
        + W_l \mu_{l+1})` (with :math:`\mu_0 = v`) are the stationarity conditions of
        the variational bound :math:`\mathbb E_q[-E(v, h)] + H(q)`. Units of one parity
        do not interact, so an undamped parity update maximises the bound over that
        parity exactly and the bound never decreases.

        References
        ----------
        Salakhutdinov & Hinton (2009), section 3.2, equations (6)-(8).
        """
        # Empty v: the residual's max over no units would be a RuntimeError, not an answer.
        check_nonempty("v", self.check_visible(v))
        check_positive_int("n_iterations", n_iterations)
        check_positive_float("tolerance", tolerance)
        if not (isinstance(damping, int | float) and 0 <= damping < 1):
            raise ValueError(f"damping must lie in [0, 1); got {damping!r}")
        states = [v, *(list(init) if init is not None else self.bottom_up_means(v))]
        if len(states) != self.n_layers:
            raise ValueError(f"init must hold {self.n_layers - 1} tensors; got {len(states) - 1}")
        if init is not None:
            for k in range(1, self.n_layers):
                self._check_means(f"init[{k - 1}]", states[k], k, len(v))
        odd, even = self.parity_layers(1), self.parity_layers(0)[1:]
        residual, iterations = math.inf, 0
        while iterations < n_iterations:
            targets = {k: self.mean_layer(states, k) for k in odd + even}
            residual = max((targets[k] - states[k]).abs().max().item() for k in targets)
            if residual < tolerance:
                break
            for group in (odd, even):
                for k in group:
                    target = targets[k] if group is odd else self.mean_layer(states, k)
                    states[k] = torch.lerp(target, states[k], damping) if damping else target
            iterations += 1
        else:
            residual = self.mean_field_residual(v, states[1:])
        return MeanFieldResult(states[1:], iterations, residual, residual < tolerance)

    @torch.no_grad()
    def mean_field_residual(self, v: torch.Tensor, means: Sequence[torch.Tensor]) -> float:
        """:math:`\\max |\\sigma(\\text{input}_l(\\mu)) - \\mu_l|` over every hidden unit."""
        states = [v, *means]
        return max(
            (self.mean_layer(states, k) - states[k]).abs().max().item()
            for k in range(1, self.n_layers)
        )

    # ----- validation -------------------------------------------------------------------
    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Raise a clear error unless ``v`` is a finite (batch, n_visible) tensor in [0, 1]."""
        check_matrix(name, v, n_columns=self.n_visible)
        return check_unit_interval(name, v, model="DBM")

    def _check_means(self, name: str, x: torch.Tensor, layer: int, batch: int) -> None:
        check_matrix(name, x, n_columns=self.layer_sizes[layer])
        if x.shape[0] != batch:
            raise ValueError(f"{name} must have {batch} rows (one per row of v); got {x.shape[0]}")
        check_unit_interval(name, x, model="DBM")

    def _check_states(self, states: Sequence[torch.Tensor]) -> None:
        if len(states) != self.n_layers:
            raise ValueError(
                f"states must hold one tensor per layer ({self.n_layers}); got {len(states)}"
            )
        for k, x in enumerate(states):
            check_matrix(f"states[{k}]", x, n_columns=self.layer_sizes[k])


class DBMClassifier(nn.Module):
    r"""A feed-forward network unrolled from a DBM's mean-field pass, plus a softmax head.

    Parameters
    ----------
    model : DBM
        Its weights and hidden biases initialise the network (copied, so fine-tuning
        leaves the DBM alone).
    n_classes : int
        Number of classes.

    Notes
    -----
    Following Salakhutdinov & Hinton (2009, section 5), each hidden layer gets the
    layer below and, as an extra fixed input, the mean-field posterior :math:`q_{l+1}`
    of the layer above:

    .. math:: a_l = \sigma(b_l + W_{l-1}^\top a_{l-1} + W_l q_{l+1}), \quad a_0 = v,

    and the logits are :math:`U a_L + c`. At the mean-field fixed point :math:`a_l = q_l`,
    so with the DBM frozen the head is logistic regression on the top layer's
    mean-field features; training everything by backprop is the fine-tuned classifier.
    """

    def __init__(self, model: DBM, n_classes: int) -> None:
        super().__init__()
        check_positive_int("n_classes", n_classes)
        self.weights = nn.ParameterList(nn.Parameter(w.detach().clone()) for w in model.weights)
        self.biases = nn.ParameterList(nn.Parameter(b.detach().clone()) for b in model.biases[1:])
        self.head = nn.Linear(model.layer_sizes[-1], n_classes, dtype=model.biases[0].dtype)
        self.head.to(model.biases[0].device)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()

    def features(self, v: torch.Tensor, posterior: Sequence[torch.Tensor]) -> torch.Tensor:
        """The top hidden layer's activation :math:`a_L` (``posterior``: q_1 .. q_L)."""
        a = v
        for k, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            total = bias + a @ weight
            if k + 1 < len(self.weights):
                total = total + posterior[k + 1] @ self.weights[k + 1].t()
            a = torch.sigmoid(total)
        return a

    def forward(self, v: torch.Tensor, posterior: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class logits, shape (batch, n_classes)."""
        return self.head(self.features(v, posterior))
