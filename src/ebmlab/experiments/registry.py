"""Dispatch from a run folder's ``model`` key to the recipe that understands it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ebmlab._validation import check_positive_int
from ebmlab.experiments.run_folder import RunFolder, RunFolderError


def run_model_name(run_dir: str | Path) -> str:
    return str(RunFolder(run_dir).read_config()["model"])


def evaluate_run(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Evaluate any run folder; see each model's ``evaluate_*`` for the keys."""
    model = run_model_name(run_dir)
    if model == "rbm":
        from ebmlab.experiments.rbm import evaluate_rbm

        return evaluate_rbm(run_dir, **options)
    raise RunFolderError(f"evaluation of {model!r} runs is not supported")


def sample_run(run_dir: str | Path, *, n: int, n_steps: int, seed: int, out: Path | None) -> Path:
    """Draw ``n`` samples from a run's model and save an image grid; returns the PNG path."""
    check_positive_int("n", n)
    check_positive_int("n_steps", n_steps)
    model_name = run_model_name(run_dir)
    out = Path(out) if out is not None else RunFolder(run_dir).figures / f"samples-{seed}.png"
    if model_name == "rbm":
        from ebmlab.data import load_dataset
        from ebmlab.experiments.rbm import load_rbm
        from ebmlab.samplers.gibbs import sample_visible
        from ebmlab.viz.images import save_image_grid

        config, model = load_rbm(run_dir)
        generator = torch.Generator(device=config.device).manual_seed(seed)
        samples = sample_visible(model, n, n_steps, generator=generator)
        image_shape = load_dataset(
            config.dataset, split="test", data_dir=config.data_dir
        ).image_shape
        return save_image_grid(
            samples, image_shape, out, title=f"{n} samples, {n_steps} Gibbs sweeps"
        )
    raise RunFolderError(f"sampling from {model_name!r} runs is not supported")
