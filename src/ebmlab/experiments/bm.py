"""Recipe ``bm``: a Boltzmann machine fitted to bars-and-stripes, monitored by its exact likelihood.

The run folder holds ``config.yaml``, ``metrics.jsonl`` (per epoch: the trainer's
diagnostics, ``epoch_seconds`` and, every ``eval_every`` epochs and at the last,
the exact mean ``log_likelihood`` of the training patterns), ``checkpoints/``
(safetensors with the keys ``weight_vv``, ``weight_vh``, ``weight_hh``,
``visible_bias``, ``hidden_bias``; ``best.safetensors`` by exact log-likelihood)
and ``figures/`` (the exact log-likelihood curve and Gibbs samples).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._fields import option
from ebmlab._validation import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.estimators.exact_bm import MAX_ENUMERATED_UNITS, bm_log_likelihood
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.models.bm import SCANS, BoltzmannMachine
from ebmlab.training.bm import DATA_TERMS, MODEL_TERMS, BMTrainer
from ebmlab.training.checkpoint import load_model_state

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DATASETS = ("bars-and-stripes",)


@dataclass
class BMConfig:
    """Everything needed to redo a Boltzmann machine run (saved as ``config.yaml``).

    The defaults fit a fully visible BM to the 30 patterns of 4x4 bars-and-stripes
    with the exact gradient, one full-batch step per epoch.
    """

    dataset: str = option("bars-and-stripes", "Dataset: bars-and-stripes.")
    image_size: int = option(4, "Side of the bars-and-stripes images (n_visible = side^2).")
    n_hidden: int = option(0, "Number of hidden units (0: fully visible).")
    weight_std: float = option(0.1, "Standard deviation of the initial couplings.")
    epochs: int = option(500, "Passes over the patterns.", resumable=True)
    batch_size: int = option(30, "Patterns per update.")
    lr: float = option(0.05, "SGD learning rate.")
    momentum: float = option(0.9, "SGD momentum.")
    weight_decay: float = option(0.0, "L2 penalty on the couplings (not the biases).")
    data_term: str = option("exact", "Clamped statistics: exact (enumerate h) or mean_field.")
    model_term: str = option("exact", "Free statistics: exact (enumerate all states) or pcd.")
    n_chains: int = option(100, "Persistent chains (model_term pcd).")
    gibbs_steps: int = option(1, "Gibbs sweeps of the chains per update (model_term pcd).")
    scan: str = option("systematic", "Unit order of the Gibbs sweeps: systematic or random.")
    mean_field_damping: float = option(0.5, "Damping of the mean-field iteration, in [0, 1).")
    mean_field_tolerance: float = option(1e-6, "Mean-field stops at this residual.")
    mean_field_iterations: int = option(200, "Most mean-field updates per batch.")
    seed: int = option(0, "Random seed: the run is reproducible from it.")
    dtype: str = option("float32", "float32 or float64.")
    eval_every: int = option(1, "Exact log-likelihood every this many epochs (and at the last).")
    checkpoint_every: int = option(50, "Checkpoint every this many epochs.")
    keep_last: int = option(3, "Numbered checkpoints to keep.")
    tensorboard: bool = option(
        False, "Also log scalars, histograms and samples to RUN_DIR/tensorboard."
    )

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_nonnegative_int("n_hidden", self.n_hidden)
        check_nonnegative_float("weight_std", self.weight_std)
        for name in (
            "image_size",
            "epochs",
            "batch_size",
            "n_chains",
            "gibbs_steps",
            "mean_field_iterations",
            "eval_every",
            "checkpoint_every",
            "keep_last",
        ):
            check_positive_int(name, getattr(self, name))
        check_positive_float("lr", self.lr)
        check_probability("momentum", self.momentum)
        check_nonnegative_float("weight_decay", self.weight_decay)
        check_choice("data_term", self.data_term, DATA_TERMS)
        check_choice("model_term", self.model_term, MODEL_TERMS)
        check_choice("scan", self.scan, SCANS)
        check_positive_float("mean_field_tolerance", self.mean_field_tolerance)
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_nonnegative_int("seed", self.seed)


def load_data(config: BMConfig) -> torch.Tensor:
    """The training patterns, in the config's dtype."""
    from ebmlab.data.synthetic import bars_and_stripes

    return bars_and_stripes(config.image_size).to(DTYPES[config.dtype])


