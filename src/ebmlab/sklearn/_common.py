"""Helpers shared by the scikit-learn adapters."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

from ebmlab._validation import check_nonnegative_int, check_positive_int

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
SEED_BOUND = np.iinfo(np.int32).max  # seeds drawn from a RandomState stay within int32


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
