"""Image grids: samples, reconstructions and filters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ebmlab.viz._mpl import pyplot, save_figure


def tile_images(
    images: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int],
    *,
    n_columns: int | None = None,
    padding: int = 1,
    normalize_each: bool = False,
) -> np.ndarray:
    """Arrange flattened images (N, H*W) into one 2-D array with ``padding`` pixels between them.

    With ``normalize_each`` every tile is scaled to [0, 1] on its own (for filters,
    whose ranges differ); otherwise values are clipped to [0, 1].
    """
    array = (
        images.detach().cpu().double().numpy()
        if isinstance(images, torch.Tensor)
        else np.asarray(images, float)
    )
    height, width = image_shape
    n = array.shape[0]
    columns = n_columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding))
    for index, flat in enumerate(array):
        tile = flat.reshape(height, width)
        if normalize_each:
            span = tile.max() - tile.min()
            tile = (tile - tile.min()) / span if span > 0 else np.zeros_like(tile)
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[top : top + height, left : left + width] = np.clip(tile, 0, 1)
    return grid


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int],
    path: str | Path,
    *,
    title: str | None = None,
    normalize_each: bool = False,
    n_columns: int | None = None,
) -> Path:
    """Save a grid of grey images as a PNG and return its path."""
    plt = pyplot()
    grid = tile_images(images, image_shape, n_columns=n_columns, normalize_each=normalize_each)
    figure, axis = plt.subplots(
        figsize=(6, 6 * grid.shape[0] / grid.shape[1] + (0.4 if title else 0))
    )
    axis.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_axis_off()
    if title:
        axis.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def save_filters(
    weight: torch.Tensor, image_shape: tuple[int, int], path: str | Path, *, n_filters: int = 100
) -> Path:
    """Save the receptive fields of the first ``n_filters`` hidden units (columns of ``weight``)."""
    filters = weight.detach()[:, :n_filters].t()
    return save_image_grid(
        filters,
        image_shape,
        path,
        title=f"filters of the first {filters.shape[0]} hidden units",
        normalize_each=True,
    )
