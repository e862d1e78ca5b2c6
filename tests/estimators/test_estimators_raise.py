"""Reverse AIS (RAISE) against the exact log-likelihood of tiny RBMs."""

from __future__ import annotations

import itertools
import statistics

import pytest
import torch

from ebmlab.estimators import exact_log_likelihood, raise_log_likelihood
from ebmlab.models.rbm import BernoulliRBM


def make_rbm(n_visible: int, n_hidden: int, seed: int) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(
        n_visible, n_hidden, weight_std=1.0, generator=generator, dtype=torch.float64
    )
    with torch.no_grad():
        model.visible_bias.normal_(0.0, 1.0, generator=generator)
        model.hidden_bias.normal_(0.0, 1.0, generator=generator)
    return model


def exact_samples(model: BernoulliRBM, n: int, seed: int) -> torch.Tensor:
    """Exact draws from p(v), by enumerating every v and summing h out in closed form."""
    v = torch.tensor(
        list(itertools.product([0.0, 1.0], repeat=model.n_visible)), dtype=torch.float64
    )
    log_p = -model.free_energy(v).detach()
    index = torch.multinomial(
        torch.softmax(log_p, 0), n, replacement=True, generator=torch.Generator().manual_seed(seed)
    )
    return v[index]


def raise_value(model, data, seed, **kwargs) -> float:
    return raise_log_likelihood(
        model, data, generator=torch.Generator().manual_seed(seed), **kwargs
    ).value


def test_raise_is_a_stochastic_lower_bound_and_accurate():
    model = make_rbm(12, 8, seed=0)
    # 200 exact draws: E_p[log p_ann(v)] <= E_p[log p(v)] holds on average over p, so the
    # data set must be large enough for p_ann's per-point excess to average out.
    data = exact_samples(model, 200, seed=1)
    exact = exact_log_likelihood(model, data)
    values = [raise_value(model, data, seed, n_chains=4, betas=300) for seed in range(4)]
    mean, sd = statistics.mean(values), statistics.stdev(values)
    # The seed-to-seed spread is the Monte Carlo error of RAISE on this fixed data set;
    # E[RAISE] <= mean log p_ann, so the mean may exceed exact by at most 3 standard
    # errors of the 4-run mean (measured: all four runs 0.004-0.015 nats below).
    assert mean <= exact + 3 * sd / len(values) ** 0.5, (values, exact)
    assert abs(mean - exact) < 0.1, (values, exact)


def test_raise_is_conservative_with_poor_annealing():
    model = make_rbm(12, 8, seed=2)
    data = exact_samples(model, 30, seed=3)
    exact = exact_log_likelihood(model, data)
    # Three temperatures: a poor annealing model and a loose bound, both push RAISE down
    # (Jensen's inequality and Gibbs' inequality); measured gap about 1 nat.
    assert raise_value(model, data, 0, n_chains=5, betas=3) < exact - 0.2


def test_default_schedule_and_fields():
    model = make_rbm(6, 4, seed=4)
    data = exact_samples(model, 3, seed=0)
    estimate = raise_log_likelihood(
        model, data, n_chains=2, generator=torch.Generator().manual_seed(0)
    )
    assert (estimate.method, estimate.n_betas, estimate.n_chains, estimate.n_samples) == (
        "raise",
        1000,
        2,
        3,
    )
    assert estimate.lower == pytest.approx(estimate.value - 3 * estimate.stderr)
    assert estimate.upper == pytest.approx(estimate.value + 3 * estimate.stderr)


def test_same_seed_same_estimate_and_batching_is_consistent():
    model = make_rbm(8, 5, seed=5)
    data = exact_samples(model, 7, seed=0)
    first = raise_value(model, data, 3, n_chains=3, betas=40)
    assert raise_value(model, data, 3, n_chains=3, betas=40) == first
    assert raise_value(model, data, 4, n_chains=3, betas=40) != first
    # One generator drives the batches in order: batch size changes only the order of
    # the draws, so the estimate stays close (same distribution), not equal.
    split = raise_value(model, data, 3, n_chains=3, betas=40, batch_size=2)
    assert abs(split - first) < 1.0


def test_raise_validation():
    model = make_rbm(4, 3, seed=0)
    data = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="n_chains must be a positive integer; got 0"):
        raise_log_likelihood(model, data, n_chains=0)
    with pytest.raises(ValueError, match="data must have 4 columns"):
        raise_log_likelihood(model, torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"data must lie in \[0, 1\]"):
        raise_log_likelihood(model, data + 3)
    with pytest.raises(ValueError, match="betas must start at 0 and end at 1"):
        raise_log_likelihood(model, data, betas=torch.tensor([0.0, 0.5]))
