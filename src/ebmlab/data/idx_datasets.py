"""MNIST and Fashion-MNIST: finding, downloading and reading their IDX files.

Files are looked for, in this order, in ``data_dir``, ``data_dir/NAME`` and
torchvision's ``data_dir/<MNIST|FashionMNIST>/raw`` (when ``data_dir`` is given),
then in the cache folder ``$XDG_CACHE_HOME/ebmlab/NAME`` (default
``~/.cache/ebmlab/NAME``), then in system folders (Debian's
``dataset-fashion-mnist`` package installs ``/usr/share/datasets/fashion-mnist``).
Both files of a split must sit in the same folder, gzip-compressed or not.

Downloads use https only (redirects to anything else are refused), stream into
a temporary file next to the destination, stop as soon as more bytes arrive
than the file's known size, and are renamed into place only when the size and
the SHA-256 digest match the published file. Files already on disk are not
checked against the digests: users may supply recompressed copies (Debian's
gzip files differ byte for byte from the originals); their content is checked
by the IDX reader instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ebmlab._validation import check_positive_int
from ebmlab.data.dataset import Dataset, DatasetNotFoundError
from ebmlab.data.idx import IdxFormatError, read_idx, read_idx_header

DOWNLOAD_TIMEOUT_S = 10.0
_DOWNLOAD_CHUNK = 1 << 20
#: Ceiling on the data one dataset file's IDX header may declare (256 MiB): over five
#: times MNIST's largest file (47 MB), and the float32 copy of the images then stays
#: under 1 GiB. A header declaring more is refused before anything is decompressed.
MAX_IDX_FILE_BYTES = 256 << 20


class DownloadError(OSError):
    """A download was refused: not https, larger than the file's known size, or not that file.

    An ``OSError`` like network failures, so the next mirror is tried.
    """


@dataclass(frozen=True)
class PublishedFile:
    """Size in bytes and SHA-256 digest (hex) of one file as its publisher distributes it."""

    size: int
    sha256: str


@dataclass(frozen=True)
class IdxDatasetSpec:
    """What is fixed about one IDX dataset: its files, mirrors and where systems put it."""

    name: str
    torchvision_folder: str
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...]
    install_hint: str
    files: dict[str, PublishedFile] = field(default_factory=dict)
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
        # The original files of yann.lecun.com/exdb/mnist, as every mirror serves them
        # (the digests torchvision, TensorFlow Datasets and others pin).
        files={
            "train-images-idx3-ubyte.gz": PublishedFile(
                9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
            ),
            "train-labels-idx1-ubyte.gz": PublishedFile(
                28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
            ),
            "t10k-images-idx3-ubyte.gz": PublishedFile(
                1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
            ),
            "t10k-labels-idx1-ubyte.gz": PublishedFile(
                4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
            ),
        },
    ),
    "fashion-mnist": IdxDatasetSpec(
        name="fashion-mnist",
        torchvision_folder="FashionMNIST",
        # Zalando's own S3 site serves plain http only; these two serve the same files
        # over https (Keras' mirror, and the dataset's repository).
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        install_hint="On Debian/Ubuntu: apt-get install dataset-fashion-mnist "
        "(installs /usr/share/datasets/fashion-mnist).",
        # The files of github.com/zalandoresearch/fashion-mnist (data/fashion/). Debian's
        # copies hold the same data recompressed without the file name, 23-24 bytes shorter.
        files={
            "train-images-idx3-ubyte.gz": PublishedFile(
                26_421_880, "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"
            ),
            "train-labels-idx1-ubyte.gz": PublishedFile(
                29_515, "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"
            ),
            "t10k-images-idx3-ubyte.gz": PublishedFile(
                4_422_102, "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"
            ),
            "t10k-labels-idx1-ubyte.gz": PublishedFile(
                5_148, "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"
            ),
        },
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


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https URLs: a mirror must not downgrade the download."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlsplit(newurl).scheme != "https":
            raise DownloadError(
                f"{req.full_url} redirects to {newurl}; only https downloads are allowed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for streaming (the one place the network is touched; tests replace it)."""
    opener = urllib.request.build_opener(_HttpsOnlyRedirects)
    return opener.open(url, timeout=timeout)  # type: ignore[return-value]


def _declared_length(response: object) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value is not None and str(value).isdigit() else None


