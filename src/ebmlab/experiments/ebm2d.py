"""Recipe ``ebm2d``: an MLP energy trained on a 2-D toy density with Langevin negatives.

``driver.train(EBM2DConfig(dataset="8gaussians"), out)`` writes a run folder with
``config.yaml``, ``metrics.jsonl`` (every ``log_every`` iterations), ``checkpoints/``
(resumable bit for bit on CPU) and ``figures/density.png`` (data | learned
:math:`e^{-E}` | samples). One step is one contrastive update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._fields import option
from ebmlab._validation import (
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.data import TOY2D_NAMES, sample_toy2d
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.models.nets.mlp import MLPEnergy
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.langevin import Langevin
from ebmlab.samplers.replay_buffer import ReplayBuffer, UniformInit
from ebmlab.training.checkpoint import load_model_state
from ebmlab.training.ebm import LangevinNegatives, contrastive_step

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

N_EVAL = 5000  # samples and fresh data points compared by evaluate()
HISTOGRAM_BINS = 20  # per axis, over data_range, for the total-variation distance


@dataclass
class EBM2DConfig:
    """Everything needed to redo a 2-D EBM run (saved as the run's ``config.yaml``).

    The sampler is a Langevin chain with ``step_size`` and ``noise_scale``
    (``noise_scale=None`` means calibrated, :math:`\\sqrt{2\\,\\text{step\\_size}}`),
    run for ``n_steps`` per update from a replay buffer (``persistent=True``) or
    from uniform noise on ``data_range``.
    """

    dataset: str = option("8gaussians", f"Toy density: {', '.join(TOY2D_NAMES)}.")
    n_data: int = option(20000, "Training points drawn from the toy density.")
    hidden_sizes: list[int] = option([128, 128], "Widths of the MLP's hidden layers.")
    activation: str = option("silu", "Activation of the MLP.")
    lr: float = option(1e-3, "Adam learning rate.")
    batch_size: int = option(256, "Data points (and negatives) per update.")
    iterations: int = option(2000, "Contrastive updates.", resumable=True)
    step_size: float = option(0.01, "Langevin step size.")
    noise_scale: float | None = option(None, "Langevin noise (default: sqrt(2 step_size)).")
    n_steps: int = option(20, "Langevin steps per update.")
    persistent: bool = option(True, "Start the chains from a replay buffer (else from noise).")
    buffer_size: int = option(10000, "Persistent chains in the replay buffer.")
    reinit_prob: float = option(0.05, "Chance a buffer chain restarts from uniform noise.")
    l2_weight: float = option(0.01, "Weight of the squared-energy penalty.")
    data_range: list[float] = option([-4.0, 4.0], "low,high of the noise and the figures.")
    seed: int = option(0, "Random seed: the run is reproducible from it.")
    log_every: int = option(100, "Metrics line every this many iterations.", resumable=True)
    checkpoint_every: int = option(500, "Checkpoint every this many iterations.", resumable=True)
    keep_last: int = option(2, "Numbered checkpoints to keep.")
    tensorboard: bool = option(False, "Also log scalars and histograms to RUN_DIR/tensorboard.")

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, tuple(TOY2D_NAMES))
        for name in ("n_data", "batch_size", "iterations", "n_steps", "buffer_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("log_every", "checkpoint_every", "keep_last"):
            check_positive_int(name, getattr(self, name))
        self.hidden_sizes = [check_positive_int("hidden_sizes[i]", w) for w in self.hidden_sizes]
        check_positive_float("lr", self.lr)
        check_positive_float("step_size", self.step_size)
        if self.noise_scale is not None:
            check_nonnegative_float("noise_scale", self.noise_scale)
        check_probability("reinit_prob", self.reinit_prob)
        check_nonnegative_float("l2_weight", self.l2_weight)
        self.data_range = [float(v) for v in self.data_range]
        if len(self.data_range) != 2 or not self.data_range[0] < self.data_range[1]:
            raise ValueError(
                f"data_range must be [low, high] with low < high; got {self.data_range}"
            )


@register
class EBM2DRecipe(Recipe):
    """An MLP energy on a 2-D density; one step per update, a metrics line every ``log_every``."""

    name = "ebm2d"
    config_class = EBM2DConfig
    summary = "Train an MLP energy on a 2-D toy density with Langevin negatives."
    step_unit = "iteration"
    progress_keys = ("loss",)
    renames = {"n_iterations": "iterations", "n_sampler_steps": "n_steps"}

    def prepare(self) -> None:
        # A separate stream for the data keeps the training set fixed whatever the model.
        generator = torch.Generator().manual_seed(self.config.seed + 1_000_003)
        self.data = sample_toy2d(self.config.dataset, self.config.n_data, generator=generator)

    def build(self, context: DistributedContext) -> None:
        c = self.config
        self.generator = torch.Generator().manual_seed(c.seed)
        self.model = MLPEnergy(
            2, hidden_sizes=c.hidden_sizes, activation=c.activation, generator=self.generator
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=c.lr)
        low, high = c.data_range
        self.init = UniformInit((2,), low=low, high=high)
        if c.noise_scale is None:
            sampler = Langevin.calibrated(self.model, c.step_size)
        else:
            sampler = Langevin(self.model, step_size=c.step_size, noise_scale=c.noise_scale)
        if c.persistent:
            buffer = ReplayBuffer(
                c.buffer_size, self.init, reinit_prob=c.reinit_prob, generator=self.generator
            )
            self.negatives = LangevinNegatives(sampler, n_steps=c.n_steps, buffer=buffer)
        else:
            self.negatives = LangevinNegatives(sampler, n_steps=c.n_steps, init=self.init)
        self.iteration = 0
        self.started = time.perf_counter()

    def total_steps(self) -> int:
        return self.config.iterations

    def completed_steps(self) -> int:
        return self.iteration

    def step(self, run: TrainingRun) -> dict[str, Any] | None:
        c = self.config
        rows = torch.randint(len(self.data), (c.batch_size,), generator=self.generator)
        stats = contrastive_step(
            self.model,
            self.optimizer,
            self.data[rows],
            self.negatives,
            l2_weight=c.l2_weight,
            generator=self.generator,
        )
        self.iteration += 1
        if self.iteration % c.log_every and self.iteration != c.iterations:
            return None
        return {**stats, "seconds": round(time.perf_counter() - self.started, 3)}

    def state(self):
        shared = {"optimizer": self.optimizer.state_dict(), "iteration": self.iteration}
        local: dict[str, Any] = {"generator": self.generator.get_state()}
        if self.negatives.buffer is not None:
            local["buffer"] = self.negatives.buffer.state_dict()
        return self.model.state_dict(), shared, local

    def load_state(self, model_state, shared, local) -> None:
        load_model_state(self.model, model_state, source="checkpoint")
        self.optimizer.load_state_dict(shared["optimizer"])
        self.iteration = int(shared["iteration"])
        self.generator.set_state(local["generator"])
        if self.negatives.buffer is not None:
            self.negatives.buffer.load_state_dict(local["buffer"])

    def model_for_logging(self) -> torch.nn.Module:
        return self.model

    def figures(self, folder: RunFolder) -> None:
        if self.negatives.buffer is not None:
            samples = self.negatives.buffer.buffer
        else:
            samples, _ = self.negatives.sample(2000, generator=torch.Generator().manual_seed(0))
        self._density_figure(
            folder.figures / "density.png", samples, "data | exp(-E(x)) / Z | Langevin samples"
        )

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator):
        """``n`` points after ``n_steps`` Langevin steps from the buffer (or noise, if not persistent)."""
        buffer = self.negatives.buffer
        if buffer is not None:
            x0 = buffer.buffer[torch.randint(len(buffer), (n,), generator=generator)]
        else:
            x0 = self.init.sample(n, generator=generator)
        sampler = self.negatives.sampler
        state, _, _ = run_chain(sampler, sampler.init(x0), n_steps, generator=generator)
        return state.x.detach(), "Langevin steps"

    def save_samples(self, n: int, n_steps: int, *, seed: int, out: Path) -> Path:
        """A data | density | samples figure (not an image grid) of ``n`` fresh samples."""
        generator = torch.Generator().manual_seed(seed)
        samples, description = self.sample(n, n_steps, generator=generator)
        return self._density_figure(out, samples, f"{n} samples, {n_steps} {description}")

    def evaluate(self, *, seed: int = 0, progress: bool = True) -> dict[str, Any]:
        """How far the model's samples are from fresh data of the toy density (JSON-ready).

        Draws ``N_EVAL`` samples (the run's ``n_steps`` Langevin steps, from the
        buffer when persistent) and ``N_EVAL`` fresh points from the toy sampler.
        Keys: ``energy_data`` and ``energy_samples`` (mean energies; their
        difference ``energy_gap`` is near 0 when the sampler matches the model),
        ``mean_distance`` (Euclidean), ``covariance_distance`` (Frobenius),
        ``frechet_distance`` (squared, of the fitted Gaussians) and
        ``total_variation`` of ``HISTOGRAM_BINS``-squared histograms over
        ``data_range`` (points outside it share one extra bin), beside
        ``total_variation_baseline``, the same between two fresh data sets (the
        floor a perfect model reaches at this sample size).
        """
        from ebmlab.metrics.fid import frechet_distance, statistics_from_features

        generator = torch.Generator().manual_seed(seed)
        samples, _ = self.sample(N_EVAL, self.config.n_steps, generator=generator)
        fresh = sample_toy2d(self.config.dataset, 2 * N_EVAL, generator=generator)
        data, other = fresh[:N_EVAL], fresh[N_EVAL:]
        with torch.no_grad():
            energy_data = float(self.model(data).mean())
            energy_samples = float(self.model(samples).mean())
        (mu_s, cov_s), (mu_d, cov_d) = map(statistics_from_features, (samples, data))
        low, high = self.config.data_range
        return {
            "model": "ebm2d",
            "dataset": self.config.dataset,
            "n_eval": N_EVAL,
            "n_steps": self.config.n_steps,
            "energy_data": energy_data,
            "energy_samples": energy_samples,
            "energy_gap": energy_samples - energy_data,
            "mean_distance": float(((mu_s - mu_d) ** 2).sum() ** 0.5),
            "covariance_distance": float(((cov_s - cov_d) ** 2).sum() ** 0.5),
            "frechet_distance": frechet_distance(mu_s, cov_s, mu_d, cov_d),
            "total_variation": histogram_tv(samples, data, low, high),
            "total_variation_baseline": histogram_tv(other, data, low, high),
        }

    def _density_figure(self, path: Path, samples: torch.Tensor, title: str) -> Path:
        from ebmlab.viz.density2d import save_density2d

        low, high = self.config.data_range
        return save_density2d(
            self.model,
            path,
            data=self.data[:5000],
            samples=samples,
            extent=(low, high, low, high),
            title=f"{self.config.dataset}: {title}",
        )


def histogram_tv(a: torch.Tensor, b: torch.Tensor, low: float, high: float) -> float:
    """Total variation between the 2-D histograms of point sets ``a`` and ``b`` on [low, high]^2.

    ``HISTOGRAM_BINS`` bins per axis; points outside the square (or not finite)
    fall into one extra bin, so mass a sampler sends away still counts.
    """

    def histogram(points: torch.Tensor) -> torch.Tensor:
        points = points.detach().double()
        cell = ((points - low) / (high - low) * HISTOGRAM_BINS).floor()
        inside = ((cell >= 0) & (cell < HISTOGRAM_BINS)).all(1)
        index = torch.where(
            inside, cell[:, 0] * HISTOGRAM_BINS + cell[:, 1], HISTOGRAM_BINS**2
        ).long()
        return torch.bincount(index, minlength=HISTOGRAM_BINS**2 + 1).double() / len(points)

    return float(0.5 * (histogram(a) - histogram(b)).abs().sum())
