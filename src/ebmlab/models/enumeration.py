"""All binary vectors of a given length, in chunks: the enumeration every exact computation shares.

It lives in the models layer because models (the DBM's exact free energy, the
Boltzmann machine's exact marginals) need it as much as the estimators do.
"""

from __future__ import annotations

import torch

from ebmlab._validation import check_nonnegative_int

MAX_BITS = 62  # int64 row indices


def enumerate_binary(
    n: int,
    *,
    start: int = 0,
    stop: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Rows ``start .. stop - 1`` of the table of all :math:`2^n` binary vectors.

    Row ``i`` holds the bits of the integer ``i``, least significant bit first
    (column ``j`` is ``(i >> j) & 1``), so consecutive slices ``[start, stop)``
    partition the table and callers can enumerate in bounded-memory chunks.

    Parameters
    ----------
    n : int
        Number of bits (0 to 62).
    start, stop : int
        Half-open range of rows; ``stop`` defaults to ``2 ** n``.
    dtype, device
        Output dtype (default: the global default float dtype) and device.

    Returns
    -------
    torch.Tensor
        Shape ``(stop - start, n)`` with entries in {0, 1}.
    """
    check_nonnegative_int("n", n)
    if n > MAX_BITS:
        raise ValueError(f"n must be at most {MAX_BITS} bits; got {n!r}")
    total = 2**n
    stop = total if stop is None else stop
    check_nonnegative_int("start", start)
    check_nonnegative_int("stop", stop)
    if not start <= stop <= total:
        raise ValueError(
            f"need 0 <= start <= stop <= 2**n = {total}; got start={start}, stop={stop}"
        )
    dtype = dtype or torch.get_default_dtype()
    index = torch.arange(start, stop, dtype=torch.int64, device=device)
    shifts = torch.arange(n, dtype=torch.int64, device=device)
    return ((index[:, None] >> shifts) & 1).to(dtype)
