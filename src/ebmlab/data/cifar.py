"""CIFAR-10 and CIFAR-100 from their binary distributions (never the Python pickles).

A binary file is a sequence of fixed-size records: CIFAR-10's are 1 label byte
(0..9) and 3,072 pixel bytes, CIFAR-100's 2 label bytes (coarse 0..19, fine
0..99) and 3,072 pixel bytes. The pixels of a 32x32 image are stored as three
planes, red, green, blue, each row by row: exactly a C-order ``(3, 32, 32)``
array, which is how ebmlab flattens colour images, so a record's pixel bytes
are one row of ``Dataset.images`` (divided by 255).

Finding the files and building a ``Dataset`` is :mod:`ebmlab.data.cifar_datasets`.

The Python distribution (``cifar-10-batches-py/``, ``cifar-100-python/``) is
refused with a message naming the binary one: unpickling a file runs whatever
code it names.

References
----------
Krizhevsky, A. Learning multiple layers of features from tiny images. Tech.
report, University of Toronto, 2009 (binary format on the dataset's page,
https://www.cs.toronto.edu/~kriz/cifar.html).
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ebmlab.data.dataset import DataFormatError

IMAGE_SHAPE = (3, 32, 32)
PIXEL_BYTES = 3 * 32 * 32
#: Ceiling on one binary file or archive member (256 MiB): CIFAR-100's train.bin is
#: 153,700,000 bytes. Checked from the file's size or the member's header before reading.
MAX_CIFAR_FILE_BYTES = 256 << 20
#: Ceiling on the uncompressed bytes a .tar.gz may make us pass over (1 GiB; the real
#: archives hold about 185 MB), and on its members: a small archive cannot keep us inflating.
MAX_ARCHIVE_BYTES = 1 << 30
MAX_ARCHIVE_MEMBERS = 1_000


@dataclass(frozen=True)
class CifarSpec:
    """What is fixed about one CIFAR dataset: files, record layout, sizes and where to get it."""

    name: str
    title: str
    folder: str
    archive: str
    url: str
    files: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    label_counts: tuple[int, ...]
    pickle_names: tuple[str, ...]
    pickle_url: str
    n_train: int = 50_000
    n_test: int = 10_000

    @property
    def record_bytes(self) -> int:
        """Bytes per record: the label bytes, then 3,072 pixel bytes."""
        return len(self.label_names) + PIXEL_BYTES

    @property
    def n_classes(self) -> int:
        """Classes of ``Dataset.labels`` (the last label byte: CIFAR-100's fine label)."""
        return self.label_counts[-1]

    def records_per_file(self, split: str) -> int:
        """Records each file of ``split`` must hold (its count over its number of files)."""
        total = self.n_train if split == "train" else self.n_test
        return total // len(self.files[split])


CIFAR_DATASETS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        title="CIFAR-10",
        folder="cifar-10-batches-bin",
        archive="cifar-10-binary.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        files={
            "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            "test": ("test_batch.bin",),
        },
        label_names=("label",),
        label_counts=(10,),
        pickle_names=(
            "cifar-10-batches-py",
            "cifar-10-python.tar.gz",
            "data_batch_1",
            "test_batch",
        ),
        pickle_url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        title="CIFAR-100",
        folder="cifar-100-binary",
        archive="cifar-100-binary.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        files={"train": ("train.bin",), "test": ("test.bin",)},
        label_names=("coarse", "fine"),
        label_counts=(20, 100),
        pickle_names=("cifar-100-python", "cifar-100-python.tar.gz"),
        pickle_url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


