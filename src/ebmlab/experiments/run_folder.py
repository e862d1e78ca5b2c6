"""The run folder: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and ``figures/``.

Everything needed to redo, resume, evaluate or report a run lives in its folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ebmlab.training.checkpoint import CheckpointManager, atomic_write_bytes


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None, so strict JSON parsers accept it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class RunFolderError(ValueError):
    """A run folder is missing, incomplete, or would be overwritten."""


# What ebmlab names its files where it owns the folder: checkpoints and TensorBoard events.
_CHECKPOINT_FILE = re.compile(r"^(step-\d{8}|best)\.safetensors$")
_TEMP_FILE = re.compile(r"^\..+\.tmp$")  # atomic_write_bytes' temporary files
_EVENTS_FILE = re.compile(r"^events\.out\.tfevents\.")
MANIFEST = "manifest.json"
LOCK = ".lock"


class RunFolder:
    """Paths and small file helpers for one training run.

    The folder knows what it wrote: ``manifest.json`` lists the files ebmlab
    created (``config.yaml``, ``metrics.jsonl``, figures), and checkpoints and
    TensorBoard events carry names only ebmlab gives. ``--overwrite`` removes
    exactly those, so files a user keeps in a run folder survive.

    Parameters
    ----------
    path : Path
        The folder.
    keep_last : int
        Numbered checkpoints kept by :attr:`checkpoints`.
    """

    def __init__(self, path: str | Path, *, keep_last: int = 3) -> None:
        self.path = Path(path)
        self.checkpoints = CheckpointManager(self.path / "checkpoints", keep_last=keep_last)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    # ----- creation ------------------------------------------------------------------------
    def create(self, *, overwrite: bool = False) -> RunFolder:
        """Make the folder; refuse to reuse a non-empty one unless ``overwrite``.

        With ``overwrite`` only what an earlier run wrote is removed; a non-empty
        folder that is no ebmlab run is refused either way.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"out must be a folder; {self.path} is a file")
        foreign = {LOCK}
        if self.path.is_dir() and any(p.name not in foreign for p in self.path.iterdir()):
            if not overwrite:
                raise RunFolderError(
                    f"out folder {self.path} is not empty; pass --overwrite to replace it "
                    f"or --resume {self.path} to continue it"
                )
            if not (self.manifest_path.is_file() or self.config_path.is_file()):
                raise RunFolderError(
                    f"out folder {self.path} is not an ebmlab run folder (no manifest.json or "
                    "config.yaml); --overwrite replaces runs only: choose an empty folder"
                )
            self._clear()
        self.path.mkdir(parents=True, exist_ok=True)
        self.figures.mkdir(exist_ok=True)
        self.checkpoints.directory.mkdir(exist_ok=True)
        return self

    def _clear(self) -> None:
        for name in self.written() | {"config.yaml", "metrics.jsonl", MANIFEST}:
            _remove(self.path / name)
        for folder, pattern in (
            (self.checkpoints.directory, _CHECKPOINT_FILE),
            (self.path / "tensorboard", _EVENTS_FILE),
        ):
            if folder.is_dir():
                for item in folder.rglob("*"):
                    if pattern.match(item.name) or _TEMP_FILE.match(item.name):
                        _remove(item)
        self.remove_stale_temp_files()

    def require_existing(self) -> RunFolder:
        """Raise a clear error unless this is a run folder with a config."""
        if not self.config_path.is_file():
            raise RunFolderError(f"{self.path} is not an ebmlab run folder (no config.yaml)")
        return self

    # ----- what the run wrote ------------------------------------------------------------------
    def written(self) -> set[str]:
        """Paths (relative to the folder) that ebmlab recorded writing."""
        if not self.manifest_path.is_file():
            return set()
        try:
            files = json.loads(self.manifest_path.read_text()).get("files", [])
        except (json.JSONDecodeError, AttributeError):
            raise RunFolderError(f"{self.manifest_path} is corrupted; remove it by hand") from None
        # Never anything outside the folder, whatever a planted manifest says.
        return {
            f
            for f in files
            if isinstance(f, str) and ".." not in Path(f).parts and not Path(f).is_absolute()
        }

    def record(self, *paths: Path) -> None:
        """Add files to the manifest (paths inside the folder)."""
        names = self.written()
        for path in paths:
            names.add(str(Path(path).resolve().relative_to(self.path.resolve())))
        text = json.dumps({"files": sorted(names)}, indent=1)
        atomic_write_bytes(self.manifest_path, text.encode())

    @contextmanager
    def recording_figures(self) -> Iterator[None]:
        """Record every file under ``figures/`` that the block creates or changes."""
        before = _snapshot(self.figures)
        yield
        after = _snapshot(self.figures)
        changed = [
            self.figures / name for name, stamp in after.items() if before.get(name) != stamp
        ]
        if changed:
            self.record(*changed)

    # ----- one writer ----------------------------------------------------------------------------
    @contextmanager
    def exclusive(self, *, enabled: bool = True) -> Iterator[None]:
        """Hold the folder's lock: a second process training or resuming it gets one clear error."""
        if not enabled:
            yield
            return
        from filelock import FileLock, Timeout

        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"out must be a folder; {self.path} is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunFolderError(
                f"run folder {self.path} is in use by another ebmlab process (it holds "
                f"{self.path / LOCK}); wait for it to finish"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def remove_stale_temp_files(self) -> list[Path]:
        """Remove the temporary files a process killed mid-write left; returns them."""
        stale = []
        for folder in (self.path, self.checkpoints.directory):
            if folder.is_dir():
                for item in folder.rglob("*") if folder != self.path else folder.iterdir():
                    if item.is_file() and _TEMP_FILE.match(item.name):
                        item.unlink()
                        stale.append(item)
        return stale

    # ----- config ----------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        from ebmlab.experiments.config import dump_yaml

        atomic_write_bytes(self.config_path, dump_yaml(config).encode())
        self.record(self.config_path)

    def read_config(self) -> dict[str, Any]:
        """The raw ``config.yaml`` mapping (YAML 1.2), which must name its ``model``."""
        from ebmlab.experiments.config import ConfigError, read_yaml

        self.require_existing()
        try:
            config = read_yaml(self.config_path)
        except ConfigError as error:
            raise RunFolderError(str(error)) from None
        if "model" not in config:
            raise RunFolderError(f"{self.config_path} must be a mapping with a 'model' key")
        return config

    # ----- metrics ---------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one JSON line (non-finite floats written as null, never silently changed)."""
        if self.metrics_path.is_symlink():  # never write through a link out of the folder
            raise RunFolderError(f"{self.metrics_path} is a symbolic link; refusing to write")
        new = not self.metrics_path.exists()
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(json_safe(record)) + "\n")
        if new:
            self.record(self.metrics_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a run killed mid-write leaves at most one partial last line
        return records

    def truncate_metrics(self, *, key: str, last: int) -> None:
        """Drop records whose ``key`` (the step counter) is past ``last``.

        Those were written after the checkpoint a resume starts from, and the
        resumed run writes them again.
        """
        kept = [r for r in self.read_metrics() if r.get(key, 0) <= last]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write_bytes(self.metrics_path, text.encode())


def _remove(path: Path) -> None:
    """Remove a file or a symbolic link (the link, never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.is_dir():
        return {}
    return {
        p.name: (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.iterdir()
        if p.is_file() and not p.is_symlink()
    }
