"""``ebmlab table``: the whole family trained within a budget, then one report page."""

from __future__ import annotations

from pathlib import Path

import typer


def table(
    dataset: str = typer.Option(
        "fashion-mnist", help="fashion-mnist or digits (the data every model trains on)."
    ),
    budget: float = typer.Option(
        ..., help="Wall-clock seconds for everything: training every model and the report."
    ),
    out: Path = typer.Option(
        ..., help="Folder for runs/NAME, table.json and report.html (run again to resume)."
    ),
    data_dir: str | None = typer.Option(None, help="Folder holding the dataset's files."),
    models: str | None = typer.Option(
        None,
        help="Comma-separated subset of: classifier, jem, jem-pxy, dbn, rbm, gaussian-rbm, "
        "dbm (default: all).",
    ),
    n_samples: int = typer.Option(256, help="Samples per model for its grid, IS and FID."),
    loglik: bool = typer.Option(
        True, "--loglik/--no-loglik", help="Estimate test log-likelihoods by AIS in the report."
    ),
    seed: int = typer.Option(0, help="Random seed of the report's samplers and estimators."),
    plan_only: bool = typer.Option(
        False, "--plan", help="Print the plan (units and time of each model) and stop."
    ),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Show progress bars on stderr."
    ),
) -> None:
    """Train every model of the family at recommended settings within --budget, then report.

    Each model gets a share of the budget and as many epochs (iterations for JEM) as
    its measured cost allows; a time limit keeps the budget on slower CPUs. Killed,
    the same command resumes where it stopped.
    """
    from ebmlab.experiments.family_table import build_table, plan_table

    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if plan_only:
        for plan in plan_table(dataset, budget, chosen):
            typer.echo(plan.line())
        return
    path = build_table(
        dataset, budget, out, data_dir=data_dir, models=chosen, n_samples=n_samples,
        loglik=loglik, seed=seed, progress=progress, echo=lambda line: typer.echo(line, err=True),
    )  # fmt: skip
    typer.echo(f"wrote {path}")
