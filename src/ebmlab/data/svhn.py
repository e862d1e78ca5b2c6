"""SVHN (cropped digits) from its MATLAB files ``train_32x32.mat`` and ``test_32x32.mat``.

Each file holds ``X``, uint8 of shape (32, 32, 3, N) (height, width, RGB
channel, image), and ``y``, shape (N, 1), the digit with 10 standing for 0.
ebmlab maps 10 to 0 (labels 0..9 like MNIST's) and flattens each image
channel-major, like CIFAR: ``X[:, :, :, n].transpose(2, 0, 1)``, so a row
reshapes to (3, 32, 32).

Files are looked for in :func:`ebmlab.data.locations.search_dirs` (``data_dir``,
``data_dir/svhn``, the cache ``~/.cache/ebmlab/svhn``). Before ``scipy.io.loadmat``
reads anything, the MAT-file's variable headers are scanned (inflating at most
a few hundred bytes of each compressed variable) and the declared shapes,
types and sizes checked, so a corrupt or hostile file is refused before it
is decompressed. Nothing is downloaded.

References
----------
Netzer, Y., Wang, T., Coates, A., Bissacco, A., Wu, B. & Ng, A. Y. Reading
digits in natural images with unsupervised feature learning. NIPS Workshop on
Deep Learning and Unsupervised Feature Learning, 2011.
MathWorks, MAT-File Format (version 5 layout: 128-byte header, tagged data
elements, miCOMPRESSED elements holding one zlib-compressed miMATRIX).
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ebmlab.data.dataset import DataFormatError, Dataset, DatasetNotFoundError
from ebmlab.data.locations import folder_list, search_dirs, where_to_put

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
#: Images per split in the published files; a file with another count is refused.
SVHN_SIZES = {"train": 73_257, "test": 26_032}
IMAGE_SHAPE = (3, 32, 32)
#: Ceiling on the data a variable of an SVHN file may declare (512 MiB): the train
#: images are 225 MB. Checked from the variable's header, before anything is inflated.
MAX_SVHN_VARIABLE_BYTES = 512 << 20
_MAX_ELEMENTS = 64
_PREFIX_BYTES = 512
_MI_MATRIX, _MI_COMPRESSED = 14, 15
# MATLAB array class -> bytes per value, for the numeric classes (double .. uint64).
_CLASS_BYTES = {6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}
_MX_UINT8 = 9
_COMPLEX_FLAG = 0x0800


@dataclass(frozen=True)
class MatVariable:
    """One variable's header: ``name``, ``shape``, MATLAB class code, data bytes stored."""

    name: str
    shape: tuple[int, ...]
    mat_class: int
    complex: bool
    data_bytes: int

    @property
    def declared_bytes(self) -> int:
        """Bytes the loaded array takes (0 for non-numeric classes, which have no fixed size)."""
        return math.prod(self.shape) * _CLASS_BYTES.get(self.mat_class, 0)


def _tag(prefix: bytes, offset: int, order: str) -> tuple[int, int, int, int]:
    """(type, bytes, where the data starts, where the next element starts) of a data element."""
    first, second = struct.unpack_from(order + "II", prefix, offset)
    if first >> 16:  # "small data element": type and size share 4 bytes, data in the next 4
        return first & 0xFFFF, first >> 16, offset + 4, offset + 8
    return first, second, offset + 8, offset + 8 + (second + 7) // 8 * 8


def _parse_matrix(prefix: bytes, order: str) -> MatVariable:
    """The header of an miMATRIX element (flags, dimensions, name, first data tag)."""
    mdtype, _, body, _ = _tag(prefix, 0, order)
    if mdtype != _MI_MATRIX:
        raise ValueError(f"expected a matrix element (type {_MI_MATRIX}); got type {mdtype}")
    _, _, flags_at, after_flags = _tag(prefix, body, order)
    flags = struct.unpack_from(order + "I", prefix, flags_at)[0]
    _, dims_bytes, dims_at, after_dims = _tag(prefix, after_flags, order)
    shape = struct.unpack_from(f"{order}{dims_bytes // 4}i", prefix, dims_at)
    _, name_bytes, name_at, after_name = _tag(prefix, after_dims, order)
    name = prefix[name_at : name_at + name_bytes].decode("latin-1")
    mat_class = flags & 0xFF
    data_bytes = _tag(prefix, after_name, order)[1] if mat_class in _CLASS_BYTES else 0
    return MatVariable(name, tuple(shape), mat_class, bool(flags & _COMPLEX_FLAG), data_bytes)


