"""Exact partition function, marginals, likelihood and moments of small Boltzmann machines.

Everything here enumerates all ``2^(n_visible + n_hidden)`` joint states: the
visible states in chunks (rows), all ``2^n_hidden`` hidden states at once
(columns), so memory stays at ``chunk_size x 2^n_hidden`` numbers. About 22
units in total take a fraction of a second to a few seconds on a CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ebmlab._validation import check_positive_int
from ebmlab.models.bm import BoltzmannMachine, binary_states
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM

# Above this many units enumeration stops being "small" (2^26 joint states).
MAX_ENUMERATED_UNITS = 26
DEFAULT_CHUNK_SIZE = 4096


@dataclass
class BMMoments:
    """First and second moments of the joint state :math:`z = (x, h)`.

    ``mean`` has shape (n_units,) and ``second_moment`` = :math:`\\mathbb{E}[z z^\\top]`
    shape (n_units, n_units); pass both to :meth:`BoltzmannMachine.expected_energy`.
    """

    mean: torch.Tensor
    second_moment: torch.Tensor


def _check_small(model: BoltzmannMachine) -> None:
    if not isinstance(model, BoltzmannMachine):
        raise TypeError(f"model must be a BoltzmannMachine; got {type(model).__name__}")
    if model.n_units > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"exact enumeration needs n_visible + n_hidden <= {MAX_ENUMERATED_UNITS}; "
            f"got {model.n_visible} + {model.n_hidden} = {model.n_units}"
        )


def _visible_chunks(
    model: BoltzmannMachine, chunk_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, -E(x, h))`` for consecutive chunks of visible states and every hidden state."""
    dtype, device = model.visible_bias.dtype, model.visible_bias.device
    hidden_states = binary_states(model.n_hidden, dtype=dtype, device=device)
    all_visible = binary_states(model.n_visible, dtype=dtype, device=device)
    for start in range(0, all_visible.shape[0], chunk_size):
        x = all_visible[start : start + chunk_size]
        yield x, model.joint_log_weights(x, hidden_states)


