"""Contrastive training of a generic energy-based model with Langevin negatives.

The objective is the maximum-likelihood gradient of :math:`p(x) = e^{-E(x)}/Z`
with the model expectation estimated from MCMC samples ("negatives"), plus the
L2 energy penalty that keeps energies near zero (Du & Mordatch 2019; JEM's
remedy for divergence). Negatives come from :class:`LangevinNegatives`:
persistent chains in a :class:`~ebmlab.samplers.replay_buffer.ReplayBuffer`,
or short-run chains started from noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import check_nonnegative_float, check_positive_int
from ebmlab.samplers.base import Sampler, run_chain
from ebmlab.samplers.langevin import EnergyFn, check_energy_output
from ebmlab.samplers.replay_buffer import InitDistribution, ReplayBuffer


@dataclass(frozen=True)
class ContrastiveLoss:
    """The loss to back-propagate and its parts (detached, for logging)."""

    loss: torch.Tensor
    energy_data: torch.Tensor
    energy_negative: torch.Tensor
    penalty: torch.Tensor


def contrastive_loss(
    energy: EnergyFn,
    x_data: torch.Tensor,
    x_negative: torch.Tensor,
    *,
    l2_weight: float = 0.1,
) -> ContrastiveLoss:
    r"""Contrastive-divergence loss with an L2 energy penalty.

    Parameters
    ----------
    energy : callable
        The model's energy, (batch, ...) -> (batch,).
    x_data, x_negative : Tensor
        A data batch and model samples (detached here: no gradient flows
        through the sampler).
    l2_weight : float
        :math:`\alpha \ge 0` (JEM/IGEBM use about 0.1 or less).

    Notes
    -----
    .. math:: L = \overline{E(x^+)} - \overline{E(x^-)}
              + \alpha\, \overline{E(x^+)^2 + E(x^-)^2}

    Since :math:`\nabla_\theta \log p(x) = -\nabla_\theta E(x) +
    \mathbb E_{p}[\nabla_\theta E]`, the gradient of the first two terms is the
    negative log-likelihood gradient with the model expectation replaced by
    the mean over the negatives :math:`x^-`.

    References
    ----------
    Du, Y. & Mordatch, I. (2019). Implicit generation and generalization in
    energy-based models. NeurIPS, section 3.3.
    """
    l2_weight = check_nonnegative_float("l2_weight", l2_weight)
    energy_data = energy(x_data)
    check_energy_output(energy_data, x_data)
    x_negative = x_negative.detach()
    energy_negative = energy(x_negative)
    check_energy_output(energy_negative, x_negative)
    penalty = energy_data.pow(2).mean() + energy_negative.pow(2).mean()
    loss = energy_data.mean() - energy_negative.mean() + l2_weight * penalty
    return ContrastiveLoss(
        loss=loss,
        energy_data=energy_data.detach().mean(),
        energy_negative=energy_negative.detach().mean(),
        penalty=penalty.detach(),
    )


class LangevinNegatives:
    """Negative samples from a data-space sampler, persistent or short-run.

    Parameters
    ----------
    sampler : Langevin or MALA
        Any sampler whose state has the samples in ``state.x``.
    n_steps : int
        Sampler steps per call (JEM: 20).
    buffer : ReplayBuffer, optional
        Persistent chains: start from the buffer (with its reinitialisation)
        and push the results back. Without a buffer, chains start from
        ``init`` every call (short-run, non-persistent sampling).
    init : UniformInit, GaussianInit or ClassGaussianInit, optional
        Start distribution when there is no buffer.
    """

    def __init__(
        self,
        sampler: Sampler[Any],
        *,
        n_steps: int,
        buffer: ReplayBuffer | None = None,
        init: InitDistribution | None = None,
    ) -> None:
        if (buffer is None) == (init is None):
            raise ValueError(
                "give exactly one of buffer (persistent chains) or init (short-run chains)"
            )
        self.sampler = sampler
        self.n_steps = check_positive_int("n_steps", n_steps)
        self.buffer = buffer
        self.init = init

    def sample(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Draw ``batch_size`` negatives (detached) and the last sampler step's info."""
        check_positive_int("batch_size", batch_size)
        if self.buffer is not None:
            x0, indices = self.buffer.sample(batch_size, generator=generator, y=y)
        else:
            x0, indices = self.init.sample(batch_size, generator=generator, y=y), None
        state = self.sampler.init(x0)
        state, _, infos = run_chain(self.sampler, state, self.n_steps, generator=generator)
        x = state.x.detach()
        if self.buffer is not None:
            self.buffer.push(x, indices)
        return x, infos[-1]


def contrastive_step(
    energy: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x_data: torch.Tensor,
    negatives: LangevinNegatives,
    *,
    l2_weight: float = 0.1,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One training update: sample negatives, compute :func:`contrastive_loss`, step.

    Raises
    ------
    FloatingPointError
        If the loss is not finite; the parameters are left as they were
        before this step (the optimizer has not stepped), so the caller can
        save them or stop with the last good checkpoint.
    """
    x_negative, info = negatives.sample(len(x_data), generator=generator)
    parts = contrastive_loss(energy, x_data, x_negative, l2_weight=l2_weight)
    loss_value = parts.loss.item()
    if not math.isfinite(loss_value):
        raise FloatingPointError(
            f"EBM loss is {loss_value} (data energy {parts.energy_data.item():.4g}, negative "
            f"energy {parts.energy_negative.item():.4g}); lower the learning rate, raise "
            f"l2_weight or the number of sampler steps, and resume from the last checkpoint"
        )
    optimizer.zero_grad(set_to_none=True)
    parts.loss.backward()
    optimizer.step()
    return {
        "loss": loss_value,
        "energy_data": parts.energy_data.item(),
        "energy_negative": parts.energy_negative.item(),
        "penalty": parts.penalty.item(),
        "sampler_grad_norm": float(info.get("grad_norm", math.nan)),
    }
