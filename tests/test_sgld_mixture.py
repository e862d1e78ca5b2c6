"""The Welling & Teh mixture experiment: the exact posterior and a short SGLD run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ebmlab.experiments.sgld_mixture import (
    log_likelihood,
    log_posterior,
    mixture_data,
    run_sgld_mixture,
)


def test_log_posterior_matches_scipy_up_to_a_constant():
    data = mixture_data(0)
    assert data.shape == (100,)
    thetas = torch.tensor([[0.0, 1.0], [1.0, -1.0], [0.3, 0.2], [-1.0, 2.0]], dtype=torch.float64)

    def reference(t1: float, t2: float) -> float:
        x = data.numpy()
        sd = math.sqrt(2.0)
        lik = 0.5 * stats.norm.pdf(x, t1, sd) + 0.5 * stats.norm.pdf(x, t1 + t2, sd)
        prior = stats.norm.logpdf(t1, 0, math.sqrt(10.0)) + stats.norm.logpdf(t2, 0, 1.0)
        return prior + np.log(lik).sum()

    ours = log_posterior(thetas, data)
    expected = torch.tensor([reference(*t.tolist()) for t in thetas], dtype=torch.float64)
    torch.testing.assert_close(ours - ours[0], expected - expected[0])
    # Swapping the components leaves the likelihood unchanged: the mirror mode.
    mirrored = torch.stack([thetas[:, 0] + thetas[:, 1], -thetas[:, 1]], dim=1)
    torch.testing.assert_close(
        log_likelihood(thetas[:, None, :], data).sum(-1),
        log_likelihood(mirrored[:, None, :], data).sum(-1),
    )


@pytest.mark.slow
def test_short_run_finds_both_modes_with_the_exact_weights(tmp_path):
    # 100 chains that each settle in one mode: the fraction in the upper mode (theta2 > 0)
    # is an average of ~100 nearly independent indicators, sd <= 0.5 / sqrt(100) = 0.05;
    # allow 4 sd.
    summary = run_sgld_mixture(tmp_path, n_steps=2000, n_chains=100, seed=0)
    for name in ("samples.npy", "posterior.png", "trace.png", "summary.json"):
        assert (tmp_path / name).is_file()
    samples = np.load(tmp_path / "samples.npy")
    assert samples.shape[1:] == (100, 2)
    exact = summary["fraction_mode_upper_exact"]
    assert 0.2 < exact < 0.8  # the posterior really is bimodal
    assert abs(summary["fraction_mode_upper_sgld"] - exact) < 4 * 0.05
    assert (samples[..., 1] > 0.5).any() and (samples[..., 1] < -0.5).any()
    for k in range(2):
        assert summary["posterior_mean_sgld"][k] == pytest.approx(
            summary["posterior_mean_exact"][k], abs=0.25
        )
    with pytest.raises(ValueError, match="n_steps"):
        run_sgld_mixture(tmp_path, n_steps=5)
