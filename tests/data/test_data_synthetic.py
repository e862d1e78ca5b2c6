"""Bars and stripes: every pattern, nothing else, and the labels' convention."""

from __future__ import annotations

import pytest
import torch

from ebmlab.data import bars_and_stripes, bars_and_stripes_labels


def _is_bar(images: torch.Tensor) -> torch.Tensor:
    """Per image of a (B, n, n) batch: every column constant."""
    return (images == images[:, 0:1, :]).all(dim=(1, 2))


def _is_stripe(images: torch.Tensor) -> torch.Tensor:
    """Per image of a (B, n, n) batch: every row constant."""
    return (images == images[:, :, 0:1]).all(dim=(1, 2))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_all_distinct_patterns_and_only_bars_or_stripes(n):
    patterns = bars_and_stripes(n)
    assert patterns.shape == (2 ** (n + 1) - 2, n * n) and patterns.dtype == torch.float32
    assert set(patterns.unique().tolist()) <= {0.0, 1.0}
    assert len({tuple(row) for row in patterns.tolist()}) == len(patterns)  # distinct
    images = patterns.reshape(-1, n, n)
    assert torch.all(_is_bar(images) | _is_stripe(images))
    # Brute force over all 2^(n*n) images for small n: none is missing.
    if n <= 4:
        codes = torch.arange(2 ** (n * n))
        every = ((codes[:, None] >> torch.arange(n * n)) & 1).float().reshape(-1, n, n)
        assert (_is_bar(every) | _is_stripe(every)).sum() == len(patterns)


@pytest.mark.parametrize("n", [2, 4])
def test_labels_bars_zero_stripes_one_ambiguous_zero(n):
    images = bars_and_stripes(n).reshape(-1, n, n)
    labels = bars_and_stripes_labels(n)
    assert labels.dtype == torch.int64 and len(labels) == len(images)
    assert torch.equal(labels, (~_is_bar(images)).long())  # all-0 and all-1 count as bars
    assert labels.sum() == 2**n - 2


@pytest.mark.parametrize(
    ("n", "match"), [(0, "n must be a positive integer; got 0"), (13, "at most 12; got 13")]
)
def test_bad_size(n, match):
    with pytest.raises(ValueError, match=match):
        bars_and_stripes(n)
