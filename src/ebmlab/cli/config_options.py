"""Command-line options generated from a recipe's config dataclass.

Each field of the config (and of its sections, see
:func:`~ebmlab.experiments.config.section`) becomes one option: ``n_hidden`` ->
``--n-hidden``, a section's prefix before nested names (``--finetune-epochs``),
booleans as ``--name/--no-name``, lists as comma-separated values. Every option
defaults to "not given", so a YAML file (``--config``) can fill what the command
line leaves out and the dataclass default fills the rest.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

import typer


@dataclass(frozen=True)
class ConfigOption:
    """One generated option: where its value goes and how it reads."""

    dotted: str  # the config key, e.g. "training.lr"
    flag: str  # "--lr"
    kind: type  # bool, int, float, str or list
    item: type | None  # the element type of a list
    default: Any
    help: str
    resumable: bool

    @property
    def parameter(self) -> str:
        return self.dotted.replace(".", "__")

    def parse(self, value: Any) -> Any:
        """The config value of what the user typed (comma-separated for lists)."""
        if self.kind is not list:
            return value
        try:
            return [self.item(part) for part in str(value).split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"{self.flag} must be comma-separated {self.item.__name__} values like 500,500; "
                f"got {value!r}"
            ) from None


def _plain(annotation: Any) -> tuple[type, type | None]:
    """``(kind, list item)`` of a field annotation, ``Optional`` stripped."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        lists = [a for a in args if typing.get_origin(a) is list]
        return _plain(lists[0] if lists and len(args) > 1 and not _is_section(args) else args[0])
    if origin is list:
        return list, typing.get_args(annotation)[0]
    return annotation, None


def _is_section(args: list[Any]) -> bool:
    return any(dataclasses.is_dataclass(a) for a in args)


def config_options(
    config_class: type, *, prefix: str = "", dotted: str = "", instance: Any = None
) -> list[ConfigOption]:
    """The options of ``config_class``, sections flattened, in field order.

    A section's defaults are those of its factory's instance (``instance``), which
    may differ from the nested class's own (DBM pretraining is persistent).
    """
    hints = typing.get_type_hints(config_class)
    options = []
    for field in dataclasses.fields(config_class):
        metadata = field.metadata
        if metadata.get("section"):
            made = metadata["factory"]()
            options += config_options(
                type(made),
                prefix=prefix + metadata["prefix"],
                dotted=f"{dotted}{field.name}.",
                instance=made,
            )
            continue
        if not metadata.get("cli", True):
            continue
        kind, item = _plain(hints[field.name])
        if instance is not None:
            default = getattr(instance, field.name)
        elif field.default is dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = field.default
        name = metadata.get("flag") or prefix + field.name
        options.append(
            ConfigOption(
                dotted=dotted + field.name,
                flag="--" + name.replace("_", "-"),
                kind=kind,
                item=item,
                default=default,
                help=metadata.get("help", ""),
                resumable=bool(metadata.get("resumable")),
            )
        )
    return options


def _shown_default(option: ConfigOption) -> str:
    if option.kind is list:
        return "none" if option.default is None else ",".join(map(str, option.default)) or "[]"
    if option.kind is bool:
        return option.flag if option.default else "--no-" + option.flag[2:]
    return "none" if option.default is None else str(option.default)


def option_parameters(options: list[ConfigOption]) -> list[inspect.Parameter]:
    """typer parameters (``Annotated`` with ``typer.Option``) for the generated options."""
    parameters = []
    for option in options:
        help_text = f"{option.help} (default: {_shown_default(option)})"
        if option.resumable:
            help_text += " (may change with --resume)"
        if option.kind is bool:
            names = (f"{option.flag}/--no-{option.flag[2:]}",)
            annotation = Annotated[bool | None, typer.Option(*names, help=help_text)]
        else:
            kind = str if option.kind is list else option.kind
            annotation = Annotated[kind | None, typer.Option(option.flag, help=help_text)]
        parameters.append(
            inspect.Parameter(
                option.parameter,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=annotation,
            )
        )
    return parameters


def given_values(options: list[ConfigOption], values: dict[str, Any]) -> dict[str, Any]:
    """``{dotted key: value}`` for the options the user typed."""
    return {
        option.dotted: option.parse(values[option.parameter])
        for option in options
        if values.get(option.parameter) is not None
    }


def check_unique_flags(name: str, options: list[ConfigOption], reserved: set[str]) -> None:
    """Two fields must never share a flag (a config change that would make one unreachable)."""
    seen: dict[str, str] = {}
    for option in options:
        if option.flag in reserved or option.flag in seen:
            other = seen.get(option.flag, "a control option")
            raise TypeError(
                f"recipe {name!r}: {option.dotted} and {other} both map to {option.flag}"
            )
        seen[option.flag] = option.dotted
