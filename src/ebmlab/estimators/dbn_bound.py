r"""The variational lower bound on a deep belief network's log-likelihood.

For a DBN with hidden layers :math:`h^1, \dots, h^{L}` (top RBM between
:math:`h^{L-1}` and :math:`h^{L}`) and the recognition distribution
:math:`Q(h^1, \dots, h^{L-1} \mid v) = \prod_{l=1}^{L-1} q_l(h^l \mid h^{l-1})`
given by the RBMs' up-conditionals, Jensen's inequality gives

.. math:: \log p(v) \ge \mathbb{E}_Q\Big[-F_{\rm top}(h^{L-1}) - \log Z_{\rm top}
          + \sum_{l=1}^{L-1} \log p(h^{l-1} \mid h^{l})\Big] + \mathcal{H}(Q),

with :math:`h^0 = v`, :math:`F_{\rm top}` the top RBM's free energy (so
:math:`e^{-F_{\rm top}} = p^*(h^{L-1})`, its unnormalised marginal) and
:math:`\mathcal{H}(Q) = \sum_l \mathbb{E}_Q[\mathcal{H}(q_l(\cdot \mid h^{l-1}))]`.
For :math:`L = 2` this is equation (15) of Salakhutdinov & Murray (2008); for
:math:`L = 1` it is the RBM's exact :math:`\log p(v)`.

References
----------
Hinton, G., Osindero, S. & Teh, Y. (2006). A fast learning algorithm for deep belief
nets, section 4. Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis
of deep belief networks. ICML, section 4.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from ebmlab._validation import check_positive_int
from ebmlab.estimators.ais import LogZEstimate, ais_log_partition
from ebmlab.estimators.exact import enumerate_binary, exact_log_partition
from ebmlab.models.dbn import DBN

EXACT_TOP_MAX_UNITS = 20  # exact log Z of the top RBM below 2**20 configurations (about a second)

__all__ = ["DBNBound", "dbn_bound_terms", "dbn_exact_log_likelihood", "dbn_log_likelihood_bound"]


@dataclass(frozen=True)
class DBNBound:
    """A DBN's mean variational lower bound on :math:`\\log p(v)` (nats per example).

    Attributes
    ----------
    value : float
        Mean bound with the point estimate of :math:`\\log Z_{\\rm top}`.
    lower, upper : float
        The bound with the upper / lower end of the :math:`\\log Z_{\\rm top}` interval
        (equal to ``value`` when :math:`\\log Z` is exact).
    standard_error : float
        Monte Carlo standard error of ``value`` from sampling :math:`Q` (0 when exact,
        NaN with one sample per example).
    log_z, log_z_lower, log_z_upper : float
        The top RBM's :math:`\\log Z` and its interval.
    n_samples : int
        Samples of :math:`Q` per example (0: expectation computed by enumeration).
    n_examples : int
    seconds : float
    """

    value: float
    lower: float
    upper: float
    standard_error: float
    log_z: float
    log_z_lower: float
    log_z_upper: float
    n_samples: int
    n_examples: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def _check_binary(dbn: DBN, data: torch.Tensor) -> torch.Tensor:
    dbn.check_visible(data, "data")
    if not torch.all((data == 0) | (data == 1)):
        raise ValueError("data must be binary (0/1) for a log-likelihood bound; binarize it first")
    return data


def _log_conditional(rbm, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(x \\mid h)` of an RBM's visible conditional, shape (batch,)."""
    logits = rbm.visible_preactivation(h)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def _bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of independent Bernoulli(sigmoid(logits)) units, summed over the last axis."""
    p = torch.sigmoid(logits)
    return F.binary_cross_entropy_with_logits(logits, p, reduction="none").sum(-1)


@torch.no_grad()
def dbn_bound_terms(
    dbn: DBN, v: torch.Tensor, *, n_samples: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-example bound without :math:`-\log Z_{\rm top}`, and its Monte Carlo variance.

    Draws ``n_samples`` up-passes :math:`h \sim Q(\cdot \mid v)` per row; the entropy
    of each layer's factorial :math:`q_l` is computed in closed form given the sample
    below (Rao-Blackwellised). Returns ``(terms, variance)``, each of shape (batch,),
    ``variance`` being that of the mean over the samples (NaN for one sample).
    """
    check_positive_int("n_samples", n_samples)
    if dbn.n_layers == 1:
        terms = -dbn.top.free_energy(v)
        return terms, torch.zeros_like(terms)
    x = v.repeat_interleave(n_samples, dim=0)
    total = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
    for layer, rbm in enumerate(dbn.rbms[:-1]):
        logits = dbn.recognition_preactivation(x, layer)  # Q: the up-pass, tied or not
        total += _bernoulli_entropy(logits)
        h = (
            torch.rand(logits.shape, generator=generator, dtype=x.dtype, device=x.device)
            < torch.sigmoid(logits)
        ).to(x.dtype)
        total += _log_conditional(rbm, x, h)
        x = h
    total -= dbn.top.free_energy(x)
    per_sample = total.view(v.shape[0], n_samples)
    variance = (
        per_sample.var(1) / n_samples
        if n_samples > 1
        else torch.full_like(total[: v.shape[0]], math.nan)
    )
    return per_sample.mean(1), variance


