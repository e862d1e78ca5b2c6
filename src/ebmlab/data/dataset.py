"""The in-memory dataset record every loader returns."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are nowhere on disk and could not be downloaded.

    The message names every path looked at and how to get the files.
    """


class DataFormatError(ValueError):
    """A dataset file is not in its expected format (truncated, bad labels, wrong shape).

    The message names the file (for an archive: the archive and the member) and
    what is wrong with it.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset held in memory, one flattened example per row.

    Attributes
    ----------
    images : torch.Tensor
        float32, shape (N, D) with ``D = prod(image_shape)``.
        Image sets lie in [0, 1]; the 2-D toy sets are real-valued points.
    labels : torch.Tensor
        int64, shape (N,); class indices (zeros where there are no classes).
    image_shape : tuple of int
        The shape a row reshapes to: ``(height, width)`` for grey images,
        ``(channels, height, width)`` for colour ones (``(3, 32, 32)`` for
        CIFAR-10); ``(1, 2)`` for 2-D points.
    name : str
        Registry name, e.g. ``"fashion-mnist"``.
    source : str
        Where the data came from: a file path, or how it was generated.
    extra_labels : Mapping of str to torch.Tensor
        Further int64 (N,) label sets, e.g. CIFAR-100's 20 superclasses under
        ``"coarse"``; empty for most sets. :meth:`subset` keeps them aligned
        with the rows.

    Notes
    -----
    Rows are flattened in C order of ``image_shape``, so colour images are
    channel-major: all red values, then all green, then all blue, each plane row
    by row (CIFAR's own byte order; ``row.reshape(image_shape)`` gives the image).

    ``eq=False``: tensors have no single truth value, so two datasets compare by
    identity. Use ``torch.equal`` on the fields to compare contents.
    """

    images: torch.Tensor
    labels: torch.Tensor
    image_shape: tuple[int, ...]
    name: str
    source: str
    extra_labels: Mapping[str, torch.Tensor] = field(default_factory=dict)

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
        if len(self.image_shape) not in (2, 3) or math.prod(self.image_shape) != images.shape[1]:
            raise ValueError(
                f"image_shape must be (channels, height, width) with channels * height * width "
                f"= {images.shape[1]} features, or (height, width) with height * width = "
                f"{images.shape[1]} features; got {self.image_shape!r}"
            )
        object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        object.__setattr__(self, "extra_labels", _checked_extra_labels(self.extra_labels, labels))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def n_features(self) -> int:
        """Number of columns of ``images`` (visible units of a model fitted to it)."""
        return self.images.shape[1]

    @property
    def n_channels(self) -> int:
        """3 for colour images (``image_shape`` of length 3 gives it), 1 otherwise."""
        return self.image_shape[0] if len(self.image_shape) == 3 else 1

    @property
    def n_classes(self) -> int:
        """``max(label) + 1`` (labels are 0..K-1); 0 for an empty dataset."""
        return int(self.labels.max()) + 1 if len(self) else 0

    def subset(self, indices: torch.Tensor) -> Dataset:
        """The rows ``indices`` (a 1-D index or boolean tensor) as a new Dataset."""
        return dataclasses.replace(
            self,
            images=self.images[indices],
            labels=self.labels[indices],
            extra_labels={key: value[indices] for key, value in self.extra_labels.items()},
        )


def _checked_extra_labels(extra: object, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    if not isinstance(extra, Mapping):
        raise TypeError(
            f"extra_labels must be a mapping of names to tensors; got {_describe(extra)}"
        )
    for key, value in extra.items():
        if (
            not isinstance(value, torch.Tensor)
            or value.dtype != torch.int64
            or value.shape != labels.shape
        ):
            raise TypeError(
                f"extra_labels[{key!r}] must be an int64 tensor of shape {tuple(labels.shape)} "
                f"(one per image); got {_describe(value)}"
            )
    # A copy: the caller's dict may change later. (Not a MappingProxyType: that does not pickle.)
    return dict(extra)


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__