def _inflate_prefix(stream: BinaryIO, n_bytes: int) -> bytes:
    """The first :data:`_PREFIX_BYTES` of a compressed element, inflating no more than that."""
    inflater, out, remaining, pending = zlib.decompressobj(), b"", n_bytes, b""
    while len(out) < _PREFIX_BYTES and not inflater.eof:
        if not pending:
            pending = stream.read(min(remaining, 1 << 16))
            remaining -= len(pending)
            if not pending:
                break
        out += inflater.decompress(pending, _PREFIX_BYTES - len(out))
        pending = inflater.unconsumed_tail
    return out


def _read_mat_header(stream: BinaryIO, path: Path) -> str:
    """Check the 128-byte MAT-file header; return the byte order ("<" or ">")."""
    header = stream.read(128)
    if len(header) < 128 or header[126:128] not in (b"IM", b"MI"):
        raise DataFormatError(
            f"{path}: not a MATLAB 5 MAT-file (no 128-byte header with a byte-order mark)"
        )
    order = "<" if header[126:128] == b"IM" else ">"
    version = struct.unpack_from(order + "H", header, 124)[0]
    if version != 0x0100:
        raise DataFormatError(
            f"{path}: MAT-file version 0x{version:04x}; expected a MATLAB 5 file (0x0100) as "
            f"SVHN publishes (v7.3/HDF5 files are not read)"
        )
    return order


def mat_variables(path: str | os.PathLike[str]) -> dict[str, MatVariable]:
    """The variables of a MATLAB 5 MAT-file from their headers, without reading their data.

    Raises
    ------
    DataFormatError
        (a ``ValueError``) naming the file when it is not a MATLAB 5 file or an
        element header is malformed or cut short.
    """
    path = Path(path)
    size, variables, position = path.stat().st_size, {}, 128
    with open(path, "rb") as stream:
        order = _read_mat_header(stream, path)
        for _ in range(_MAX_ELEMENTS):
            if position >= size:
                return variables
            stream.seek(position)
            tag = stream.read(8)
            try:
                mdtype, n_bytes = struct.unpack(order + "II", tag)
                if position + 8 + n_bytes > size:
                    raise ValueError(f"element at byte {position} runs past the end of the file")
                if mdtype == _MI_COMPRESSED:
                    prefix = _inflate_prefix(stream, n_bytes)
                else:
                    prefix = tag + stream.read(min(n_bytes, _PREFIX_BYTES))
                variable = _parse_matrix(prefix, order)
            except (struct.error, ValueError, zlib.error) as error:
                raise DataFormatError(f"{path}: malformed MAT-file ({error})") from error
            variables[variable.name] = variable
            position += 8 + n_bytes
    raise DataFormatError(f"{path}: more than {_MAX_ELEMENTS} variables; not an SVHN file")


def _check_size(path: Path, variable: MatVariable) -> None:
    stored_limit = math.prod(variable.shape) * 8  # no MATLAB type is wider than 8 bytes
    if variable.declared_bytes > MAX_SVHN_VARIABLE_BYTES or variable.data_bytes > stored_limit:
        raise DataFormatError(
            f"{path}: variable {variable.name} declares {variable.declared_bytes:,} bytes "
            f"({variable.data_bytes:,} stored); the limit is {MAX_SVHN_VARIABLE_BYTES:,} "
            f"bytes of data and 8 bytes per value: refusing to read it"
        )


def _check_headers(path: Path, variables: dict[str, MatVariable], n_images: int | None) -> None:
    """Refuse, from the headers alone, anything but SVHN's X (32x32x3xN uint8) and y (Nx1)."""
    if "X" not in variables or "y" not in variables:
        raise DataFormatError(f"{path}: needs variables X and y; has {sorted(variables)}")
    x, y = variables["X"], variables["y"]
    if x.mat_class != _MX_UINT8 or x.complex or len(x.shape) != 4 or x.shape[:3] != (32, 32, 3):
        raise DataFormatError(
            f"{path}: X must be uint8 of shape (32, 32, 3, N); got MATLAB class {x.mat_class} "
            f"of shape {x.shape}"
        )
    _check_size(path, x)  # before anything else: this is the guard against inflating a bomb
    n = x.shape[-1]
    if y.mat_class not in _CLASS_BYTES or y.complex or y.shape not in ((n, 1), (1, n)):
        raise DataFormatError(
            f"{path}: y must be numeric of shape ({n}, 1), one label per image of X; got MATLAB "
            f"class {y.mat_class} of shape {y.shape}"
        )
    _check_size(path, y)
    if n_images is not None and n != n_images:
        state = "truncated" if n < n_images else "too long"
        raise DataFormatError(f"{path}: {state}: holds {n:,} images; expected {n_images:,}")


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        import scipy.io
    except ImportError as error:  # scipy is a dependency; this is for broken installs
        raise ImportError("reading SVHN's .mat files needs scipy (pip install scipy)") from error
    try:
        return scipy.io.loadmat(path, variable_names=["X", "y"])
    except (
        ValueError,
        TypeError,
        NotImplementedError,
        zlib.error,
        struct.error,
        EOFError,
    ) as error:
        raise DataFormatError(f"{path}: unreadable MAT-file ({error})") from error