@torch.no_grad()
def _enumerated_terms(
    dbn: DBN, v: torch.Tensor, *, max_units: int, chunk_size: int = 2**12
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""For a 2-layer DBN, enumerate :math:`h^1`: returns the exact bound terms (without
    :math:`-\log Z`) and :math:`\log \sum_{h^1} p^*(h^1) p(v \mid h^1)`, both (batch,)."""
    if dbn.n_layers != 2:
        raise ValueError(f"exact enumeration needs a DBN with 2 hidden layers; got {dbn.n_layers}")
    if dbn.rbms[0].n_hidden > max_units:
        raise ValueError(
            f"exact enumeration of 2**{dbn.rbms[0].n_hidden} first-layer states exceeds "
            f"max_units={max_units}; pass n_samples instead"
        )
    # float64 copies: sums over up to 2**20 states, and the caller's model stays untouched.
    bottom, top = (copy.deepcopy(rbm).to(torch.float64) for rbm in dbn.rbms)
    v = v.to(torch.float64)
    if dbn.recognition is None:
        logits = bottom.hidden_preactivation(v)
    else:  # Q from the untied up-pass, in float64 too
        up = dbn.recognition[0]
        logits = torch.addmm(up.bias.detach().double(), v, up.weight.detach().double())
    expectation = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    joint = []
    for start in range(0, 2**bottom.n_hidden, chunk_size):
        stop = min(start + chunk_size, 2**bottom.n_hidden)
        h = enumerate_binary(
            bottom.n_hidden, start=start, stop=stop, dtype=torch.float64, device=v.device
        )
        log_q = F.logsigmoid(logits) @ h.t() + F.logsigmoid(-logits) @ (1 - h).t()  # (B, K)
        visible_logits = bottom.visible_preactivation(h)
        log_lik = v @ F.logsigmoid(visible_logits).t() + (1 - v) @ F.logsigmoid(-visible_logits).t()
        log_prior = -top.free_energy(h)
        term = log_lik + log_prior[None, :]
        expectation += (log_q.exp() * term).sum(1)
        joint.append(torch.logsumexp(term, 1))
    entropy = _bernoulli_entropy(logits)
    return expectation + entropy, torch.logsumexp(torch.stack(joint, 1), 1)


def _top_log_partition(
    dbn: DBN, log_z, base_data, n_chains, n_betas, generator, progress
) -> LogZEstimate:
    if isinstance(log_z, LogZEstimate):
        return log_z
    if log_z is not None:
        value = float(log_z)
        return LogZEstimate(value, value, value, n_chains=0, n_betas=0, seconds=0.0)
    top = dbn.top
    if min(top.n_visible, top.n_hidden) <= EXACT_TOP_MAX_UNITS:
        value = exact_log_partition(top)
        return LogZEstimate(value, value, value, n_chains=0, n_betas=0, seconds=0.0)
    if base_data is not None:
        base_data = dbn.transform(base_data, layer=dbn.n_layers - 1)
    return ais_log_partition(
        top,
        n_chains=n_chains,
        betas=n_betas,
        base_data=base_data,
        generator=generator,
        progress=progress,
    )


def dbn_log_likelihood_bound(
    dbn: DBN,
    data: torch.Tensor,
    *,
    n_samples: int = 10,
    exact: bool = False,
    log_z: float | LogZEstimate | None = None,
    n_chains: int = 100,
    n_betas: int | torch.Tensor | None = None,
    base_data: torch.Tensor | None = None,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> DBNBound:
    r"""Mean variational lower bound on :math:`\log p(v)` over the rows of ``data``.

    Parameters
    ----------
    dbn : DBN
    data : torch.Tensor
        Binary ``(N, n_visible)`` data.
    n_samples : int
        Samples of :math:`Q(h \mid v)` per row (ignored when ``exact``).
    exact : bool
        Enumerate :math:`h^1` (2-layer DBNs with at most 20 first-layer units).
    log_z : float or LogZEstimate, optional
        The top RBM's :math:`\log Z`. ``None``: exact enumeration when the top RBM has a
        layer of at most 20 units, else :func:`~ebmlab.estimators.ais_log_partition`
        with ``n_chains``, ``n_betas`` and a base model fitted to ``base_data``
        (visible-level training data, passed up by mean field).
    batch_size : int
        Rows processed at once.
    generator : torch.Generator, optional
        Randomness of the samples of :math:`Q` and of AIS.

    Returns
    -------
    DBNBound

    Notes
    -----
    See the module docstring for the bound. ``lower``/``upper`` carry the
    :math:`\log Z` interval only; the sampling error of :math:`Q` is in
    ``standard_error``. An AIS :math:`\log Z` that is too low makes the "bound"
    optimistic, which is why the interval is reported.
    """
    start = time.perf_counter()
    _check_binary(dbn, data)
    check_positive_int("batch_size", batch_size)
    estimate = _top_log_partition(dbn, log_z, base_data, n_chains, n_betas, generator, progress)
    sums, variances = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for chunk in data.split(batch_size):
        if exact and dbn.n_layers > 1:
            terms, _ = _enumerated_terms(dbn, chunk, max_units=EXACT_TOP_MAX_UNITS)
            variance = torch.zeros_like(terms)
        else:
            terms, variance = dbn_bound_terms(dbn, chunk, n_samples=n_samples, generator=generator)
        sums += terms.double().sum().cpu()
        variances += variance.double().sum().cpu()
    n = data.shape[0]
    mean = sums.item() / n
    return DBNBound(
        value=mean - estimate.log_z,
        lower=mean - estimate.log_z_upper,
        upper=mean - estimate.log_z_lower,
        standard_error=math.sqrt(variances.item()) / n,
        log_z=estimate.log_z,
        log_z_lower=estimate.log_z_lower,
        log_z_upper=estimate.log_z_upper,
        n_samples=0 if exact else n_samples,
        n_examples=n,
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def dbn_exact_log_likelihood(
    dbn: DBN, data: torch.Tensor, *, max_units: int = EXACT_TOP_MAX_UNITS
) -> torch.Tensor:
    r"""Exact :math:`\log p(v)` per row of a tiny 1- or 2-layer DBN, by enumeration (float64).

    Notes
    -----
    .. math:: \log p(v) = \log \sum_{h^1} p^*_{\rm top}(h^1)\, p(v \mid h^1) - \log Z_{\rm top}.
    """
    _check_binary(dbn, data)
    log_z = exact_log_partition(dbn.top, max_units=max_units)
    if dbn.n_layers == 1:
        return -dbn.top.free_energy(data).to(torch.float64) - log_z
    _, log_joint = _enumerated_terms(dbn, data, max_units=max_units)
    return log_joint - log_z
