"""``ebmlab data list`` and ``ebmlab data info NAME``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="What datasets exist and where they were found.", no_args_is_help=True)


@app.command("list")
def list_command(
    data_dir: Path | None = typer.Option(None, help="Folder to look in for IDX files."),
) -> None:
    """List the datasets ebmlab knows and whether each is available here."""
    from ebmlab.data import dataset_info, list_datasets

    for name in list_datasets():
        info = dataset_info(name, data_dir=data_dir)
        status = "available" if info.get("available") else "missing"
        typer.echo(f"{name:18s} {status:10s} {info.get('found_at') or ''}")


@app.command("info")
def info_command(
    name: str = typer.Argument(..., help="Dataset name (see `ebmlab data list`)."),
    data_dir: Path | None = typer.Option(None, help="Folder to look in for IDX files."),
) -> None:
    """Show one dataset's shape, classes and where it was found (or the paths looked at)."""
    from ebmlab.data import dataset_info

    typer.echo(json.dumps(dataset_info(name, data_dir=data_dir), indent=2, default=str))
