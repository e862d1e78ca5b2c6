"""Stochastic gradient Langevin dynamics for posterior sampling over parameters.

:class:`SGLD` and :class:`PreconditionedSGLD` are ``torch.optim.Optimizer``
subclasses: the training loop computes a minibatch estimate of the negative
log posterior, calls ``backward`` and ``step``, exactly as with SGD, and the
parameters become (approximate) posterior samples. Step-size schedules come
from :mod:`ebmlab.samplers.schedules` through ``torch.optim.lr_scheduler.LambdaLR``;
:class:`SampleCollector` keeps the samples after burn-in, thinned, with the
step-size weights of Welling & Teh.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ebmlab._validation import (
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)


def _noise_like(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(p.shape, generator=generator, dtype=p.dtype, device=p.device)


class _LangevinOptimizer(torch.optim.Optimizer):
    """Shared ``step``: evaluate the closure, pick the generator, update each parameter with a gradient."""

    generator: torch.Generator | None

    @torch.no_grad()
    def step(
        self,
        closure: Callable[[], torch.Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | None:
        """One update of every parameter with a gradient; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        generator = generator if generator is not None else self.generator
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group, generator)
        return loss

    def _update(
        self, p: torch.Tensor, group: dict[str, Any], generator: torch.Generator | None
    ) -> None:
        raise NotImplementedError


class SGLD(_LangevinOptimizer):
    r"""Stochastic gradient Langevin dynamics (Welling & Teh, 2011).

    Parameters
    ----------
    params : iterable of Tensor or dict
        Parameters to sample (or parameter groups).
    lr : float
        The step size :math:`\epsilon` (use ``LambdaLR`` with a
        :class:`~ebmlab.samplers.schedules.PolynomialDecay` for :math:`\epsilon_t`).
    temperature : float
        Scales the injected noise variance (1 samples the posterior; 0 is SGD
        on :math:`U` with step :math:`\epsilon/2`).
    generator : torch.Generator, optional
        Default randomness for the injected noise; ``step(generator=...)`` overrides it.

    Notes
    -----
    The loss whose gradient is in ``.grad`` must be the minibatch estimate of
    the negative log posterior,

    .. math:: U(\theta) = -\log p(\theta) - \frac{N}{n} \sum_{i=1}^{n} \log p(x_i \mid \theta),

    and each step is

    .. math:: \theta \leftarrow \theta - \frac{\epsilon_t}{2} \nabla U(\theta)
              + \eta_t, \qquad \eta_t \sim \mathcal N(0, \epsilon_t I).

    A parameter of shape (n_chains, d) with a loss summed over the chains
    runs n_chains independent chains in one step. With a constant
    :math:`\epsilon` and full gradients the chain targets the posterior up to an
    :math:`O(\epsilon)` bias (on a Gaussian of variance :math:`s^2` the
    stationary variance is :math:`s^2 / (1 - \epsilon/(4 s^2))`); with
    :math:`\epsilon_t \to 0` as in :class:`PolynomialDecay` the bias vanishes.

    References
    ----------
    Welling, M. & Teh, Y. W. (2011). Bayesian learning via stochastic gradient
    Langevin dynamics. ICML, equation (4).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        *,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> None:
        check_positive_float("lr", lr)
        check_nonnegative_float("temperature", temperature)
        super().__init__(params, {"lr": lr, "temperature": temperature})
        self.generator = generator

    def _update(self, p, group, generator) -> None:
        lr, temperature = group["lr"], group["temperature"]
        p.add_(p.grad, alpha=-0.5 * lr)
        if temperature > 0:
            p.add_(_noise_like(p, generator), alpha=math.sqrt(lr * temperature))


class PreconditionedSGLD(_LangevinOptimizer):
    r"""RMSprop-preconditioned SGLD (pSGLD, Li et al. 2016), without the :math:`\Gamma` term.

    Parameters
    ----------
    params : iterable of Tensor or dict
        Parameters to sample.
    lr : float
        The step size :math:`\epsilon_t`.
    alpha : float
        Decay :math:`\alpha` of the squared-gradient average (0.99).
    eps : float
        :math:`\lambda`, added to :math:`\sqrt{V}` for stability (1e-5).
    generator : torch.Generator, optional
        Default randomness; ``step(generator=...)`` overrides it.

    Notes
    -----
    With :math:`g = \nabla U(\theta)` (same loss as :class:`SGLD`),

    .. math:: V \leftarrow \alpha V + (1 - \alpha)\, g \odot g, \qquad
              G = 1 / (\lambda + \sqrt{V}), \\
              \theta \leftarrow \theta - \frac{\epsilon_t}{2} G \odot g
              + \mathcal N(0, \epsilon_t \operatorname{diag}(G)).

    The correction :math:`\Gamma_i = \sum_j \partial G_{ij} / \partial\theta_j`
    is dropped, as Li et al. recommend in practice: :math:`G` changes slowly
    (through :math:`V`, not :math:`\theta` directly), and the neglected bias is
    controlled by :math:`(1 - \alpha)` and the step size. The chain is then not
    exactly posterior-invariant for a finite step; use :class:`SGLD` when
    exactness matters more than speed on badly scaled posteriors.

    References
    ----------
    Li, C., Chen, C., Carlson, D. & Carin, L. (2016). Preconditioned stochastic
    gradient Langevin dynamics for deep neural networks. AAAI, Algorithm 1.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        *,
        alpha: float = 0.99,
        eps: float = 1e-5,
        generator: torch.Generator | None = None,
    ) -> None:
        check_positive_float("lr", lr)
        check_probability("alpha", alpha)
        check_positive_float("eps", eps)
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps})
        self.generator = generator

    def _update(self, p, group, generator) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        state = self.state[p]
        if "square_avg" not in state:
            state["square_avg"] = torch.zeros_like(p)
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(p.grad, p.grad, value=1 - alpha)
        precond = 1.0 / (square_avg.sqrt() + eps)
        p.addcmul_(precond, p.grad, value=-0.5 * lr)
        p.add_(precond.sqrt() * _noise_like(p, generator), alpha=math.sqrt(lr))


