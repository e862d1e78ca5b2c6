"""Samplers: ``init(x0) -> state`` and ``step(state, *, generator) -> (state, info)``."""

from ebmlab.samplers.base import Sampler, run_chain
from ebmlab.samplers.gibbs import BlockGibbs, GibbsState, sample_visible

__all__ = ["BlockGibbs", "GibbsState", "Sampler", "run_chain", "sample_visible"]
