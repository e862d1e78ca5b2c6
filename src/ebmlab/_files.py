"""Writing files that cannot be half-written and never write through a symbolic link.

Every file ebmlab writes into a run folder goes through :func:`atomic_write`: the
bytes go to a temporary file in the same folder (named ``.NAME.*.tmp``), are
flushed to disk, and replace the target with one ``rename``. A crash leaves the
old file or the new one, never a mix; and since ``rename`` replaces a symbolic
link instead of following it, a link planted in a run folder cannot make ebmlab
overwrite a file outside it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file, fsync and rename (raises OSError)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not all platforms allow opening directories.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
