"""Checkpoints that cannot hurt: safetensors only, written atomically, checked on load.

A checkpoint is one ``.safetensors`` file. Tensors (model parameters under their
own names, optimizer moments, persistent chains, generator states) are stored as
safetensors tensors; everything else (step counters, hyperparameters of the
optimizer, the layout of nested state dicts) is JSON in the file's metadata
header. One file means one atomic ``rename``: a crash while writing leaves the
previous checkpoint untouched, and loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

FORMAT_VERSION = 1
_TENSOR_MARK = "__tensor__"
_STEP_FILE = re.compile(r"^step-(\d{8})\.safetensors$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message says which file and why."""


# ----- nested state <-> (tensors, JSON) ---------------------------------------------------
def flatten_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors`` under a dotted key.

    Returns the JSON-able skeleton, with ``{"__tensor__": key}`` where a tensor stood.
    """
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().contiguous().cpu()
        return {_TENSOR_MARK: prefix}
    if isinstance(state, dict):
        # JSON keys are strings; remember integer keys (optimizer state uses them).
        return {
            "__dict__": [[k, flatten_state(v, f"{prefix}.{k}", tensors)] for k, v in state.items()]
        }
    if isinstance(state, list | tuple):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(state)]
    if state is None or isinstance(state, bool | int | float | str):
        return state
    raise CheckpointError(
        f"cannot store a value of type {type(state).__name__} at {prefix!r} in a checkpoint"
    )


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if _TENSOR_MARK in skeleton:
            return tensors[skeleton[_TENSOR_MARK]]
        return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


# ----- atomic file writing -----------------------------------------------------------------
def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}"
        ) from error
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
        _fsync_directory(path.parent)
    except OSError as error:
        Path(temp_name).unlink(missing_ok=True)
        raise CheckpointError(
            f"cannot write checkpoint {path}: {error.strerror or error}"
        ) from error


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


# ----- save / load -------------------------------------------------------------------------
def encode_checkpoint(model_state: dict[str, torch.Tensor], extra: dict[str, Any]) -> bytes:
    """Serialise model tensors (under their own names) and nested ``extra`` state."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in model_state.items()}
    skeleton = flatten_state(extra, "extra", tensors)
    # One tensor stored at two places (e.g. a rank's own copy of shared state) must be two
    # tensors in the file: safetensors refuses shared memory.
    seen: set[int] = set()
    for name, tensor in tensors.items():
        if tensor.numel() and tensor.data_ptr() in seen:
            tensors[name] = tensor.clone()
        seen.add(tensors[name].data_ptr())
    shapes = {name: [list(t.shape), str(t.dtype)] for name, t in model_state.items()}
    metadata = {
        "format_version": str(FORMAT_VERSION),
        "model_keys": json.dumps(shapes),
        "extra": json.dumps(skeleton),
    }
    return safetensors_bytes(tensors, metadata=metadata)


def save_checkpoint(
    path: str | Path, model_state: dict[str, torch.Tensor], extra: dict[str, Any]
) -> Path:
    """Atomically write a checkpoint; see :func:`load_checkpoint`."""
    path = Path(path)
    atomic_write_bytes(path, encode_checkpoint(model_state, extra))
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    model_state, extra
        The model's tensors by parameter name, and the nested extra state.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted or of another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({error})") from error
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this ebmlab reads version {FORMAT_VERSION}"
        )
    try:
        model_keys = json.loads(metadata["model_keys"])
        extra = unflatten_state(json.loads(metadata["extra"]), tensors)
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} has a corrupted header ({error})") from error
    missing = [key for key in model_keys if key not in tensors]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks tensors {missing}")
    return {key: tensors[key] for key in model_keys}, extra


def load_model_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str
) -> None:
    """Copy ``state`` into ``model`` after checking names, shapes and dtypes, naming any mismatch."""
    expected = model.state_dict()
    if set(expected) != set(state):
        raise CheckpointError(
            f"{source}: parameters {sorted(state)} do not match the model's {sorted(expected)}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape or tensor.dtype != expected[name].dtype:
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)} and dtype {tensor.dtype}; "
                f"the model expects {tuple(expected[name].shape)} and {expected[name].dtype}"
            )
    model.load_state_dict(state)


class CheckpointManager:
    """Numbered checkpoints in one folder: keeps the last ``keep_last`` and ``best.safetensors``.

    Parameters
    ----------
    directory : Path
        The run's ``checkpoints/`` folder.
    keep_last : int
        How many numbered checkpoints to keep (older ones are deleted after a
        newer one is safely on disk).
    """

    def __init__(self, directory: str | Path, *, keep_last: int = 3) -> None:
        self.directory = Path(directory)
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1; got {keep_last!r}")
        self.keep_last = keep_last

    def numbered(self) -> list[tuple[int, Path]]:
        """The numbered checkpoints, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.directory.iterdir()
            if (m := _STEP_FILE.match(p.name))
        ]
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest numbered checkpoint, or None."""
        numbered = self.numbered()
        return numbered[-1][1] if numbered else None

    @property
    def best(self) -> Path:
        return self.directory / "best.safetensors"

    def save(
        self,
        step: int,
        model_state: dict[str, torch.Tensor],
        extra: dict[str, Any],
        *,
        is_best: bool,
    ) -> Path:
        """Write checkpoint ``step`` (and ``best`` when ``is_best``), then prune old ones."""
        payload = encode_checkpoint(model_state, extra)
        path = self.directory / f"step-{step:08d}.safetensors"
        if is_best:  # first: a kill in between must not leave a step that names a missing best
            atomic_write_bytes(self.best, payload)
        atomic_write_bytes(path, payload)
        for _, old in self.numbered()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        return path
