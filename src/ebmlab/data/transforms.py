"""Binarization, scaling, validation splits and input checks for data tensors.

Binarization choices for models with binary visible units (``BINARIZATION_METHODS``):

- ``"none"``: keep grey levels in [0, 1] (used as Bernoulli means by CD).
- ``"threshold"``: ``x > threshold`` once; deterministic.
- ``"stochastic"``: one Bernoulli(x) draw per pixel, fixed for the whole run
  (the usual "binarized MNIST" of Salakhutdinov & Murray 2008).
- ``"dynamic"``: a fresh Bernoulli(x) draw every epoch. :func:`prepare_binary`
  returns the grey levels unchanged and the trainer calls
  ``binarize(batch, "stochastic", generator=...)`` each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ebmlab._validation import (
    all_finite,
    check_choice,
    check_in_range,
    check_matrix,
    check_nonempty,
    check_probability,
)
from ebmlab.data.dataset import Dataset

BINARIZATION_METHODS = ("none", "threshold", "stochastic", "dynamic")
SCALES = ("unit", "symmetric")


def check_data(
    x: torch.Tensor,
    *,
    n_features: int | None = None,
    low: float | None = None,
    high: float | None = None,
    name: str = "data",
    purpose: str | None = None,
) -> torch.Tensor:
    """Return ``x`` if it is a non-empty, finite, floating (N, D) tensor within bounds.

    Parameters
    ----------
    x : torch.Tensor
        The data.
    n_features : int, optional
        Required number of columns D.
    low, high : float, optional
        Bounds every entry must respect (inclusive); None leaves a side open.
    name : str
        How the message calls ``x``.
    purpose : str, optional
        Why the bounds hold, for the message: ``"a Bernoulli RBM"`` gives
        ``data must lie in [0, 1] for a Bernoulli RBM; got min=-0.5, max=1``.

    Raises
    ------
    TypeError
        ``x`` is not a tensor or not floating point.
    ValueError
        ``x`` is not 2-D, has the wrong number of columns, holds NaN/inf, is
        empty, or leaves ``[low, high]``.
    """
    check_matrix(name, x, n_columns=n_features)
    check_nonempty(name, x)
    return check_in_range(name, x, low=low, high=high, purpose=purpose)


def _check_unit_tensor(name: str, x: object, purpose: str) -> torch.Tensor:
    """Any-shaped finite floating tensor in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {x.dtype}")
    if not all_finite(x):
        raise ValueError(f"{name} contains NaN or inf values")
    return check_in_range(name, x, low=0.0, high=1.0, purpose=purpose)


def binarize(
    x: torch.Tensor,
    method: str = "threshold",
    *,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Map grey levels in [0, 1] to 0/1 values (same shape and dtype as ``x``).

    Parameters
    ----------
    x : torch.Tensor
        Floating tensor of any shape with entries in [0, 1].
    method : {"threshold", "stochastic"}
        ``threshold``: ``1`` where ``x > threshold``. ``stochastic``: an
        independent Bernoulli(x) draw per entry.
    threshold : float
        Cut for ``method="threshold"``, in [0, 1].
    generator : torch.Generator, optional
        Randomness for ``method="stochastic"``.

    Notes
    -----
    A stochastic draw uses one uniform ``u`` per entry and returns
    ``1[u < x]``, so ``E[b] = P(u < x) = x``: the binary data have the grey
    image as their mean. Call it once to fix the draw ("stochastic") or once
    per epoch for fresh draws ("dynamic").

    References
    ----------
    Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis of deep
    belief networks. ICML (stochastically binarized MNIST).
    """
    check_choice("method", method, ("threshold", "stochastic"))
    _check_unit_tensor("x", x, purpose=f"{method} binarization")
    if method == "threshold":
        threshold = check_probability("threshold", threshold)
        return (x > threshold).to(x.dtype)
    uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (uniform < x).to(x.dtype)


def prepare_binary(
    x: torch.Tensor,
    method: str,
    *,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply a binarization method from :data:`BINARIZATION_METHODS` before training.

    ``"none"`` and ``"dynamic"`` return ``x`` itself (checked to lie in [0, 1]);
    for ``"dynamic"`` the trainer redraws ``binarize(batch, "stochastic")``
    every epoch. ``"threshold"`` and ``"stochastic"`` return
    :func:`binarize`'s result, fixed for the rest of the run.
    """
    check_choice("method", method, BINARIZATION_METHODS)
    if method in ("none", "dynamic"):
        return _check_unit_tensor("x", x, purpose=f"binarization method {method!r}")
    return binarize(x, method, threshold=threshold, generator=generator)


def scale(x: torch.Tensor, to: str = "unit") -> torch.Tensor:
    """Map data in [0, 1] to [0, 1] (``to="unit"``) or to [-1, 1] (``to="symmetric"``).

    ``unit`` returns ``x`` itself (checked, not copied); ``symmetric`` returns
    ``2 x - 1``, the input range of JEM's networks.
    """
    check_choice("to", to, SCALES)
    _check_unit_tensor("x", x, purpose="scaling")
    return x if to == "unit" else 2 * x - 1


TensorOrTensors = torch.Tensor | Sequence[torch.Tensor]
Splittable = Dataset | TensorOrTensors


def _split_rows(
    n_rows: int, validation_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    fraction = check_probability("validation_fraction", validation_fraction, open_interval=True)
    n_validation = math.floor(fraction * n_rows + 0.5)
    if not 1 <= n_validation <= n_rows - 1:
        raise ValueError(
            f"validation_fraction={validation_fraction!r} of {n_rows} rows leaves "
            f"{n_validation} validation rows; both parts need at least one row"
        )
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    return order[n_validation:].sort().values, order[:n_validation].sort().values


def train_validation_split(
    data: Splittable, *, validation_fraction: float = 0.1, seed: int = 0
) -> tuple[Splittable, Splittable]:
    """Split rows at random into a training part and a validation part.

    Parameters
    ----------
    data : Dataset, torch.Tensor or sequence of tensors
        Rows along the first dimension; tensors in a sequence must have as many
        rows and are split with the same rows (e.g. ``(images, labels)``).
    validation_fraction : float
        In (0, 1); the validation part has ``round(fraction * N)`` rows.
    seed : int
        Seeds a private generator (not the global RNG): the same seed gives the
        same split.

    Returns
    -------
    (train, validation)
        Same type as ``data`` (Datasets keep name and source; sequences come
        back as tuples). Rows keep their original order within each part.
    """
    if isinstance(data, Dataset):
        train, validation = _split_rows(len(data), validation_fraction, seed)
        return data.subset(train), data.subset(validation)
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in tensors):
        raise TypeError("data must be a Dataset, a tensor or a sequence of tensors with rows")
    n_rows = {t.shape[0] for t in tensors}
    if len(n_rows) != 1:
        raise ValueError(f"data tensors must have as many rows; got {sorted(n_rows)}")
    train, validation = _split_rows(n_rows.pop(), validation_fraction, seed)
    if isinstance(data, torch.Tensor):
        return data[train], data[validation]
    return tuple(t[train] for t in tensors), tuple(t[validation] for t in tensors)


__all__ = [
    "BINARIZATION_METHODS",
    "SCALES",
    "binarize",
    "check_data",
    "prepare_binary",
    "scale",
    "train_validation_split",
]
