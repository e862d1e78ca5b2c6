"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then
``ndim`` big-endian uint32 sizes, then the values in C order, big-endian.
Files may be gzip-compressed; compression is detected from the file's first
two bytes, not from its name. The header fixes the data length exactly, so the
reader decompresses in chunks and never past that length: a gzip bomb (a small
file that inflates to gigabytes) costs at most the header's declared size, and
a header declaring more than ``max_bytes`` is refused before any data is read.

References
----------
LeCun, Y., Cortes, C. & Burges, C. J. C. The MNIST database of handwritten
digits (file format description on the database's page).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ebmlab._validation import check_positive_int

# IDX type code -> big-endian numpy dtype (the format stores every value big-endian).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 24
#: Default ceiling on the data an IDX header may declare (1 GiB): 20 times MNIST's
#: largest file (47 MB), far below what a declared 2**32 x 2**32 shape would allocate.
MAX_IDX_BYTES = 1 << 30


class IdxFormatError(ValueError):
    """A file is not a valid IDX file (bad header, truncated, trailing bytes, bad gzip)."""


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")  # type: ignore[return-value]


def _read(stream: BinaryIO, n_bytes: int) -> bytes:
    """Read up to ``n_bytes`` (fewer only at the end of the stream)."""
    return stream.read(n_bytes) or b""


def _read_header(stream: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    magic = _read(stream, 4)
    if len(magic) < 4:
        raise IdxFormatError(
            f"{path}: not an IDX file: {len(magic)} bytes, shorter than the header"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise IdxFormatError(
            f"{path}: not an IDX file: magic number 0x{magic.hex()} does not start with 0x0000"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise IdxFormatError(
            f"{path}: unknown IDX dtype code 0x{code:02X}; expected one of {known}"
        )
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header gives 0 dimensions; expected at least 1")
    raw_dims = _read(stream, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise IdxFormatError(f"{path}: truncated IDX header: expected {ndim} dimension sizes")
    shape = tuple(int(d) for d in np.frombuffer(raw_dims, dtype=">u4"))
    return IDX_DTYPES[code], shape


def _read_payload(
    stream: BinaryIO, path: Path, dtype: np.dtype, shape: tuple[int, ...], max_bytes: int
) -> np.ndarray:
    n_bytes = math.prod(shape) * dtype.itemsize
    if n_bytes > max_bytes:
        # Refused before reading: a 30-byte file may declare 2**64 bytes of data.
        raise IdxFormatError(
            f"{path}: IDX header declares shape {shape} ({n_bytes} bytes of data), above the "
            f"limit of {max_bytes} bytes; refusing to read it (pass a larger max_bytes if the "
            f"file is genuine)"
        )
    # Grow the buffer chunk by chunk rather than allocating what a (possibly corrupt)
    # header announces: a truncated file then costs only the memory it really holds.
    # Never asking for more than the header's n_bytes bounds what gzip inflates too.
    buffer = bytearray()
    while len(buffer) < n_bytes:
        chunk = _read(stream, min(n_bytes - len(buffer), _CHUNK_BYTES))
        if not chunk:
            raise IdxFormatError(
                f"{path}: truncated IDX file: header gives shape {shape} ({n_bytes} bytes of "
                f"data) but only {len(buffer)} bytes follow"
            )
        buffer += chunk
    # One byte more is all it takes to tell a bomb (or trailing junk) from a valid file.
    if _read(stream, 1):
        raise IdxFormatError(
            f"{path}: IDX file has bytes after the {n_bytes} bytes of data that its "
            f"header (shape {shape}) announces; reading stopped at that limit"
        )
    # frombuffer over a bytearray gives a writable array without another copy.
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def read_idx_header(path: str | os.PathLike[str]) -> tuple[np.dtype, tuple[int, ...]]:
    """Read only the header of an IDX file (raw or gzip-compressed).

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    dtype : numpy.dtype
        The values' dtype in native byte order.
    shape : tuple of int
        The declared shape; nothing after the header is read or checked.

    Raises
    ------
    IdxFormatError
        (a ``ValueError``) naming the file when the header is malformed.
    """
    path = Path(path)
    try:
        with _open(path) as stream:
            dtype, shape = _read_header(stream, path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt gzip stream ({error})") from error
    return dtype.newbyteorder("="), shape


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or path-like
        The file. Gzip compression is detected from the content.
    max_bytes : int
        Most bytes of data the header may declare (default :data:`MAX_IDX_BYTES`,
        1 GiB). Memory use is bounded by the smaller of this and the declared size,
        however far a gzip stream would inflate.

    Returns
    -------
    numpy.ndarray
        Writable array in native byte order with the header's shape; dtype
        uint8, int8, int16, int32, float32 or float64 as the header says.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    IdxFormatError
        (a ``ValueError``) naming the file when the magic number, the dtype
        code, the dimensions or the file length are wrong, the gzip stream
        is corrupt, or the header declares more than ``max_bytes`` (the
        message gives the limit).

    Notes
    -----
    The header's sizes fix the data length exactly: ``prod(shape) * itemsize``
    bytes must follow the header, no more and no fewer. Decompression stops one
    byte past that length, so extra data is reported without being inflated.
    """
    check_positive_int("max_bytes", max_bytes)
    path = Path(path)
    try:
        with _open(path) as stream:
            dtype, shape = _read_header(stream, path)
            array = _read_payload(stream, path, dtype, shape, max_bytes)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise IdxFormatError(f"{path}: corrupt gzip stream ({error})") from error
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or path-like
        Destination file (its folder must exist).
    array : numpy.ndarray
        At least 1-D, at most 255 dimensions, each size < 2**32; dtype uint8,
        int8, int16, int32, float32 or float64.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        names = ", ".join(str(d.newbyteorder("=")) for d in IDX_DTYPES.values())
        raise TypeError(f"array must have one of the dtypes {names}; got {array.dtype}")
    if not 1 <= array.ndim <= 255 or any(size >= 2**32 for size in array.shape):
        raise ValueError(
            f"array must have 1 to 255 dimensions, each < 2**32; got shape {array.shape}"
        )
    header = bytes([0, 0, codes[native], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as stream:
        stream.write(header + payload)
    return path
