"""Small synthetic binary datasets that can be enumerated exactly."""

from __future__ import annotations

import torch

from ebmlab._validation import check_positive_int

MAX_BARS_AND_STRIPES_SIZE = 12


def bars_and_stripes(n: int = 4) -> torch.Tensor:
    """All distinct n x n bars-and-stripes patterns, flattened row by row.

    Parameters
    ----------
    n : int
        Side of the square image, 1 <= n <= 12.

    Returns
    -------
    torch.Tensor
        float32 of shape (2**(n + 1) - 2, n * n), values 0/1. The first
        ``2**n`` rows are the bars (every column constant: vertical bars, in
        the order of the binary number whose bit j sets column j), including the
        all-0 and all-1 images; the remaining ``2**n - 2`` rows are the stripes
        (every row constant: horizontal stripes) without those two duplicates.

    Notes
    -----
    Bars and stripes each give ``2**n`` images; the blank and the full image are
    both, so there are ``2 * 2**n - 2`` distinct patterns. The loader labels bars
    0 and stripes 1, and counts the two ambiguous images as bars (label 0).

    References
    ----------
    MacKay, D. J. C. (2003). Information Theory, Inference, and Learning
    Algorithms, chapter 43 (Boltzmann machines).
    """
    n = check_positive_int("n", n)
    if n > MAX_BARS_AND_STRIPES_SIZE:
        raise ValueError(f"n must be at most {MAX_BARS_AND_STRIPES_SIZE}; got {n}")
    codes = torch.arange(2**n)
    bits = ((codes[:, None] >> torch.arange(n)) & 1).to(torch.float32)  # (2**n, n): bit j
    bars = bits[:, None, :].expand(-1, n, n)  # pixel (row i, column j) = bit j
    stripes = bits[1:-1, :, None].expand(-1, n, n)  # pixel (i, j) = bit i; drop all-0 / all-1
    return torch.cat([bars, stripes]).reshape(-1, n * n).contiguous()


def bars_and_stripes_labels(n: int = 4) -> torch.Tensor:
    """Labels matching :func:`bars_and_stripes`: 0 for bars (and all-0/all-1), 1 for stripes."""
    n = check_positive_int("n", n)
    return torch.cat(
        [torch.zeros(2**n, dtype=torch.int64), torch.ones(2**n - 2, dtype=torch.int64)]
    )
