r"""Many independent SGLD posterior chains, several steps per call, compiled when possible.

:class:`~ebmlab.samplers.sgld.SGLD` is a torch optimizer: general, but each step is a few
dozen eager operations plus autograd, a fixed cost of a few hundred microseconds that
dominates when the parameters are small (Welling & Teh's two-parameter posterior).
:class:`ParallelSGLD` runs ``n_chains`` chains of a small parameter vector as one tensor
and ``steps_per_call`` steps as one pure function: the minibatch indices and the injected
noise come from the counter-based stream of :mod:`ebmlab.samplers.counter_random`, the
gradient from :func:`torch.func.grad`, and :func:`torch.compile` turns the whole block of
steps into a few fused loops. Without a C compiler the same function runs eagerly, with a
warning, drawing the same numbers.

Step :math:`t` uses the stream's numbers ``counter + t m, ...`` with
:math:`m = C (n + 2 d)` for :math:`C` chains, batch size :math:`n` and dimension
:math:`d` (first the :math:`C n` indices, then the :math:`2 C d` uniforms of the
normals), whatever the number of steps per call: a run split into chunks, or resumed
from a checkpoint, draws exactly the numbers of an unbroken one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ebmlab._validation import check_nonnegative_float, check_positive_int
from ebmlab.samplers.compiled import CompiledFunction
from ebmlab.samplers.counter_random import CounterStream, counter_integers, counter_normal

LogPrior = Callable[[torch.Tensor], torch.Tensor]
LogLikelihood = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SGLDChains:
    """The chains' positions ``theta`` (shape (n_chains, d)) and their random stream."""

    theta: torch.Tensor
    stream: CounterStream


