"""scikit-learn's 8x8 handwritten digits, with a fixed stratified train/test split."""

from __future__ import annotations

import math

import numpy as np
import torch

from ebmlab.data.dataset import Dataset

DIGITS_SPLIT_SEED = 0
"""Seed of the digits train/test split. Changing it changes every digits result."""
DIGITS_TEST_FRACTION = 0.2
DIGITS_SOURCE = "sklearn.datasets.load_digits"


def stratified_split(
    labels: torch.Tensor, *, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split row indices so every class keeps ``test_fraction`` of its rows in the test part.

    Each class's rows are permuted with ``torch.Generator().manual_seed(seed)``
    and the first ``round(test_fraction * n_class)`` go to the test part. Both
    index tensors are returned sorted, so the rows keep their original order.
    """
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in torch.unique(labels):
        rows = torch.nonzero(labels == label).flatten()
        rows = rows[torch.randperm(rows.numel(), generator=generator)]
        n_test = math.floor(test_fraction * rows.numel() + 0.5)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_digits_dataset(split: str) -> Dataset:
    """Load scikit-learn's digits (1,797 8x8 images, 10 classes) and take one split.

    Pixels are integers 0..16 in the original and are divided by 16, so values
    lie in [0, 1]. The split is stratified 80/20 with :data:`DIGITS_SPLIT_SEED`:
    1,438 train and 359 test images.
    """
    from sklearn.datasets import load_digits  # heavy import, only when digits are asked for

    bunch = load_digits()
    images = torch.from_numpy(np.asarray(bunch.data, dtype=np.float32) / 16.0)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    train, test = stratified_split(
        labels, test_fraction=DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED
    )
    rows = train if split == "train" else test
    return Dataset(images[rows], labels[rows], (8, 8), "digits", DIGITS_SOURCE)
