"""Argument checks shared by every layer.

Each check raises one :class:`ValueError` (or :class:`TypeError`) whose message
names the argument, the offending value and what was expected, so that the CLI
can print it as a one-line error.
"""

from __future__ import annotations

import math
from numbers import Real

import torch


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry of the floating tensor ``x`` is finite (no NaN, no inf).

    A sum is NaN or inf as soon as one entry is (inf - inf is NaN), and one fused
    reduction costs a few percent of ``isfinite(x).all()``, which materialises a
    bool tensor the size of ``x``. Only a sum that overflows from finite entries
    takes the exact, slower path.
    """
    x = x.detach()
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def check_nonnegative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    return value


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is finite and > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def check_nonnegative_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is finite and >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def check_probability(name: str, value: object, *, open_interval: bool = False) -> float:
    """Return ``value`` if it lies in [0, 1] (or (0, 1) when ``open_interval``)."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = 0 < value < 1 if open_interval else 0 <= value <= 1
    if not ok:
        bounds = "(0, 1)" if open_interval else "[0, 1]"
        raise ValueError(f"{name} must lie in {bounds}; got {value!r}")
    return float(value)


def check_open_interval(name: str, value: object, low: float, high: float) -> float:
    """Return ``value`` as a float if it is a finite number with ``low < value < high``."""
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low < value < high:
        raise ValueError(f"{name} must lie in ({low:g}, {high:g}); got {value!r}")
    return float(value)


def check_smoothing(value: object, dtype: torch.dtype) -> float:
    """Return ``value`` if it is a valid clip for means: in (0, 0.5) and >= ``dtype``'s eps.

    Means are clipped to ``[smoothing, 1 - smoothing]`` before a logit; below the
    dtype's resolution ``1 - smoothing`` rounds to 1 (or ``smoothing`` to 0) and
    the logit of a constant pixel is infinite.
    """
    check_open_interval("smoothing", value, 0.0, 0.5)
    eps = torch.finfo(dtype).eps
    if value < eps:  # type: ignore[operator]
        raise ValueError(
            f"smoothing must be at least {eps:g} for {dtype} data (1 - smoothing would "
            f"round to 1); got {value!r}"
        )
    return float(value)  # type: ignore[arg-type]


def check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def check_matrix(name: str, x: object, *, n_columns: int | None = None) -> torch.Tensor:
    """Check that ``x`` is a finite floating 2-D tensor (optionally with ``n_columns``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, features); got shape {tuple(x.shape)}")
    if n_columns is not None and x.shape[1] != n_columns:
        raise ValueError(f"{name} must have {n_columns} columns; got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {x.dtype}")
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def check_finite_tensor(name: str, x: object) -> torch.Tensor:
    """Check that ``x`` is a non-empty floating tensor of any shape without NaN or inf.

    One reduction (:func:`all_finite`): cheap enough for public entry points, but
    keep it out of per-step sampler loops (on a GPU it also waits for the device).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {x.dtype}")
    check_nonempty(name, x)
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf values")
    return x


def check_unit_interval(name: str, x: torch.Tensor, *, model: str) -> torch.Tensor:
    """Check that every entry of ``x`` lies in [0, 1], as Bernoulli units require."""
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1] for a {model}; got min={x.min().item():.4g}, "
            f"max={x.max().item():.4g}"
        )
    return x


def check_nonempty(name: str, x: torch.Tensor) -> torch.Tensor:
    """Check that ``x`` holds at least one row (and one column when 2-D)."""
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty; got shape {tuple(x.shape)}")
    return x


def check_in_range(
    name: str,
    x: torch.Tensor,
    *,
    low: float | None = None,
    high: float | None = None,
    purpose: str | None = None,
) -> torch.Tensor:
    """Check that every entry of ``x`` lies in ``[low, high]`` (a missing bound is not checked).

    ``purpose`` completes the message, e.g. ``"a Bernoulli RBM"`` gives
    ``data must lie in [0, 1] for a Bernoulli RBM; got min=-0.5, max=1``.
    """
    if x.numel() == 0 or (low is None and high is None):
        return x
    x_min, x_max = (v.item() for v in torch.aminmax(x.detach()))
    if (low is None or x_min >= low) and (high is None or x_max <= high):
        return x
    if low is not None and high is not None:
        expected = f"lie in [{low:g}, {high:g}]"
    else:
        expected = f">= {low:g}" if low is not None else f"<= {high:g}"
        expected = f"be {expected}"
    reason = f" for {purpose}" if purpose else ""
    raise ValueError(f"{name} must {expected}{reason}; got min={x_min:.4g}, max={x_max:.4g}")


def generator_device(generator: torch.Generator | None) -> torch.device | None:
    """The device a draw from ``generator`` must happen on (a CUDA generator draws on CUDA)."""
    return None if generator is None else generator.device


def check_device(device: object, name: str = "device") -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` where CUDA exists; one clear error otherwise."""
    import torch

    kind, _, index = str(device).partition(":")
    if (
        not isinstance(device, str)
        or kind not in ("cpu", "cuda")
        or (index and not index.isdigit())
    ):
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name} is {device!r} but CUDA is not available on this machine")
    return device
