"""The run folder: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/`` and ``figures/``.

Everything needed to redo, resume, evaluate or report a run lives in its folder.
"""

from __future__ import annotations

import json
import math
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


class RunFolder:
    """Paths and small file helpers for one training run.

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

    # ----- creation ------------------------------------------------------------------------
    def create(self, *, overwrite: bool = False) -> RunFolder:
        """Make the folder; refuse to reuse a non-empty one unless ``overwrite``."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"out must be a folder; {self.path} is a file")
        if self.path.is_dir() and any(self.path.iterdir()):
            if not overwrite:
                raise RunFolderError(
                    f"out folder {self.path} is not empty; pass --overwrite to replace it "
                    f"or --resume {self.path} to continue it"
                )
            self._clear()
        self.figures.mkdir(parents=True, exist_ok=True)
        self.checkpoints.directory.mkdir(parents=True, exist_ok=True)
        return self

    def _clear(self) -> None:
        # Only remove what a run writes, never unknown files a user put there.
        for name in ("config.yaml", "metrics.jsonl"):
            (self.path / name).unlink(missing_ok=True)
        for folder in (self.figures, self.checkpoints.directory, self.path / "tensorboard"):
            if folder.is_dir():
                for item in folder.iterdir():
                    if item.is_file():
                        item.unlink()

    def require_existing(self) -> RunFolder:
        """Raise a clear error unless this is a run folder with a config."""
        if not self.config_path.is_file():
            raise RunFolderError(f"{self.path} is not an ebmlab run folder (no config.yaml)")
        return self

    # ----- config ----------------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        from ebmlab.experiments.config import dump_yaml

        atomic_write_bytes(self.config_path, dump_yaml(config).encode())

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
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(json_safe(record)) + "\n")

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