def download_file(
    url: str,
    destination: Path,
    *,
    size: int,
    sha256: str,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> None:
    """Fetch ``url`` into ``destination`` if it is exactly the expected file.

    Parameters
    ----------
    url : str
        An ``https://`` URL; any other scheme, or a redirect to one, is refused.
    destination : Path
        Where the file goes; its folder is created once the server answers.
    size : int
        The file's exact size in bytes. The transfer stops as soon as more arrive,
        so a hostile or broken server cannot fill the disk.
    sha256 : str
        The file's SHA-256 digest (64 hex digits).
    timeout : float
        Seconds to wait for the server at each step.

    Raises
    ------
    DownloadError
        (an ``OSError``) naming the URL when the scheme is not https, the file is
        larger or smaller than ``size``, or its digest is not ``sha256``.
        Nothing is left at ``destination`` or in its folder.
    OSError
        Network and disk errors, as raised.

    Notes
    -----
    The body streams into a temporary file in the destination's folder, hashed on
    the way, then is fsynced and renamed into place only once size and digest
    match: a crash or a bad file never leaves a partial ``destination``.
    """
    check_positive_int("size", size)
    if not (isinstance(sha256, str) and re.fullmatch("[0-9a-f]{64}", sha256)):
        raise ValueError(f"sha256 must be 64 lower-case hex digits; got {sha256!r}")
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https":
        raise DownloadError(f"{url}: only https downloads are allowed; got scheme {scheme!r}")
    with _open_url(url, timeout) as response:
        declared = _declared_length(response)
        if declared is not None and declared > size:
            raise DownloadError(
                f"{url}: server announces {declared} bytes; expected the {size}-byte file"
            )
        # Create the folder only once there is something to put in it (no empty cache dirs
        # offline).
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
        )
        try:
            digest, received = hashlib.sha256(), 0
            with os.fdopen(handle, "wb") as stream:
                while chunk := response.read(_DOWNLOAD_CHUNK):
                    received += len(chunk)
                    if received > size:
                        raise DownloadError(
                            f"{url}: more than the expected {size} bytes arrived; download stopped"
                        )
                    digest.update(chunk)
                    stream.write(chunk)
                stream.flush()
                os.fsync(stream.fileno())
            if received != size:
                raise DownloadError(f"{url}: got {received} bytes; expected {size}")
            if digest.hexdigest() != sha256:
                raise DownloadError(
                    f"{url}: SHA-256 {digest.hexdigest()} does not match the published "
                    f"{sha256}; file discarded"
                )
            os.replace(temporary, destination)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def _download_split(spec: IdxDatasetSpec, split: str, folder: Path) -> str | None:
    """Download a split's two files into ``folder``; return None or why it failed."""
    for file_name in split_files(split):
        if _existing(folder, file_name) is not None:
            continue
        published = spec.files[file_name]
        reasons = []
        for mirror in spec.mirrors:
            try:
                download_file(
                    mirror + file_name,
                    folder / file_name,
                    size=published.size,
                    sha256=published.sha256,
                )
                break
            except OSError as error:  # URLError, timeouts, disk and DownloadErrors
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


def _check_other_split(
    spec: IdxDatasetSpec, split: str, images_path: Path, image_shape: tuple[int, ...], data_dir
) -> None:
    """Refuse a split whose images differ in size from the other split's (read from its header).

    Models are built from the train split and evaluated on the test split, so a
    mismatch would otherwise surface only at evaluation, after training.
    """
    other = "test" if split == "train" else "train"
    found = find_split(spec.name, other, data_dir)
    if found is None:
        return  # nothing to compare with (yet): the other split's own load reports it
    _, other_shape = read_idx_header(found[0])
    if tuple(other_shape[1:]) != tuple(image_shape):
        shapes = {split: (image_shape, images_path), other: (tuple(other_shape[1:]), found[0])}
        train, test = shapes["train"], shapes["test"]
        raise IdxFormatError(
            f"{spec.name}: train and test images must have the same size; train images "
            f"are {train[0]} ({train[1]}) but test images are {test[0]} ({test[1]})"
        )


def _to_dataset(
    spec: IdxDatasetSpec, split: str, images_path: Path, labels_path: Path, data_dir
) -> Dataset:
    images = read_idx(images_path, max_bytes=MAX_IDX_FILE_BYTES)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(
            f"{images_path}: expected uint8 images of shape (N, height, width); got "
            f"{images.dtype} of shape {images.shape}"
        )
    _check_other_split(spec, split, images_path, images.shape[1:], data_dir)
    labels = read_idx(labels_path, max_bytes=MAX_IDX_FILE_BYTES)
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
    return _to_dataset(spec, split, *found, data_dir)
