"""``ebmlab demo ...``: reproductions of published figures."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Reproduce published experiments.", no_args_is_help=True)


@app.command("sgld-mixture")
def sgld_mixture(
    out: Path = typer.Option(
        Path("runs/sgld-mixture"), help="Folder for samples.npy, the figure and summary.json."
    ),
    n_steps: int = typer.Option(10_000, help="SGLD steps per chain."),
    n_chains: int = typer.Option(200, help="Parallel chains."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Welling & Teh (2011), section 5.1: SGLD on the bimodal two-parameter mixture posterior."""
    from ebmlab.experiments.sgld_mixture import run_sgld_mixture

    summary = run_sgld_mixture(out, n_steps=n_steps, seed=seed, n_chains=n_chains)
    typer.echo(json.dumps(summary, indent=2, default=str))
    typer.echo(f"figure and samples in {out}")
