"""The sampler protocol and the generic chain loop.

A sampler is an object with ``init(x0) -> state`` and
``step(state, *, generator) -> (state, info)`` over an explicit dataclass state.
Keeping the state explicit (rather than inside the sampler) lets the same
sampler object drive many independent chain sets, lets checkpoints hold the
chains, and makes every step a pure function of (state, random numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import torch

from ebmlab._validation import check_nonnegative_int, check_positive_int

State = TypeVar("State")


class Sampler(Protocol[State]):
    """What every sampler in :mod:`ebmlab.samplers` provides."""

    def init(self, x0: torch.Tensor) -> State: ...

    def step(
        self, state: State, *, generator: torch.Generator | None = None
    ) -> tuple[State, dict[str, Any]]: ...


def run_chain(
    sampler: Sampler[State],
    state: State,
    n_steps: int,
    *,
    thin: int = 1,
    generator: torch.Generator | None = None,
    collect: Callable[[State], torch.Tensor] | None = None,
    progress: bool = False,
) -> tuple[State, torch.Tensor | None, list[dict[str, Any]]]:
    """Advance ``state`` by ``n_steps`` steps of ``sampler``.

    Parameters
    ----------
    sampler : Sampler
        Any object with ``init``/``step``.
    state : State
        The state to start from (returned by ``sampler.init`` or a previous call).
    n_steps : int
        Number of steps, >= 0.
    thin : int
        Keep every ``thin``-th state when ``collect`` is given.
    generator : torch.Generator, optional
        Source of randomness for every step.
    collect : callable, optional
        Maps a state to the tensor to keep (e.g. ``lambda s: s.visible``); the
        kept tensors are stacked along a new first dimension.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    state, samples, infos
        The final state, the stacked collected tensors (or None) and the
        per-step info dictionaries of the kept steps.
    """
    check_nonnegative_int("n_steps", n_steps)
    check_positive_int("thin", thin)
    kept: list[torch.Tensor] = []
    infos: list[dict[str, Any]] = []
    steps = range(n_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="sampling", leave=False)
    for t in steps:
        state, info = sampler.step(state, generator=generator)
        if (t + 1) % thin == 0:
            infos.append(info)
            if collect is not None:
                kept.append(collect(state).detach().clone())
    samples = torch.stack(kept) if kept else None
    return state, samples, infos
