"""``ebmlab demo ...``: reproductions of published figures."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Reproduce published experiments.", no_args_is_help=True)


@app.command("sgld-mixture")
def sgld_mixture(
    out: Path = typer.Option(
        Path("runs/sgld-mixture"), help="Run folder for the checkpoints, metrics and figures."
    ),
    n_steps: int = typer.Option(10_000, help="SGLD steps per chain."),
    n_chains: int = typer.Option(200, help="Parallel chains."),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Welling & Teh (2011), section 5.1: SGLD on the bimodal two-parameter mixture posterior.

    The same run as ``ebmlab train sgld-mixture``; prints the summary of ``ebmlab eval``.
    """
    from ebmlab.experiments import driver
    from ebmlab.experiments.registry import evaluate_run
    from ebmlab.experiments.run_folder import json_safe
    from ebmlab.experiments.sgld_mixture import SGLDMixtureConfig

    config = SGLDMixtureConfig(n_steps=n_steps, n_chains=n_chains, seed=seed)
    folder = driver.train(config, out, overwrite=overwrite, progress=progress)
    typer.echo(json.dumps(json_safe(evaluate_run(folder.path)), indent=2))
    typer.echo(f"run folder: {folder.path}  (figures in {folder.figures})")
