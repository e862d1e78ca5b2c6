r"""The RBM annealing path as one compiled step per temperature, with counter-based draws.

:class:`~ebmlab.estimators.rbm_path.RBMAnnealingPath` spends most of an AIS run outside
its two GEMMs per temperature: two ``torch.rand`` calls (a serial Mersenne twister),
sigmoid, softplus, comparisons, each a pass over memory. This path writes one
temperature (weight update and Gibbs sweep) as a pure function whose Bernoulli draws
come from :mod:`ebmlab.samplers.counter_random`, and runs it under :func:`torch.compile`:
the elementwise work fuses into a few loops around the two GEMMs.

The numbers drawn depend only on the key (drawn from the caller's generator) and the
counter, never on compilation: where no C compiler is found the same step runs eagerly,
slower, with a warning. Compiled and eager runs differ only where fused floating-point
arithmetic rounds a probability differently from the eager kernels (so a comparison
with its uniform may flip); the estimate's distribution is the same. The path is the
same maths as ``RBMAnnealingPath`` (see that module), in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ebmlab.estimators.rbm_path import RBMAnnealingPath
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.compiled import CompiledFunction
from ebmlab.samplers.counter_random import CounterStream, counter_uniform


@dataclass(eq=False)
class CounterChains:
    """AIS chains of the compiled path: their visible units and their random stream."""

    visible: torch.Tensor
    stream: CounterStream | None = None


def temperature_step(
    visible: torch.Tensor,
    beta_prev: torch.Tensor,
    beta: torch.Tensor,
    key: torch.Tensor,
    counter: torch.Tensor,
    weight_ext: torch.Tensor,
    hidden_bias_ext: torch.Tensor,
    weight_t: torch.Tensor,
    base_bias: torch.Tensor,
    bias_gap: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One AIS temperature: the log-weight increments, then the visible units after a sweep.

    ``beta_prev`` and ``beta`` are float64 0-d tensors. Returns (new visible, increment of
    :math:`\log f_\beta(v) - \log f_{\beta'}(v)` in float64). Pure: compiles as one graph.
    bfloat16 ``weight_ext`` and ``weight_t`` (a model set to ``precision="bfloat16"``) give
    the two products bfloat16 operands and float32 results, as the eager path does.
    """
    n_chains, n_hidden = visible.shape[0], weight_t.shape[0]
    inputs = _addmm(hidden_bias_ext, visible, weight_ext)
    preactivation, bias_dot = inputs[:, :n_hidden], inputs[:, n_hidden]
    b, b_prev = beta.to(visible.dtype), beta_prev.to(visible.dtype)
    softplus_gap = F.softplus(b * preactivation) - F.softplus(b_prev * preactivation)
    increment = softplus_gap.sum(-1, dtype=torch.float64) + bias_dot.double() * (beta - beta_prev)
    n_h = n_chains * n_hidden
    uniform_h = counter_uniform(key, counter, n_h).view(n_chains, n_hidden)
    hidden = (uniform_h < torch.sigmoid(b * preactivation)).to(visible.dtype)
    visible_input = base_bias + b * bias_gap + b * _addmm(None, hidden, weight_t)
    uniform_v = counter_uniform(key, counter + n_h, visible.numel()).view_as(visible)
    return (uniform_v < torch.sigmoid(visible_input)).to(visible.dtype), increment


def _addmm(bias: torch.Tensor | None, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight`` in ``x``'s dtype, with bfloat16 operands if ``weight`` is."""
    if weight.dtype == torch.bfloat16:
        product = torch.mm(x.to(torch.bfloat16), weight).to(x.dtype)
        return product if bias is None else product.add_(bias)
    return torch.mm(x, weight) if bias is None else torch.addmm(bias, x, weight)


class CompiledRBMAnnealingPath(RBMAnnealingPath):
    """:class:`RBMAnnealingPath` with each temperature one compiled step (see module).

    Parameters
    ----------
    model : BernoulliRBM
        float32 parameters; set to ``precision="bfloat16"``, the step's two products take
        bfloat16 operands (float32 results), as the eager path's do.
    base_data : Tensor, optional
        As for :class:`RBMAnnealingPath`.
    compile : bool
        Run the step under :func:`torch.compile` (falls back to eager, with a warning, if
        compiling fails); False runs it eagerly (the same draws; for tests and debugging).
    """

    def __init__(
        self, model: BernoulliRBM, *, base_data: torch.Tensor | None = None, compile: bool = True
    ) -> None:
        if model.weight.dtype != torch.float32:
            raise ValueError(
                f"the compiled AIS path needs float32 parameters; got {model.weight.dtype}"
            )
        super().__init__(model, base_data=base_data)
        self._step = CompiledFunction(temperature_step, "AIS runs its step", compile=compile)

    def sample_base(self, n_chains: int, *, generator: torch.Generator | None = None):
        return CounterChains(visible=super().sample_base(n_chains, generator=generator).visible)

    def state_from_data(self, data: torch.Tensor) -> CounterChains:
        return CounterChains(visible=data.to(torch.float32).contiguous().clone())

    def transition(self, state: CounterChains, beta: float, *, generator=None) -> CounterChains:
        ignored = torch.zeros(state.visible.shape[0], dtype=torch.float64, device=self.device)
        return self.advance(state, beta, beta, ignored, generator=generator)

    def advance(self, state, beta_prev, beta, log_weights, *, generator=None, transition=True):
        """Add the log-weight increments to ``log_weights``; then sweep (the step does both)."""
        if state.stream is None:  # the key comes from the caller's generator: reproducible
            state.stream = CounterStream.from_generator(generator, device=self.device)
        stream = state.stream
        counter = torch.tensor(stream.counter, dtype=torch.int64, device=self.device)
        betas = torch.tensor([beta_prev, beta], dtype=torch.float64, device=self.device)
        weight_ext, weight_t = (
            (self._weight_ext_bf16, self._weight_t_bf16)
            if self._reduced
            else (self._weight_ext, self._weight_t)
        )
        visible, increment = self._step(
            state.visible, betas[0], betas[1], stream.key, counter,
            weight_ext, self._hidden_bias_ext, weight_t, self.base_bias, self._bias_gap,
        )  # fmt: skip
        log_weights += increment
        stream.counter += state.visible.shape[0] * (self.n_hidden + self.n_visible)
        if transition:
            state.visible = visible
        return state
