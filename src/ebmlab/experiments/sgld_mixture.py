"""Recipe ``sgld-mixture``: Welling & Teh (2011), section 5.1, SGLD on a two-component mixture.

Model: :math:`\\theta_1 \\sim \\mathcal N(0, 10)`, :math:`\\theta_2 \\sim \\mathcal N(0, 1)`
(variances) and :math:`x_i \\sim \\tfrac12 \\mathcal N(\\theta_1, 2) + \\tfrac12
\\mathcal N(\\theta_1 + \\theta_2, 2)`, with 100 points drawn at
:math:`(\\theta_1, \\theta_2) = (0, 1)`. Swapping the components,
:math:`(\\theta_1, \\theta_2) \\mapsto (\\theta_1 + \\theta_2, -\\theta_2)`, leaves the
likelihood unchanged, so the posterior has a second mode near (1, -1).
SGLD uses batch size 1 and a step size decaying polynomially
(:math:`\\gamma = 0.55`) from 0.01 to 0.0001; ebmlab runs many chains in parallel.

As a recipe, one driver step is one chunk of ``steps_per_chunk`` SGLD steps of
every chain; the step counter (the ``iteration`` key of ``metrics.jsonl``,
``--stop-after``, the checkpoint numbers) counts SGLD steps, so a stop lands on
the next chunk boundary. The checkpoint holds the chain positions (``theta``),
the generator and the kept draws, so a resumed run ends bit for bit where an
uninterrupted one does (the chunking does not change the random stream either).
``figures/`` gets ``posterior.png`` (the published figure: SGLD draws over the
exact posterior's contours) and ``trace.png``; ``ebmlab eval`` gives the summary.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._fields import option
from ebmlab._validation import check_positive_float, check_positive_int
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.metrics.mcmc import effective_sample_size, split_rhat
from ebmlab.samplers.counter_random import CounterStream
from ebmlab.samplers.parallel_sgld import ParallelSGLD, SGLDChains
from ebmlab.samplers.schedules import PolynomialDecay
from ebmlab.samplers.sgld import SGLD, SampleCollector

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

N_DATA = 100
PRIOR_VARIANCE = (10.0, 1.0)
LIKELIHOOD_VARIANCE = 2.0
TRUE_THETA = (0.0, 1.0)
EXTENT = (-1.5, 2.5, -3.0, 3.0)  # theta1 range, theta2 range of the figure and grid
KEPT_PER_CHAIN = 2000  # draws kept per chain after burn-in (the thinning follows from it)


def mixture_data(seed: int = 0) -> torch.Tensor:
    """The 100 observations, drawn at theta = (0, 1) from a seeded generator (float64)."""
    generator = torch.Generator().manual_seed(seed)
    component = torch.randint(0, 2, (N_DATA,), generator=generator).double()
    centre = TRUE_THETA[0] + component * TRUE_THETA[1]
    noise = torch.randn(N_DATA, generator=generator, dtype=torch.float64)
    return centre + math.sqrt(LIKELIHOOD_VARIANCE) * noise


def log_prior(theta: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(\\theta)` up to a constant; ``theta`` has shape (..., 2)."""
    return -0.5 * (theta[..., 0] ** 2 / PRIOR_VARIANCE[0] + theta[..., 1] ** 2 / PRIOR_VARIANCE[1])


