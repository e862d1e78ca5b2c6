"""Exact log partition functions and log-likelihoods by enumeration (tiny models only).

:func:`exact_log_partition` is a :func:`functools.singledispatch` function: a model
module registers its own enumeration with ``@exact_log_partition.register(MyModel)``.
The Bernoulli RBM is registered here; it enumerates the smaller layer and sums the
other one out analytically through the free energy.
"""

from __future__ import annotations

import copy
import functools
import math

import torch
from torch import nn

from ebmlab._validation import check_positive_int
from ebmlab.models.enumeration import enumerate_binary
from ebmlab.models.rbm import BernoulliRBM

#: Largest bit width :func:`enumerate_binary` accepts (indices are int64).


def float64_copy(model: nn.Module) -> nn.Module:
    # Enumeration sums up to 2**25 terms: float64 keeps the sum exact to ~1e-12
    # whatever the model's own dtype, and the user's model is left untouched.
    return copy.deepcopy(model).to(torch.float64)


def chunked_logsumexp(n_units: int, neg_energy, *, chunk_size: int, device) -> float:
    """log sum_x exp(neg_energy(x)) over all binary x of ``n_units`` bits, chunk by chunk."""
    partial = []
    for start in range(0, 2**n_units, chunk_size):
        stop = min(start + chunk_size, 2**n_units)
        x = enumerate_binary(n_units, start=start, stop=stop, dtype=torch.float64, device=device)
        partial.append(torch.logsumexp(neg_energy(x), dim=0))
    return torch.logsumexp(torch.stack(partial), dim=0).item()


@functools.singledispatch
def exact_log_partition(model: object, *, max_units: int = 25, chunk_size: int = 2**16) -> float:
    r"""Exact :math:`\log Z` of a small model by enumeration.

    Parameters
    ----------
    model
        A model type with a registered enumeration (``BernoulliRBM`` here).
    max_units : int
        Refuse to enumerate more than ``2 ** max_units`` configurations.
    chunk_size : int
        Configurations evaluated at once (bounds memory).

    Returns
    -------
    float
        :math:`\log Z`, computed in float64.

    Notes
    -----
    Other modules add models with ``@exact_log_partition.register(TheirModel)``.
    """
    raise TypeError(
        f"exact_log_partition has no enumeration for {type(model).__name__}; register one with "
        "@exact_log_partition.register"
    )


@exact_log_partition.register(BernoulliRBM)
@torch.no_grad()
def _exact_log_partition_rbm(
    model: BernoulliRBM, *, max_units: int = 25, chunk_size: int = 2**16
) -> float:
    r"""Enumerate the smaller layer of an RBM; sum the other one out analytically.

    Notes
    -----
    .. math:: \log Z = \log \sum_v e^{-F(v)} = \log \sum_h e^{-F_h(h)},

    with :math:`F` the free energy of the visible layer and :math:`F_h` that of the
    hidden layer, so the cost is :math:`2^{\min(n_v, n_h)}` free-energy evaluations.
    """
    check_positive_int("max_units", max_units)
    check_positive_int("chunk_size", chunk_size)
    n_units = min(model.n_visible, model.n_hidden)
    if n_units > max_units:
        raise ValueError(
            f"exact_log_partition enumerates 2**min(n_visible, n_hidden) = 2**{n_units} "
            f"configurations, above max_units={max_units}; use ais_log_partition instead "
            "(or raise max_units if you have the time)"
        )
    model64 = float64_copy(model)
    if model.n_visible <= model.n_hidden:
        neg_energy = lambda v: -model64.free_energy(v)  # noqa: E731
    else:
        neg_energy = lambda h: -model64.free_energy_hidden(h)  # noqa: E731
    device = model.weight.device
    return chunked_logsumexp(n_units, neg_energy, chunk_size=chunk_size, device=device)


@torch.no_grad()
def exact_log_likelihood(model: nn.Module, data: torch.Tensor, *, max_units: int = 25) -> float:
    r"""Exact mean log-likelihood :math:`\frac1N \sum_n \log p(v_n)` of a small model.

    Parameters
    ----------
    model
        A model with ``free_energy`` and a registered :func:`exact_log_partition`.
    data : torch.Tensor
        Shape ``(batch, n_visible)``.
    max_units : int
        Passed to :func:`exact_log_partition`.

    Notes
    -----
    :math:`\log p(v) = -F(v) - \log Z`, everything in float64.
    """
    check_visible = getattr(model, "check_visible", None)
    if check_visible is not None:
        check_visible(data, "data")
    if data.shape[0] == 0:
        raise ValueError("data must hold at least one row; got shape (0, ...)")
    log_z = exact_log_partition(model, max_units=max_units)
    model64 = float64_copy(model)
    mean_free_energy = model64.free_energy(data.to(torch.float64)).mean().item()
    value = -mean_free_energy - log_z
    if not math.isfinite(value):
        raise ValueError(
            f"the exact log-likelihood is not finite ({value}); check the model parameters"
        )
    return value
