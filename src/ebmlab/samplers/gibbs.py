"""Block Gibbs sampling for two-layer (bipartite) models.

Works with any model exposing the layered conditionals ``sample_h(v, *, generator)``,
``mean_v(h)`` and ``sample_v(h, *, generator)``: the RBM, the Gaussian-Bernoulli RBM,
and each pair of layers of a DBN. Used by CD/PCD training, by ``ebmlab sample``
and as the transition operator inside AIS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ebmlab.models.rbm import sample_bernoulli
from ebmlab.samplers.base import run_chain


class LayeredModel(Protocol):
    def sample_h(
        self, v: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...

    def mean_v(self, h: torch.Tensor) -> torch.Tensor: ...

    def sample_v(
        self, h: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


@dataclass
class GibbsState:
    """State of a set of block Gibbs chains.

    Attributes
    ----------
    visible : Tensor
        The chains' visible sample, one row per chain.
    hidden : Tensor, optional
        The hidden sample that produced ``visible``.
    visible_mean : Tensor, optional
        p(v = 1 | hidden), a lower-variance view of the visible layer.
    hidden_mean : Tensor, optional
        p(h = 1 | visible) when the caller already computed it (e.g. CD's
        positive phase); the next step samples from it instead of recomputing.
    """

    visible: torch.Tensor
    hidden: torch.Tensor | None = None
    visible_mean: torch.Tensor | None = None
    hidden_mean: torch.Tensor | None = None


class BlockGibbs:
    r"""Alternating block Gibbs sampler: :math:`h \sim p(h \mid v)`, then :math:`v \sim p(v \mid h)`.

    Parameters
    ----------
    model : LayeredModel
        The model whose conditionals are sampled.

    Notes
    -----
    Each step is one full sweep; the chain's stationary distribution is the
    model's joint :math:`p(v, h)`. Steps run without building autograd graphs.
    """

    def __init__(self, model: LayeredModel) -> None:
        self.model = model

    def init(self, x0: torch.Tensor) -> GibbsState:
        """Start chains at visible configurations ``x0`` (one row per chain)."""
        return GibbsState(visible=x0.detach())

    @torch.no_grad()
    def step(
        self, state: GibbsState, *, generator: torch.Generator | None = None
    ) -> tuple[GibbsState, dict[str, Any]]:
        if state.hidden_mean is not None:
            hidden = sample_bernoulli(state.hidden_mean, generator=generator)
        else:
            hidden = self.model.sample_h(state.visible, generator=generator)
        visible_mean = self.model.mean_v(hidden)
        visible = _sample_from_mean(self.model, hidden, visible_mean, generator)
        return GibbsState(visible=visible, hidden=hidden, visible_mean=visible_mean), {}


def _sample_from_mean(
    model: Any, hidden: torch.Tensor, mean: torch.Tensor, generator: torch.Generator | None
):
    # Bernoulli visible units can reuse the mean already computed; other unit
    # types (e.g. Gaussian) sample through their own conditional.
    sample_from_mean = getattr(model, "sample_v_from_mean", None)
    if sample_from_mean is not None:
        return sample_from_mean(mean, generator=generator)
    return model.sample_v(hidden, generator=generator)


@torch.no_grad()
def sample_visible(
    model: Any,
    n_samples: int,
    n_steps: int,
    *,
    generator: torch.Generator | None = None,
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``n_samples`` independent block Gibbs chains for ``n_steps`` sweeps.

    Chains start at ``init`` or, by default, at uniform random binary visible
    vectors. Returns the last sweep's visible means p(v | h), the usual way to
    display RBM samples.
    """
    if init is None:
        reference = next(model.parameters())
        init = torch.rand(
            n_samples,
            model.n_visible,
            generator=generator,
            dtype=reference.dtype,
            device=reference.device,
        ).round()
    state, _, _ = run_chain(
        BlockGibbs(model), GibbsState(visible=init), n_steps, generator=generator
    )
    return state.visible_mean if state.visible_mean is not None else state.visible
