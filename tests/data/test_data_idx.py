"""IDX reader/writer: round trips on files the tests write, every malformed-file message, and
bounded memory on gzip bombs."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import numpy as np
import pytest

from ebmlab.data import IdxFormatError, read_idx, write_idx
from ebmlab.data.idx import MAX_IDX_BYTES, read_idx_header

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _values(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.normal(scale=1e3, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5)])
def test_round_trip_is_exact(tmp_path, dtype, suffix, shape):
    array = _values(dtype, shape)
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_header_bytes_follow_the_format(tmp_path):
    # magic 0x00000803 for 3-D uint8, then big-endian sizes: the layout of MNIST's image file.
    path = write_idx(tmp_path / "x", np.zeros((2, 3, 4), dtype=np.uint8))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    assert raw[4:16] == bytes([0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4])
    assert len(raw) == 16 + 24


def test_multibyte_values_are_big_endian(tmp_path):
    path = write_idx(tmp_path / "x", np.array([258, -2], dtype=np.int16))
    assert path.read_bytes()[8:] == bytes([0x01, 0x02, 0xFF, 0xFE])


def test_compression_is_detected_from_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "raw", array)
    compressed = tmp_path / "no-suffix"
    compressed.write_bytes(gzip.compress((tmp_path / "raw").read_bytes()))
    np.testing.assert_array_equal(read_idx(compressed), array)


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, dtype=">u4").tobytes()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00\x00", "shorter than the header"),
        (b"\x01\x02\x08\x01" + bytes(8), "magic number 0x01020801"),
        (_header(0x0A, (2,)) + bytes(2), "unknown IDX dtype code 0x0A"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated IDX header"),
        (_header(0x08, (2, 3)) + bytes(5), r"truncated IDX file: header gives shape \(2, 3\)"),
        (_header(0x0C, (2,)) + bytes(7), r"\(8 bytes of data\) but only 7"),
        (_header(0x08, (2, 3)) + bytes(7), "bytes after the 6 bytes of data"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_files_raise_one_error_naming_the_file(tmp_path, content, match, compress):
    path = tmp_path / "bad-file"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(IdxFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_gzip_stream_is_reported(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(IdxFormatError, match="corrupt gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


@pytest.mark.parametrize(
    ("array", "error", "match"),
    [
        (np.zeros(3, dtype=np.int64), TypeError, "dtypes uint8, int8, .* got int64"),
        (np.zeros(3, dtype=bool), TypeError, "got bool"),
        (np.array(5, dtype=np.uint8), ValueError, r"1 to 255 dimensions.*got shape \(\)"),
    ],
)
def test_write_rejects_what_idx_cannot_hold(tmp_path, array, error, match):
    with pytest.raises(error, match=match):
        write_idx(tmp_path / "x", array)


# ----- decompression ceiling ---------------------------------------------------------------
BOMB_ZEROS = 32 << 20  # what the bombs below inflate to past their header
MEMORY_BOUND = 8 << 20  # far below BOMB_ZEROS: reading must not inflate the bomb


def _write_bomb(path, header: bytes, n_zeros: int = BOMB_ZEROS) -> None:
    """``header`` followed by ``n_zeros`` zero bytes, gzip-compressed chunk by chunk (~32 KB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    zeros = bytes(1 << 20)
    with open(path, "wb") as out:
        out.write(compressor.compress(header))
        for _ in range(n_zeros // len(zeros)):
            out.write(compressor.compress(zeros))
        out.write(compressor.flush())


def _peak_bytes_while(call) -> tuple[int, BaseException]:
    """Peak Python-allocated bytes while ``call()`` runs, and the error it raised."""
    tracemalloc.start()
    try:
        call()
    except Exception as error:  # the caller asserts on it
        raised = error
    else:
        raised = AssertionError("no error raised")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, raised


def test_gzip_bomb_after_a_modest_header_stops_at_the_declared_size(tmp_path):
    path = tmp_path / "bomb.gz"
    _write_bomb(path, _header(0x08, (100, 28, 28)))
    assert path.stat().st_size < 100_000  # small on disk, 32 MiB inflated
    peak, error = _peak_bytes_while(lambda: read_idx(path))
    assert isinstance(error, IdxFormatError), error
    message = str(error)
    assert str(path) in message and "bytes after the 78400 bytes of data" in message
    assert "stopped at that limit" in message
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"


@pytest.mark.parametrize(
    "dims",
    [(2**31, 2**31), (60_000, 2**16, 2**16), (2**32 - 1,) * 4],
    ids=["2-D", "3-D", "4-D"],
)
def test_header_declaring_an_absurd_shape_is_refused_before_reading(tmp_path, dims):
    path = tmp_path / "absurd.gz"
    _write_bomb(path, _header(0x08, dims))
    peak, error = _peak_bytes_while(lambda: read_idx(path))
    assert isinstance(error, IdxFormatError) and isinstance(error, ValueError), error
    message = str(error)
    assert str(path) in message and f"shape {dims}" in message
    assert f"above the limit of {MAX_IDX_BYTES} bytes" in message
    # Refused from the header alone: the 32 MiB that follow are never inflated.
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"


def test_max_bytes_is_the_ceiling_and_is_checked(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((10, 100), dtype=np.int16))  # 2000 bytes
    assert read_idx(path, max_bytes=2000).shape == (10, 100)
    with pytest.raises(IdxFormatError, match=r"\(2000 bytes of data\), above the limit of 1999"):
        read_idx(path, max_bytes=1999)
    for bad in (0, -5, 1.5, "10"):
        with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
            read_idx(path, max_bytes=bad)


def test_header_alone_can_be_read(tmp_path):
    path = tmp_path / "bomb.gz"
    _write_bomb(path, _header(0x0B, (3, 4)))
    dtype, shape = read_idx_header(path)  # the trailing zeros are never read
    assert (dtype, shape) == (np.dtype(np.int16), (3, 4)) and dtype.isnative
    with pytest.raises(IdxFormatError, match="magic number"):
        (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
        read_idx_header(tmp_path / "junk")
