"""MCMC diagnostics: effective sample size, split R-hat and Monte Carlo standard errors.

Samples are arranged as (n_chains, n_draws) or (n_chains, n_draws, *event);
every diagnostic is computed per event component and returned as a float64
tensor of the event's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ChainSummary:
    """Per-component summary of MCMC draws (tensors of the event's shape)."""

    mean: torch.Tensor
    sd: torch.Tensor
    ess: torch.Tensor
    rhat: torch.Tensor
    mcse: torch.Tensor
    n_chains: int
    n_draws: int


def _as_chains(samples: object, *, min_draws: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """(n_chains, n_draws, *event) -> float64 array (n_chains, n_draws, n_components)."""
    if isinstance(samples, torch.Tensor):
        array = samples.detach().cpu().double().numpy()
    else:
        array = np.asarray(samples, dtype=np.float64)
    if array.ndim < 2:
        raise ValueError(
            f"samples must have shape (n_chains, n_draws, ...); got shape {array.shape}"
        )
    if array.shape[1] < min_draws:
        raise ValueError(f"samples need >= {min_draws} draws per chain; got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("samples contain NaN or inf values")
    event = array.shape[2:]
    return array.reshape(array.shape[0], array.shape[1], -1), event


def _split(chains: np.ndarray) -> np.ndarray:
    """Cut each chain into halves (dropping the middle draw of an odd chain)."""
    half = chains.shape[1] // 2
    return np.concatenate([chains[:, :half], chains[:, -half:]], axis=0)


def _autocovariance(chains: np.ndarray) -> np.ndarray:
    """Biased (divide-by-n) autocovariance of each chain along axis 1, via FFT."""
    n = chains.shape[1]
    centred = chains - chains.mean(axis=1, keepdims=True)
    size = 1 << (2 * n - 1).bit_length()  # zero padding avoids circular wrap-around
    spectrum = np.fft.rfft(centred, n=size, axis=1)
    return np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=1)[:, :n] / n


def _between_within(chains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Within-chain variance W and the pooled estimate var_plus of the target variance."""
    n_chains, n = chains.shape[:2]
    within = chains.var(axis=1, ddof=1).mean(axis=0)
    between_over_n = chains.mean(axis=1).var(axis=0, ddof=1) if n_chains > 1 else 0.0 * within
    return within, (n - 1) / n * within + between_over_n


def _ess_of(chains: np.ndarray) -> np.ndarray:
    n_chains, n = chains.shape[:2]
    within, var_plus = _between_within(chains)
    acov = _autocovariance(chains).mean(axis=0)  # (n, components)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (within - acov) / var_plus
    rho[0] = 1.0
    n_pairs = n // 2
    pairs = rho[: 2 * n_pairs : 2] + rho[1 : 2 * n_pairs : 2]  # Geyer's Gamma_k
    # Initial positive sequence: stop at the first non-positive pair sum; then
    # make it monotone (each pair sum no larger than the previous one).
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)
    monotone = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.where(positive, monotone, 0.0).sum(axis=0)
    total = n_chains * n
    # tau > 0 always for a non-degenerate chain; a floor at 1/log10(total) is
    # Stan's cap on antithetic (super-efficient) estimates.
    tau = np.maximum(tau, 1.0 / np.log10(max(total, 10)))
    ess = total / tau
    ess[~(var_plus > 0)] = np.nan
    return ess


def effective_sample_size(samples: object, *, split: bool = True) -> torch.Tensor:
    r"""Effective sample size of MCMC draws, pooled over chains.

    Parameters
    ----------
    samples : Tensor or array, shape (n_chains, n_draws, *event)
        Draws; at least 4 per chain.
    split : bool
        Split each chain in two halves first (detects drift within chains).

    Returns
    -------
    Tensor
        ESS per component, float64, shape ``event`` (NaN for a constant component).

    Notes
    -----
    With :math:`M` chains of :math:`N` draws, within-chain variance :math:`W`,
    between-chain variance :math:`B` and
    :math:`\widehat{\operatorname{var}}^+ = \frac{N-1}{N} W + \frac{B}{N}`, the
    combined autocorrelation at lag :math:`t` is
    :math:`\hat\rho_t = 1 - (W - \overline{\gamma}_t) / \widehat{\operatorname{var}}^+`
    (:math:`\overline\gamma_t` the mean over chains of the lag-:math:`t`
    autocovariance). Geyer's initial monotone sequence sums the pairs
    :math:`P_k = \hat\rho_{2k} + \hat\rho_{2k+1}` while they are positive,
    forced non-increasing, giving :math:`\hat\tau = -1 + 2 \sum_k P_k` and
    :math:`\mathrm{ESS} = M N / \hat\tau`. For an AR(1) chain with coefficient
    :math:`\phi`, :math:`\tau = (1 + \phi) / (1 - \phi)`.

    References
    ----------
    Geyer, C. J. (1992). Practical Markov chain Monte Carlo. Statistical
    Science 7(4). Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed.,
    section 11.5. Vehtari, A. et al. (2021). Rank-normalization, folding, and
    localization: an improved R-hat. Bayesian Analysis 16(2).
    """
    chains, event = _as_chains(samples, min_draws=4)
    if split:
        chains = _split(chains)
    return torch.from_numpy(_ess_of(chains).reshape(event))


def split_rhat(samples: object) -> torch.Tensor:
    r"""Split potential scale reduction factor :math:`\hat R` (Gelman-Rubin on half-chains).

    Parameters
    ----------
    samples : Tensor or array, shape (n_chains, n_draws, *event)
        Draws; at least 4 per chain.

    Returns
    -------
    Tensor
        :math:`\hat R` per component, float64, shape ``event``.

    Notes
    -----
    Each chain is split in two and
    :math:`\hat R = \sqrt{\widehat{\operatorname{var}}^+ / W}`. It tends to 1
    from above when all chains sample the same distribution; values above
    about 1.01 signal chains that have not mixed (Vehtari et al. 2021). This
    is the classic split-:math:`\hat R`, without rank normalisation.

    References
    ----------
    Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., section 11.4.
    """
    chains, event = _as_chains(samples, min_draws=4)
    within, var_plus = _between_within(_split(chains))
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(var_plus / within)
    return torch.from_numpy(rhat.reshape(event))


def summarize_chains(samples: object) -> ChainSummary:
    """Mean, standard deviation, split ESS, split R-hat and MCSE = sd / sqrt(ESS)."""
    chains, event = _as_chains(samples, min_draws=4)
    flat = chains.reshape(-1, chains.shape[2])
    sd = flat.std(axis=0, ddof=1)
    ess = effective_sample_size(samples).reshape(-1).numpy()
    mean = flat.mean(axis=0)
    return ChainSummary(
        mean=torch.from_numpy(mean.reshape(event)),
        sd=torch.from_numpy(sd.reshape(event)),
        ess=torch.from_numpy(ess.reshape(event)),
        rhat=split_rhat(samples),
        mcse=torch.from_numpy((sd / np.sqrt(ess)).reshape(event)),
        n_chains=chains.shape[0],
        n_draws=chains.shape[1],
    )