@register
class BMRecipe(Recipe):
    """A Boltzmann machine, one step per epoch, the best checkpoint by exact log-likelihood."""

    name = "bm"
    config_class = BMConfig
    summary = "Fit a Boltzmann machine to bars-and-stripes with exact likelihood monitoring."
    progress_keys = ("log_likelihood",)
    renames = {
        "n_epochs": "epochs",
        "learning_rate": "lr",
        "n_gibbs_steps": "gibbs_steps",
        "mean_field_tol": "mean_field_tolerance",
        "mean_field_max_iter": "mean_field_iterations",
    }

    def prepare(self) -> None:
        self.data = load_data(self.config)

    def build(self, context: DistributedContext) -> None:
        c = self.config
        self.generator = torch.Generator().manual_seed(c.seed)
        self.model = BoltzmannMachine(
            c.image_size**2,
            c.n_hidden,
            weight_std=c.weight_std,
            generator=self.generator,
            dtype=DTYPES[c.dtype],
        )
        self.model.init_visible_bias(self.data)
        self.trainer = BMTrainer(
            self.model,
            lr=c.lr,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            data_term=c.data_term,
            model_term=c.model_term,
            n_chains=c.n_chains,
            gibbs_steps=c.gibbs_steps,
            scan=c.scan,
            mean_field_damping=c.mean_field_damping,
            mean_field_tolerance=c.mean_field_tolerance,
            mean_field_iterations=c.mean_field_iterations,
        )
        self.epoch = 0

    def total_steps(self) -> int:
        return self.config.epochs

    def completed_steps(self) -> int:
        return self.epoch

    def step(self, run: TrainingRun) -> dict[str, Any]:
        start = time.perf_counter()
        record: dict[str, Any] = self.trainer.train_epoch(
            self.data, batch_size=self.config.batch_size, generator=self.generator
        )
        record["epoch_seconds"] = time.perf_counter() - start
        self.epoch += 1
        last = self.epoch == self.config.epochs
        if self.model.n_units <= MAX_ENUMERATED_UNITS and (
            self.epoch % self.config.eval_every == 0 or last
        ):
            record["log_likelihood"] = float(bm_log_likelihood(self.model, self.data))
        return record

    def score(self, record: dict[str, Any]) -> float | None:
        return record.get("log_likelihood")

    def state(self):
        shared = {"trainer": self.trainer.state_dict(), "epoch": self.epoch}
        return self.model.state_dict(), shared, {"generator": self.generator.get_state()}

    def load_state(self, model_state, shared, local) -> None:
        load_model_state(self.model, model_state, source="checkpoint")
        self.trainer.load_state_dict(shared["trainer"])
        self.epoch = int(shared["epoch"])
        self.generator.set_state(local["generator"])

    def model_for_logging(self) -> torch.nn.Module:
        return self.model

    def tensorboard_images(self) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.epoch)
        return {"samples": self.sample(64, 200, generator=generator)[0]}

    def figures(self, folder: RunFolder) -> None:
        write_figures(folder, self.model, self.config, n_patterns=self.data.shape[0])

    def image_shape(self) -> tuple[int, int]:
        return (self.config.image_size, self.config.image_size)

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator):
        samples = self.model.sample(n, n_steps, scan=self.config.scan, generator=generator)
        return samples, "Gibbs sweeps"

    def evaluate(self, *, seed: int = 0, progress: bool = True) -> dict[str, Any]:
        """Exact metrics on the training patterns (JSON-ready; nothing random: ``seed`` is unused).

        Keys: ``model``, ``n_visible``, ``n_hidden``, ``dataset``, ``n_patterns``,
        ``log_partition`` and ``log_likelihood`` (exact, nats per pattern) and
        ``max_log_likelihood`` (``-log n_patterns``: the patterns are distinct).
        """
        from ebmlab.estimators.exact_bm import bm_log_partition

        model, data = self.model, self.data
        if model.n_units > MAX_ENUMERATED_UNITS:
            raise ValueError(
                f"exact evaluation needs n_visible + n_hidden <= {MAX_ENUMERATED_UNITS}; "
                f"got {model.n_units}"
            )
        log_z = bm_log_partition(model)
        return {
            "model": "bm",
            "n_visible": model.n_visible,
            "n_hidden": model.n_hidden,
            "dataset": f"{self.config.dataset}-{self.config.image_size}",
            "n_patterns": int(data.shape[0]),
            "log_partition": float(log_z),
            "log_likelihood": float(bm_log_likelihood(model, data, log_partition=log_z)),
            "max_log_likelihood": -math.log(data.shape[0]),
        }


def write_figures(
    run: RunFolder, model: BoltzmannMachine, config: BMConfig, *, n_patterns: int
) -> None:
    """``figures/log_likelihood.png`` (exact, with the data's ceiling) and ``figures/samples.png``."""
    from ebmlab.viz._mpl import pyplot, save_figure
    from ebmlab.viz.images import save_image_grid

    records = [r for r in run.read_metrics() if isinstance(r.get("log_likelihood"), float)]
    if records:
        plt = pyplot()
        figure, axis = plt.subplots(figsize=(5, 3.5))
        axis.plot(
            [r["epoch"] for r in records], [r["log_likelihood"] for r in records], label="model"
        )
        # The patterns are distinct and equally weighted: no model beats log(1 / n_patterns).
        axis.axhline(
            -math.log(n_patterns), color="k", ls="--", lw=1, label=f"ceiling -log {n_patterns}"
        )
        axis.set(
            xlabel="epoch", ylabel="exact mean log-likelihood (nats)", title="Boltzmann machine"
        )
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        save_figure(figure, run.figures / "log_likelihood.png", dpi=110)
        plt.close(figure)
    samples = model.sample(64, 200, generator=torch.Generator().manual_seed(config.seed))
    side = config.image_size
    save_image_grid(
        samples, (side, side), run.figures / "samples.png", title="Gibbs samples (200 sweeps)"
    )
