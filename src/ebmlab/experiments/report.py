"""The model-quality report: one table over run folders, like the lecture's closing slide.

For each run: the model class and its settings, test accuracy (where the model
classifies), Inception Score and FID of its samples in a named feature space
(where ebmlab ships a feature network for the dataset), and the test
log-likelihood (with ``loglik``; exact, AIS or a bound, as the model allows).
Every number carries its settings: number of samples, feature network, sampler steps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ebmlab._validation import check_positive_int
from ebmlab.experiments.registry import evaluate_recipe, open_run

# Feature networks shipped for a dataset (FID and IS are only comparable within one).
FEATURE_NET_FOR_DATASET = {"fashion-mnist": "fashion-mnist-cnn", "digits": "digits-cnn"}
COLUMNS = (  # report.csv
    "run",
    "model_class",
    "model",
    "test_accuracy",
    "inception_score",
    "fid",
    "test_loglik",
    "loglik_kind",
    "settings",
    "samples_figure",
)


@dataclass
class ReportRow:
    run: str
    model_class: str
    model: str
    test_accuracy: float | None = None
    inception_score: float | None = None
    fid: float | None = None
    test_loglik: float | None = None
    loglik_kind: str = ""
    settings: str = ""
    samples_figure: str = ""


def _describe(model_name: str, result: dict[str, Any]) -> tuple[str, str]:
    classes = {"rbm": "RBM", "bm": "Boltzmann machine", "dbn": "DBN", "dbm": "DBM", "jem": "JEM"}
    sizes = result.get("layer_sizes") or [result.get("n_visible"), result.get("n_hidden")]
    described = "-".join(str(s) for s in sizes if s is not None)
    return classes.get(model_name, model_name), described or result.get("backbone") or model_name


def _loglik(result: dict[str, Any]) -> tuple[float | None, str]:
    for key, kind in (
        ("test_loglik", "AIS"),
        ("loglik_bound", "lower bound (AIS log Z)"),
        ("log_likelihood", "exact"),
    ):
        value = result.get(key)
        if isinstance(value, dict):
            return value.get("value"), kind
        if isinstance(value, int | float):
            return float(value), kind
    return None, ""


def _sample_quality(
    run_dir: Path, model_name: str, config: Any, samples: torch.Tensor
) -> dict[str, Any]:
    from ebmlab.data import load_dataset
    from ebmlab.metrics import fid, inception_score, load_feature_net

    net_name = FEATURE_NET_FOR_DATASET.get(getattr(config, "dataset", ""))
    if net_name is None:
        return {}
    net = load_feature_net(net_name)
    real = load_dataset(config.dataset, split="test", data_dir=config.data_dir).images
    score = inception_score(samples, net, splits=10, progress=False, classifier_name=net_name)
    distance = fid(real, samples, net, progress=False, feature_name=net_name)
    return {"inception_score": score.mean, "fid": distance.fid, "feature_net": net_name}


def report_row(
    run_dir: str | Path,
    *,
    n_samples: int,
    n_steps: int,
    loglik: bool,
    n_betas: int | None,
    figures: Path,
    figure_name: str,
    seed: int = 0,
) -> ReportRow:
    """Evaluate one run folder and draw its samples (saved as a grid under ``figures``)."""
    from ebmlab.viz.images import save_image_grid

    run_dir = Path(run_dir)
    recipe = open_run(run_dir)
    model_name, config = recipe.name, recipe.config
    result = evaluate_recipe(
        recipe, strict=False, loglik=loglik, n_betas=n_betas, seed=seed, progress=False
    )
    model_class, model = _describe(model_name, result)
    row = ReportRow(
        run=str(run_dir),
        model_class=model_class,
        model=model,
        test_accuracy=result.get("test_accuracy"),
    )
    row.test_loglik, row.loglik_kind = _loglik(result)
    settings = [f"dataset {result.get('dataset', '?')}"]
    try:
        generator = torch.Generator(device=recipe.device).manual_seed(seed)
        samples, steps = recipe.sample(n_samples, n_steps, generator=generator)
        image_shape = recipe.image_shape()
    except ValueError as error:  # a model without images still gets its other columns
        settings.append(f"no sample grid ({error})")
    else:
        samples = samples.cpu()
        grid = figures / figure_name
        row.samples_figure = f"figures/{figure_name}"
        save_image_grid(samples[:64], image_shape, grid, title=f"{model_class} {model}")
        quality = _sample_quality(run_dir, model_name, config, samples)
        row.inception_score, row.fid = quality.get("inception_score"), quality.get("fid")
        settings.append(f"{n_samples} samples, {n_steps} {steps}")
        if quality:
            settings.append(f"features {quality['feature_net']}")
    row.settings = "; ".join(settings)
    return row


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_report(
    run_dirs: list[str | Path],
    out: str | Path,
    *,
    n_samples: int = 1000,
    n_steps: int = 1000,
    loglik: bool = False,
    n_betas: int | None = None,
    seed: int = 0,
) -> Path:
    """Write ``report.md``, ``report.csv`` and one sample grid per run into ``out``."""
    check_positive_int("n_samples", n_samples)
    check_positive_int("n_steps", n_steps)
    if not run_dirs:
        raise ValueError("run_dirs must name at least one run folder")
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    rows = [
        report_row(
            r,
            n_samples=n_samples,
            n_steps=n_steps,
            loglik=loglik,
            n_betas=n_betas,
            figures=figures,
            figure_name=f"{index:02d}-{Path(r).name}_samples.png",  # runs may share a folder name
            seed=seed,
        )
        for index, r in enumerate(run_dirs)
    ]
    with (out / "report.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(vars(r) for r in rows)
    lines = [
        "| model class | model | accuracy | IS | FID | test log-likelihood (nats) | settings |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        loglik_text = _cell(r.test_loglik) + (f" ({r.loglik_kind})" if r.loglik_kind else "")
        lines.append(
            f"| {r.model_class} | {r.model} | {_cell(r.test_accuracy)} | {_cell(r.inception_score)} | {_cell(r.fid)} "
            f"| {loglik_text} | {r.settings} |"
        )
    grids = "\n".join(
        f"![{Path(r.run).name}]({r.samples_figure})" for r in rows if r.samples_figure
    )
    (out / "report.md").write_text(
        "# Model-quality report\n\n" + "\n".join(lines) + "\n\n" + grids + "\n"
    )
    return out / "report.md"
