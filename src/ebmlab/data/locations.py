"""Where the files of datasets that ebmlab does not download (CIFAR, SVHN) are looked for."""

from __future__ import annotations

import os
from pathlib import Path

from ebmlab.data.idx_datasets import cache_dir


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Folders searched for dataset ``name``'s files, in order.

    ``data_dir`` and ``data_dir/NAME`` when ``data_dir`` is given, then the cache
    folder ``$XDG_CACHE_HOME/ebmlab/NAME`` (default ``~/.cache/ebmlab/NAME``), the
    same cache the downloadable IDX sets use.
    """
    dirs = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs += [root, root / name]
    dirs.append(cache_dir(name))
    return dirs


def folder_list(folders: list[Path]) -> str:
    """One indented line per folder, for error messages."""
    return "\n".join(f"  {folder}" for folder in folders)


def where_to_put(name: str, data_dir: str | os.PathLike[str] | None) -> str:
    """The folder a user should put the files in: ``data_dir``, else the cache."""
    return str(Path(data_dir).expanduser() if data_dir is not None else cache_dir(name))
