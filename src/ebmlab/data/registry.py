"""Datasets by name: ``load_dataset``, ``list_datasets`` and ``dataset_info``."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from ebmlab._validation import check_choice
from ebmlab.data.cifar import CIFAR_DATASETS
from ebmlab.data.cifar_datasets import cifar_info, load_cifar_dataset
from ebmlab.data.dataset import Dataset
from ebmlab.data.digits import DIGITS_SOURCE, DIGITS_SPLIT_SEED, load_digits_dataset
from ebmlab.data.idx_datasets import IDX_DATASETS, find_split, load_idx_dataset, search_dirs
from ebmlab.data.svhn import load_svhn_dataset, svhn_info
from ebmlab.data.synthetic import bars_and_stripes, bars_and_stripes_labels
from ebmlab.data.toy2d import TOY2D_NAMES, sample_toy2d

SPLITS = ("train", "test")
TOY2D_SIZES = {"train": 10_000, "test": 2_000}
TOY2D_SEEDS = {"train": 0, "test": 1}
BARS_AND_STRIPES_SIZE = 4
_BARS_AND_STRIPES = re.compile(r"bars-and-stripes(?:-(\d+))?")


def list_datasets() -> list[str]:
    """Every registered dataset name (``bars-and-stripes-N`` also loads an N x N variant)."""
    return ["digits", *IDX_DATASETS, "bars-and-stripes", *CIFAR_DATASETS, "svhn", *TOY2D_NAMES]


def _canonical(name: object) -> str:
    """Lower-case, ``_`` -> ``-``; raise a ValueError listing valid names when unknown."""
    if isinstance(name, str):
        key = name.strip().lower().replace("_", "-")
        if key in list_datasets() or _BARS_AND_STRIPES.fullmatch(key):
            return key
    raise ValueError(
        f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())} "
        f"(and bars-and-stripes-N for an N x N variant)"
    )


def _bars_and_stripes_size(key: str) -> int:
    match = _BARS_AND_STRIPES.fullmatch(key)
    return int(match.group(1)) if match and match.group(1) else BARS_AND_STRIPES_SIZE


def _load_bars_and_stripes(key: str) -> Dataset:
    n = _bars_and_stripes_size(key)
    images = bars_and_stripes(n)
    return Dataset(
        images, bars_and_stripes_labels(n), (n, n), key, f"generated: bars_and_stripes({n})"
    )


def _load_toy2d(key: str, split: str) -> Dataset:
    seed, n = TOY2D_SEEDS[split], TOY2D_SIZES[split]
    points = sample_toy2d(key, n, generator=torch.Generator().manual_seed(seed))
    labels = torch.zeros(n, dtype=torch.int64)
    source = f"generated: sample_toy2d({key!r}, {n}, generator seeded {seed})"
    return Dataset(points, labels, (1, 2), key, source)


def load_dataset(
    name: str,
    *,
    split: str = "train",
    data_dir: str | Path | None = None,
    download: bool = True,
) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` (case-insensitive; ``_`` and ``-`` are
        interchangeable), or ``bars-and-stripes-N`` for an N x N variant.
    split : {"train", "test"}
        Which part. ``digits`` uses a fixed stratified 80/20 split (seed
        ``DIGITS_SPLIT_SEED = 0``); bars-and-stripes has no split and gives the
        same full set for both; toy 2-D sets draw 10,000 train points with seed 0
        and 2,000 test points with seed 1.
    data_dir : str or Path, optional
        Folder with the dataset's files (searched first, then ``data_dir/NAME``,
        then the cache ``~/.cache/ebmlab/NAME``), and where IDX downloads go.
    download : bool
        Try downloading missing MNIST / Fashion-MNIST IDX files (10 s timeout).
        CIFAR-10, CIFAR-100 and SVHN are never downloaded: their error names
        the URLs.

    Returns
    -------
    Dataset
        ``images`` float32 (N, D) in [0, 1] for image sets (real-valued points
        for toy 2-D sets), ``labels`` int64 (N,). ``image_shape`` is (height,
        width) for grey sets and (3, 32, 32) for ``cifar10``, ``cifar100`` and
        ``svhn`` (rows channel-major); CIFAR-100's coarse labels are
        ``extra_labels["coarse"]``.

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the valid names) or ``split``.
    DatasetNotFoundError
        (a ``FileNotFoundError``) when files are missing and cannot be
        downloaded; the message names the folders looked in and how to get them.
        Also when only CIFAR's Python (pickle) version is found: it is never read.
    IdxFormatError, DataFormatError
        (``ValueError``s) when a file is truncated or corrupt; the message names it.
    """
    key = _canonical(name)
    check_choice("split", split, SPLITS)
    if key == "digits":
        return load_digits_dataset(split)
    if key in IDX_DATASETS:
        return load_idx_dataset(key, split, data_dir=data_dir, download=download)
    if key in CIFAR_DATASETS:
        return load_cifar_dataset(key, split, data_dir=data_dir)
    if key == "svhn":
        return load_svhn_dataset(split, data_dir=data_dir)
    if key in TOY2D_NAMES:
        return _load_toy2d(key, split)
    return _load_bars_and_stripes(key)


