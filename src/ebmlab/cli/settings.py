"""Merge a YAML settings file with command-line options (the command line wins)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import typer
import yaml

# Options that steer the command rather than describe the run.
CONTROL_OPTIONS = frozenset({"out", "resume", "overwrite", "progress", "config"})


def read_settings_file(path: Path, *, model: str) -> dict[str, Any]:
    """Read a YAML mapping (e.g. a run's ``config.yaml``), checking its ``model`` key if present."""
    try:
        settings = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"config file {path} cannot be read: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(settings, dict):
        raise ValueError(
            f"config file {path} must hold a mapping of settings; got {type(settings).__name__}"
        )
    if settings.get("model", model) != model:
        raise ValueError(f"config file {path} describes a {settings['model']!r} run, not {model!r}")
    return settings


def in_section(section: str, options: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """Map option names to dotted paths under ``section`` (a mapping renames the fields)."""
    renames = options if isinstance(options, Mapping) else {name: name for name in options}
    return {option: f"{section}.{field}" for option, field in renames.items()}


def merged_settings(
    context: typer.Context, config_file: Path | None, *, model: str, paths: Mapping[str, str]
) -> dict[str, Any]:
    """Settings for a run: the file's (if any), overridden by options given on the command line.

    ``paths`` maps option names to dotted places in the settings (e.g.
    ``{"finetune_epochs": "finetune.epochs"}``); other options are stored at the top
    level under their own name. Without a file every option counts, defaults included.
    """
    from typer._click.core import ParameterSource

    settings = read_settings_file(config_file, model=model) if config_file is not None else {}
    for name, value in context.params.items():
        if name in CONTROL_OPTIONS:
            continue
        if (
            config_file is not None
            and context.get_parameter_source(name) != ParameterSource.COMMANDLINE
        ):
            continue
        *sections, field = paths.get(name, name).split(".")
        target = settings
        for section in sections:
            target[section] = target = dict(target.get(section) or {})
        target[field] = str(value) if isinstance(value, Path) else value
    return settings


def parse_sizes(name: str, text: str) -> list[int]:
    """Parse ``"500,500,2000"`` into ``[500, 500, 2000]``, naming the option on error."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{name} must be comma-separated integers like 500,500; got {text!r}"
        ) from None


def given_on_command_line(context: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed by the user (not a default)."""
    from typer._click.core import ParameterSource

    return context.get_parameter_source(name) == ParameterSource.COMMANDLINE


def check_resume_alone(context: typer.Context, *, allowed: Iterable[str] = ()) -> None:
    """Refuse settings next to ``--resume``: a resumed run continues exactly as configured."""
    from typer._click.core import ParameterSource

    ignored = CONTROL_OPTIONS | set(allowed)
    given = [
        "--" + name.replace("_", "-")
        for name in context.params
        if name not in ignored and context.get_parameter_source(name) == ParameterSource.COMMANDLINE
    ]
    if given:
        raise ValueError(
            f"--resume continues a run exactly as its config.yaml says; drop {', '.join(given)} "
            "(or start a new run with --config RUN_DIR/config.yaml and your changes)"
        )


def require_out(out: Path | None) -> Path:
    """The run folder a new run needs; one clear error when it is missing."""
    if out is None:
        raise ValueError("--out is required (the run folder to create), or pass --resume RUN_DIR")
    return out