def parse_cifar_records(
    buffer: bytes | bytearray, *, dataset: str, source: str, n_records: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split a CIFAR binary file's bytes into pixel rows and labels, checking both.

    Parameters
    ----------
    buffer : bytes
        The whole file (or archive member).
    dataset : {"cifar10", "cifar100"}
        Which record layout: 1 label byte or 2 (coarse, fine), then 3,072 pixels.
    source : str
        The file's name for error messages.
    n_records : int, optional
        Records the file must hold (10,000 per CIFAR-10 batch); None accepts any
        whole number of records.

    Returns
    -------
    pixels : numpy.ndarray
        uint8, shape (N, 3072): each record's red, green and blue planes in order.
    labels : numpy.ndarray
        int64, shape (N, n_label_bytes); CIFAR-100's columns are (coarse, fine).

    Raises
    ------
    DataFormatError
        (a ``ValueError``) naming ``source`` when the length is not a whole number
        of records, the count is not ``n_records``, or a label is out of range.
    """
    spec = CIFAR_DATASETS[dataset]
    _check_length(len(buffer), spec, source, n_records)
    records = np.frombuffer(buffer, dtype=np.uint8).reshape(-1, spec.record_bytes)
    n_label = len(spec.label_names)
    labels = records[:, :n_label].astype(np.int64)
    for column, (label_name, count) in enumerate(
        zip(spec.label_names, spec.label_counts, strict=True)
    ):
        bad = np.flatnonzero(labels[:, column] >= count)
        if bad.size:
            raise DataFormatError(
                f"{source}: record {bad[0]} has {label_name} label {labels[bad[0], column]}; "
                f"{spec.title} {label_name} labels are 0..{count - 1} ({bad.size} records out "
                f"of range): not a {spec.title} binary file"
            )
    return records[:, n_label:], labels


def _check_length(n_bytes: int, spec: CifarSpec, source: str, n_records: int | None) -> None:
    record = spec.record_bytes
    layout = (
        f"{len(spec.label_names)} label byte{'s' if len(spec.label_names) > 1 else ''} "
        f"+ {PIXEL_BYTES:,} pixel bytes"
    )
    expected = (
        f"; expected {n_records:,} records ({n_records * record:,} bytes)" if n_records else ""
    )
    if n_bytes % record:
        raise DataFormatError(
            f"{source}: {n_bytes:,} bytes is not a whole number of {record:,}-byte {spec.title} "
            f"records ({layout}){expected}: the file is truncated or not a {spec.title} "
            f"binary file"
        )
    if n_records is not None and n_bytes // record != n_records:
        state = "truncated" if n_bytes // record < n_records else "too long"
        raise DataFormatError(
            f"{source}: {state}: holds {n_bytes // record:,} {spec.title} records{expected}"
        )


def read_cifar_file(
    path: str | os.PathLike[str], *, dataset: str = "cifar10", n_records: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary file (``data_batch_1.bin``, ``train.bin``, ...) without loading extra bytes.

    The size is checked from the file system before anything is read (a whole
    number of records, ``n_records`` of them when given, at most
    :data:`MAX_CIFAR_FILE_BYTES`). Returns and raises as :func:`parse_cifar_records`.
    """
    if dataset not in CIFAR_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(CIFAR_DATASETS)}; got {dataset!r}")
    path = Path(path)
    spec = CIFAR_DATASETS[dataset]
    size = path.stat().st_size
    _check_length(size, spec, str(path), n_records)
    _check_limit(size, str(path))
    with open(path, "rb") as stream:
        buffer = stream.read(size + 1)  # one byte more: tells a file that grew meanwhile
    if len(buffer) != size:
        raise DataFormatError(f"{path}: changed while being read ({size} then {len(buffer)} bytes)")
    return parse_cifar_records(buffer, dataset=dataset, source=str(path), n_records=n_records)


def _check_limit(n_bytes: int, source: str) -> None:
    if n_bytes > MAX_CIFAR_FILE_BYTES:
        raise DataFormatError(
            f"{source}: {n_bytes:,} bytes, above the limit of {MAX_CIFAR_FILE_BYTES:,} bytes for "
            f"one CIFAR file; refusing to read it"
        )


def _member_name(archive: Path, member: tarfile.TarInfo) -> str:
    """The member's name without a leading ``./``; refuse absolute names and ``..``."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise DataFormatError(
            f"{archive}: member {name!r} has an absolute path or '..'; refusing to read an "
            f"archive with unsafe member names"
        )
    return name.removeprefix("./")


def read_cifar_archive(
    archive: str | os.PathLike[str], *, dataset: str, split: str
) -> list[tuple[str, bytes]]:
    """The bytes of ``split``'s members of a ``cifar-*-binary.tar.gz``, read without extracting.

    The archive is streamed once; only the members ``FOLDER/FILE`` that the
    split needs are read (each a regular file within :data:`MAX_CIFAR_FILE_BYTES`,
    present once), every other member is skipped, and reading stops when all are
    found. Member names that are absolute or contain ``..`` are refused, as are
    archives that make us pass over more than :data:`MAX_ARCHIVE_BYTES`
    or :data:`MAX_ARCHIVE_MEMBERS`.

    Returns
    -------
    list of (str, bytes)
        ``("ARCHIVE:MEMBER", content)`` in the split's file order.
    """
    archive, spec = Path(archive), CIFAR_DATASETS[dataset]
    wanted = [f"{spec.folder}/{name}" for name in spec.files[split]]
    found: dict[str, bytes] = {}
    passed = 0
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for index, member in enumerate(tar):
                name = _member_name(archive, member)
                passed += member.size
                if index >= MAX_ARCHIVE_MEMBERS or passed > MAX_ARCHIVE_BYTES:
                    raise DataFormatError(
                        f"{archive}: more than {MAX_ARCHIVE_MEMBERS} members or "
                        f"{MAX_ARCHIVE_BYTES:,} bytes before {spec.title}'s {split} files; "
                        f"not the {spec.archive} from {spec.url}"
                    )
                if name in wanted:
                    found[name] = _read_member(tar, member, archive, name, found)
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataFormatError(f"{archive}: not a readable .tar.gz archive ({error})") from error
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataFormatError(
            f"{archive}: no member {missing[0]}; expected {spec.title}'s binary archive with "
            f"{', '.join(wanted)}"
        )
    return [(f"{archive}:{name}", found[name]) for name in wanted]


def _read_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path, name: str, found: dict
) -> bytes:
    source = f"{archive}:{name}"
    if name in found:
        raise DataFormatError(f"{source}: appears twice in the archive; refusing to guess which")
    if not member.isfile():
        raise DataFormatError(f"{source}: not a regular file (a link or folder) in the archive")
    _check_limit(member.size, source)
    stream = tar.extractfile(member)
    content = stream.read(member.size) if stream is not None else b""
    if len(content) != member.size:
        raise DataFormatError(f"{source}: truncated archive: {len(content)} of {member.size} bytes")
    return content