class SampleCollector:
    r"""Keep posterior samples after burn-in, thinned, with their step-size weights.

    Parameters
    ----------
    burn_in : int
        Number of initial :meth:`update` calls whose samples are discarded.
    thin : int
        Keep every ``thin``-th sample after burn-in.

    Notes
    -----
    Welling & Teh estimate posterior expectations with the weighted average

    .. math:: \mathbb E[f(\theta)] \approx \frac{\sum_t \epsilon_t f(\theta_t)}{\sum_t \epsilon_t},

    because with a decaying step the later (smaller) steps move the chain less
    per update; weighting by :math:`\epsilon_t` makes each sample count in
    proportion to the diffusion time it represents. Pass ``weight=lr`` to
    :meth:`update` (1 gives the plain average).
    """

    def __init__(self, *, burn_in: int = 0, thin: int = 1) -> None:
        self.burn_in = check_nonnegative_int("burn_in", burn_in)
        self.thin = check_positive_int("thin", thin)
        self.n_seen = 0
        self._samples: list[torch.Tensor] = []
        self._weights: list[float] = []

    def update(self, sample: torch.Tensor, weight: float = 1.0) -> bool:
        """Offer the current sample; returns whether it was kept."""
        check_nonnegative_float("weight", weight)
        self.n_seen += 1
        after = self.n_seen - self.burn_in
        if after <= 0 or after % self.thin:
            return False
        self._samples.append(sample.detach().clone())
        self._weights.append(float(weight))
        return True

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def samples(self) -> torch.Tensor:
        """Kept samples stacked along a new first (draw) dimension."""
        if not self._samples:
            raise ValueError("no samples kept yet: offer more than burn_in samples")
        return torch.stack(self._samples)

    @property
    def weights(self) -> torch.Tensor:
        """The kept samples' weights, float64, shape (n_kept,)."""
        return torch.tensor(self._weights, dtype=torch.float64)

    def weighted_mean(
        self, fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """:math:`\\sum_t w_t f(\\theta_t) / \\sum_t w_t` (``f`` = identity by default)."""
        samples = self.samples
        values = fn(samples) if fn is not None else samples
        weights = self.weights.to(device=values.device)
        if weights.sum() <= 0:
            raise ValueError("the kept samples' weights sum to 0; pass positive weights")
        shape = (-1, *([1] * (values.ndim - 1)))
        return (weights.view(shape) * values.double()).sum(0) / weights.sum()
