"""Initial weights shared by the layered models (Hinton's guide: W ~ N(0, 0.01^2))."""

from __future__ import annotations

import torch

from ebmlab._validation import generator_device


def gaussian_weight(
    rows: int,
    columns: int,
    std: float,
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> torch.Tensor:
    """A ``(rows, columns)`` draw from N(0, std^2), moved to ``device``.

    The draw happens where ``generator`` lives (a CUDA generator draws on CUDA),
    so the same seed gives the same weights whatever the target device.
    """
    draw = torch.randn(
        rows, columns, generator=generator, dtype=dtype, device=generator_device(generator)
    )
    return (draw * std).to(device)
