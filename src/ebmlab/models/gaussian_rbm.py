"""The Gaussian-Bernoulli RBM: real-valued visible units, binary hidden units."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._validation import (
    check_matrix,
    check_nonempty,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
)
from ebmlab.models._init import gaussian_weight
from ebmlab.models.rbm import sample_bernoulli


class GaussianBernoulliRBM(nn.Module):
    r"""Restricted Boltzmann machine with Gaussian visible and binary hidden units.

    Parameters
    ----------
    n_visible : int
        Number of visible (real-valued) units. Standardise the data first
        (zero mean, unit variance per feature): ``sigma=1`` then fits it.
    n_hidden : int
        Number of binary hidden units.
    sigma : float
        Initial (or fixed) standard deviation of every visible unit.
    learn_sigma : bool
        Learn :math:`\log \sigma_i` per unit (a parameter ``log_sigma``); otherwise
        ``log_sigma`` is a fixed buffer. Both are saved under the key ``log_sigma``.
    weight_std : float
        Standard deviation of the initial Gaussian weights (Hinton's guide: 0.01).
    generator : torch.Generator, optional
        Randomness for the initial weights.
    dtype, device
        Parameter dtype (the default dtype if None) and device.

    Notes
    -----
    The energy is

    .. math:: E(v, h) = \sum_i \frac{(v_i - b_i)^2}{2 \sigma_i^2} - \sum_j c_j h_j
              - \sum_{i,j} \frac{v_i}{\sigma_i} W_{ij} h_j,

    with :math:`b` = ``visible_bias``, :math:`c` = ``hidden_bias``. Collecting the
    terms in :math:`v_i` completes a square, so the conditionals are

    .. math:: p(v \mid h) = \mathcal{N}\big(b + \sigma \odot (W h),\ \mathrm{diag}(\sigma^2)\big),
              \qquad p(h_j = 1 \mid v) = \sigma\big(c_j + (v / \sigma)^\top W_{:j}\big).

    Summing out :math:`h` gives the free energy

    .. math:: F(v) = \sum_i \frac{(v_i - b_i)^2}{2 \sigma_i^2}
              - \sum_j \operatorname{softplus}\big(c_j + (v / \sigma)^\top W_{:j}\big),

    and integrating out :math:`v` (a Gaussian integral per unit, with
    :math:`u = W h`) gives :math:`F(h) = -c^\top h - \sum_i \big(b_i u_i / \sigma_i
    + u_i^2 / 2 + \log \sigma_i + \tfrac12 \log 2\pi\big)`.

    Gaussian visible units have unbounded activations, so learning is much less
    forgiving than for binary units: use a learning rate 10-100 times smaller
    (:attr:`default_learning_rate` = 1e-3, against the usual 0.01-0.1 for the
    binary RBM), on standardised data, and on high-dimensional data keep the
    momentum at 0.5 (momentum 0.9 multiplies the effective step by 10).

    References
    ----------
    Hinton, G. (2010). A practical guide to training restricted Boltzmann
    machines, section 13.2. Cho, Ilin & Raiko (2011). Improved learning of
    Gaussian-Bernoulli restricted Boltzmann machines, ICANN (this parametrisation).
    """

    #: SGD learning rate that trained standardised digits (64-D, momentum 0.5 then 0.9) and
    #: Fashion-MNIST (784-D, momentum 0.5; 0.9 diverged there) without blowing up.
    default_learning_rate = 1e-3
    binary_visible = False  # real-valued visible units: no bit-flip pseudo-likelihood

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        sigma: float = 1.0,
        learn_sigma: bool = False,
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.n_visible = check_positive_int("n_visible", n_visible)
        self.n_hidden = check_positive_int("n_hidden", n_hidden)
        check_positive_float("sigma", sigma)
        check_nonnegative_float("weight_std", weight_std)
        self.learn_sigma = bool(learn_sigma)
        dtype = dtype or torch.get_default_dtype()
        self.weight = nn.Parameter(
            gaussian_weight(
                n_visible, n_hidden, weight_std, generator=generator, dtype=dtype, device=device
            )
        )
        self.visible_bias = nn.Parameter(torch.zeros(n_visible, dtype=dtype, device=device))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden, dtype=dtype, device=device))
        log_sigma = torch.full((n_visible,), math.log(sigma), dtype=dtype, device=device)
        if self.learn_sigma:
            self.log_sigma = nn.Parameter(log_sigma)
        else:
            self.register_buffer("log_sigma", log_sigma)

    def extra_repr(self) -> str:
        return (
            f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, learn_sigma={self.learn_sigma}"
        )

    @property
    def sigma(self) -> torch.Tensor:
        """Per-unit visible standard deviation :math:`\\sigma = e^{\\log \\sigma}`."""
        return self.log_sigma.exp()

    @torch.no_grad()
    def init_visible_bias(self, data: torch.Tensor) -> GaussianBernoulliRBM:
        """Set :math:`b` to the data mean (the maximum-likelihood value without weights). Returns ``self``.

        Raises a ValueError naming ``data`` when it is empty (its mean would be NaN)
        or holds NaN/inf.
        """
        check_nonempty("data", self.check_visible(data, "data"))
        self.visible_bias.copy_(data.mean(0))
        return self

    # ----- energies -------------------------------------------------------------------
    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Joint energy :math:`E(v, h)`, shape (batch,)."""
        sigma = self.sigma
        quadratic = (((v - self.visible_bias) / sigma) ** 2).sum(-1) / 2
        interaction = (((v / sigma) @ self.weight) * h).sum(-1)
        return quadratic - h @ self.hidden_bias - interaction

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """Free energy :math:`F(v) = -\\log \\sum_h e^{-E(v, h)}`, shape (batch,).

        ``v`` must be a finite (batch, n_visible) floating tensor.
        """
        self.check_visible(v)
        quadratic = (((v - self.visible_bias) / self.sigma) ** 2).sum(-1) / 2
        return quadratic - F.softplus(self.hidden_preactivation(v)).sum(-1)

    def free_energy_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """Free energy of the hidden layer, :math:`-\\log \\int e^{-E(v, h)}\\, dv`.

        ``h`` must be a finite (batch, n_hidden) floating tensor.
        """
        check_matrix("h", h, n_columns=self.n_hidden)
        u = h @ self.weight.t()
        per_unit = (
            self.visible_bias * u / self.sigma
            + u**2 / 2
            + self.log_sigma
            + 0.5 * math.log(2 * math.pi)
        )
        return -h @ self.hidden_bias - per_unit.sum(-1)

    # ----- conditionals ---------------------------------------------------------------
    def hidden_preactivation(self, v: torch.Tensor) -> torch.Tensor:
        """Total input to the hidden units, :math:`c + W^\\top (v / \\sigma)`."""
        return torch.addmm(self.hidden_bias, v / self.sigma, self.weight)

    def mean_h(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`p(h = 1 \\mid v)`, shape (batch, n_hidden)."""
        return torch.sigmoid(self.hidden_preactivation(v))

    def sample_h(
        self, v: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`h \\sim p(h \\mid v)`."""
        return sample_bernoulli(self.mean_h(v), generator=generator)

    def mean_v(self, h: torch.Tensor) -> torch.Tensor:
        """Mean of :math:`p(v \\mid h)`, :math:`b + \\sigma \\odot (W h)`, shape (batch, n_visible)."""
        return self.visible_bias + self.sigma * (h @ self.weight.t())

    def sample_v(
        self, h: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`v \\sim \\mathcal{N}(b + \\sigma \\odot W h, \\sigma^2)`."""
        return self.sample_v_from_mean(self.mean_v(h), generator=generator)

    def sample_v_from_mean(
        self, mean: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw :math:`v = \\mu + \\sigma \\odot \\varepsilon` given the mean :math:`\\mu`, with
        :math:`\\varepsilon \\sim \\mathcal{N}(0, I)` (Gibbs samplers reuse the mean they computed)."""
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + self.sigma * noise

    # ----- validation -----------------------------------------------------------------
    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Raise a clear error unless ``v`` is a finite (batch, n_visible) floating tensor."""
        return check_matrix(name, v, n_columns=self.n_visible)
