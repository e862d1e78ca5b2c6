"""The in-memory dataset record every loader returns."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are nowhere on disk and could not be downloaded.

    The message names every path looked at and how to get the files.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset held in memory, one flattened example per row.

    Attributes
    ----------
    images : torch.Tensor
        float32, shape (N, D) with ``D = image_shape[0] * image_shape[1]``.
        Image sets lie in [0, 1]; the 2-D toy sets are real-valued points.
    labels : torch.Tensor
        int64, shape (N,); class indices (zeros where there are no classes).
    image_shape : tuple of int
        (height, width) to reshape a row for display; (1, 2) for 2-D points.
    name : str
        Registry name, e.g. ``"fashion-mnist"``.
    source : str
        Where the data came from: a file path, or how it was generated.

    Notes
    -----
    ``eq=False``: tensors have no single truth value, so two datasets compare by
    identity. Use ``torch.equal`` on the fields to compare contents.
    """

    images: torch.Tensor
    labels: torch.Tensor
    image_shape: tuple[int, int]
    name: str
    source: str

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if (
            not isinstance(images, torch.Tensor)
            or images.dtype != torch.float32
            or images.ndim != 2
        ):
            raise TypeError(
                f"images must be a float32 tensor of shape (N, D); got {_describe(images)}"
            )
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
            raise TypeError(
                f"labels must be an int64 tensor of shape (N,); got {_describe(labels)}"
            )
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"images and labels must have as many rows; got {images.shape[0]} images and "
                f"{labels.shape[0]} labels"
            )
        if len(self.image_shape) != 2 or math.prod(self.image_shape) != images.shape[1]:
            raise ValueError(
                f"image_shape must be (height, width) with height * width = {images.shape[1]} "
                f"features; got {self.image_shape!r}"
            )
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def n_features(self) -> int:
        """Number of columns of ``images`` (visible units of a model fitted to it)."""
        return self.images.shape[1]

    @property
    def n_classes(self) -> int:
        """``max(label) + 1`` (labels are 0..K-1); 0 for an empty dataset."""
        return int(self.labels.max()) + 1 if len(self) else 0

    def subset(self, indices: torch.Tensor) -> Dataset:
        """The rows ``indices`` (a 1-D index or boolean tensor) as a new Dataset."""
        return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices])


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
