r"""Langevin and MALA chains run several steps per call as one compiled pure function.

:class:`~ebmlab.samplers.langevin.Langevin` and :class:`~ebmlab.samplers.mala.MALA` take one
step per call: an autograd graph, a ``torch.randn`` and a dozen eager operations, a fixed
cost that dominates for small energies (a 2-D toy density, a small network on a few hundred
particles). :class:`CompiledChain` runs the same update ``steps_per_call`` times inside one
function: the energy's input gradient from :func:`torch.func.grad_and_value`, the noise and
MALA's acceptance uniforms from the counter-based stream of
:mod:`ebmlab.samplers.counter_random`, and :func:`torch.compile` turning the block into a few
fused loops (eager, with a warning, where compiling fails: the same numbers either way).

Step :math:`t` of a chain with :math:`D` numbers in ``x`` (all rows together) and :math:`B`
rows draws the stream's numbers from ``counter + t m`` on, :math:`m = 2D` for Langevin (its
:math:`D` Box-Muller normals; :math:`m = 0` without noise) and :math:`m = 2D + B` for MALA
(the normals, then one acceptance uniform per row), so a run split into blocks of any length,
or resumed from its state, draws the numbers of an unbroken one. The draws differ from the
``generator``-driven :meth:`step` of the same sampler: the two paths are the same Markov
chain, not the same sample path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import check_nonnegative_int, check_positive_int
from ebmlab.samplers.compiled import CompiledFunction
from ebmlab.samplers.counter_random import CounterStream, counter_normal, counter_uniform
from ebmlab.samplers.langevin import Langevin, check_energy_output, clip_per_sample
from ebmlab.samplers.mala import MALA, log_proposal


@dataclass
class CompiledChainState:
    """The chains ``x`` (shape (batch, ...)), their random stream and, for MALA, the energy
    and its gradient at ``x`` (cached so that a step evaluates the energy once)."""

    x: torch.Tensor
    stream: CounterStream
    energy: torch.Tensor | None = None
    grad: torch.Tensor | None = None


class CompiledChain:
    r"""Run a :class:`Langevin` or :class:`MALA` sampler in compiled blocks of steps.

    Parameters
    ----------
    sampler : Langevin or MALA
        Its energy, step size and (Langevin) noise scale, gradient clipping and clamp.
        The energy must be a pure function of ``x`` for :func:`torch.func` (an
        ``nn.Module`` or a tensor function; no in-place changes to its inputs).
    steps_per_call : int
        Steps traced into one compiled function: a longer block amortises the call's fixed
        cost, and compiling takes longer (each distinct block length compiles once).
    compile : bool
        Use :func:`torch.compile` (False: the same function eagerly).

    Notes
    -----
    Each step is the sampler's own update (see :class:`Langevin` and :class:`MALA`):
    :math:`x \leftarrow x - \alpha \nabla_x E(x) + \sigma \xi` for Langevin (clipped and
    clamped as configured) and, for MALA, the proposal
    :math:`x' = x - \tau \nabla E(x) + \sqrt{2\tau}\,\xi` accepted per row when
    :math:`\log u < E(x) - E(x') + \log q(x \mid x') - \log q(x' \mid x)`. Gradients are
    taken with respect to ``x`` only; the energy's parameters receive no ``.grad`` and no
    autograd graph outlives a call.

    Examples
    --------
    >>> import torch
    >>> from ebmlab.samplers import CompiledChain, Langevin
    >>> chain = CompiledChain(Langevin.calibrated(lambda x: 0.5 * (x**2).sum(1), 0.1),
    ...                       compile=False)
    >>> state = chain.init(torch.zeros(100, 2), generator=torch.Generator().manual_seed(0))
    >>> state, info = chain.run(state, 50)
    >>> state.x.shape
    torch.Size([100, 2])
    """

    def __init__(
        self, sampler: Langevin | MALA, *, steps_per_call: int = 10, compile: bool = True
    ) -> None:
        if not isinstance(sampler, (Langevin, MALA)):
            raise TypeError(f"sampler must be a Langevin or MALA sampler; got {sampler!r:.80}")
        self.sampler = sampler
        self.is_mala = isinstance(sampler, MALA)
        self.steps_per_call = check_positive_int("steps_per_call", steps_per_call)
        steps = self._mala_steps if self.is_mala else self._langevin_steps
        name = "MALA" if self.is_mala else "Langevin"
        # Single-threaded generated loops: small per-particle work (CompiledFunction).
        self._block = CompiledFunction(
            steps, f"{name} runs its steps", compile=compile, kernel_threads=1
        )
        self._value_and_grad = torch.func.grad_and_value(self._summed_energy, has_aux=True)

    def init(
        self, x0: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> CompiledChainState:
        """Start one chain per row of ``x0`` (floating, shape (batch, ...)); the stream's key
        comes from ``generator``, so the run is reproducible from its seed. Evaluates the
        energy once, eagerly, to check its output shape (and, for MALA, to cache it)."""
        if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 1:
            raise TypeError(
                f"x0 must be a floating torch.Tensor of shape (batch, ...); got {x0!r:.80}"
            )
        x = x0.detach().clone()
        with torch.no_grad():
            values = self.sampler.energy(x)
        check_energy_output(values, x)
        stream = CounterStream.from_generator(generator, device=x.device)
        if not self.is_mala:
            return CompiledChainState(x=x, stream=stream)
        with torch.no_grad():
            grad, (_, values) = self._value_and_grad(x)
        return CompiledChainState(x=x, stream=stream, energy=values, grad=grad)

    def draws_per_step(self, x: torch.Tensor) -> int:
        """How many stream numbers one step uses: :math:`2D` (Langevin with noise, else 0)
        or :math:`2D + B` (MALA) for ``x`` of :math:`B` rows and :math:`D` numbers."""
        if self.is_mala:
            return 2 * x.numel() + x.shape[0]
        return 2 * x.numel() if self.sampler.noise_scale > 0 else 0

    def run(self, state: CompiledChainState, n_steps: int) -> tuple[CompiledChainState, dict]:
        """``n_steps`` steps from ``state``; the old state is left as it was.

        ``info`` holds the mean energy at the start of the last step (Langevin) or at the
        final positions (MALA) and, for MALA, the acceptance rate over all steps and rows
        (0-d tensors).
        """
        n_steps = check_nonnegative_int("n_steps", n_steps)
        x, stream, per_step = state.x, state.stream, self.draws_per_step(state.x)
        energy, grad = state.energy, state.grad
        accepted, mean_energy = torch.zeros((), dtype=x.dtype, device=x.device), None
        with torch.no_grad():
            for start in range(0, n_steps, self.steps_per_call):
                block = min(self.steps_per_call, n_steps - start)
                counter = torch.tensor(stream.counter, dtype=torch.int64, device=x.device)
                if self.is_mala:
                    x, energy, grad, count = self._block(x, energy, grad, stream.key, counter,
                                                         block)  # fmt: skip
                    accepted = accepted + count
                else:
                    x, mean_energy = self._block(x, stream.key, counter, block)
                stream = CounterStream(key=stream.key, counter=stream.counter + per_step * block)
        info: dict[str, Any] = {}
        if self.is_mala:
            info["energy"] = energy.mean()
            info["acceptance_rate"] = accepted / max(n_steps * x.shape[0], 1)
        elif mean_energy is not None:
            info["energy"] = mean_energy
        return CompiledChainState(x=x, stream=stream, energy=energy, grad=grad), info

    def _summed_energy(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.sampler.energy(x)
        return values.sum(), values.detach()

    def _normal(self, key: torch.Tensor, start: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return counter_normal(key, start, x.numel(), x.dtype).view(x.shape)

    def _langevin_steps(
        self, x: torch.Tensor, key: torch.Tensor, counter: torch.Tensor, n_steps: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_steps`` Langevin updates from ``x``, drawing from ``counter`` on: pure, traceable."""
        sampler, per_step = self.sampler, self.draws_per_step(x)
        mean_energy = torch.zeros((), dtype=x.dtype, device=x.device)
        for t in range(n_steps):  # unrolled when traced: one graph per block length
            grad, (_, values) = self._value_and_grad(x)
            mean_energy = values.mean()
            if sampler.max_grad_norm is not None:
                grad = clip_per_sample(grad, sampler.max_grad_norm)
            x = x - sampler.step_size * grad
            if sampler.noise_scale > 0:
                x = x + sampler.noise_scale * self._normal(key, counter + t * per_step, x)
            if sampler.clamp is not None:
                x = x.clamp(*sampler.clamp)
        return x, mean_energy

    def _mala_steps(
        self,
        x: torch.Tensor,
        energy: torch.Tensor,
        grad: torch.Tensor,
        key: torch.Tensor,
        counter: torch.Tensor,
        n_steps: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n_steps`` MALA steps; returns the state and the number of accepted proposals."""
        tau, per_step = self.sampler.step_size, self.draws_per_step(x)
        accepted = torch.zeros((), dtype=x.dtype, device=x.device)
        for t in range(n_steps):
            start = counter + t * per_step
            proposal = x - tau * grad + math.sqrt(2.0 * tau) * self._normal(key, start, x)
            proposal_grad, (_, proposal_energy) = self._value_and_grad(proposal)
            log_ratio = (
                energy
                - proposal_energy
                + log_proposal(x, proposal, proposal_grad, tau)
                - log_proposal(proposal, x, grad, tau)
            )
            uniform = counter_uniform(key, start + 2 * x.numel(), x.shape[0]).to(x.dtype)
            # log1p(-u) of u in [0, 1) is finite: log(1 - u) < ratio accepts with probability
            # min(1, exp(ratio)) as log(u) does; a NaN ratio compares False (rejected).
            accept = torch.log1p(-uniform) < log_ratio
            mask = accept.view(-1, *([1] * (x.ndim - 1)))
            x = torch.where(mask, proposal, x)
            energy = torch.where(accept, proposal_energy, energy)
            grad = torch.where(mask, proposal_grad, grad)
            accepted = accepted + accept.to(x.dtype).sum()
        return x, energy, grad, accepted
