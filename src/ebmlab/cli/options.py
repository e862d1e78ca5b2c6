"""Options shared by the ``ebmlab train`` commands, declared once.

Each alias carries its help text; a command gives the default, e.g.
``dataset: DatasetOption = "digits"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DatasetOption = Annotated[str, typer.Option(help="Dataset name (`ebmlab data list`).")]
DataDirOption = Annotated[Path | None, typer.Option(help="Folder holding the dataset's files.")]
SeedOption = Annotated[int, typer.Option(help="Random seed: the run is reproducible from it.")]
DeviceOption = Annotated[str, typer.Option(help="cpu or cuda.")]
DtypeOption = Annotated[str, typer.Option(help="float32 or float64.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(help="YAML settings (e.g. a run's config.yaml); options given here override it."),
]
OutOption = Annotated[Path | None, typer.Option(help="Run folder to create.")]
ResumeOption = Annotated[
    Path | None, typer.Option(help="Continue this run folder from its last checkpoint.")
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing run folder.")
]
ProgressOption = Annotated[
    bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
]
TensorBoardOption = Annotated[
    bool,
    typer.Option(
        "--tensorboard", help="Also log scalars, histograms and samples to RUN_DIR/tensorboard."
    ),
]
