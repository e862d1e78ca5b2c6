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
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from ebmlab._files import atomic_write

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
    """Write ``payload`` to ``path`` atomically (:func:`ebmlab._files.atomic_write`)."""
    try:
        atomic_write(path, payload)
    except OSError as error:
        raise CheckpointError(f"cannot write {path}: {error.strerror or error}") from error


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


def load_checkpoint(
    path: str | Path, *, expected: dict[str, torch.Tensor] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path : Path
    expected : dict, optional
        The model's own state dict: the checkpoint's model tensors must have its
        names, shapes and dtypes, checked from the file's header before any tensor
        is read (a crafted header cannot make the reader allocate).

    Returns
    -------
    model_state, extra
        The model's tensors by parameter name, and the nested extra state.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted, of another format version,
        or does not fit ``expected``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            model_keys = _header_model_keys(path, metadata)
            if expected is not None:
                _check_against(path, handle, model_keys, expected)
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({error})") from error
    try:
        extra = unflatten_state(json.loads(metadata["extra"]), tensors)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"checkpoint {path} has a corrupted header ({error!r})") from error
    if not isinstance(extra, dict):
        raise CheckpointError(f"checkpoint {path}: its extra state must be a mapping")
    missing = [key for key in model_keys if key not in tensors]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks tensors {missing}")
    return {key: tensors[key] for key in model_keys}, extra


def checkpoint_model_keys(path: str | Path) -> list[str]:
    """The model parameter names a checkpoint holds, read from its header alone."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return _header_model_keys(path, handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({error})") from error


def _header_model_keys(path: Path, metadata: dict[str, str]) -> list[str]:
    version = metadata.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}; this ebmlab reads version {FORMAT_VERSION}"
        )
    try:
        model_keys = json.loads(metadata["model_keys"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} has a corrupted header ({error!r})") from error
    if not isinstance(model_keys, dict) or not all(isinstance(k, str) for k in model_keys):
        raise CheckpointError(
            f"checkpoint {path}: header field model_keys must map names to shapes"
        )
    return list(model_keys)


def _check_against(
    path: Path, handle, model_keys: list[str], expected: dict[str, torch.Tensor]
) -> None:
    if set(model_keys) != set(expected):
        raise CheckpointError(
            f"checkpoint {path}: parameters {sorted(model_keys)} do not match the model's "
            f"{sorted(expected)}"
        )
    available = set(handle.keys())
    for key in model_keys:
        if key not in available:
            raise CheckpointError(f"checkpoint {path} lacks tensors {[key]}")
        shape = tuple(handle.get_slice(key).get_shape())
        if shape != tuple(expected[key].shape):
            raise CheckpointError(
                f"checkpoint {path}: {key} has shape {shape}; the model expects "
                f"{tuple(expected[key].shape)}"
            )


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