def _idx_info(key: str, data_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    spec = IDX_DATASETS[key]
    found = {split: find_split(key, split, data_dir) for split in SPLITS}
    return {
        "kind": "image (IDX files)",
        "shape": list(spec.image_shape),
        "n_classes": spec.n_classes,
        "n_train": spec.n_train,
        "n_test": spec.n_test,
        "available": all(found.values()),
        "found_at": next((str(p[0].parent) for p in found.values() if p), None),
        "source": {
            split: str(paths[0].parent) if paths else None for split, paths in found.items()
        },
        "searched": [str(folder) for folder in search_dirs(key, data_dir)],
        "how_to_get": f"downloaded on first load from {spec.mirrors[0]} into --data-dir or "
        f"the cache{'; ' + spec.install_hint if spec.install_hint else ''}",
    }


def _generated_info(key: str) -> dict[str, Any]:
    if key == "digits":
        kind, shape, n_classes, sizes = "image (bundled with scikit-learn)", [8, 8], 10, (1438, 359)
        source = f"{DIGITS_SOURCE}, stratified 80/20 split with seed {DIGITS_SPLIT_SEED}"
    elif key in TOY2D_NAMES:
        kind, shape, n_classes = "toy 2-D points (real-valued)", [1, 2], 1
        sizes, source = (TOY2D_SIZES["train"], TOY2D_SIZES["test"]), "generated by sample_toy2d"
    else:
        n = _bars_and_stripes_size(key)
        kind, shape, n_classes = "binary patterns (bars 0, stripes 1)", [n, n], 2
        sizes, source = (2 ** (n + 1) - 2,) * 2, f"generated by bars_and_stripes({n})"
    return {
        "kind": kind,
        "shape": shape,
        "n_classes": n_classes,
        "n_train": sizes[0],
        "n_test": sizes[1],
        "available": True,
        "found_at": source,
        "source": source,
        "searched": [],
    }


def dataset_info(name: str, *, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Describe a dataset without loading it (and without downloading anything).

    Returns
    -------
    dict
        ``name``, ``kind``, ``shape`` ([height, width]; [3, 32, 32] for the
        colour sets), ``n_features``,
        ``n_classes``, ``n_train``, ``n_test``, ``available`` (bool),
        ``found_at`` (one line: the folder of the first split found, None when
        none is; the generator or bundle for built-in sets), ``source`` (the
        same per split for IDX sets: ``{"train": folder or None, "test": ...}``;
        the description otherwise) and ``searched``
        (folders looked in, in order; empty for built-in sets); sets read from
        files also have ``how_to_get`` (one line: URLs, where to put them). Only plain
        str/int/bool/list/dict/None values, so it prints as JSON or YAML.
    """
    key = _canonical(name)
    if key in IDX_DATASETS:
        info = _idx_info(key, data_dir)
    elif key in CIFAR_DATASETS:
        info = cifar_info(key, data_dir)
    elif key == "svhn":
        info = svhn_info(data_dir)
    else:
        info = _generated_info(key)
    info = {"name": key, **info}
    info["n_features"] = math.prod(info["shape"])
    return info
