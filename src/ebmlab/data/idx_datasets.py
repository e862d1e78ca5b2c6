"""MNIST and Fashion-MNIST: finding, downloading and reading their IDX files.

Files are looked for, in this order, in ``data_dir``, ``data_dir/NAME`` and
torchvision's ``data_dir/<MNIST|FashionMNIST>/raw`` (when ``data_dir`` is given),
then in the cache folder ``$XDG_CACHE_HOME/ebmlab/NAME`` (default
``~/.cache/ebmlab/NAME``), then in system folders (Debian's
``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist``).
Both files of a split must sit in the same folder, gzip-compressed or not.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ebmlab.data.dataset import Dataset, DatasetNotFoundError
from ebmlab.data.idx import IdxFormatError, read_idx

DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class IdxDatasetSpec:
    """What is fixed about one IDX dataset: its files, mirrors and where systems put it."""

    name: str
    torchvision_folder: str
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...]
    install_hint: str
    n_train: int = 60_000
    n_test: int = 10_000
    image_shape: tuple[int, int] = (28, 28)
    n_classes: int = 10


IDX_DATASETS: dict[str, IdxDatasetSpec] = {
    "mnist": IdxDatasetSpec(
        name="mnist",
        torchvision_folder="MNIST",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        system_dirs=(),
        install_hint="",
    ),
    "fashion-mnist": IdxDatasetSpec(
        name="fashion-mnist",
        torchvision_folder="FashionMNIST",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        install_hint="On Debian/Ubuntu: apt-get install dataset-fashion-mnist "
        "(installs /usr/share/datasets/fashion-mnist).",
    ),
}


def split_files(split: str) -> tuple[str, str]:
    """The gzip file names (images, labels) of a split: ``train`` or ``t10k``."""
    prefix = "train" if split == "train" else "t10k"
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/ebmlab/NAME``, with ``~/.cache`` when XDG_CACHE_HOME is unset."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ebmlab" / name


def search_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    """Folders searched for dataset ``name``'s files, in order."""
    spec = IDX_DATASETS[name]
    dirs = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs += [root, root / name, root / spec.torchvision_folder / "raw"]
    dirs.append(cache_dir(name))
    dirs += [Path(d) for d in spec.system_dirs]
    return dirs


def _existing(folder: Path, gz_name: str) -> Path | None:
    """``folder/gz_name`` or its un-gzipped twin, whichever exists (gzip first)."""
    for candidate in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_split(
    name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> tuple[Path, Path] | None:
    """The (images, labels) files of ``split`` from the first folder holding both, or None."""
    images_name, labels_name = split_files(split)
    for folder in search_dirs(name, data_dir):
        images, labels = _existing(folder, images_name), _existing(folder, labels_name)
        if images is not None and labels is not None:
            return images, labels
    return None


def download_file(url: str, destination: Path, *, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into ``destination`` atomically (temporary file, then rename)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed URLs)
        payload = response.read()
    # Create the folder only once there is something to put in it (no empty cache dirs offline).
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".part")
    with os.fdopen(handle, "wb") as stream:
        stream.write(payload)
    os.replace(temporary, destination)


def _download_split(spec: IdxDatasetSpec, split: str, folder: Path) -> str | None:
    """Download a split's two files into ``folder``; return None or why it failed."""
    for file_name in split_files(split):
        if _existing(folder, file_name) is not None:
            continue
        reasons = []
        for mirror in spec.mirrors:
            try:
                download_file(mirror + file_name, folder / file_name)
                break
            except OSError as error:  # URLError, timeouts and disk errors are all OSErrors
                reasons.append(f"{mirror + file_name}: {error}")
        else:
            return "; ".join(reasons)
    return None


def _not_found(
    spec: IdxDatasetSpec, split: str, looked_in: list[Path], why: str
) -> DatasetNotFoundError:
    images_name, labels_name = split_files(split)
    folders = "\n".join(f"  {folder}" for folder in looked_in)
    urls = "\n".join(f"  {spec.mirrors[0]}{file_name}" for file_name in split_files(split))
    hint = f"\n{spec.install_hint}" if spec.install_hint else ""
    return DatasetNotFoundError(
        f"{spec.name} ({split} split) not found: need {images_name} and {labels_name} "
        f"(or the same names without .gz) in one folder.\nLooked in:\n{folders}\n{why}\n"
        f"To get the files, download\n{urls}\ninto a folder and pass it as data_dir "
        f"(--data-dir on the command line).{hint}"
    )


def _to_dataset(spec: IdxDatasetSpec, images_path: Path, labels_path: Path) -> Dataset:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(
            f"{images_path}: expected uint8 images of shape (N, height, width); got "
            f"{images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise IdxFormatError(
            f"{labels_path}: expected {images.shape[0]} labels (one per image in "
            f"{images_path.name}); got shape {labels.shape}"
        )
    pixels = torch.from_numpy(images.reshape(images.shape[0], -1)).to(torch.float32).div_(255.0)
    targets = torch.from_numpy(labels.astype(np.int64))
    return Dataset(pixels, targets, tuple(images.shape[1:]), spec.name, str(images_path))


def load_idx_dataset(
    name: str, split: str, *, data_dir: str | os.PathLike[str] | None, download: bool
) -> Dataset:
    """Load one split of MNIST or Fashion-MNIST, downloading when allowed and needed."""
    spec = IDX_DATASETS[name]
    found = find_split(name, split, data_dir)
    if found is None:
        target = Path(data_dir).expanduser() if data_dir is not None else cache_dir(name)
        why = "download=False, so no download was tried."
        if download:
            failure = _download_split(spec, split, target)
            why = f"Download into {target} failed: {failure}" if failure else ""
            found = find_split(name, split, data_dir) if not failure else None
        if found is None:
            raise _not_found(spec, split, search_dirs(name, data_dir), why)
    return _to_dataset(spec, *found)
