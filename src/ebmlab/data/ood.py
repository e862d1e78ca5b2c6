"""Out-of-distribution inputs: synthetic sets (noise, constant, flip), other datasets resized."""

from __future__ import annotations

import torch

from ebmlab.data.registry import load_dataset
from ebmlab.data.transforms import scale

SYNTHETIC_OOD = ("noise", "constant", "flip")


def ood_inputs(
    name: str,
    x_test: torch.Tensor,
    image_shape: tuple[int, int],
    *,
    data_dir: str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """OOD inputs in [-1, 1] with the test set's shape, as many as ``x_test`` has rows (or fewer).

    ``noise``: U(-1, 1) pixels; ``constant``: one U(-1, 1) value per image;
    ``flip``: the test images upside down; any other name: that dataset's test
    split, which must have the same image shape, or, written ``NAME:resized``
    (e.g. ``digits:resized`` against Fashion-MNIST), is resized to it
    (bilinear, antialiased). ``generator`` (CPU) seeds the synthetic sets.
    """
    n, device = len(x_test), x_test.device
    if name == "noise":
        return (torch.rand(x_test.shape, generator=generator) * 2 - 1).to(device)
    if name == "constant":
        values = torch.rand((n, 1), generator=generator) * 2 - 1
        return values.expand(-1, x_test.shape[1]).clone().to(device)
    if name == "flip":
        # Upside down: the row axis, also for (channels, height, width) images.
        return x_test.reshape(n, *image_shape).flip(-2).reshape(n, -1)
    dataset, _, suffix = name.partition(":")
    if suffix not in ("", "resized"):
        raise ValueError(f"ood set {name!r}: the only suffix is ':resized'; got {suffix!r}")
    other = load_dataset(dataset, split="test", data_dir=data_dir)
    images, shape = other.images[:n], tuple(other.image_shape)
    if shape != tuple(image_shape):
        if not suffix:
            raise ValueError(
                f"ood dataset {dataset!r} has images of shape {shape} but the model was "
                f"trained on {tuple(image_shape)}; write {dataset}:resized to resize them, or "
                f"choose a dataset with the same shape or one of {', '.join(SYNTHETIC_OOD)}"
            )
        images = resize_images(images, shape, tuple(image_shape))
    return scale(images, to="symmetric").to(device)


def resize_images(
    images: torch.Tensor, shape: tuple[int, int], new_shape: tuple[int, int]
) -> torch.Tensor:
    """Flattened grey images in [0, 1] of ``shape`` resized to ``new_shape`` (bilinear, antialiased)."""
    grid = images.reshape(len(images), 1, *shape).float()
    resized = torch.nn.functional.interpolate(
        grid, size=new_shape, mode="bilinear", antialias=True, align_corners=False
    )
    return resized.clamp(0, 1).reshape(len(images), -1)
