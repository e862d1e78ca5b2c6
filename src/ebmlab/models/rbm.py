"""The Bernoulli-Bernoulli restricted Boltzmann machine."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._validation import (
    check_matrix,
    check_nonempty,
    check_nonnegative_float,
    check_positive_int,
    check_smoothing,
    check_unit_interval,
)
from ebmlab.models._init import gaussian_weight
from ebmlab.models.matmul_precision import (
    BFloat16Copy,
    bfloat16_addmm,
    check_precision,
    warn_if_emulated,
)


def sample_bernoulli(
    probabilities: torch.Tensor, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw 0/1 samples with the given probabilities, in the probabilities' dtype.

    One uniform draw compared with ``p`` is cheaper than ``torch.bernoulli`` on
    CPU and yields the same distribution: P(u < p) = p for u ~ U(0, 1). The
    comparison is written into the uniforms' own storage (``lt_`` stores 1.0 or
    0.0), which saves a boolean tensor and its conversion.
    """
    uniform = torch.rand(
        probabilities.shape,
        generator=generator,
        dtype=probabilities.dtype,
        device=probabilities.device,
    )
    return uniform.lt_(probabilities)


class BernoulliRBM(nn.Module):
    r"""Restricted Boltzmann machine with binary visible and hidden units.

    Parameters
    ----------
    n_visible : int
        Number of visible units.
    n_hidden : int
        Number of hidden units.
    weight_std : float
        Standard deviation of the initial Gaussian weights (Hinton's guide: 0.01).
    generator : torch.Generator, optional
        Randomness for the initial weights.
    dtype, device
        Parameter dtype (float32 by default) and device.
    precision : {"float32", "bfloat16"}
        Operand precision of the conditionals' matrix products when no gradient flows
        through them (:mod:`ebmlab.models.matmul_precision`); parameters stay ``dtype``.
        Change it later with :meth:`set_precision`.

    Notes
    -----
    The energy of a joint configuration is

    .. math:: E(v, h) = -v^\top W h - b_h^\top h - b_v^\top v,

    so :math:`p(v, h) = e^{-E(v, h)} / Z`. Both conditionals factorise:

    .. math:: p(h_j = 1 \mid v) = \sigma(b_h + W^\top v)_j, \qquad
              p(v_i = 1 \mid h) = \sigma(b_v + W h)_i,

    and summing out the hidden units gives the free energy

    .. math:: F(v) = -b_v^\top v - \sum_j \log(1 + e^{(b_h + W^\top v)_j}),

    with :math:`p(v) = e^{-F(v)} / Z`.

    References
    ----------
    Hinton, G. (2010). A practical guide to training restricted Boltzmann
    machines. UTML TR 2010-003.
    """

    binary_visible = True

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        check_precision(precision)  # before any work, as every argument is checked
        self.n_visible = check_positive_int("n_visible", n_visible)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        check_nonnegative_float("weight_std", weight_std)
        dtype = dtype or torch.get_default_dtype()
        self.weight = nn.Parameter(
            gaussian_weight(
                n_visible, n_hidden, weight_std, generator=generator, dtype=dtype, device=device
            )
        )
        self.visible_bias = nn.Parameter(torch.zeros(n_visible, dtype=dtype, device=device))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden, dtype=dtype, device=device))
        self._set_precision(precision)

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    def set_precision(self, precision: str) -> BernoulliRBM:
        """Use ``"bfloat16"`` or ``"float32"`` operands in the conditionals' products; returns ``self``."""
        return self._set_precision(precision)

    def _set_precision(self, precision: str) -> BernoulliRBM:
        # Called from set_precision and __init__: the warning names their caller's line.
        self.precision = check_precision(precision)
        if self.precision == "bfloat16" and self.weight.dtype == torch.float32:
            warn_if_emulated(self.weight.device, stacklevel=4)
        self._weight_bf16 = BFloat16Copy()
        return self

    def reduced_precision(self, x: torch.Tensor) -> bool:
        """Whether products with ``x`` take bfloat16 operands now.

        Only float32 inputs, and only when no gradient can flow to the weights: a
        product that autograd differentiates stays exact in the parameters' dtype.
        """
        return (
            self.precision == "bfloat16"
            and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and self.weight.requires_grad)
        )

    def weight_bfloat16(self) -> torch.Tensor:
        """The weights rounded to bfloat16, cached until they change."""
        return self._weight_bf16.of(self.weight)

    @torch.no_grad()
    def init_visible_bias(self, data: torch.Tensor, *, smoothing: float = 1e-2) -> BernoulliRBM:
        """Set :math:`b_v = \\log(p / (1 - p))` from the data means (Hinton's guide, 8.1).

        ``p`` is clipped to ``[smoothing, 1 - smoothing]`` so constant pixels give
        finite biases; ``smoothing`` must lie in (0, 0.5), and be at least the
        dtype's eps. Returns ``self``.

        Raises
        ------
        ValueError
            ``data`` is empty (its mean would be NaN), holds NaN/inf or values
            outside [0, 1], or ``smoothing`` is out of range.
        """
        check_nonempty("data", self.check_visible(data, "data"))
        check_smoothing(smoothing, data.dtype)
        p = data.mean(0).clamp(smoothing, 1 - smoothing)
        self.visible_bias.copy_(torch.log(p) - torch.log1p(-p))
        return self

    # ----- energies -------------------------------------------------------------------
    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Joint energy :math:`E(v, h)`, shape (batch,)."""
        interaction = ((v @ self.weight) * h).sum(-1)
        return -interaction - h @ self.hidden_bias - v @ self.visible_bias

    def weighted_energy(
        self, v: torch.Tensor, h: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        r""":math:`\sum_b w_b E(v_b, h_b)` with ``v``, ``h`` and ``weights`` held constant.

        Equal to ``(weights * energy(v, h)).sum()``, but computed through the
        statistic :math:`G = v^\top \operatorname{diag}(w)\, h`: one GEMM serves a whole
        contrastive batch (data rows with positive, model rows with negative
        weights), and autograd's weight gradient is :math:`-G` itself, with no GEMM
        in the backward pass.
        """
        v, h, weights = v.detach(), h.detach(), weights.detach()
        weighted_h = h * weights[:, None]
        statistic = v.t() @ weighted_h
        return -(
            torch.dot(self.weight.flatten(), statistic.flatten())
            + weighted_h.sum(0) @ self.hidden_bias
            + (weights @ v) @ self.visible_bias
        )

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """Free energy :math:`F(v) = -\\log \\sum_h e^{-E(v, h)}`, shape (batch,).

        ``v`` must be a finite (batch, n_visible) floating tensor. Values outside
        [0, 1] are allowed: F is defined on all of R^D, which Langevin relaxations use.
        """
        check_matrix("v", v, n_columns=self.n_visible)
        return -v @ self.visible_bias - F.softplus(self.hidden_preactivation(v)).sum(-1)

    def free_energy_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Free energy of the hidden layer, :math:`-\\log \\sum_v e^{-E(v, h)}`.

        ``h`` must be a finite (batch, n_hidden) floating tensor.
        """
        check_matrix("h", h, n_columns=self.n_hidden)
        return -h @ self.hidden_bias - F.softplus(self.visible_preactivation(h)).sum(-1)

    # ----- conditionals ---------------------------------------------------------------
    def hidden_preactivation(self, v: torch.Tensor) -> torch.Tensor:
        """Total input to the hidden units, :math:`b_h + W^\\top v`."""
        if self.reduced_precision(v):
            return bfloat16_addmm(self.hidden_bias, v, self.weight_bfloat16())
        return torch.addmm(self.hidden_bias, v, self.weight)

    def visible_preactivation(self, h: torch.Tensor) -> torch.Tensor:
        """Total input to the visible units, :math:`b_v + W h`."""
        if self.reduced_precision(h):
            return bfloat16_addmm(self.visible_bias, h, self.weight_bfloat16().t())
        return torch.addmm(self.visible_bias, h, self.weight.t())

    def mean_h(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`p(h = 1 \\mid v)`, shape (batch, n_hidden)."""
        return self.hidden_preactivation(v).sigmoid_()  # in place: a fresh tensor

    def mean_v(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`p(v = 1 \\mid h)`, shape (batch, n_visible)."""
        return self.visible_preactivation(h).sigmoid_()

    def sample_h(
        self, v: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`h \\sim p(h \\mid v)`."""
        return sample_bernoulli(self.mean_h(v), generator=generator)

    def sample_v(
        self, h: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`v \\sim p(v \\mid h)`."""
        return sample_bernoulli(self.mean_v(h), generator=generator)

    def sample_v_from_mean(
        self, mean: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        r"""Draw visible units given :math:`p(v \mid h)` already computed (saves a GEMM)."""
        return sample_bernoulli(mean, generator=generator)

    # ----- validation -----------------------------------------------------------------
    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Raise a clear error unless ``v`` is a finite (batch, n_visible) tensor in [0, 1]."""
        check_matrix(name, v, n_columns=self.n_visible)
        if v.dtype != self.weight.dtype:
            raise TypeError(
                f"{name} has dtype {v.dtype} but the model's parameters are {self.weight.dtype}; "
                f"convert the data or build the model with dtype={self.weight.dtype}"
            )
        return check_unit_interval(name, v, model="Bernoulli RBM")
