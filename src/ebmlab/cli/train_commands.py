"""``ebmlab train MODEL ...``: one subcommand per registered recipe, generated from its config.

Nothing here is written per model: the options, their defaults and their help
come from the recipe's config dataclass (:mod:`ebmlab.cli.config_options`), and
the work is :func:`ebmlab.experiments.driver.train` or ``resume``.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ebmlab.cli.config_options import (
    check_unique_flags,
    config_options,
    given_values,
    option_parameters,
)
from ebmlab.experiments.registry import recipes

app = typer.Typer(help="Train a model into a run folder.", no_args_is_help=True)

CONTROLS = [
    inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                help="YAML settings (e.g. a run's config.yaml); options given here override it."
            ),
        ],
    ),
    inspect.Parameter(
        "out",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[Path | None, typer.Option(help="Run folder to create.")],
    ),
    inspect.Parameter(
        "resume",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None, typer.Option(help="Continue this run folder from its last checkpoint.")
        ],
    ),
    inspect.Parameter(
        "overwrite",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool, typer.Option("--overwrite", help="Replace an existing run folder.")
        ],
    ),
    inspect.Parameter(
        "stop_after",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            int | None,
            typer.Option(help="Stop after this many steps in all (resume continues the run)."),
        ],
    ),
    inspect.Parameter(
        "progress",
        inspect.Parameter.KEYWORD_ONLY,
        default=True,
        annotation=Annotated[
            bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
        ],
    ),
]
CONTROL_FLAGS = {"--" + p.name.replace("_", "-") for p in CONTROLS} | {"--help", "--no-progress"}


def _train_command(recipe_class) -> Any:
    options = config_options(recipe_class.config_class)
    check_unique_flags(recipe_class.name, options, CONTROL_FLAGS)

    def command(**values: Any) -> None:
        from ebmlab.experiments import driver

        controls = {p.name: values.pop(p.name) for p in CONTROLS}
        given = given_values(options, values)
        if controls["resume"] is not None:
            extra = [name for name in ("config", "out") if controls[name] is not None]
            if extra or controls["overwrite"]:
                flags = ", ".join(f"--{n}" for n in extra + ["overwrite"] * controls["overwrite"])
                raise ValueError(f"--resume continues a run where it is; drop {flags}")
            folder = driver.resume(
                controls["resume"],
                changes=given,
                progress=controls["progress"],
                stop_after=controls["stop_after"],
            )
        else:
            if controls["out"] is None:
                raise ValueError(
                    "--out is required (the run folder to create), or pass --resume RUN_DIR"
                )
            config = recipe_class.config_from_file(controls["config"], given)
            folder = driver.train(
                config,
                controls["out"],
                overwrite=controls["overwrite"],
                progress=controls["progress"],
                stop_after=controls["stop_after"],
            )
        if os.environ.get("RANK", "0") == "0":  # one line from rank 0 under torchrun
            typer.echo(f"run folder: {folder.path}  (figures in {folder.figures})")

    command.__signature__ = inspect.Signature(option_parameters(options) + CONTROLS)
    command.__name__ = f"train_{recipe_class.name.replace('-', '_')}"
    command.__doc__ = recipe_class.summary
    return command


for _name, _recipe in recipes().items():
    app.command(_name, help=_recipe.summary)(_train_command(_recipe))
