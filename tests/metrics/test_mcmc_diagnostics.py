"""ESS and split R-hat against closed forms: AR(1) chains, iid draws, shifted chains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmlab.metrics.mcmc import effective_sample_size, split_rhat, summarize_chains


def ar1_chains(n_chains: int, n_draws: int, phi: float, seed: int) -> torch.Tensor:
    """Stationary AR(1) chains x_t = phi x_{t-1} + e_t, e_t ~ N(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_chains, n_draws, generator=generator, dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0] / math.sqrt(1 - phi**2)  # start in the stationary law N(0, 1/(1-phi^2))
    for t in range(1, n_draws):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ess_of_ar1_matches_closed_form(phi):
    # ESS = M N (1 - phi) / (1 + phi). The integrated autocorrelation time estimated
    # with a window of M_w lags has relative variance ~ 2 (2 M_w + 1) / (M N) (Sokal 1997);
    # Geyer's window is a few tau, M_w <= 5 tau = 95 for phi = 0.9, so with M N = 160,000 draws
    # the relative sd is <= sqrt(2 * 191 / 160000) = 4.9%: 3 sd gives 15%.
    n_chains, n_draws = 16, 10_000
    chains = ar1_chains(n_chains, n_draws, phi, seed=1)
    expected = n_chains * n_draws * (1 - phi) / (1 + phi)
    ess = effective_sample_size(chains).item()
    assert abs(ess / expected - 1) < 0.15, (ess, expected)


def test_ess_distinguishes_correlation_levels():
    chains_fast = ar1_chains(8, 4000, 0.3, seed=2)
    chains_slow = ar1_chains(8, 4000, 0.95, seed=2)
    assert effective_sample_size(chains_slow) < 0.2 * effective_sample_size(chains_fast)


def test_ess_and_rhat_of_iid_draws():
    # For iid draws ESS ~ M N (relative sd ~ sqrt(2 * 3 / 40000) ~ 1.2% with a window of ~1 lag;
    # allow 10%). R-hat^2 - 1 is O(1/N) with sd ~ sqrt(2/(2M-1))/N: far below 0.01 at N = 2500.
    generator = torch.Generator().manual_seed(3)
    draws = torch.randn(8, 5000, 3, generator=generator, dtype=torch.float64)
    ess = effective_sample_size(draws)
    assert ess.shape == (3,)
    assert ((ess / 40_000 - 1).abs() < 0.1).all(), ess
    rhat = split_rhat(draws)
    assert (rhat < 1.01).all() and (rhat > 0.99).all(), rhat


def test_rhat_detects_chains_at_different_locations():
    # Half the chains centred at +d, half at -d, unit variance. With the split chains
    # (2M halves of n draws) B/n -> d^2 * 2M / (2M - 1) and W -> 1, so
    # R-hat -> sqrt((n - 1)/n + d^2 * 2M / (2M - 1)); the sampling error of the chain
    # means (sd 1/sqrt(n) each) moves this by ~ 1/sqrt(n) = 2%: tolerance 0.05.
    generator = torch.Generator().manual_seed(4)
    n_chains, n_draws, d = 8, 2000, 1.0
    draws = torch.randn(n_chains, n_draws, generator=generator, dtype=torch.float64)
    draws[: n_chains // 2] += d
    draws[n_chains // 2 :] -= d
    m, n = 2 * n_chains, n_draws // 2
    expected = math.sqrt((n - 1) / n + d**2 * m / (m - 1))
    assert abs(split_rhat(draws).item() - expected) < 0.05


def test_split_rhat_detects_drift_within_chains():
    # A trend within each chain is invisible to non-split R-hat when all chains drift alike.
    # Split: the halves' means are 1.25 and 3.75 (B/n = 1.25^2 * 8/7 = 1.79) and each half
    # has variance 1 + 2.5^2/12 = 1.52, so R-hat ~ sqrt((1.52 + 1.79) / 1.52) = 1.47.
    trend = torch.linspace(0, 5, 2000, dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    draws = torch.randn(4, 2000, generator=generator, dtype=torch.float64) + trend
    assert abs(split_rhat(draws).item() - 1.475) < 0.05
    assert effective_sample_size(draws).item() < effective_sample_size(draws, split=False).item()


def test_summary_mcse_and_numpy_input():
    chains = ar1_chains(4, 2000, 0.5, seed=6).numpy()
    summary = summarize_chains(chains)
    assert summary.n_chains == 4 and summary.n_draws == 2000
    ess = summary.ess.item()
    assert summary.mcse.item() == pytest.approx(summary.sd.item() / math.sqrt(ess))
    assert summary.mean.item() == pytest.approx(float(np.mean(chains)))


def test_constant_component_gives_nan_and_bad_input_raises():
    draws = torch.zeros(4, 100, 2, dtype=torch.float64)
    draws[..., 1] = torch.randn(
        4, 100, generator=torch.Generator().manual_seed(7), dtype=torch.float64
    )
    ess = effective_sample_size(draws)
    assert math.isnan(ess[0].item()) and math.isfinite(ess[1].item())
    with pytest.raises(ValueError, match="n_chains, n_draws"):
        effective_sample_size(torch.zeros(10))
    with pytest.raises(ValueError, match="draws per chain"):
        split_rhat(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        effective_sample_size(torch.full((2, 10), float("nan")))
