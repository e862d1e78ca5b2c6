"""Helpers shared by the scikit-learn adapters: conversions, seeds and the [0, 1] range policy."""

from __future__ import annotations

import sys
import warnings
from numbers import Integral
from pathlib import Path

import numpy as np
import sklearn
import torch

from ebmlab._validation import check_nonnegative_int, check_positive_int

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
SEED_BOUND = np.iinfo(np.int32).max  # seeds drawn from a RandomState stay within int32


class OutOfRangeWarning(UserWarning):
    """Data outside [0, 1] reached an estimator whose visible units are binary.

    scikit-learn's ``BernoulliRBM`` computes with such data without a word; ebmlab's
    estimators compute with it too (a pipeline that works with scikit-learn keeps
    working) but say, once per call, what the numbers mean for a Bernoulli model.
    Silence it with ``warnings.simplefilter("ignore", OutOfRangeWarning)``.
    """


# Frames in these folders are skipped when a warning names its line: it points at the user's
# call (pipe.score(...)), not at the estimator or at scikit-learn's wrappers around it.
_INTERNAL_FOLDERS = (str(Path(__file__).parent), str(Path(sklearn.__file__).parent))


def _user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` made here that names the first outside frame."""
    level, frame = 1, sys._getframe(1)  # level 1: the function calling warnings.warn
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_FOLDERS):
        frame, level = frame.f_back, level + 1
    return level


def to_tensor(X: np.ndarray, device: torch.device) -> torch.Tensor:
    """``X`` as a tensor on ``device``; read-only arrays (e.g. memmaps) are copied first."""
    return torch.from_numpy(X if X.flags.writeable else X.copy()).to(device)


def as_int(name: str, value: object, *, minimum: int) -> int:
    """Accept Python and NumPy integers (GridSearchCV grids are often NumPy arrays)."""
    if isinstance(value, Integral) and not isinstance(value, bool | np.bool_):
        value = int(value)
    if minimum == 0:
        return check_nonnegative_int(name, value)
    return check_positive_int(name, value)


def device_of(value: object) -> torch.device:
    """``value`` as a torch device, with a message that names the estimator argument."""
    try:
        return torch.device(value)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device must name a torch device such as 'cpu' or 'cuda'; got {value!r}"
        ) from error


def outside_unit_interval(X: np.ndarray) -> bool:
    """Whether any entry of ``X`` lies outside [0, 1] (``X`` is finite: validated before)."""
    # Two reductions, no temporary array of X's size.
    return X.size > 0 and (X.min() < 0 or X.max() > 1)


def clip_to_unit_interval(X: np.ndarray) -> np.ndarray:
    """``X`` clipped to [0, 1]; ``X`` itself (no copy) when it is already inside."""
    return np.clip(X, 0, 1) if outside_unit_interval(X) else X


def warn_outside_unit_interval(X: np.ndarray, *, model: str, consequence: str) -> None:
    """Warn (:class:`OutOfRangeWarning`) when ``X`` leaves [0, 1]: once, whatever the count.

    Parameters
    ----------
    X : ndarray
        The validated (finite, dense) input.
    model : str
        What the estimator is, for the message ("Bernoulli RBM").
    consequence : str
        What the calling method does with such values.
    """
    if outside_unit_interval(X):
        warnings.warn(
            f"X has values outside [0, 1] (min={X.min():.4g}, max={X.max():.4g}). A {model} "
            f"has binary visible units and reads each value as the probability that its unit "
            f"is on; values outside [0, 1] are not probabilities. {consequence} Scaling with "
            f"MinMaxScaler(clip=True) keeps unseen data in range.",
            OutOfRangeWarning,
            stacklevel=_user_stacklevel(),
        )
