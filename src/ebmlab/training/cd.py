"""Contrastive divergence (CD-k) and persistent CD (PCD-k) for layered models.

The objective is a surrogate loss whose autograd gradient *is* the CD update:

.. math:: \\mathcal{L}(\\theta) = \\frac{1}{B}\\sum_b F_\\theta(v^{(b)}_{\\rm data})
          - \\frac{1}{B}\\sum_b F_\\theta(\\operatorname{sg}[v^{(b)}_{\\rm model}]),

with the negatives ``v_model`` detached (sg = stop-gradient). Because
:math:`-\\partial F(v)/\\partial W = v\\, p(h=1 \\mid v)^\\top`, the gradient of
:math:`\\mathcal{L}` is minus the classic update
:math:`\\langle v h^\\top \\rangle_{\\rm data} - \\langle v h^\\top \\rangle_{k}`,
using hidden probabilities on both sides (the Rao-Blackwellised form).

References
----------
Hinton, G. (2002). Training products of experts by minimizing contrastive
divergence. Neural Computation 14(8). Tieleman, T. (2008). Training restricted
Boltzmann machines using approximations to the likelihood gradient. ICML.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ebmlab._validation import check_nonnegative_float, check_positive_int, check_probability
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.gibbs import BlockGibbs, GibbsState


def cd_loss(model: Any, v_data: torch.Tensor, v_model: torch.Tensor) -> torch.Tensor:
    """Surrogate loss ``mean F(v_data) - mean F(v_model)`` with ``v_model`` detached.

    One free-energy evaluation over the concatenated batch costs one GEMM instead of two.
    """
    n_data = v_data.shape[0]
    free_energy = model.free_energy(torch.cat([v_data, v_model.detach()]))
    return free_energy[:n_data].mean() - free_energy[n_data:].mean()


def sparsity_penalty(
    model: Any, v_data: torch.Tensor, *, target: float, cost: float
) -> torch.Tensor:
    r"""Cross-entropy between the target activation ``p`` and the batch's mean activation ``q_j``.

    Its gradient with respect to hidden unit j's total input is proportional to
    :math:`q_j - p` (Hinton's guide, section 11), pushing the units towards the target.
    """
    q = model.mean_h(v_data).mean(0)
    target_tensor = torch.full_like(q, target)
    return cost * F.binary_cross_entropy(q, target_tensor, reduction="sum")


class ContrastiveDivergence:
    """Produces CD-k or PCD-k negative samples for a layered model.

    Parameters
    ----------
    model
        A model with ``sample_h``, ``mean_v``, ``sample_v`` (e.g. :class:`~ebmlab.models.BernoulliRBM`).
    k : int
        Number of block Gibbs steps per update (the k of CD-k).
    persistent : bool
        If True, chains persist across updates (PCD); otherwise each update
        restarts chains at the data (CD).
    n_chains : int, optional
        Number of persistent chains; defaults to the first batch's size.

    Notes
    -----
    The persistent chains live in :attr:`chains` and are part of the trainer's
    checkpoint, so a resumed run continues the same Markov chains.
    """

    def __init__(
        self, model: Any, *, k: int = 1, persistent: bool = False, n_chains: int | None = None
    ) -> None:
        self.model = model
        self.k = check_positive_int("k", k)
        self.persistent = persistent
        self.n_chains = None if n_chains is None else check_positive_int("n_chains", n_chains)
        self.sampler = BlockGibbs(model)
        self.chains: torch.Tensor | None = None

    def negatives(
        self, v_data: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return the negative (model) samples for this update."""
        if not self.persistent:
            start = v_data
        else:
            if self.chains is None:
                n = self.n_chains or v_data.shape[0]
                self.chains = v_data[
                    torch.arange(n, device=v_data.device) % v_data.shape[0]
                ].clone()
            start = self.chains
        state, _, _ = run_chain(
            self.sampler, GibbsState(visible=start), self.k, generator=generator
        )
        if self.persistent:
            self.chains = state.visible
        return state.visible

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.chains is None else {"chains": self.chains}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.chains = state.get("chains")


def validate_sparsity(target: float, cost: float) -> None:
    """Check the sparsity hyperparameters (target in (0, 1), cost >= 0)."""
    check_probability("sparsity_target", target, open_interval=True)
    check_nonnegative_float("sparsity_cost", cost)