class ParallelSGLD:
    r"""SGLD (Welling & Teh, 2011) for ``n_chains`` independent chains, compiled in blocks.

    Parameters
    ----------
    log_prior : callable
        ``theta`` of shape (M, d) to :math:`\log p(\theta)` of shape (M,), up to a constant.
    log_likelihood : callable
        ``(theta, x)`` with ``theta`` of shape (M, d) and ``x`` of shape (M, ...), row
        ``m`` paired with row ``m``, to :math:`\log p(x_m \mid \theta_m)` of shape (M,).
    data : Tensor
        The :math:`N` observations, shape (N, ...).
    batch_size : int
        :math:`n`, data points per chain per step, drawn uniformly with replacement.
    temperature : float
        Scales the injected noise variance (1 samples the posterior).
    steps_per_call : int
        Steps traced into one compiled function (a longer block amortises the call's
        fixed cost; compile time grows with it).
    compile : bool
        Use :func:`torch.compile` (False: the same function eagerly).

    Notes
    -----
    Each step moves every chain :math:`c` by

    .. math:: \theta_c \leftarrow \theta_c + \frac{\epsilon_t}{2} \Big(
              \nabla \log p(\theta_c) + \frac{N}{n} \sum_{i \in B_{c,t}}
              \nabla \log p(x_i \mid \theta_c) \Big) + \sqrt{\epsilon_t T}\, \xi_{c,t},

    :math:`\xi_{c,t} \sim \mathcal N(0, I)`, with its own minibatch :math:`B_{c,t}`: the
    update of :class:`~ebmlab.samplers.sgld.SGLD`, whose docstring gives the bias for a
    fixed step. The gradient is that of :math:`\sum_c` of each chain's log posterior
    estimate, which separates over chains.

    References
    ----------
    Welling, M. & Teh, Y. W. (2011). Bayesian learning via stochastic gradient
    Langevin dynamics. ICML, equation (4).
    """

    def __init__(
        self,
        log_prior: LogPrior,
        log_likelihood: LogLikelihood,
        data: torch.Tensor,
        *,
        batch_size: int = 1,
        temperature: float = 1.0,
        steps_per_call: int = 10,
        compile: bool = True,
    ) -> None:
        if not callable(log_prior) or not callable(log_likelihood):
            raise TypeError("log_prior and log_likelihood must be callable")
        if not isinstance(data, torch.Tensor) or data.ndim < 1 or len(data) == 0:
            raise ValueError(f"data must be a non-empty tensor of shape (N, ...); got {data!r:.80}")
        self.log_prior, self.log_likelihood, self.data = log_prior, log_likelihood, data
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.temperature = check_nonnegative_float("temperature", temperature)
        self.steps_per_call = check_positive_int("steps_per_call", steps_per_call)
        self._block = CompiledFunction(self._steps, "SGLD runs its steps", compile=compile)

    def init(self, theta0: torch.Tensor, *, generator: torch.Generator | None = None) -> SGLDChains:
        """Start one chain per row of ``theta0`` (shape (n_chains, d), floating); the
        stream's key comes from ``generator``, so the run is reproducible from its seed."""
        if (
            not isinstance(theta0, torch.Tensor)
            or not theta0.is_floating_point()
            or theta0.ndim != 2
        ):
            raise TypeError(
                f"theta0 must be a floating tensor of shape (n_chains, d); got {theta0!r:.80}"
            )
        stream = CounterStream.from_generator(generator, device=theta0.device)
        return SGLDChains(theta=theta0.detach().clone(), stream=stream)

    def draws_per_step(self, theta: torch.Tensor) -> int:
        """How many stream numbers one step uses: :math:`C (n + 2 d)`."""
        n_chains, dim = theta.shape
        return n_chains * (self.batch_size + 2 * dim)

    def run(self, state: SGLDChains, step_sizes: torch.Tensor) -> tuple[SGLDChains, torch.Tensor]:
        """One step per entry of ``step_sizes`` (the :math:`\\epsilon_t`, each > 0).

        Returns the new state and the trace: the positions after every step, shape
        (len(step_sizes), n_chains, d).
        """
        step_sizes = torch.as_tensor(step_sizes, dtype=state.theta.dtype, device=state.theta.device)
        if step_sizes.ndim != 1 or not bool((step_sizes > 0).all()):
            raise ValueError(
                f"step_sizes must be a 1-d tensor of positive step sizes; got {step_sizes}"
            )
        theta, stream, trace = state.theta, state.stream, []
        per_step = self.draws_per_step(theta)
        for block in step_sizes.split(self.steps_per_call):
            counter = torch.tensor(stream.counter, dtype=torch.int64, device=theta.device)
            theta, positions = self._block(theta, block, stream.key, counter)
            stream = CounterStream(key=stream.key, counter=stream.counter + per_step * len(block))
            trace.append(positions)
        return SGLDChains(theta=theta, stream=stream), torch.cat(trace)

    def _steps(
        self,
        theta: torch.Tensor,
        step_sizes: torch.Tensor,
        key: torch.Tensor,
        counter: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``len(step_sizes)`` steps from ``theta``, drawing from ``counter`` on: pure, traceable."""
        n_chains, dim = theta.shape
        n, n_data = self.batch_size, len(self.data)
        gradient = torch.func.grad(self._summed_log_posterior)
        positions = []
        for t in range(len(step_sizes)):  # unrolled when traced: one graph per block length
            start = counter + t * self.draws_per_step(theta)
            rows = counter_integers(key, start, n_chains * n, n_data)
            noise = counter_normal(key, start + n_chains * n, n_chains * dim, theta.dtype)
            step = step_sizes[t]
            drift = gradient(theta, self.data[rows]) * (0.5 * step)
            theta = theta + drift + torch.sqrt(step * self.temperature) * noise.view(n_chains, dim)
            positions.append(theta)
        return theta, torch.stack(positions)

    def _summed_log_posterior(self, theta: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """:math:`\\sum_c [\\log p(\\theta_c) + (N/n) \\sum_{i \\in B_c} \\log p(x_i \\mid \\theta_c)]`."""
        n_chains, n = theta.shape[0], self.batch_size
        paired = theta.repeat_interleave(n, dim=0)  # chain c's row beside each of its n points
        log_likelihood = self.log_likelihood(paired, batch).view(n_chains, n).sum(1)
        return (self.log_prior(theta) + (len(self.data) / n) * log_likelihood).sum()
