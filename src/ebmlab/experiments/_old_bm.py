"""Recipe: fit a Boltzmann machine to bars-and-stripes with exact likelihood monitoring.

The run folder holds ``config.yaml``, ``metrics.jsonl`` (per epoch: the exact
mean log-likelihood of the training patterns and ``epoch_seconds``),
``checkpoints/`` (safetensors with the keys ``weight_vv``, ``weight_vh``,
``weight_hh``, ``visible_bias``, ``hidden_bias``; the optimizer, persistent chains,
generator state and epoch travel in the same file, see
:mod:`ebmlab.training.checkpoint`) and ``figures/`` (the exact log-likelihood
curve and Gibbs samples).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

import ebmlab
from ebmlab._validation import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.estimators.exact_bm import MAX_ENUMERATED_UNITS, bm_log_likelihood
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.models.bm import BoltzmannMachine
from ebmlab.training.bm import DATA_TERMS, MODEL_TERMS, BMTrainer
from ebmlab.training.checkpoint import load_checkpoint, load_model_state

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DATASETS = ("bars-and-stripes",)
# Fields that may differ between a run's config.yaml and the config passed to resume it.
RESUMABLE_CHANGES = ("n_epochs",)


@dataclass
class BMConfig:
    """Everything needed to redo a Boltzmann machine run (saved as ``config.yaml``).

    The defaults fit a fully visible BM to the 30 patterns of 4x4 bars-and-stripes
    with the exact gradient, one full-batch step per epoch. The exact
    log-likelihood is computed every ``eval_every`` epochs (and at the last).
    """

    dataset: str = "bars-and-stripes"
    image_size: int = 4
    n_hidden: int = 0
    weight_std: float = 0.1
    n_epochs: int = 500
    batch_size: int = 30
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    data_term: str = "exact"
    model_term: str = "exact"
    n_chains: int = 100
    n_gibbs_steps: int = 1
    scan: str = "systematic"
    mean_field_damping: float = 0.5
    mean_field_tol: float = 1e-6
    mean_field_max_iter: int = 200
    seed: int = 0
    dtype: str = "float32"
    eval_every: int = 1
    checkpoint_every: int = 50
    keep_last: int = 3

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, DATASETS)
        check_positive_int("image_size", self.image_size)
        check_nonnegative_int("n_hidden", self.n_hidden)
        check_nonnegative_float("weight_std", self.weight_std)
        for name in (
            "n_epochs",
            "batch_size",
            "n_chains",
            "n_gibbs_steps",
            "eval_every",
            "checkpoint_every",
            "keep_last",
        ):
            check_positive_int(name, getattr(self, name))
        check_positive_float("learning_rate", self.learning_rate)
        check_probability("momentum", self.momentum)
        check_nonnegative_float("weight_decay", self.weight_decay)
        check_choice("data_term", self.data_term, DATA_TERMS)
        check_choice("model_term", self.model_term, MODEL_TERMS)
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_nonnegative_int("seed", self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {"model": "bm", "ebmlab_version": ebmlab.__version__, **asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> BMConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known - {"model", "ebmlab_version"}
        if config.get("model") not in (None, "bm") or unknown:
            raise RunFolderError(
                f"config.yaml does not describe a BM run (model={config.get('model')!r}, "
                f"unknown keys {sorted(unknown)})"
            )
        return cls(**{k: v for k, v in config.items() if k in known})


def load_data(config: BMConfig) -> torch.Tensor:
    """The training patterns, in the config's dtype."""
    from ebmlab.data.synthetic import bars_and_stripes

    return bars_and_stripes(config.image_size).to(DTYPES[config.dtype])


def build_model(config: BMConfig, generator: torch.Generator | None = None) -> BoltzmannMachine:
    return BoltzmannMachine(
        config.image_size**2,
        config.n_hidden,
        weight_std=config.weight_std,
        generator=generator,
        dtype=DTYPES[config.dtype],
    )


def build_trainer(config: BMConfig, model: BoltzmannMachine) -> BMTrainer:
    return BMTrainer(
        model,
        learning_rate=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        data_term=config.data_term,
        model_term=config.model_term,
        n_chains=config.n_chains,
        n_gibbs_steps=config.n_gibbs_steps,
        scan=config.scan,
        mean_field_damping=config.mean_field_damping,
        mean_field_tol=config.mean_field_tol,
        mean_field_max_iter=config.mean_field_max_iter,
    )