def log_likelihood(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(x \\mid \\theta)` up to a constant, broadcasting ``theta[..., 0]`` with ``x``."""
    first = -((x - theta[..., 0]) ** 2) / (2 * LIKELIHOOD_VARIANCE)
    second = -((x - theta[..., 0] - theta[..., 1]) ** 2) / (2 * LIKELIHOOD_VARIANCE)
    return torch.logaddexp(first, second) - math.log(2.0)


def log_posterior(theta: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Exact unnormalised log posterior for ``theta`` of shape (..., 2)."""
    return log_prior(theta) + log_likelihood(theta[..., None, :], data).sum(-1)


class MixtureChains:
    """``n_chains`` parallel SGLD chains (batch size 1 each) on the posterior, advanced in chunks.

    Every chain starts at a prior draw (chains see both modes only if SGLD finds
    them). The step size follows :class:`PolynomialDecay` from ``step_size_start``
    (step 0) to ``step_size_end`` (step ``n_steps - 1``); :attr:`collector` keeps
    the draws after a 10% burn-in, thinned to about ``KEPT_PER_CHAIN`` per chain,
    weighted by the step size. With ``parallel`` (a :class:`ParallelSGLD` on this data,
    batch size 1) the same update runs in its compiled blocks, drawing from its counter
    stream instead of ``generator``: the same Markov chains, other sample paths.
    """

    def __init__(
        self,
        data: torch.Tensor,
        n_chains: int,
        n_steps: int,
        seed: int,
        *,
        step_size_start: float = 0.01,
        step_size_end: float = 0.0001,
        gamma: float = 0.55,
        parallel: ParallelSGLD | None = None,
    ) -> None:
        self.data, self.n_steps, self.step = data, n_steps, 0
        self.generator = torch.Generator().manual_seed(seed + 1)
        prior_sd = torch.tensor(PRIOR_VARIANCE, dtype=torch.float64).sqrt()
        theta = prior_sd * torch.randn(n_chains, 2, generator=self.generator, dtype=torch.float64)
        self.theta = theta.requires_grad_(True)
        self.optimizer = SGLD([self.theta], lr=1.0, generator=self.generator)
        self.parallel = parallel
        self.parallel_state = None
        if parallel is not None:
            self.parallel_state = parallel.init(theta.detach(), generator=self.generator)
        self.decay = PolynomialDecay.from_range(
            step_size_start, step_size_end, n_steps, gamma=gamma
        )
        self.collector = SampleCollector(
            burn_in=n_steps // 10, thin=max(1, n_steps // KEPT_PER_CHAIN)
        )

    def advance(self, n_steps: int) -> float:
        """Run every chain ``n_steps`` more SGLD steps (not past the end); returns the last step size."""
        lr = self.decay(max(self.step - 1, 0))
        n_steps = min(n_steps, self.n_steps - self.step)
        if self.parallel is not None and n_steps > 0:
            return self._advance_parallel(n_steps)
        for _ in range(n_steps):
            lr = self.decay(self.step)
            sgld_update(self.theta, self.optimizer, self.data, lr, self.generator)
            self.step += 1
            self.collector.update(self.theta, weight=lr)
        return lr

    def _advance_parallel(self, n_steps: int) -> float:
        """``n_steps`` steps of every chain through :attr:`parallel`, kept as the loop keeps them."""
        sizes = [self.decay(t) for t in range(self.step, self.step + n_steps)]
        step_sizes = torch.tensor(sizes, dtype=self.theta.dtype)
        self.parallel_state, trace = self.parallel.run(self.parallel_state, step_sizes)
        for theta, lr in zip(trace, sizes, strict=True):
            self.collector.update(theta, weight=lr)
        with torch.no_grad():
            self.theta.copy_(self.parallel_state.theta)
        self.step += n_steps
        return sizes[-1]

    def state_dict(self) -> dict[str, Any]:
        kept = self.collector._samples  # noqa: SLF001 - the collector has no state_dict
        return {
            "theta": self.theta.detach().clone(),
            "step": self.step,
            "generator": self.generator.get_state(),
            "samples": torch.stack(kept) if kept else self.theta.new_zeros(0, *self.theta.shape),
            "weights": self.collector.weights,
        } | (
            {}
            if self.parallel_state is None
            else {"stream": self.parallel_state.stream.state_dict()}
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.theta.copy_(state["theta"])
        self.step = self.collector.n_seen = int(state["step"])
        self.generator.set_state(state["generator"])
        self.collector._samples = list(state["samples"].unbind(0))  # noqa: SLF001
        self.collector._weights = state["weights"].tolist()  # noqa: SLF001
        if self.parallel is not None:
            stream = CounterStream.from_state_dict(state["stream"])
            self.parallel_state = SGLDChains(theta=self.theta.detach().clone(), stream=stream)


def sgld_update(
    theta: torch.Tensor, optimizer: SGLD, data: torch.Tensor, lr: float, generator: torch.Generator
) -> None:
    """One SGLD step of step size ``lr`` for every row of ``theta``, one data point per chain."""
    rows = torch.randint(len(data), (theta.shape[0],), generator=generator)
    loss = -(log_prior(theta) + len(data) * log_likelihood(theta, data[rows])).sum()
    optimizer.param_groups[0]["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def sgld_mixture_chains(
    data: torch.Tensor, n_chains: int, n_steps: int, seed: int
) -> SampleCollector:
    """Run ``n_chains`` parallel SGLD chains for ``n_steps`` steps; returns their draws.

    The draws are kept after a 10% burn-in, thinned to about 2,000 per chain,
    weighted by the step size (see :class:`MixtureChains`).
    """
    chains = MixtureChains(data, n_chains, n_steps, seed)
    chains.advance(n_steps)
    return chains.collector


def exact_grid(data: torch.Tensor, resolution: int = 300):
    """``(xs, ys, log_p)``: the posterior normalised on a grid over ``EXTENT``, [i, j] at (xs[j], ys[i])."""
    xs = torch.linspace(EXTENT[0], EXTENT[1], resolution, dtype=torch.float64)
    ys = torch.linspace(EXTENT[2], EXTENT[3], resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    log_p = log_posterior(grid, data)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return xs, ys, log_p - torch.logsumexp(log_p.reshape(-1), 0) - cell.log()


def summary(collector: SampleCollector, data: torch.Tensor, seconds: float) -> dict[str, Any]:
    """SGLD's step-size-weighted estimates against the exact posterior on a 300 x 300 grid.

    Keys: ``n_chains``, ``n_kept_per_chain``, ``fraction_mode_upper_sgld`` and
    ``_exact`` (mass at the (0, 1) mode, theta2 > 0), ``posterior_mean_sgld`` and
    ``_exact``, ``ess`` and ``rhat`` (split, per parameter, over the chains),
    ``seconds`` (sampling time) and ``ess_per_second`` (the smaller ESS).
    """
    xs, ys, log_p = exact_grid(data)
    samples, weights = collector.samples, collector.weights  # (n_kept, n_chains, 2), (n_kept,)
    probs = log_p.exp() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    grid_theta2 = ys[:, None].expand_as(probs)
    upper = (samples[..., 1] > 0).double().mean(dim=1)  # per draw: fraction of chains
    chains = samples.transpose(0, 1)
    ess = effective_sample_size(chains)
    return {
        "n_chains": samples.shape[1],
        "n_kept_per_chain": samples.shape[0],
        "fraction_mode_upper_sgld": float((weights * upper).sum() / weights.sum()),
        "fraction_mode_upper_exact": float(probs[grid_theta2 > 0].sum()),
        "posterior_mean_sgld": collector.weighted_mean().mean(dim=0).tolist(),
        "posterior_mean_exact": [
            float((probs * torch.stack(torch.meshgrid(xs, ys, indexing="xy"))[k]).sum())
            for k in range(2)
        ],
        "ess": ess.tolist(),
        "rhat": split_rhat(chains).tolist(),
        "seconds": round(seconds, 3),
        "ess_per_second": (ess.min() / max(seconds, 1e-9)).item(),
    }


@dataclass
class SGLDMixtureConfig:
    """Everything needed to redo the SGLD mixture experiment (saved as ``config.yaml``)."""

    n_steps: int = option(10_000, "SGLD steps per chain (the whole run; >= 20).")
    n_chains: int = option(200, "Parallel chains, each started at a prior draw.")
    seed: int = option(0, "Random seed of the data and the chains.")
    step_size_start: float = option(0.01, "Step size of the first SGLD step.")
    step_size_end: float = option(0.0001, "Step size of the last SGLD step.")
    gamma: float = option(0.55, "Decay exponent of the polynomial step-size schedule.")
    steps_per_chunk: int = option(500, "SGLD steps per driver step (metrics line, checkpoint).")
    checkpoint_every: int = option(4, "Checkpoint every this many chunks.")
    keep_last: int = option(2, "Numbered checkpoints to keep.")
    tensorboard: bool = option(False, "Also log the per-chunk scalars to RUN_DIR/tensorboard.")
    compile: bool = option(
        False,
        "Run the chains as ParallelSGLD's compiled blocks of 10 steps (counter-based draws; "
        "compiling takes about a minute first).",
    )

    def __post_init__(self) -> None:
        for name in ("n_steps", "n_chains", "steps_per_chunk", "checkpoint_every", "keep_last"):
            check_positive_int(name, getattr(self, name))
        if self.n_steps < 20:
            raise ValueError(
                f"n_steps must be >= 20 (burn-in and thinning need room); got {self.n_steps}"
            )
        for name in ("step_size_start", "step_size_end", "gamma"):
            check_positive_float(name, getattr(self, name))


@register
class SGLDMixtureRecipe(Recipe):
    """SGLD chains on the mixture posterior; a step is a chunk, the counter counts SGLD steps."""

    name = "sgld-mixture"
    config_class = SGLDMixtureConfig
    summary = "Welling & Teh (2011), 5.1: SGLD on the bimodal mixture posterior."
    step_unit = "iteration"
    progress_keys = ("fraction_upper",)

    def prepare(self) -> None:
        self.data = mixture_data(self.config.seed)

    def build(self, context: DistributedContext) -> None:
        c = self.config
        self.chains = MixtureChains(
            self.data,
            c.n_chains,
            c.n_steps,
            c.seed,
            step_size_start=c.step_size_start,
            step_size_end=c.step_size_end,
            gamma=c.gamma,
            parallel=ParallelSGLD(log_prior, log_likelihood, self.data) if c.compile else None,
        )
        self.seconds = 0.0  # sampling time, over every resumption

    def total_steps(self) -> int:
        return self.config.n_steps

    def completed_steps(self) -> int:
        return self.chains.step

    def step(self, run: TrainingRun) -> dict[str, Any]:
        started = time.perf_counter()
        step_size = self.chains.advance(self.config.steps_per_chunk)
        seconds = time.perf_counter() - started
        self.seconds += seconds
        return {
            "step_size": step_size,
            "fraction_upper": float((self.chains.theta[:, 1] > 0).double().mean()),
            "n_kept": len(self.chains.collector),
            "chunk_seconds": seconds,
        }

    def checkpoint_due(self) -> bool:
        chunks = -(-self.chains.step // self.config.steps_per_chunk)
        return chunks % self.config.checkpoint_every == 0

    def state(self):
        local = self.chains.state_dict()
        return {"theta": local.pop("theta")}, {"seconds": self.seconds}, local

    def load_state(self, model_state, shared, local) -> None:
        self.chains.load_state_dict({**local, "theta": model_state["theta"]})
        self.seconds = float(shared["seconds"])

    def figures(self, folder: RunFolder) -> None:
        from ebmlab.viz.density2d import save_posterior2d, save_trace_plot

        c = self.config
        samples = self.chains.collector.samples
        xs, ys, log_p = exact_grid(self.data)
        title = f"SGLD ({c.n_chains} chains, {c.n_steps} steps) over the exact posterior"
        path = folder.figures / "posterior.png"
        save_posterior2d(xs, ys, log_p, samples.reshape(-1, 2), path, title=title)
        trace = folder.figures / "trace.png"
        save_trace_plot(samples.transpose(0, 1), trace, names=["theta1", "theta2"])

    def evaluate(self, *, seed: int = 0, progress: bool = True) -> dict[str, Any]:
        """The summary of :func:`summary` (JSON-ready); deterministic, so ``seed`` is unused."""
        return {"model": self.name, **summary(self.chains.collector, self.data, self.seconds)}

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator):
        """``n`` posterior draws: kept draws picked in proportion to their step-size weights,
        each moved ``n_steps`` further SGLD steps at the schedule's last step size."""
        collector = self.chains.collector
        draws = collector.samples
        weights = collector.weights[:, None].expand(draws.shape[:2]).reshape(-1)
        picked = torch.multinomial(weights, n, replacement=True, generator=generator)
        theta = draws.reshape(-1, 2)[picked].clone().requires_grad_(True)
        optimizer = SGLD([theta], lr=self.config.step_size_end, generator=generator)
        for _ in range(n_steps):
            sgld_update(theta, optimizer, self.data, self.config.step_size_end, generator)
        return theta.detach(), "SGLD steps"

    def save_samples(self, n: int, n_steps: int, *, seed: int, out: Path) -> Path:
        """The draws scattered over the exact posterior's contours (not an image grid)."""
        from ebmlab.viz._mpl import pyplot, save_figure

        generator = torch.Generator().manual_seed(seed)
        samples, description = self.sample(n, n_steps, generator=generator)
        xs, ys, log_p = exact_grid(self.data)
        plt = pyplot()
        figure, axis = plt.subplots(figsize=(5.5, 5))
        density = log_p.exp()
        levels = (torch.linspace(0.05, 0.95, 8).double() * density.max()).numpy()
        axis.contour(xs.numpy(), ys.numpy(), density.numpy(), levels=levels, colors="k")
        size = min(30.0, max(1.0, 3000.0 / n))  # a few draws stay visible, thousands do not blot
        axis.scatter(samples[:, 0], samples[:, 1], s=size, alpha=0.5, color="tab:red")
        axis.set(xlim=EXTENT[:2], ylim=EXTENT[2:], xlabel="theta1", ylabel="theta2")
        axis.set_title(f"{n} posterior draws, {n_steps} more {description}")
        out.parent.mkdir(parents=True, exist_ok=True)
        save_figure(figure, out, dpi=110)
        plt.close(figure)
        return out
