"""Block Gibbs sampling for deep Boltzmann machines: odd layers, then even layers.

Given the even layers (the visible one included) the units of the odd layers are
independent, and back, so one sweep is two blocks of independent Bernoulli draws.
Used by DBM training (persistent chains), by ``ebmlab sample`` and by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ebmlab.models.dbm import DBM
from ebmlab.models.rbm import sample_bernoulli
from ebmlab.samplers.base import run_chain


@dataclass
class DBMGibbsState:
    """One tensor per layer (``layers[0]`` is the visible one), plus ``visible_mean``,
    :math:`p(v \\mid h_1)` from the last sweep (a lower-variance view of the samples)."""

    layers: list[torch.Tensor]
    visible_mean: torch.Tensor | None = None

    @property
    def visible(self) -> torch.Tensor:
        return self.layers[0]


class DBMBlockGibbs:
    r"""Alternating block Gibbs sampler for a :class:`~ebmlab.models.dbm.DBM`.

    Parameters
    ----------
    model : DBM
        The model whose joint :math:`p(v, h_1, \dots, h_L)` is sampled.

    Notes
    -----
    One step draws every odd layer from :math:`p(x_l \mid x_{l-1}, x_{l+1})` given the
    current even layers, then every even layer given the new odd ones. Each block is
    an exact conditional, so the joint is invariant; the chain is irreducible because
    every conditional probability lies strictly in (0, 1) for finite parameters.
    Steps run without autograd graphs.
    """

    def __init__(self, model: DBM) -> None:
        if not isinstance(model, DBM):
            raise TypeError(f"model must be a DBM; got {type(model).__name__}")
        self.model = model

    def init(self, x0: torch.Tensor | Sequence[torch.Tensor]) -> DBMGibbsState:
        """Start chains at ``x0``: a full list of layers, or visible rows only.

        With visible rows only, the hidden layers start at the deterministic
        :meth:`DBM.bottom_up_means` (values in (0, 1)); the first sweep redraws
        the odd layers and then everything is binary.
        """
        if isinstance(x0, torch.Tensor):
            self.model.check_visible(x0, "x0")
            layers = [x0.detach(), *self.model.bottom_up_means(x0.detach())]
        else:
            layers = [x.detach() for x in x0]
            if len(layers) != self.model.n_layers:
                raise ValueError(
                    f"x0 must hold one tensor per layer ({self.model.n_layers}); got {len(layers)}"
                )
        return DBMGibbsState(layers=layers)

    @torch.no_grad()
    def step(
        self, state: DBMGibbsState, *, generator: torch.Generator | None = None
    ) -> tuple[DBMGibbsState, dict[str, Any]]:
        model, layers = self.model, list(state.layers)
        for k in model.parity_layers(1):
            layers[k] = model.sample_layer(layers, k, generator=generator)
        visible_mean = None
        for k in model.parity_layers(0):
            mean = model.mean_layer(layers, k)
            if k == 0:
                visible_mean = mean
            layers[k] = sample_bernoulli(mean, generator=generator)
        return DBMGibbsState(layers=layers, visible_mean=visible_mean), {}


@torch.no_grad()
def sample_dbm(
    model: DBM,
    n_samples: int,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    init: torch.Tensor | Sequence[torch.Tensor] | None = None,
) -> DBMGibbsState:
    """Run ``n_samples`` independent block Gibbs chains for ``n_steps`` sweeps.

    Chains start at ``init`` or, by default, at uniform random binary visible
    vectors. Returns the final state; ``state.visible_mean`` is what one displays.
    """
    if init is None:
        reference = model.biases[0]
        init = torch.rand(
            n_samples,
            model.n_visible,
            generator=generator,
            dtype=reference.dtype,
            device=reference.device,
        ).round()
    sampler = DBMBlockGibbs(model)
    state, _, _ = run_chain(sampler, sampler.init(init), n_steps, generator=generator)
    return state