def _labels(path: Path, y: np.ndarray) -> np.ndarray:
    """y (N, 1) or (1, N) with digits 1..10 -> int64 (N,) with 10 -> 0."""
    values = np.asarray(y).reshape(-1)
    if not np.issubdtype(values.dtype, np.number):
        raise DataFormatError(f"{path}: y must be numeric; got {values.dtype}")
    valid = (values == np.round(values)) & (values >= 1) & (values <= 10)
    bad = np.flatnonzero(~valid)
    if bad.size:
        raise DataFormatError(
            f"{path}: y must hold the digits 1..10 (10 for digit 0); got {values[bad[0]].item()} "
            f"at image {bad[0]} ({bad.size} invalid labels)"
        )
    return values.astype(np.int64) % 10


def read_svhn_file(
    path: str | os.PathLike[str], *, n_images: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one SVHN ``.mat`` file into flattened images and labels.

    Parameters
    ----------
    path : str or path-like
        ``train_32x32.mat`` or ``test_32x32.mat`` (MATLAB 5, as published).
    n_images : int, optional
        Images the file must hold; None accepts any number.

    Returns
    -------
    images : torch.Tensor
        float32 (N, 3072) in [0, 1]: ``X / 255``, each image channel-major (R, G, B
        planes), so ``images[n].reshape(3, 32, 32)[c, i, j] == X[i, j, c, n] / 255``.
    labels : torch.Tensor
        int64 (N,), digits 0..9 (the file's 10 is digit 0).

    Raises
    ------
    DataFormatError
        (a ``ValueError``) naming the file when it is not a MATLAB 5 file, X or y
        has the wrong type or shape, the count is not ``n_images``, a variable
        is over :data:`MAX_SVHN_VARIABLE_BYTES`, or a label is not 1..10.
    """
    path = Path(path)
    _check_headers(path, mat_variables(path), n_images)
    contents = _loadmat(path)
    x = contents["X"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DataFormatError(f"{path}: X loaded as {x.dtype} of shape {x.shape}")
    labels = _labels(path, contents["y"])
    if labels.shape[0] != x.shape[3]:
        raise DataFormatError(f"{path}: {labels.shape[0]} labels for {x.shape[3]} images")
    # (height, width, channel, image) -> (image, channel, height, width): CIFAR's layout.
    pixels = np.ascontiguousarray(x.transpose(3, 2, 0, 1)).reshape(x.shape[3], -1)
    images = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
    return images, torch.from_numpy(labels)


def find_svhn_split(split: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The first ``SPLIT_32x32.mat`` in the searched folders, or None."""
    for folder in search_dirs("svhn", data_dir):
        if (folder / SVHN_FILES[split]).is_file():
            return folder / SVHN_FILES[split]
    return None


def how_to_get(data_dir: str | os.PathLike[str] | None) -> str:
    """One line: the files' URLs and where to put them."""
    urls = " and ".join(SVHN_URL + name for name in SVHN_FILES.values())
    return (
        f"download {urls} into {where_to_put('svhn', data_dir)} or a --data-dir folder; "
        f"ebmlab downloads nothing itself"
    )


def load_svhn_dataset(split: str, *, data_dir: str | os.PathLike[str] | None) -> Dataset:
    """Load one split of SVHN; see :func:`read_svhn_file` for the layout and the checks."""
    path = find_svhn_split(split, data_dir)
    if path is None:
        raise DatasetNotFoundError(
            f"svhn ({split} split) not found: need {SVHN_FILES[split]}.\n"
            f"Looked in:\n{folder_list(search_dirs('svhn', data_dir))}\n"
            f"To get the files, {how_to_get(data_dir)}."
        )
    images, labels = read_svhn_file(path, n_images=SVHN_SIZES[split])
    return Dataset(images, labels, IMAGE_SHAPE, "svhn", str(path))


def svhn_info(data_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``dataset_info``'s fields for SVHN, from file names only (nothing is opened)."""
    found = {split: find_svhn_split(split, data_dir) for split in SVHN_FILES}
    return {
        "kind": "colour image (SVHN .mat files)",
        "shape": list(IMAGE_SHAPE),
        "n_classes": 10,
        "n_train": SVHN_SIZES["train"],
        "n_test": SVHN_SIZES["test"],
        "available": all(found.values()),
        "found_at": next((str(path.parent) for path in found.values() if path), None),
        "source": {split: str(path.parent) if path else None for split, path in found.items()},
        "searched": [str(folder) for folder in search_dirs("svhn", data_dir)],
        "how_to_get": how_to_get(data_dir),
    }
