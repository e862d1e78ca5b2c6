"""Merge a YAML settings file with command-line options (the command line wins)."""

from __future__ import annotations

from collections.abc import Mapping
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


def merged_settings(
    context: typer.Context,
    config_file: Path | None,
    *,
    model: str,
    nested: dict[str, Mapping[str, str] | frozenset[str]],
) -> dict[str, Any]:
    """Settings for a run: the file's (if any), overridden by options given on the command line.

    ``nested`` maps a section name (e.g. ``"training"``) to the options stored in it:
    a set of names stored under the same name, or a mapping option name -> field name
    (e.g. ``{"finetune_epochs": "epochs"}``). Without a file every option counts,
    defaults included.
    """
    from typer._click.core import ParameterSource

    settings = read_settings_file(config_file, model=model) if config_file is not None else {}
    sections = {
        s: fields if isinstance(fields, Mapping) else {f: f for f in fields}
        for s, fields in nested.items()
    }
    for section in sections:
        settings[section] = dict(settings.get(section) or {})
    for name, value in context.params.items():
        if name in CONTROL_OPTIONS:
            continue
        if (
            config_file is not None
            and context.get_parameter_source(name) != ParameterSource.COMMANDLINE
        ):
            continue
        value = str(value) if isinstance(value, Path) else value
        section = next((s for s, fields in sections.items() if name in fields), None)
        if section is None:
            settings[name] = value
        else:
            settings[section][sections[section][name]] = value
    return settings


def parse_sizes(name: str, text: str) -> list[int]:
    """Parse ``"500,500,2000"`` into ``[500, 500, 2000]``, naming the option on error."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"{name} must be comma-separated integers like 500,500; got {text!r}"
        ) from None
