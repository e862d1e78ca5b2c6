"""Config fields that carry their help text: one declaration for the API, the CLI and the docs.

Used by every config dataclass (training/ and experiments/ alike); the command
line is generated from this metadata (:mod:`ebmlab.cli.config_options`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

#: ``option(..., before=NOT_NEW)``: the field existed from the start.
NOT_NEW = object()


def option(
    default: Any,
    help: str,
    *,
    resumable: bool = False,
    cli: bool = True,
    flag: str | None = None,
    before: Any = NOT_NEW,
) -> Any:
    """A config field with its help text.

    Parameters
    ----------
    default : object
        The default; a list is copied per instance.
    help : str
        One sentence for ``--help`` and the docs.
    resumable : bool
        Whether ``--resume`` may change it (e.g. the length of a run).
    cli : bool
        Whether the command line offers it (otherwise only a YAML file sets it).
    flag : str, optional
        The option's name without dashes when the section prefix does not fit
        (``"patience"`` keeps ``--patience`` inside the ``finetune-`` section).
    before : object, optional
        For a field added after runs were saved without it: the value that reproduces
        what those runs did (e.g. ``centering=False`` for runs that predate centering),
        given to a run folder's config that lacks the key. A user's own partial config
        file still gets ``default``.
    """
    metadata = {"help": help, "resumable": resumable, "cli": cli, "flag": flag, "before": before}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def section(
    factory: Callable[[], Any], help: str, *, prefix: str = "", default_none: bool = False
) -> Any:
    """A nested config (e.g. the optimiser's settings) whose fields become options.

    ``prefix`` is put before the nested option names on the command line
    (``"finetune-"`` gives ``--finetune-epochs``); the default ``""`` lists them
    as if they were the recipe's own. ``default_none`` leaves the default at None
    for the config's ``__post_init__`` to fill (defaults that depend on other
    fields); ``factory`` still gives the section's options.
    """
    metadata = {"help": help, "prefix": prefix, "section": True, "factory": factory}
    if default_none:
        return dataclasses.field(default=None, metadata=metadata)
    return dataclasses.field(default_factory=factory, metadata=metadata)
