"""Typed recipe configs: dataclasses with help text, validated strictly, read from YAML 1.2.

A recipe's config is a plain dataclass whose fields carry their help text in
``metadata`` (declared with :func:`option` and :func:`section`). The command
line is generated from those fields (:mod:`ebmlab.cli.train_commands`), so an
option, its default, its help and its config key cannot disagree.

Validation is pydantic's, in strict mode: ``"false"`` is not a boolean and
``"abc"`` is not a seed. Files are read as YAML 1.2 (ruamel.yaml), where
``1e-3`` is a number and ``yes`` is a string. Old run folders keep loading: each
recipe declares the keys it renamed, and :func:`apply_renames` maps them first.

Why pydantic rather than jsonargparse or tyro: the CLI already is typer (one
vocabulary for every command, ``eval`` and ``sample`` included); pydantic
validates the very dataclasses the library uses, runs their ``__post_init__``
checks after type checks, and names the path of a bad value in its error.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ebmlab
from ebmlab._fields import NOT_NEW, option, section

__all__ = ["option", "section"]

# Keys every config.yaml carries besides the config's own fields.
HEADER_KEYS = ("model", "ebmlab_version")


class ConfigError(ValueError):
    """A config (file or mapping) does not describe a valid run of a recipe."""


# ----- YAML 1.2 -------------------------------------------------------------------------------
def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    return yaml


MAX_CONFIG_BYTES = 1 << 20  # a config is a few kB; anything near a MiB is not one
MAX_CONFIG_VALUES = 100_000  # values after alias expansion (a "billion laughs" file explodes)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML 1.2 mapping, with one clear error for a missing, unreadable or odd file.

    Bounded: at most ``MAX_CONFIG_BYTES`` of text and ``MAX_CONFIG_VALUES`` values once
    aliases are expanded, so a small file cannot make a run exhaust memory.
    """
    from ruamel.yaml import YAMLError

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} has {size} bytes; at most {MAX_CONFIG_BYTES}")
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"config file {path} cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        settings = _yaml().load(text)
    except (YAMLError, RecursionError) as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(settings, dict):
        kind = type(settings).__name__
        raise ConfigError(f"config file {path} must hold a mapping of settings; got {kind}")
    _check_size(settings, path)
    return settings


def _check_size(settings: Any, path: Path) -> None:
    # Aliases share objects, so walking visits every expanded value: stop at the bound.
    budget, stack = MAX_CONFIG_VALUES, [settings]
    while stack:
        value = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(
                f"config file {path} expands to more than {MAX_CONFIG_VALUES} values "
                "(nested aliases?); a config holds a few dozen"
            )
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def dump_yaml(mapping: Mapping[str, Any]) -> str:
    stream = io.StringIO()
    _yaml().dump(dict(mapping), stream)
    return stream.getvalue()


# ----- mappings <-> configs ---------------------------------------------------------------------
def apply_renames(settings: dict[str, Any], renames: Mapping[str, str]) -> dict[str, Any]:
    """``settings`` with old dotted keys moved to their new places (an old run's config.yaml)."""
    settings = _copy(settings)
    for old, new in renames.items():
        *old_sections, old_key = old.split(".")
        source = settings
        for name in old_sections:
            source = source.get(name) if isinstance(source, dict) else None
        if not isinstance(source, dict) or old_key not in source:
            continue
        value = source.pop(old_key)
        *new_sections, new_key = new.split(".")
        target = settings
        for name in new_sections:
            target = target.setdefault(name, {})
        target.setdefault(new_key, value)
    return settings


