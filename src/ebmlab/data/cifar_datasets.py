"""CIFAR-10 and CIFAR-100: finding their binary files and loading a split as a ``Dataset``.

Folders are searched in the order of :func:`ebmlab.data.locations.search_dirs`
(``data_dir``, ``data_dir/NAME``, the cache ``~/.cache/ebmlab/NAME``). In each,
the extracted folder (``cifar-10-batches-bin/``, ``cifar-100-binary/``) comes
first, then the files in the folder itself, then the archive as downloaded
(``cifar-10-binary.tar.gz``, ``cifar-100-binary.tar.gz``), read in memory
without extracting. All files of a split must be in one place. Nothing is
downloaded: the error for missing files gives the URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ebmlab.data.cifar import (
    CIFAR_DATASETS,
    IMAGE_SHAPE,
    CifarSpec,
    parse_cifar_records,
    read_cifar_archive,
    read_cifar_file,
)
from ebmlab.data.dataset import Dataset, DatasetNotFoundError
from ebmlab.data.locations import folder_list, search_dirs, where_to_put


@dataclass(frozen=True)
class CifarLocation:
    """Where a split was found: ``kind`` "files" (a folder and its files) or "archive"."""

    kind: str
    path: Path
    files: tuple[Path, ...] = ()


def find_cifar_split(
    name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> CifarLocation | None:
    """The first place holding all of ``split``'s binary files, or None (nothing is opened)."""
    spec = CIFAR_DATASETS[name]
    for folder in search_dirs(name, data_dir):
        for base in (folder / spec.folder, folder):
            paths = tuple(base / file_name for file_name in spec.files[split])
            if all(path.is_file() for path in paths):
                return CifarLocation("files", base, paths)
        archive = folder / spec.archive
        if archive.is_file():
            return CifarLocation("archive", archive)
    return None


def _pickle_copy(spec: CifarSpec, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """A copy of the Python (pickle) distribution in the searched folders, if there is one."""
    for folder in search_dirs(spec.name, data_dir):
        if folder.name in spec.pickle_names and folder.is_dir():
            return folder  # data_dir points into the extracted pickle folder itself
        for marker in spec.pickle_names:
            if (folder / marker).exists():
                return folder / marker
    return None


def how_to_get(spec: CifarSpec, data_dir: str | os.PathLike[str] | None) -> str:
    """One line: the binary distribution's URL and where to put it."""
    return (
        f"download {spec.url} (the binary version; the archive or its extracted "
        f"{spec.folder}/) into {where_to_put(spec.name, data_dir)} or a --data-dir folder; "
        f"ebmlab downloads nothing itself"
    )


def _not_found(
    spec: CifarSpec, split: str, data_dir: str | os.PathLike[str] | None
) -> DatasetNotFoundError:
    get = how_to_get(spec, data_dir)
    pickled = _pickle_copy(spec, data_dir)
    if pickled is not None:
        return DatasetNotFoundError(
            f"{pickled}: this is {spec.title}'s Python version ({spec.pickle_url}), which "
            f"ebmlab does not read: loading a pickle runs whatever code the file names. "
            f"Instead, {get}."
        )
    return DatasetNotFoundError(
        f"{spec.name} ({split} split) not found: need {', '.join(spec.files[split])} in "
        f"{spec.folder}/ (or in the folder itself), or the archive {spec.archive}.\n"
        f"Looked in:\n{folder_list(search_dirs(spec.name, data_dir))}\n"
        f"To get the files, {get}."
    )


def _to_dataset(
    spec: CifarSpec, parts: list[tuple[np.ndarray, np.ndarray]], source: str
) -> Dataset:
    # np.concatenate copies, even for one part: torch then gets a writable array, not a
    # view of the (read-only) bytes read from disk.
    pixels = np.concatenate([pixels for pixels, _ in parts])
    labels = torch.from_numpy(np.concatenate([labels for _, labels in parts]))
    images = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
    # The last label byte is the class (CIFAR-100's fine label); any before it are kept.
    extra = {
        label_name: labels[:, column].contiguous()
        for column, label_name in enumerate(spec.label_names[:-1])
    }
    return Dataset(
        images, labels[:, -1].contiguous(), IMAGE_SHAPE, spec.name, source, extra_labels=extra
    )


def load_cifar_dataset(
    name: str, split: str, *, data_dir: str | os.PathLike[str] | None
) -> Dataset:
    """Load one split of CIFAR-10 or CIFAR-100 from its binary files or archive.

    Returns
    -------
    Dataset
        ``images`` float32 (N, 3072) in [0, 1] (pixel bytes / 255, channel-major),
        ``image_shape`` (3, 32, 32), ``labels`` int64 (N,): CIFAR-10's class or
        CIFAR-100's fine label (0..99); CIFAR-100's coarse label (0..19) is
        ``extra_labels["coarse"]``. ``source`` is the folder or the archive.

    Raises
    ------
    DatasetNotFoundError
        When no searched folder has the split (the message lists them and gives the
        URL), or only the Python pickle version is there.
    DataFormatError
        (a ``ValueError``) naming the file when it is truncated, too long, has
        labels out of range, or the archive is unsafe or unreadable.
    """
    spec = CIFAR_DATASETS[name]
    location = find_cifar_split(name, split, data_dir)
    if location is None:
        raise _not_found(spec, split, data_dir)
    n_records = spec.records_per_file(split)
    if location.kind == "files":
        parts = [
            read_cifar_file(path, dataset=name, n_records=n_records) for path in location.files
        ]
    else:
        parts = [
            parse_cifar_records(content, dataset=name, source=source, n_records=n_records)
            for source, content in read_cifar_archive(location.path, dataset=name, split=split)
        ]
    return _to_dataset(spec, parts, str(location.path))


def cifar_info(name: str, data_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``dataset_info``'s fields for a CIFAR set, from file names only (nothing is opened)."""
    spec = CIFAR_DATASETS[name]
    found = {split: find_cifar_split(name, split, data_dir) for split in ("train", "test")}
    pickled = _pickle_copy(spec, data_dir)
    get = how_to_get(spec, data_dir)
    if pickled is not None:
        get = f"{pickled} is the Python (pickle) version, which ebmlab does not read; {get}"
    return {
        "kind": "colour image (CIFAR binary files)",
        "shape": list(IMAGE_SHAPE),
        "n_classes": spec.n_classes,
        "n_train": spec.n_train,
        "n_test": spec.n_test,
        "available": all(found.values()),
        "found_at": next((str(where.path) for where in found.values() if where), None),
        "source": {split: str(where.path) if where else None for split, where in found.items()},
        "searched": [str(folder) for folder in search_dirs(name, data_dir)],
        "how_to_get": get,
    }
