"""Image grids: samples, reconstructions and filters, grey or colour.

``image_shape`` is ``(height, width)`` for grey images (rows of ``H * W``) or
``(channels, height, width)`` with 1 or 3 channels (rows channel-major, as
``Dataset.images`` holds CIFAR and SVHN: all red values, then green, then blue).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ebmlab.viz._mpl import pyplot, save_figure


def _layout(image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) of a grey (H, W) or a (C, H, W) shape with C in {1, 3}."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return shape
    raise ValueError(
        f"image_shape must be (height, width) or (channels, height, width) with 1 or 3 "
        f"channels; got {image_shape!r}"
    )


def tile_images(
    images: torch.Tensor | np.ndarray,
    image_shape: tuple[int, ...],
    *,
    n_columns: int | None = None,
    padding: int = 1,
    normalize_each: bool = False,
) -> np.ndarray:
    """Arrange flattened images (N, prod(image_shape)) into one grid, ``padding`` pixels apart.

    Returns a 2-D array (rows, columns) for grey images and a 3-D array (rows,
    columns, 3) of RGB values for colour ones; the padding is white. With
    ``normalize_each`` every tile is scaled to [0, 1] on its own (all its
    channels together; for filters, whose ranges differ); otherwise values are
    clipped to [0, 1].
    """
    array = (
        images.detach().cpu().double().numpy()
        if isinstance(images, torch.Tensor)
        else np.asarray(images, float)
    )
    channels, height, width = _layout(image_shape)
    n = array.shape[0]
    columns = n_columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels)
    )
    for index, flat in enumerate(array):
        # Rows are channel-major (C, H, W); the grid is (H, W, C) as image files are.
        tile = flat.reshape(channels, height, width).transpose(1, 2, 0)
        if normalize_each:
            span = tile.max() - tile.min()
            tile = (tile - tile.min()) / span if span > 0 else np.zeros_like(tile)
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[top : top + height, left : left + width] = np.clip(tile, 0, 1)
    return grid[:, :, 0] if channels == 1 else grid


def save_image_grid(
    images: torch.Tensor | np.ndarray,
    image_shape: tuple[int, ...],
    path: str | Path,
    *,
    title: str | None = None,
    normalize_each: bool = False,
    n_columns: int | None = None,
) -> Path:
    """Save a grid of images as a PNG (grey, or in colour for 3-channel shapes); return its path."""
    plt = pyplot()
    grid = tile_images(images, image_shape, n_columns=n_columns, normalize_each=normalize_each)
    figure, axis = plt.subplots(
        figsize=(6, 6 * grid.shape[0] / grid.shape[1] + (0.4 if title else 0))
    )
    if grid.ndim == 3:
        axis.imshow(grid, interpolation="nearest")  # RGB in [0, 1]: no colour map
    else:
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
    weight: torch.Tensor, image_shape: tuple[int, ...], path: str | Path, *, n_filters: int = 100
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
