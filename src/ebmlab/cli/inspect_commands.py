"""``ebmlab sample RUN_DIR`` and ``ebmlab eval RUN_DIR``: read a run folder, never change it."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def sample(
    run_dir: Path = typer.Argument(..., help="A run folder written by `ebmlab train`."),
    n: int = typer.Option(64, "--n", help="Number of samples (independent chains)."),
    n_steps: int = typer.Option(
        1000, help="Sampler steps per chain (Gibbs sweeps, or SGLD steps for JEM)."
    ),
    seed: int = typer.Option(0, help="Random seed."),
    out: Path | None = typer.Option(
        None, help="PNG to write (default RUN_DIR/figures/samples-SEED.png)."
    ),
    class_: int | None = typer.Option(None, "--class", help="JEM only: sample this class, p(x|y)."),
) -> None:
    """Draw samples from a trained model and save them as an image grid."""
    from ebmlab.experiments.registry import sample_run

    path = sample_run(run_dir, n=n, n_steps=n_steps, seed=seed, out=out, class_=class_)
    typer.echo(f"wrote {path}")


def evaluate(
    run_dir: Path = typer.Argument(..., help="A run folder written by `ebmlab train`."),
    loglik: bool = typer.Option(
        False, "--loglik", help="Estimate the test log-likelihood (AIS and reverse AIS)."
    ),
    n_chains: int = typer.Option(100, help="AIS chains (with --loglik)."),
    n_betas: int | None = typer.Option(
        None, help="AIS temperatures, evenly spaced (default: the 14,500-step schedule)."
    ),
    seed: int = typer.Option(0, help="Random seed of the estimators."),
    ood: str | None = typer.Option(
        None,
        help="JEM only: OOD sets, comma-separated: noise, constant, flip or dataset names "
        "(NAME:resized resizes another image size, e.g. digits:resized).",
    ),
    refine_steps: int = typer.Option(
        0,
        min=0,
        help="JEM only: also classify test inputs after this many SGLD steps toward higher p(x).",
    ),
    refine_step_size: float | None = typer.Option(
        None, help="JEM only: step size of the refinement (default: the run's SGLD step)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Evaluate a trained model on its dataset's test split."""
    from ebmlab.experiments.registry import evaluate_run

    options = {"seed": seed}
    if loglik:  # the AIS settings mean something only with --loglik
        options.update(loglik=True, n_chains=n_chains, n_betas=n_betas)
    if refine_steps:
        options["refine_steps"] = refine_steps
    if refine_step_size is not None:
        options["refine_step_size"] = refine_step_size
    if ood is not None:
        options["ood"] = tuple(name.strip() for name in ood.split(",") if name.strip())
    result = evaluate_run(run_dir, **options)
    if as_json:
        from ebmlab.experiments.run_folder import json_safe

        typer.echo(json.dumps(json_safe(result), indent=2))
        return
    for key, value in _flatten(result):
        typer.echo(f"{key:40s} {value:.6g}" if isinstance(value, float) else f"{key:40s} {value}")


def _flatten(result: dict, prefix: str = ""):
    for key, value in result.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders to compare."),
    out: Path = typer.Option(
        Path("report"), help="Folder for report.md, report.csv and sample grids."
    ),
    n_samples: int = typer.Option(1000, help="Samples per model for IS and FID."),
    n_steps: int = typer.Option(1000, help="Sampler steps per sample."),
    loglik: bool = typer.Option(
        False, "--loglik", help="Also estimate test log-likelihoods (AIS; slow)."
    ),
    n_betas: int | None = typer.Option(
        None, help="AIS temperatures with --loglik (default 14,501)."
    ),
    seed: int = typer.Option(0, help="Random seed of samplers and estimators."),
) -> None:
    """A table of models: accuracy, Inception Score, FID and test log-likelihood, with sample grids."""
    from ebmlab.experiments.report import write_report

    path = write_report(
        run_dirs,
        out,
        n_samples=n_samples,
        n_steps=n_steps,
        loglik=loglik,
        n_betas=n_betas,
        seed=seed,
    )
    typer.echo(path.read_text().split("\n\n![")[0])
    typer.echo(f"\nwrote {path} and {path.with_suffix('.csv')}")