def set_dotted(settings: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``settings["a"]["b"] = value`` for ``dotted = "a.b"``; a list section gets it in every item."""
    *sections, key = dotted.split(".")
    targets = [settings]
    for name in sections:
        nested = []
        for target in targets:
            current = target.get(name)
            if isinstance(current, list):  # e.g. one CD config per DBN layer
                nested += [item for item in current if isinstance(item, dict)]
            else:
                target[name] = current = dict(current or {})
                nested.append(current)
        targets = nested
    for target in targets:
        target[key] = value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def config_from_mapping(
    config_class: type, settings: Mapping[str, Any], *, model: str, source: str | None = None
) -> Any:
    """Validate ``settings`` (header keys allowed) into ``config_class``, strictly.

    Raises :class:`ConfigError` naming the key, the value and what was expected
    (and ``source``, the file, when the settings came from one).
    """
    where = f"{source}: " if source else ""
    from pydantic import TypeAdapter, ValidationError

    settings = dict(settings)
    if settings.get("model", model) != model:
        raise ConfigError(f"{where}describes a {settings['model']!r} run, not {model!r}")
    for key in HEADER_KEYS:
        settings.pop(key, None)
    _make_strict(config_class)
    try:
        # JSON mode: strict about scalars ("false" is no boolean, 1.5 no int), while nested
        # sections may be mappings; a YAML 1.2 file holds nothing JSON cannot.
        payload = json.dumps(settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{where}values must be numbers, strings, lists or mappings ({error})"
        ) from None
    try:
        return TypeAdapter(config_class).validate_json(payload)
    except ValidationError as error:
        raise ConfigError(where + _describe(error)) from None


def _make_strict(config_class: type) -> None:
    """Strict types and no unknown keys, for the config and every section below it."""
    from pydantic import ConfigDict

    if "__pydantic_config__" not in vars(config_class):
        config_class.__pydantic_config__ = ConfigDict(strict=True, extra="forbid")
    for field in dataclasses.fields(config_class):
        if field.metadata.get("section"):
            _make_strict(_section_class(field))


def _describe(error: Any) -> str:
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        if item["type"] == "value_error":  # a ValueError from __post_init__ says it all
            problems.append(str(item["ctx"]["error"]))
        elif item["type"] == "extra_forbidden" or item["type"] == "unexpected_keyword_argument":
            problems.append(f"unknown setting {where!r}")
        else:
            problems.append(f"{where} = {item.get('input')!r}: {item['msg']}")
    return "; ".join(dict.fromkeys(problems))


def config_to_mapping(config: Any, *, model: str) -> dict[str, Any]:
    """The ``config.yaml`` mapping of a config: header keys, then every field."""
    return {"model": model, "ebmlab_version": ebmlab.__version__, **dataclasses.asdict(config)}


def resumable_fields(config_class: type, prefix: str = "") -> set[str]:
    """Dotted names of the fields that ``--resume`` may change."""
    names = set()
    for field in dataclasses.fields(config_class):
        if field.metadata.get("section"):
            names |= resumable_fields(_section_class(field), f"{prefix}{field.name}.")
        elif field.metadata.get("resumable"):
            names.add(prefix + field.name)
    return names


def fill_fields_older_runs_lack(config_class: type, settings: dict[str, Any]) -> dict[str, Any]:
    """A saved run's settings with every field it predates set to its ``before`` value.

    A run folder's ``config.yaml`` holds every field of its release, so a missing key
    means the field is newer than the run: it gets the value that reproduces the run.
    """
    filled = dict(settings)
    for field in dataclasses.fields(config_class):
        if field.metadata.get("section"):
            if isinstance(filled.get(field.name), dict):
                filled[field.name] = fill_fields_older_runs_lack(
                    _section_class(field), filled[field.name]
                )
        elif field.name not in filled and field.metadata.get("before", NOT_NEW) is not NOT_NEW:
            filled[field.name] = field.metadata["before"]
    return filled


def _section_class(field: dataclasses.Field) -> type:
    return type(field.metadata["factory"]())


def changed_fields(old: Any, new: Any, prefix: str = "") -> set[str]:
    """Dotted names of the fields whose values differ between two configs of one class."""
    changed = set()
    for field in dataclasses.fields(old):
        a, b = getattr(old, field.name), getattr(new, field.name)
        if dataclasses.is_dataclass(a) and type(a) is type(b):
            changed |= changed_fields(a, b, f"{prefix}{field.name}.")
        elif a != b:
            changed.add(prefix + field.name)
    return changed
