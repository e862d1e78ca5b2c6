"""Single-unit Gibbs sampling for general Boltzmann machines, as an init/step sampler.

A general Boltzmann machine has couplings inside each layer, so the layers
cannot be sampled as blocks (that is :class:`~ebmlab.samplers.gibbs.BlockGibbs`
for bipartite models). Each step here is one sweep of single-unit updates,
:meth:`ebmlab.models.bm.BoltzmannMachine.gibbs_sweep`, over many chains at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import check_choice
from ebmlab.models.bm import SCANS, BoltzmannMachine


@dataclass
class BMGibbsState:
    """The chains' visible and hidden units, one row per chain."""

    visible: torch.Tensor
    hidden: torch.Tensor


class BMGibbs:
    """Gibbs sampler for :class:`~ebmlab.models.bm.BoltzmannMachine`.

    Parameters
    ----------
    model : BoltzmannMachine
        The model to sample.
    scan : {"systematic", "random"}
        Unit order within a sweep: fixed (visible then hidden units) or uniformly
        random per update and per chain.

    Notes
    -----
    Each update draws :math:`z_k \\sim p(z_k \\mid z_{-k})`, which leaves the joint
    :math:`p(x, h)` invariant; a sweep makes ``n_visible + n_hidden`` updates.
    """

    def __init__(self, model: BoltzmannMachine, *, scan: str = "systematic") -> None:
        self.model = model
        self.scan = check_choice("scan", scan, SCANS)

    def init(self, x0: torch.Tensor, h0: torch.Tensor | None = None) -> BMGibbsState:
        """Start chains at ``x0``; the hidden units start at ``h0`` or at zero.

        The first sweep updates the visible units given the initial hidden
        units, so the hidden start only matters for the first few sweeps.
        """
        self.model.check_visible(x0, "x0")
        if h0 is None:
            h0 = x0.new_zeros(x0.shape[0], self.model.n_hidden)
        return BMGibbsState(visible=x0.detach().clone(), hidden=h0.detach().clone())

    @torch.no_grad()
    def step(
        self, state: BMGibbsState, *, generator: torch.Generator | None = None
    ) -> tuple[BMGibbsState, dict[str, Any]]:
        visible, hidden = self.model.gibbs_sweep(
            state.visible, state.hidden, scan=self.scan, generator=generator
        )
        return BMGibbsState(visible=visible, hidden=hidden), {}
