"""The Welling & Teh mixture experiment: the exact posterior and a short SGLD run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ebmlab.experiments import driver
from ebmlab.experiments.registry import evaluate_run, open_run, sample_run
from ebmlab.experiments.sgld_mixture import (
    MixtureChains,
    SGLDMixtureConfig,
    log_likelihood,
    log_posterior,
    log_prior,
    mixture_data,
    sgld_mixture_chains,
)
from ebmlab.samplers.parallel_sgld import ParallelSGLD


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
    config = SGLDMixtureConfig(n_steps=2000, n_chains=100, seed=0)
    run = driver.train(config, tmp_path / "run", progress=False)
    for name in ("posterior.png", "trace.png"):
        assert (run.figures / name).stat().st_size > 1000
    summary = evaluate_run(run.path)
    samples = open_run(run.path).chains.collector.samples.numpy()
    assert samples.shape == (1800, 100, 2) and summary["n_kept_per_chain"] == 1800
    exact = summary["fraction_mode_upper_exact"]
    assert 0.2 < exact < 0.8  # the posterior really is bimodal
    assert abs(summary["fraction_mode_upper_sgld"] - exact) < 4 * 0.05
    assert (samples[..., 1] > 0.5).any() and (samples[..., 1] < -0.5).any()
    for k in range(2):
        assert summary["posterior_mean_sgld"][k] == pytest.approx(
            summary["posterior_mean_exact"][k], abs=0.25
        )
    # Chains stay in their mode once the step has decayed: R-hat far above 1, ESS ~ chains.
    assert min(summary["rhat"]) > 1.5 and 50 < min(summary["ess"]) < 1000
    with pytest.raises(ValueError, match="n_steps"):
        SGLDMixtureConfig(n_steps=5)


def test_chunked_resumed_run_equals_one_uninterrupted_chain_run(tmp_path):
    data = mixture_data(0)
    reference = sgld_mixture_chains(data, 8, 130, 0)
    config = SGLDMixtureConfig(n_steps=130, n_chains=8, steps_per_chunk=30, checkpoint_every=2)
    # Stops at the chunk boundary after step 40 (60); a killed run left a stray line 90.
    run = driver.train(config, tmp_path / "run", progress=False, stop_after=40).path
    (run / "metrics.jsonl").open("a").write('{"iteration": 90}\n')
    driver.resume(run, progress=False)
    recipe = open_run(run)
    assert torch.equal(recipe.chains.collector.samples, reference.samples)
    assert torch.equal(recipe.chains.collector.weights, reference.weights)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [int(line.split(":")[1].split(",")[0]) for line in lines] == [30, 60, 90, 120, 130]
    # The draws are posterior draws: finite, and a figure of them is written.
    samples, _ = recipe.sample(5, 3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 2) and torch.isfinite(samples).all()
    assert sample_run(run, n=50, n_steps=2, seed=0, out=tmp_path / "s.png").stat().st_size > 1000


def parallel_chains(data, n_steps=130):
    sampler = ParallelSGLD(log_prior, log_likelihood, data, steps_per_call=7, compile=False)
    return MixtureChains(data, 8, n_steps, 0, parallel=sampler)


def test_parallel_chains_keep_the_loops_draws_and_resume_exactly():
    data = mixture_data(0)
    whole = parallel_chains(data)
    whole.advance(130)
    parted = parallel_chains(data)
    parted.advance(50)
    resumed = parallel_chains(data)
    resumed.load_state_dict(parted.state_dict())
    resumed.advance(200)  # clipped at the run's 130 steps
    assert resumed.step == whole.step == 130
    torch.testing.assert_close(resumed.collector.samples, whole.collector.samples,
                               rtol=0, atol=1e-12)  # fmt: skip
    # The same burn-in, thinning and step-size weights as the eager loop; other draws.
    eager = sgld_mixture_chains(data, 8, 130, 0)
    assert torch.equal(whole.collector.weights, eager.weights)
    assert whole.collector.samples.shape == eager.samples.shape
    assert not torch.allclose(whole.collector.samples, eager.samples)
    assert torch.equal(whole.theta.detach(), whole.parallel_state.theta)


@pytest.mark.slow
def test_the_compiled_recipe_runs_and_resumes(tmp_path):
    config = SGLDMixtureConfig(n_steps=40, n_chains=4, steps_per_chunk=20, checkpoint_every=1,
                               compile=True)  # fmt: skip
    whole = driver.train(config, tmp_path / "whole", progress=False).path
    parted = driver.train(config, tmp_path / "parted", progress=False, stop_after=20).path
    driver.resume(parted, progress=False)
    samples = [open_run(run).chains.collector.samples for run in (whole, parted)]
    torch.testing.assert_close(samples[1], samples[0], rtol=0, atol=1e-12)
    assert open_run(whole).chains.parallel._block.compiled  # noqa: SLF001 - compiled, no fallback
    assert evaluate_run(whole)["n_kept_per_chain"] == samples[0].shape[0]
