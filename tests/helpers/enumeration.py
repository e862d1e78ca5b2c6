"""Brute-force enumeration for tests, written independently of the library's estimators."""

from __future__ import annotations

import itertools

import torch


def all_binary(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Every binary vector of length n, as rows, in lexicographic order (first bit most significant)."""
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=dtype)


def chi_square_p_value(
    counts: torch.Tensor, probabilities: torch.Tensor, *, min_expected: float = 5.0
) -> float:
    """Pearson chi-square goodness-of-fit p-value of ``counts`` against ``probabilities``.

    States whose expected count is below ``min_expected`` are pooled into one bin so
    the chi-square approximation holds.
    """
    from scipy import stats

    counts, probabilities = counts.detach().double(), probabilities.detach().double()
    n = counts.sum()
    expected = probabilities * n
    small = expected < min_expected
    observed_bins = torch.cat([counts[~small], counts[small].sum().reshape(1)])
    expected_bins = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    keep = expected_bins > 0
    statistic = float(
        ((observed_bins[keep] - expected_bins[keep]) ** 2 / expected_bins[keep]).sum()
    )
    return float(stats.chi2.sf(statistic, int(keep.sum()) - 1))
