"""The Metropolis-adjusted Langevin algorithm (MALA)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import check_positive_float
from ebmlab.samplers.langevin import EnergyFn, energy_and_grad


def log_proposal(
    to: torch.Tensor, start: torch.Tensor, grad: torch.Tensor, step_size: float
) -> torch.Tensor:
    r""":math:`\log q(\text{to} \mid \text{start})` of the Langevin proposal, per row, up to the
    constant (which cancels in MALA's ratio): :math:`-\lVert \text{to} - \text{start} +
    \tau \nabla E(\text{start}) \rVert^2 / (4\tau)`."""
    diff = to - start + step_size * grad
    return -diff.flatten(1).pow(2).sum(dim=1) / (4.0 * step_size)


@dataclass
class MALAState:
    """Chains ``x`` with their energies and energy gradients, cached so that
    each step evaluates the energy once (at the proposal)."""

    x: torch.Tensor
    energy: torch.Tensor
    grad: torch.Tensor


class MALA:
    r"""Metropolis-adjusted Langevin: a Langevin proposal, then accept/reject per chain.

    Parameters
    ----------
    energy : callable
        Maps a batch of shape (batch, ...) to energies of shape (batch,).
    step_size : float
        :math:`\tau > 0`; the proposal noise is :math:`\sqrt{2\tau}`.

    Notes
    -----
    The proposal is :math:`x' = x - \tau \nabla E(x) + \sqrt{2\tau}\,\xi`, so
    :math:`q(x' \mid x) \propto \exp(-\lVert x' - x + \tau \nabla E(x)\rVert^2 / (4\tau))`.
    Each chain accepts with probability

    .. math:: \min\Big(1, \exp\big(E(x) - E(x') + \log q(x \mid x') - \log q(x' \mid x)\big)\Big),

    which makes :math:`p(x) \propto e^{-E(x)}` exactly stationary for any
    :math:`\tau`; the acceptance rate tends to 1 as :math:`\tau \to 0`
    (the unadjusted chain's bias is then negligible) and falls as :math:`\tau`
    grows. ``info["acceptance_rate"]`` is the fraction of chains that moved.
    MALA is not geometrically ergodic for light-tailed targets such as
    :math:`e^{-x^4/4}` (Roberts & Tweedie): with a large step a chain in the
    tails proposes huge jumps, is always rejected and stays stuck.

    References
    ----------
    Roberts, G. O. & Tweedie, R. L. (1996). Exponential convergence of Langevin
    distributions and their discrete approximations. Bernoulli 2(4), 341-363.
    """

    def __init__(self, energy: EnergyFn, *, step_size: float) -> None:
        if not callable(energy):
            raise TypeError(f"energy must be callable (an nn.Module or a function); got {energy!r}")
        self.energy = energy
        self.step_size = check_positive_float("step_size", step_size)

    def init(self, x0: torch.Tensor) -> MALAState:
        """Start one chain per row of ``x0``; evaluates the energy and its gradient once."""
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 1:
            raise TypeError(
                f"x0 must be a floating torch.Tensor of shape (batch, ...); got {x0!r:.80}"
            )
        values, grad = energy_and_grad(self.energy, x0)
        return MALAState(x=x0.detach().clone(), energy=values, grad=grad)

    def step(
        self, state: MALAState, *, generator: torch.Generator | None = None
    ) -> tuple[MALAState, dict[str, Any]]:
        """One proposal and per-chain accept/reject."""
        x, tau = state.x, self.step_size
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        proposal = x - tau * state.grad + math.sqrt(2.0 * tau) * noise
        proposal_energy, proposal_grad = energy_and_grad(self.energy, proposal)
        log_ratio = (
            state.energy
            - proposal_energy
            + log_proposal(x, proposal, proposal_grad, tau)
            - log_proposal(proposal, x, state.grad, tau)
        )
        uniform = torch.rand(log_ratio.shape, generator=generator, dtype=x.dtype, device=x.device)
        # A NaN log-ratio (energy overflow at the proposal) compares False: rejected.
        accept = torch.log(uniform) < log_ratio
        mask = accept.view(-1, *([1] * (x.ndim - 1)))
        new_state = MALAState(
            x=torch.where(mask, proposal, x),
            energy=torch.where(accept, proposal_energy, state.energy),
            grad=torch.where(mask, proposal_grad, state.grad),
        )
        info = {
            "acceptance_rate": accept.to(x.dtype).mean(),
            "accept_prob": log_ratio.clamp(max=0.0).exp().nan_to_num(0.0).mean(),
            "energy": new_state.energy.mean(),
        }
        return new_state, info
