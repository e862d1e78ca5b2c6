"""Unadjusted Langevin dynamics in data space, for any differentiable energy.

Used to draw negative samples for EBM training (JEM, the 2-D toy EBMs) and as
the proposal inside :class:`ebmlab.samplers.mala.MALA`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import check_nonnegative_float, check_positive_float

EnergyFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class LangevinState:
    """The chains: one sample per row of ``x`` (shape (batch, ...))."""

    x: torch.Tensor


def energy_and_grad(energy: EnergyFn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``E(x)`` (detached, shape (batch,)) and :math:`\\nabla_x E(x)`.

    Only the input gradient is computed: ``torch.autograd.grad`` with
    ``inputs=x`` never writes into the ``.grad`` of the energy's parameters, so
    sampling between a training step's ``backward`` and ``optimizer.step`` is
    safe. Works under an enclosing ``torch.no_grad()``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        values = energy(x)
        check_energy_output(values, x)
        (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad


def check_energy_output(values: object, x: torch.Tensor) -> None:
    """Raise unless ``values`` is a tensor of shape (batch,) for a batch ``x``."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"energy(x) must return a torch.Tensor; got {type(values).__name__}")
    if values.shape != (x.shape[0],):
        raise ValueError(
            f"energy(x) must return one energy per sample, shape ({x.shape[0]},); "
            f"got shape {tuple(values.shape)}"
        )


def clip_per_sample(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Rescale each sample's gradient (row) to Euclidean norm at most ``max_norm``."""
    norms = grad.flatten(1).norm(dim=1)
    scale = (max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)
    return grad * scale.view(-1, *([1] * (grad.ndim - 1)))


def check_clamp(clamp: tuple[float, float] | None) -> tuple[float, float] | None:
    """Validate a ``(low, high)`` data range."""
    if clamp is None:
        return None
    if len(clamp) != 2 or not float(clamp[0]) < float(clamp[1]):
        raise ValueError(f"clamp must be a (low, high) pair with low < high; got {clamp!r}")
    return float(clamp[0]), float(clamp[1])


class Langevin:
    r"""Langevin dynamics with separate step size and noise scale.

    Parameters
    ----------
    energy : callable
        Maps a batch ``x`` of shape (batch, ...) to energies of shape (batch,);
        an ``nn.Module`` or any function (for an RBM pass ``rbm.free_energy``).
    step_size : float
        :math:`\alpha > 0`, the gradient step.
    noise_scale : float
        :math:`\sigma \ge 0`, the standard deviation of the added noise.
    max_grad_norm : float, optional
        Clip each sample's gradient to this Euclidean norm before the step.
    clamp : (float, float), optional
        Clamp samples to this data range after every step (JEM++ uses (-1, 1)).

    Notes
    -----
    One step is

    .. math:: x_{t+1} = x_t - \alpha \nabla_x E(x_t) + \sigma \xi_t,
              \qquad \xi_t \sim \mathcal N(0, I).

    With :math:`\sigma = \sqrt{2\alpha}` (:meth:`calibrated`) this is the
    Euler-Maruyama discretisation of the Langevin diffusion whose stationary
    law is :math:`p(x) \propto e^{-E(x)}`, up to an :math:`O(\alpha)` bias
    (on :math:`\mathcal N(0, s^2)` the stationary variance is
    :math:`s^2 / (1 - \alpha / (2 s^2))`). JEM's sampler (:math:`\alpha = 1`,
    :math:`\sigma = 0.01`) is *not* calibrated: it is noisy gradient descent on
    the energy, which samples a sharpened, temperature-lowered density.
    Gradients are taken with respect to ``x`` only; the energy's parameters
    never receive ``.grad``.

    References
    ----------
    Roberts, G. O. & Tweedie, R. L. (1996). Exponential convergence of Langevin
    distributions and their discrete approximations. Bernoulli 2(4).
    Grathwohl, W. et al. (2020). Your classifier is secretly an energy based
    model and you should treat it like one. ICLR, Algorithm 1.
    """

    def __init__(
        self,
        energy: EnergyFn,
        *,
        step_size: float,
        noise_scale: float,
        max_grad_norm: float | None = None,
        clamp: tuple[float, float] | None = None,
    ) -> None:
        if not callable(energy):
            raise TypeError(f"energy must be callable (an nn.Module or a function); got {energy!r}")
        self.energy = energy
        self.step_size = check_positive_float("step_size", step_size)
        self.noise_scale = check_nonnegative_float("noise_scale", noise_scale)
        if max_grad_norm is not None:
            max_grad_norm = check_positive_float("max_grad_norm", max_grad_norm)
        self.max_grad_norm = max_grad_norm
        self.clamp = check_clamp(clamp)

    @classmethod
    def calibrated(cls, energy: EnergyFn, step_size: float, **kwargs: Any) -> Langevin:
        r"""The unadjusted Langevin algorithm: ``noise_scale = sqrt(2 step_size)``."""
        step_size = check_positive_float("step_size", step_size)
        return cls(energy, step_size=step_size, noise_scale=math.sqrt(2.0 * step_size), **kwargs)

    def init(self, x0: torch.Tensor) -> LangevinState:
        """Start one chain per row of ``x0`` (shape (batch, ...), floating)."""
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 1:
            raise TypeError(
                f"x0 must be a floating torch.Tensor of shape (batch, ...); got {x0!r:.80}"
            )
        return LangevinState(x=x0.detach().clone())

    def step(
        self, state: LangevinState, *, generator: torch.Generator | None = None
    ) -> tuple[LangevinState, dict[str, Any]]:
        """One step; ``info`` holds the mean energy and gradient norm at the old ``x``."""
        values, grad = energy_and_grad(self.energy, state.x)
        grad_norm = grad.flatten(1).norm(dim=1)
        if self.max_grad_norm is not None:
            grad = clip_per_sample(grad, self.max_grad_norm)
        with torch.no_grad():
            x = state.x - self.step_size * grad
            if self.noise_scale > 0:
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
                x = x + self.noise_scale * noise
            if self.clamp is not None:
                x = x.clamp(*self.clamp)
        # 0-d tensors: reading them with float() is left to the caller, so a GPU
        # chain is not synchronised at every step.
        info = {"energy": values.mean(), "grad_norm": grad_norm.mean()}
        return LangevinState(x=x), info
