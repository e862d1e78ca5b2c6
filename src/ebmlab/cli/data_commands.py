"""``ebmlab data list`` and ``ebmlab data info NAME``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="What datasets exist and where they were found.", no_args_is_help=True)


@app.command("list")
def list_command(
    data_dir: Path | None = typer.Option(
        None, help="Folder to look in for dataset files (searched before the cache)."
    ),
) -> None:
    """List the datasets ebmlab knows, whether each is available here, and how to get it if not."""
    from ebmlab.data import dataset_info, list_datasets

    for name in list_datasets():
        info = dataset_info(name, data_dir=data_dir)
        if info.get("available"):
            status, where = "available", info.get("found_at") or ""
        else:
            status, where = "missing", info.get("how_to_get") or ""
        typer.echo(f"{name:18s} {status:10s} {where}")


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Dataset name (see `ebmlab data list`)."),
    data_dir: Path | None = typer.Option(
        None, help="Folder to look in for dataset files (searched before the cache)."
    ),
) -> None:
    """Show one dataset's shape, classes and where it was found (or the paths looked at)."""
    from ebmlab.data import dataset_info

    typer.echo(json.dumps(dataset_info(name, data_dir=data_dir), indent=2, default=str))