def run_bm(
    config: BMConfig, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a Boltzmann machine into the run folder ``out_dir``; returns its path.

    With ``resume=True`` the run continues from its newest checkpoint to the same
    result as an uninterrupted run; ``config`` must equal the saved one except for
    ``n_epochs`` (so a finished run can be extended).
    """
    run = RunFolder(out_dir, keep_last=config.keep_last)
    data = load_data(config)
    generator = torch.Generator().manual_seed(config.seed)
    model = build_model(config, generator)
    trainer = build_trainer(config, model)
    done, best = 0, None
    if resume:
        done, best = _restore(run, config, model, trainer, generator)
    else:
        run.create(overwrite=overwrite)
        model.init_visible_bias(data)
    run.write_config(config.to_dict())
    enumerable = model.n_units <= MAX_ENUMERATED_UNITS
    for epoch in range(done + 1, config.n_epochs + 1):
        start = time.perf_counter()
        diagnostics = trainer.train_epoch(data, batch_size=config.batch_size, generator=generator)
        record: dict[str, Any] = {
            "epoch": epoch,
            **diagnostics,
            "epoch_seconds": time.perf_counter() - start,
        }
        if enumerable and (epoch % config.eval_every == 0 or epoch == config.n_epochs):
            record["log_likelihood"] = float(bm_log_likelihood(model, data))
        run.append_metrics(record)
        if epoch % config.checkpoint_every == 0 or epoch == config.n_epochs:
            score = record.get("log_likelihood", -math.inf)
            is_best = best is None or score > best
            best = score if is_best else best
            extra = {
                "trainer": trainer.state_dict(),
                "generator": generator.get_state(),
                "epoch": epoch,
            }
            extra["best"] = best
            run.checkpoints.save(epoch, model.state_dict(), extra, is_best=is_best)
    write_figures(run, model, config)
    return run.path


def _restore(
    run: RunFolder,
    config: BMConfig,
    model: BoltzmannMachine,
    trainer: BMTrainer,
    generator: torch.Generator,
) -> tuple[int, float | None]:
    saved = BMConfig.from_dict(run.read_config())
    changed = [
        f.name for f in fields(BMConfig) if getattr(saved, f.name) != getattr(config, f.name)
    ]
    if set(changed) - set(RESUMABLE_CHANGES):
        raise RunFolderError(
            f"cannot resume {run.path} with a different config: {sorted(changed)} differ"
        )
    latest = run.checkpoints.latest()
    if latest is None:
        raise RunFolderError(f"{run.path} has no checkpoint to resume from; start it again")
    model_state, extra = load_checkpoint(latest)
    load_model_state(model, model_state, source=str(latest))
    trainer.load_state_dict(extra["trainer"])
    generator.set_state(extra["generator"])
    run.truncate_metrics(last_epoch=int(extra["epoch"]))
    return int(extra["epoch"]), extra["best"]


def write_figures(run: RunFolder, model: BoltzmannMachine, config: BMConfig) -> None:
    """``figures/log_likelihood.png`` (exact, with the data's ceiling) and ``figures/samples.png``."""
    from ebmlab.viz._mpl import pyplot
    from ebmlab.viz.images import save_image_grid

    records = [r for r in run.read_metrics() if isinstance(r.get("log_likelihood"), float)]
    if records:
        plt = pyplot()
        figure, axis = plt.subplots(figsize=(5, 3.5))
        axis.plot(
            [r["epoch"] for r in records], [r["log_likelihood"] for r in records], label="model"
        )
        # The patterns are distinct and equally weighted: no model beats log(1 / n_patterns).
        ceiling = -math.log(load_data(config).shape[0])
        axis.axhline(
            ceiling, color="k", ls="--", lw=1, label=f"ceiling -log {load_data(config).shape[0]}"
        )
        axis.set(
            xlabel="epoch", ylabel="exact mean log-likelihood (nats)", title="Boltzmann machine"
        )
        axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(run.figures / "log_likelihood.png", dpi=110)
        plt.close(figure)
    samples = model.sample(64, 200, generator=torch.Generator().manual_seed(config.seed))
    side = config.image_size
    save_image_grid(
        samples, (side, side), run.figures / "samples.png", title="Gibbs samples (200 sweeps)"
    )


def load_bm(run_dir: str | Path, *, which: str = "latest") -> tuple[BMConfig, BoltzmannMachine]:
    """Load a trained BM from a run folder (``which``: ``latest`` or ``best``)."""
    check_choice("which", which, ("latest", "best"))
    run = RunFolder(run_dir)
    config = BMConfig.from_dict(run.read_config())
    path = run.checkpoints.best if which == "best" else run.checkpoints.latest()
    if path is None or not path.is_file():
        raise RunFolderError(f"{run.path} has no {which} checkpoint")
    model_state, _ = load_checkpoint(path)
    model = build_model(config)
    load_model_state(model, model_state, source=str(path))
    return config, model


def evaluate_bm(run_dir: str | Path, *, which: str = "latest") -> dict[str, Any]:
    """Exact metrics of a trained BM on its training patterns (JSON-ready).

    Keys: ``model``, ``n_visible``, ``n_hidden``, ``dataset``, ``n_patterns``,
    ``log_partition`` and ``log_likelihood`` (exact, nats per pattern) and
    ``max_log_likelihood`` (``-log n_patterns``: the patterns are distinct).
    """
    from ebmlab.estimators.exact_bm import bm_log_partition

    config, model = load_bm(run_dir, which=which)
    data = load_data(config)
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
        "dataset": f"{config.dataset}-{config.image_size}",
        "n_patterns": int(data.shape[0]),
        "log_partition": float(log_z),
        "log_likelihood": float(bm_log_likelihood(model, data, log_partition=log_z)),
        "max_log_likelihood": -math.log(data.shape[0]),
    }
