"""``ebmlab sample``, ``eval`` and ``report``: read run folders (sample and eval add figures)."""

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
    compiled_ais: bool = typer.Option(
        False,
        "--compiled-ais",
        help="RBM only, with --loglik: AIS as one compiled step per temperature (float32; "
        "compiles for some seconds first).",
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
    sample_quality: int = typer.Option(
        0,
        min=0,
        help="Also the IS and FID of this many fresh samples against the test split, in the "
        "dataset's shipped feature space (0: none).",
    ),
    quality_steps: int | None = typer.Option(
        None,
        help="Sampler steps of those samples (default: 100 from a replay buffer, 1,000 Gibbs "
        "sweeps from noise).",
    ),
    inception_weights: Path | None = typer.Option(
        None, help="Inception-v3 weights file for that IS and FID instead of the shipped CNNs."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show progress bars (AIS) on stderr."
    ),
) -> None:
    """Evaluate a trained model on its dataset's test split.

    Before AIS (--loglik) or JEM's SGLD work, one line on stderr says what it will
    cost, timed on a few sampler steps.
    """
    from ebmlab.experiments.report_costs import evaluate_with_estimate

    options = {"seed": seed}
    if loglik:  # the AIS settings mean something only with --loglik
        options.update(loglik=True, n_chains=n_chains, n_betas=n_betas)
        if compiled_ais:
            options["compiled_ais"] = True
    if refine_steps:
        options["refine_steps"] = refine_steps
    if refine_step_size is not None:
        options["refine_step_size"] = refine_step_size
    if ood is not None:
        options["ood"] = tuple(name.strip() for name in ood.split(",") if name.strip())
    if sample_quality:
        options.update(sample_quality=sample_quality, quality_steps=quality_steps)
        options["inception_weights"] = inception_weights
    result = evaluate_with_estimate(run_dir, progress=progress, echo=_echo_err, **options)
    from ebmlab.estimators.evaluate import open_interval_warnings

    for line in open_interval_warnings(result):
        _echo_err(line)
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


def _echo_err(line: str) -> None:
    typer.echo(line, err=True)


def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run folders to compare."),
    out: Path = typer.Option(
        Path("report"), help="Folder for report.html, report.md, report.csv and figures/."
    ),
    n_samples: int = typer.Option(256, help="Samples per model for its grid, IS and FID."),
    n_steps: int | None = typer.Option(
        None,
        help="Sampler steps per sample (default: 100 for jem, ebm2d and sgld-mixture, whose "
        "chains start in a replay buffer or among kept draws; 1,000 Gibbs sweeps from noise "
        "for rbm, dbn, dbm and bm).",
    ),
    loglik: bool = typer.Option(
        False, "--loglik", help="Also estimate test log-likelihoods (AIS; slow)."
    ),
    n_chains: int = typer.Option(100, help="AIS chains with --loglik."),
    n_betas: int | None = typer.Option(
        None, help="AIS temperatures with --loglik (default 14,501)."
    ),
    seed: int = typer.Option(0, help="Random seed of samplers and estimators."),
    inception_weights: Path | None = typer.Option(
        None,
        help="Inception-v3 weights file for IS and FID instead of the shipped small CNNs "
        "(pytorch-fid's pt_inception-2015-12-05-6726825d.pth gives numbers comparable to "
        "published ones).",
    ),
    probe: bool = typer.Option(
        True,
        "--probe/--no-probe",
        help="Give generative models without a classifier (rbm, dbn without fine-tuning, "
        "dbm without a classifier) the test accuracy of a linear probe: logistic regression "
        "on their frozen hidden means, marked as a probe.",
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show progress bars on stderr."
    ),
) -> None:
    """A table of models: accuracy, Inception Score, FID and test log-likelihood, with figures.

    Writes report.html (one self-contained page), report.md and report.csv. Before
    the work starts, one line per run on stderr says what it will cost.
    """
    from ebmlab.experiments.report import write_report

    path = write_report(
        run_dirs,
        out,
        n_samples=n_samples,
        n_steps=n_steps,
        loglik=loglik,
        n_chains=n_chains,
        n_betas=n_betas,
        seed=seed,
        inception_weights=inception_weights,
        probe=probe,
        progress=progress,
        echo=_echo_err,
    )
    typer.echo(path.read_text(encoding="utf-8").split("\n\n![")[0])
    typer.echo(f"\nwrote {path.with_suffix('.html')}, {path} and {path.with_suffix('.csv')}")
