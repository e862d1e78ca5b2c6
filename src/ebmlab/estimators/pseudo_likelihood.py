r"""Pseudo-log-likelihood of binary data under a model with a free energy.

References
----------
Besag, J. (1975). Statistical analysis of non-lattice data. The Statistician 24.
scikit-learn, ``BernoulliRBM.score_samples`` (the one-random-bit estimate).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["pseudo_log_likelihood"]

#: Rows of flipped copies evaluated at once by the exact estimate (bounds memory).
_MAX_FLIPPED_ROWS = 2**15


@torch.no_grad()
def pseudo_log_likelihood(
    model: torch.nn.Module,
    v: torch.Tensor,
    *,
    exact: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Pseudo-log-likelihood of each row of ``v``, shape (batch,).

    Parameters
    ----------
    model
        A model with ``free_energy(v)`` (and, if it has one, ``check_visible``).
    v : torch.Tensor
        Binary data, shape ``(batch, n_visible)``.
    exact : bool
        ``True``: sum over every bit (``n_visible`` extra free energies per row).
        ``False``: scikit-learn's estimate from one random bit per row.
    generator : torch.Generator, optional
        Chooses the random bits when ``exact=False``.

    Returns
    -------
    torch.Tensor
        Shape (batch,), in the data's dtype, without an autograd graph.

    Notes
    -----
    With :math:`\bar v^{(i)}` equal to :math:`v` with bit :math:`i` flipped,
    :math:`p(v_i \mid v_{-i}) = e^{-F(v)} / (e^{-F(v)} + e^{-F(\bar v^{(i)})})`, so

    .. math:: \mathrm{PLL}(v) = \sum_i \log \sigma\big(F(\bar v^{(i)}) - F(v)\big).

    The stochastic version is :math:`n_v \log \sigma(F(\bar v^{(i)}) - F(v))` with
    :math:`i` uniform per row: an unbiased estimate of the exact sum (each term has
    probability :math:`1/n_v`), with a large variance.
    """
    check_visible = getattr(model, "check_visible", None)
    if check_visible is not None:
        check_visible(v, "v")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be a bool; got {type(exact).__name__}")
    free_energy = model.free_energy(v)
    if exact:
        return _exact_terms(model, v, free_energy)
    batch, n_visible = v.shape
    bits = torch.randint(n_visible, (batch,), generator=generator, device=v.device)
    flipped = v.clone()
    rows = torch.arange(batch, device=v.device)
    flipped[rows, bits] = 1 - flipped[rows, bits]
    return n_visible * F.logsigmoid(model.free_energy(flipped) - free_energy)


def _exact_terms(
    model: torch.nn.Module, v: torch.Tensor, free_energy: torch.Tensor
) -> torch.Tensor:
    """sum_i log sigma(F(v flipped at i) - F(v)), a chunk of rows at a time."""
    batch, n_visible = v.shape
    flip = torch.eye(n_visible, dtype=torch.bool, device=v.device)
    rows_per_chunk = max(1, _MAX_FLIPPED_ROWS // n_visible)
    totals = []
    for start in range(0, batch, rows_per_chunk):
        chunk = v[start : start + rows_per_chunk]
        # (rows, n_visible copies, n_visible): copy i has bit i flipped.
        copies = torch.where(flip, 1 - chunk[:, None, :], chunk[:, None, :])
        flipped_energy = model.free_energy(copies.reshape(-1, n_visible)).view(
            chunk.shape[0], n_visible
        )
        gap = flipped_energy - free_energy[start : start + rows_per_chunk, None]
        totals.append(F.logsigmoid(gap).sum(-1))
    return torch.cat(totals) if totals else free_energy.new_zeros(0)
