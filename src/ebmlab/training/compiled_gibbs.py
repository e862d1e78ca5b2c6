r"""CD/PCD's Gibbs sweeps for a Bernoulli RBM as one compiled step, with counter-based draws.

A sweep samples :math:`h \sim p(h \mid v)` from the hidden means, then
:math:`v \sim p(v \mid h)`, then computes the next hidden means :math:`p(h = 1 \mid v)`:
two GEMMs, two sigmoids, two comparisons with uniforms. Eagerly, ``torch.rand``'s serial
Mersenne twister and one pass over memory per elementwise operation cost about as much as
the GEMMs on a 784-500 RBM. :func:`gibbs_sweep` is a pure function whose uniforms come from
:mod:`ebmlab.samplers.counter_random`; under :func:`torch.compile` the draws, comparisons
and sigmoids fuse around the GEMMs.

The draws depend only on the key (drawn from the trainer's sampling generator) and the
counter (saved in checkpoints), not on compilation: without a C compiler the same sweep
runs eagerly, with a warning. Compiled and eager sweeps can differ only where fused
floating-point arithmetic rounds a probability differently, so a comparison with its
uniform may flip; the chains' distribution is the same.
"""

from __future__ import annotations

from typing import Any

import torch

from ebmlab.samplers.compiled import CompiledFunction
from ebmlab.samplers.counter_random import CounterStream, counter_uniform


def gibbs_sweep(
    hidden_mean: torch.Tensor,
    weight: torch.Tensor,
    hidden_bias: torch.Tensor,
    visible_bias: torch.Tensor,
    key: torch.Tensor,
    counter: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sweep from p(h | v): returns (the new binary v, its hidden means p(h = 1 | v)).

    Uses the uniforms ``counter, ...`` of the stream ``key``: first the hidden draws (row
    by row), then the visible ones. A bfloat16 ``weight`` (the model's rounded copy, see
    :mod:`ebmlab.models.matmul_precision`) makes both products take bfloat16 operands; the
    biases, means and samples stay in the biases' dtype.
    """
    n_chains, n_hidden = hidden_mean.shape
    n_visible = weight.shape[0]
    uniform_h = counter_uniform(key, counter, n_chains * n_hidden).view(n_chains, n_hidden)
    hidden = (uniform_h < hidden_mean).to(visible_bias.dtype)
    visible_mean = torch.sigmoid(_affine(visible_bias, hidden, weight.t()))
    offset = counter + n_chains * n_hidden
    uniform_v = counter_uniform(key, offset, n_chains * n_visible).view(n_chains, n_visible)
    visible = (uniform_v < visible_mean).to(visible_bias.dtype)
    return visible, torch.sigmoid(_affine(hidden_bias, visible, weight))


def _affine(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight``; with a bfloat16 ``weight`` the operands are bfloat16 (binary
    ``x`` exactly so) and the product is added to ``bias`` in its dtype."""
    if weight.dtype == bias.dtype:
        return torch.addmm(bias, x, weight)
    return torch.mm(x.to(weight.dtype), weight).to(bias.dtype) + bias


class CompiledGibbs:
    """Runs :func:`gibbs_sweep` for a Bernoulli RBM, compiled when possible, on a counter stream.

    Parameters
    ----------
    model : BernoulliRBM
        Its current parameters are read at every sweep (they change between updates).
    compile : bool
        Use :func:`torch.compile` (False: the same sweep eagerly, for tests and debugging).
    """

    def __init__(self, model: Any, *, compile: bool = True) -> None:
        self.model = model
        self.stream: CounterStream | None = None
        self._sweep = CompiledFunction(gibbs_sweep, "the Gibbs sweeps run", compile=compile)

    @torch.no_grad()
    def run(
        self, hidden_mean: torch.Tensor, k: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` sweeps from ``hidden_mean``: the last visible sample and its hidden means."""
        model = self.model
        if self.stream is None:  # the key comes from the caller's generator: reproducible
            self.stream = CounterStream.from_generator(generator, device=hidden_mean.device)
        per_sweep = hidden_mean.shape[0] * (model.n_hidden + model.n_visible)
        visible = None
        for _ in range(k):
            counter = torch.tensor(
                self.stream.counter, dtype=torch.int64, device=hidden_mean.device
            )
            weight = (
                model.weight_bfloat16() if model.reduced_precision(hidden_mean) else model.weight
            )
            arguments = (hidden_mean, weight.detach(), model.hidden_bias.detach(),
                         model.visible_bias.detach(), self.stream.key, counter)  # fmt: skip
            visible, hidden_mean = self._sweep(*arguments)
            self.stream.counter += per_sweep
        return visible, hidden_mean

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.stream is None else self.stream.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.stream = CounterStream.from_state_dict(state) if state else None
