"""log_likelihood from a log Z estimate, and the CLI's evaluate_log_likelihood."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ebmlab.estimators import (
    LogZEstimate,
    evaluate_log_likelihood,
    exact_log_likelihood,
    exact_log_partition,
    log_likelihood,
)
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


def binary(n: int, n_visible: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, n_visible, generator=torch.Generator().manual_seed(seed)) < 0.4).double()


def known_log_z(value: float, lower: float, upper: float) -> LogZEstimate:
    return LogZEstimate(
        log_z=value, log_z_lower=lower, log_z_upper=upper, n_chains=1, n_betas=2, seconds=0.0
    )


def test_log_likelihood_with_the_exact_log_z_is_exact():
    model = make_rbm(8, 5, seed=0)
    data = binary(30, 8, seed=1)
    log_z = exact_log_partition(model)
    estimate = log_likelihood(model, data, known_log_z(log_z, log_z - 0.5, log_z + 0.25))
    assert estimate.value == pytest.approx(exact_log_likelihood(model, data), rel=1e-12)
    # A larger log Z means a smaller likelihood: the interval ends swap.
    assert estimate.lower == pytest.approx(estimate.value - 0.25, rel=1e-12)
    assert estimate.upper == pytest.approx(estimate.value + 0.5, rel=1e-12)
    neg_free = -model.free_energy(data).detach()
    assert estimate.stderr == pytest.approx((neg_free.std() / math.sqrt(30)).item(), rel=1e-12)
    assert estimate.n_samples == 30 and estimate.method == "ais"
    assert set(estimate.to_dict()) >= {"value", "lower", "upper", "stderr", "n_samples"}


def test_minus_infinite_lower_log_z_gives_infinite_upper_likelihood():
    model = make_rbm(4, 3, seed=0)
    estimate = log_likelihood(model, binary(5, 4, seed=0), known_log_z(3.0, -math.inf, 4.0))
    assert estimate.upper == math.inf and math.isfinite(estimate.lower)


def test_log_likelihood_validation():
    model = make_rbm(4, 3, seed=0)
    with pytest.raises(TypeError, match="log_z must be a LogZEstimate; got float"):
        log_likelihood(model, binary(2, 4, seed=0), 3.0)
    with pytest.raises(ValueError, match="data must have 4 columns"):
        log_likelihood(model, binary(2, 5, seed=0), known_log_z(1.0, 0.0, 2.0))
    with pytest.raises(ValueError, match="data must hold at least one row"):
        log_likelihood(model, binary(0, 4, seed=0), known_log_z(1.0, 0.0, 2.0))


def test_evaluate_log_likelihood_keys_and_values():
    model = make_rbm(12, 8, seed=3)
    test_data, train_data = binary(40, 12, seed=4), binary(100, 12, seed=5)
    result = evaluate_log_likelihood(
        model,
        test_data,
        train_data=train_data,
        n_chains=100,
        n_betas=1000,
        raise_chains=3,
        raise_betas=200,
        raise_max_samples=25,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    json.dumps(result)  # JSON-ready
    assert set(result) == {"test_loglik", "log_z", "raise_loglik", "seconds"}
    assert set(result["test_loglik"]) == {"value", "lower", "upper", "stderr", "n_samples"}
    assert set(result["log_z"]) == {
        "value", "lower", "upper", "n_chains", "n_betas", "weight_ess", "interval_closed", "seconds"
    }  # fmt: skip
    assert result["log_z"]["interval_closed"] is True and 1 <= result["log_z"]["weight_ess"] <= 100
    assert set(result["raise_loglik"]) == {
        "value",
        "stderr",
        "n_chains",
        "n_betas",
        "n_samples",
        "ais_value",
        "seconds",
    }
    exact = exact_log_likelihood(model, test_data)
    test = result["test_loglik"]
    assert test["lower"] <= exact <= test["upper"] and test["n_samples"] == 40
    assert (result["log_z"]["n_chains"], result["log_z"]["n_betas"]) == (100, 1000)
    raise_entry = result["raise_loglik"]
    assert (raise_entry["n_samples"], raise_entry["n_betas"], raise_entry["n_chains"]) == (
        25,
        200,
        3,
    )
    # RAISE and AIS on the same 25 points agree to a few tenths of a nat on this tiny model.
    assert abs(raise_entry["value"] - exact_log_likelihood(model, test_data[:25])) < 0.3
    assert abs(raise_entry["ais_value"] - exact_log_likelihood(model, test_data[:25])) < 0.05


def test_evaluate_without_raise_keeps_the_keys():
    model = make_rbm(6, 4, seed=0)
    result = evaluate_log_likelihood(
        model,
        binary(5, 6, seed=0),
        n_betas=20,
        raise_chains=0,
        progress=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert all(value is None for value in result["raise_loglik"].values())
    assert result["log_z"]["n_betas"] == 20
    with pytest.raises(ValueError, match="raise_chains must be a non-negative integer; got -1"):
        evaluate_log_likelihood(model, binary(5, 6, seed=0), raise_chains=-1, progress=False)
