r"""Reverse AIS (RAISE): a conservative estimate of the test log-likelihood.

References
----------
Burda, Y., Grosse, R. & Salakhutdinov, R. (2015). Accurate and conservative estimates
of MRF log-likelihood using reverse annealing. AISTATS, sections 3-4.
"""

from __future__ import annotations

import math
import time

import torch

from ebmlab._validation import check_positive_int
from ebmlab.estimators import rbm_path as _rbm_path  # noqa: F401  (registers the RBM path)
from ebmlab.estimators.annealing import annealing_path, check_betas, default_betas, run_annealing
from ebmlab.estimators.likelihood import LogLikelihoodEstimate, mean_and_stderr

__all__ = ["raise_log_likelihood", "DEFAULT_RAISE_BETAS"]

#: Default number of inverse temperatures for RAISE. Every test point pays for its own
#: ``n_chains`` runs, so the default is the published AIS schedule's shape squeezed to
#: 1,000 values (see ``default_betas(1000)``) rather than its 14,501.
DEFAULT_RAISE_BETAS = 1000


@torch.no_grad()
def raise_log_likelihood(
    model: torch.nn.Module,
    data: torch.Tensor,
    *,
    n_chains: int = 10,
    betas: int | torch.Tensor | None = None,
    base_data: torch.Tensor | None = None,
    batch_size: int = 100,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> LogLikelihoodEstimate:
    r"""Mean test log-likelihood by reverse annealed importance sampling (RAISE).

    Parameters
    ----------
    model
        A model whose annealing path supports ``state_from_data`` (the Bernoulli RBM).
    data : torch.Tensor
        Test data, shape ``(batch, n_visible)``.
    n_chains : int
        Reverse runs per test point.
    betas : int or torch.Tensor, optional
        The forward schedule (reversed inside). ``None``: ``default_betas(1000)``, the
        Salakhutdinov-Murray shape with 1,000 values; int and tensor as in
        :func:`~ebmlab.estimators.ais.ais_log_partition`.
    base_data : torch.Tensor, optional
        Training data for the base-rate model (``None``: uniform base).
    batch_size : int
        Test points annealed together (``batch_size * n_chains`` chains in memory).
    generator : torch.Generator, optional
        Randomness.
    progress : bool
        Show a tqdm bar over the temperatures of each batch.

    Returns
    -------
    LogLikelihoodEstimate
        ``method="raise"``; ``lower``/``upper`` are ``value -/+ 3 stderr``.

    Notes
    -----
    RAISE evaluates the *annealing model* :math:`p_{\text{ann}}(v)`: draw
    :math:`v_0 \sim p_0`, apply the transitions :math:`T_1, \dots, T_K` (:math:`T_K` the
    model's own Gibbs sweep) and output :math:`v_K`. It equals :math:`p(v)` for perfect
    annealing. Its proposal runs the chain backwards from the test point, :math:`v_K = v`:
    :math:`v_{k-1} \sim T_k(\cdot \mid v_k)` (block Gibbs is reversible, so :math:`T_k` is
    its own reversal; the first step draws :math:`h \sim p(h \mid v)` exactly). The weight

    .. math:: \log w = -F(v) - \log Z_0
              + \sum_{k=0}^{K-1} \log f_{\beta_k}(v_k) - \log f_{\beta_{k+1}}(v_k)

    has :math:`E[w] = p_{\text{ann}}(v)`, so :math:`\log \frac1M \sum_m w_m` is a stochastic
    lower bound on :math:`\log p_{\text{ann}}(v)`: in expectation RAISE under-estimates,
    where AIS with an estimated :math:`\log Z` tends to over-estimate.
    """
    check_positive_int("n_chains", n_chains)
    check_positive_int("batch_size", batch_size)
    schedule = default_betas(DEFAULT_RAISE_BETAS) if betas is None else check_betas(betas)
    check_visible = getattr(model, "check_visible", None)
    if check_visible is not None:
        check_visible(data, "data")
    if data.shape[0] == 0:
        raise ValueError("data must hold at least one row; got shape (0, ...)")
    start = time.perf_counter()
    path = annealing_path(model, base_data=base_data)
    reverse = schedule.flip(0).tolist()
    per_point = []
    for batch in data.split(batch_size):
        log_weights = _reverse_log_weights(path, batch, n_chains, reverse, generator, progress)
        per_point.append(
            torch.logsumexp(log_weights.view(-1, n_chains), dim=1) - math.log(n_chains)
        )
    values = torch.cat(per_point).cpu()
    if not torch.isfinite(values).all():
        raise ValueError(
            "RAISE produced non-finite log-weights; check the model parameters for inf/NaN"
        )
    mean, stderr = mean_and_stderr(values)
    return LogLikelihoodEstimate(
        value=mean,
        lower=mean - 3 * stderr,
        upper=mean + 3 * stderr,
        stderr=stderr,
        n_samples=data.shape[0],
        method="raise",
        n_chains=n_chains,
        n_betas=schedule.numel(),
        seconds=time.perf_counter() - start,
    )


def _reverse_log_weights(path, batch, n_chains, reverse_betas, generator, progress) -> torch.Tensor:
    """Log-weights of ``n_chains`` reverse runs per row of ``batch``, shape (rows * n_chains,)."""
    state = path.state_from_data(batch.repeat_interleave(n_chains, dim=0))
    # log f_1(v) = -F(v): the exact unnormalised marginal of the test point.
    log_weights = path.log_unnormalized(state, 1.0) - path.log_base_partition
    state = path.transition(state, 1.0, generator=generator)
    run_annealing(
        path,
        state,
        reverse_betas,
        log_weights,
        generator=generator,
        progress=progress,
        description="RAISE",
    )
    return log_weights