@torch.no_grad()
def bm_log_marginals(
    model: BoltzmannMachine, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Exact :math:`\\log p(x)` for all ``2^n_visible`` visible states, shape (2^n_visible,).

    Row ``k`` is the state :func:`~ebmlab.models.bm.binary_states` lists at row ``k``
    (unit ``j`` is bit ``j`` of ``k``, as in :func:`~ebmlab.estimators.exact.enumerate_binary`).
    """
    _check_small(model)
    check_positive_int("chunk_size", chunk_size)
    minus_free_energy = torch.cat(
        [torch.logsumexp(w, dim=1) for _, w in _visible_chunks(model, chunk_size)]
    )
    return minus_free_energy - torch.logsumexp(minus_free_energy, dim=0)


@torch.no_grad()
def bm_log_partition(
    model: BoltzmannMachine, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> torch.Tensor:
    """Exact :math:`\\log Z = \\log \\sum_{x, h} e^{-E(x, h)}` (a 0-dim tensor)."""
    _check_small(model)
    check_positive_int("chunk_size", chunk_size)
    per_chunk = [
        torch.logsumexp(w.reshape(-1), dim=0) for _, w in _visible_chunks(model, chunk_size)
    ]
    return torch.logsumexp(torch.stack(per_chunk), dim=0)


@torch.no_grad()
def bm_log_likelihood(
    model: BoltzmannMachine, data: torch.Tensor, *, log_partition: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact mean log-likelihood :math:`\\frac{1}{N}\\sum_n \\log p(x_n) = -\\overline{F(x)} - \\log Z`.

    Pass ``log_partition`` to reuse a value already computed for these parameters.
    """
    _check_small(model)
    model.check_visible(data, "data")
    log_z = bm_log_partition(model) if log_partition is None else log_partition
    return -model.free_energy(data.to(model.visible_bias.dtype)).mean() - log_z


@torch.no_grad()
def bm_model_moments(model: BoltzmannMachine, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> BMMoments:
    r"""Exact model expectations :math:`\mathbb{E}_p[z]` and :math:`\mathbb{E}_p[z z^\top]`.

    Notes
    -----
    With :math:`w(x, h) = p(x, h)` for a chunk of visible rows and all hidden
    columns, :math:`p(x) = \sum_h w`, :math:`\mathbb{E}[x x^\top] = X^\top \mathrm{diag}(p(x)) X`,
    :math:`\mathbb{E}[x h^\top] = X^\top (w H)` and :math:`\mathbb{E}[h h^\top] =
    H^\top \mathrm{diag}(\sum_x w) H`: matrix products, never a loop over states.
    """
    log_z = bm_log_partition(model, chunk_size=chunk_size)
    n_v, n = model.n_visible, model.n_units
    dtype, device = model.visible_bias.dtype, model.visible_bias.device
    hidden_states = binary_states(model.n_hidden, dtype=dtype, device=device)
    second = torch.zeros(n, n, dtype=dtype, device=device)
    hidden_weight = torch.zeros(hidden_states.shape[0], dtype=dtype, device=device)
    for x, log_weights in _visible_chunks(model, chunk_size):
        w = torch.exp(log_weights - log_z)
        p_x = w.sum(1)
        second[:n_v, :n_v] += x.t() @ (p_x.unsqueeze(1) * x)
        second[:n_v, n_v:] += x.t() @ (w @ hidden_states)
        hidden_weight += w.sum(0)
    second[n_v:, n_v:] = hidden_states.t() @ (hidden_weight.unsqueeze(1) * hidden_states)
    second[n_v:, :n_v] = second[:n_v, n_v:].t()
    return BMMoments(mean=second.diagonal().clone(), second_moment=second)


@torch.no_grad()
def bm_posterior_moments(model: BoltzmannMachine, data: torch.Tensor) -> BMMoments:
    r"""Data expectations of :math:`z = (x, h)` with :math:`h \sim p(h \mid x)` exactly.

    The posterior over the ``2^n_hidden`` hidden states is the softmax of
    :math:`-E(x, h)` over ``h``; averaging over the rows of ``data`` gives the
    "clamped" (positive) statistics of the Boltzmann learning rule.
    """
    _check_small(model)
    model.check_visible(data, "data")
    x = data.to(model.visible_bias.dtype)
    hidden_states = binary_states(model.n_hidden, dtype=x.dtype, device=x.device)
    posterior = torch.softmax(model.joint_log_weights(x, hidden_states), dim=1)
    hidden_mean = posterior @ hidden_states
    hidden_second = hidden_states.t() @ (posterior.sum(0).unsqueeze(1) * hidden_states)
    return moments_from_batch(x, hidden_mean, hidden_second=hidden_second)


def moments_from_batch(
    x: torch.Tensor, hidden_mean: torch.Tensor, *, hidden_second: torch.Tensor | None = None
) -> BMMoments:
    r"""Average moments of a batch of visible rows and (mean or sampled) hidden rows.

    ``hidden_second`` is :math:`\sum_n \mathbb{E}[h h^\top \mid x_n]` when known
    exactly; otherwise the factorised :math:`\sum_n \mu_n \mu_n^\top` is used
    (exact for sampled binary ``h``, the mean-field approximation for means).
    The diagonal of the second moment is set to the mean (:math:`z_i^2 = z_i`).
    """
    n_rows = x.shape[0]
    z = torch.cat([x, hidden_mean], dim=1)
    second = z.t() @ z
    if hidden_second is not None:
        n_v = x.shape[1]
        second[n_v:, n_v:] = hidden_second
    second = second / n_rows
    mean = z.mean(0)
    second.diagonal().copy_(mean)
    return BMMoments(mean=mean, second_moment=second)


@torch.no_grad()
def gaussian_rbm_log_partition(model: GaussianBernoulliRBM) -> torch.Tensor:
    r"""Exact :math:`\log Z` of a Gaussian-Bernoulli RBM with few hidden units (a 0-dim tensor).

    The visible units integrate out in closed form, so
    :math:`\log Z = \log \sum_h e^{-F(h)}` with
    :meth:`~ebmlab.models.gaussian_rbm.GaussianBernoulliRBM.free_energy_hidden`:
    ``2^n_hidden`` terms, whatever ``n_visible``.
    """
    if not isinstance(model, GaussianBernoulliRBM):
        raise TypeError(f"model must be a GaussianBernoulliRBM; got {type(model).__name__}")
    if model.n_hidden > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"exact enumeration needs n_hidden <= {MAX_ENUMERATED_UNITS}; got {model.n_hidden}"
        )
    dtype, device = model.weight.dtype, model.weight.device
    hidden_states = binary_states(model.n_hidden, dtype=dtype, device=device)
    per_chunk = [
        torch.logsumexp(-model.free_energy_hidden(chunk), dim=0)
        for chunk in hidden_states.split(DEFAULT_CHUNK_SIZE * 16)
    ]
    return torch.logsumexp(torch.stack(per_chunk), dim=0)


# ----- registration with the generic exact_log_partition ----------------------------------------
try:  # exact.py is the generic entry point; this module works without it
    from ebmlab.estimators.exact import exact_log_partition
except ImportError:  # pragma: no cover - only while exact.py is absent
    exact_log_partition = None

if exact_log_partition is not None:

    @exact_log_partition.register(BoltzmannMachine)
    def _exact_log_partition_bm(
        model: BoltzmannMachine, *, max_units: int = 25, chunk_size: int = 2**16
    ) -> float:
        """:func:`bm_log_partition` in float64, refusing more than ``max_units`` units in total."""
        check_positive_int("max_units", max_units)
        check_positive_int("chunk_size", chunk_size)
        if model.n_units > max_units:
            raise ValueError(
                f"exact_log_partition enumerates 2**(n_visible + n_hidden) = 2**{model.n_units} "
                f"configurations, above max_units={max_units}"
            )
        rows = max(1, chunk_size // 2**model.n_hidden)  # chunk_size counts joint configurations
        model64 = copy.deepcopy(model).to(torch.float64)
        return float(bm_log_partition(model64, chunk_size=rows))

    @exact_log_partition.register(GaussianBernoulliRBM)
    def _exact_log_partition_gaussian_rbm(
        model: GaussianBernoulliRBM, *, max_units: int = 25, chunk_size: int = 2**16
    ) -> float:
        """:func:`gaussian_rbm_log_partition` in float64 (enumerates the hidden layer only)."""
        check_positive_int("max_units", max_units)
        if model.n_hidden > max_units:
            raise ValueError(
                f"exact_log_partition enumerates 2**n_hidden = 2**{model.n_hidden} "
                f"configurations, above max_units={max_units}"
            )
        return float(gaussian_rbm_log_partition(copy.deepcopy(model).to(torch.float64)))
