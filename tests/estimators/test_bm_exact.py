"""Exact enumeration for Boltzmann machines against an independent brute-force sum."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ebmlab.estimators.exact_bm import (
    bm_log_likelihood,
    bm_log_marginals,
    bm_log_partition,
    bm_model_moments,
    bm_posterior_moments,
)
from ebmlab.models.bm import BoltzmannMachine, binary_states


def random_bm(n_visible: int, n_hidden: int, *, seed: int = 0) -> BoltzmannMachine:
    generator = torch.Generator().manual_seed(seed)
    model = BoltzmannMachine(
        n_visible, n_hidden, weight_std=0.7, generator=generator, dtype=torch.float64
    )
    with torch.no_grad():
        model.visible_bias.copy_(
            0.5 * torch.randn(n_visible, generator=generator, dtype=torch.float64)
        )
        model.hidden_bias.copy_(
            0.5 * torch.randn(n_hidden, generator=generator, dtype=torch.float64)
        )
    return model


def brute_force(model: BoltzmannMachine) -> dict[tuple[int, ...], float]:
    """Unnormalised p(x) by a plain Python loop over every joint state, in numpy."""
    w_v, w_vh, w_h = (
        p.detach().numpy() for p in (model.weight_vv, model.weight_vh, model.weight_hh)
    )
    b_v, b_h = model.visible_bias.detach().numpy(), model.hidden_bias.detach().numpy()
    weights: dict[tuple[int, ...], float] = {}
    for x in itertools.product([0, 1], repeat=model.n_visible):
        xa = np.array(x, dtype=float)
        total = 0.0
        for h in itertools.product([0, 1], repeat=model.n_hidden):
            ha = np.array(h, dtype=float)
            minus_e = xa @ w_v @ xa + xa @ w_vh @ ha + ha @ w_h @ ha + b_h @ ha + b_v @ xa
            total += math.exp(minus_e)
        weights[x] = total
    return weights


@pytest.mark.parametrize(("n_visible", "n_hidden"), [(5, 0), (4, 3), (3, 5)])
def test_log_partition_and_marginals_match_brute_force(n_visible, n_hidden):
    model = random_bm(n_visible, n_hidden)
    weights = brute_force(model)
    log_z = math.log(sum(weights.values()))
    assert float(bm_log_partition(model)) == pytest.approx(log_z, abs=1e-10)
    # Row k of bm_log_marginals is the state whose unit j is bit j of k.
    states = binary_states(n_visible).long().tolist()
    expected = torch.tensor(
        [math.log(weights[tuple(s)]) - log_z for s in states], dtype=torch.float64
    )
    torch.testing.assert_close(bm_log_marginals(model), expected, rtol=0, atol=1e-10)


def test_chunking_does_not_change_the_answer():
    model = random_bm(7, 2)
    whole = bm_log_partition(model, chunk_size=4096)
    torch.testing.assert_close(bm_log_partition(model, chunk_size=5), whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(bm_log_marginals(model, chunk_size=3), bm_log_marginals(model))


def test_log_likelihood_is_the_mean_log_marginal_of_the_data():
    model = random_bm(4, 2)
    states = binary_states(4, dtype=torch.float64)
    rows = torch.tensor([0, 3, 3, 15, 9])
    expected = bm_log_marginals(model)[rows].mean()
    torch.testing.assert_close(bm_log_likelihood(model, states[rows]), expected, rtol=0, atol=1e-12)


def test_moments_match_brute_force_expectations():
    model = random_bm(4, 3)
    z = binary_states(7, dtype=torch.float64)
    p = torch.softmax(-model.energy(z[:, :4], z[:, 4:]), 0)
    moments = bm_model_moments(model, chunk_size=3)
    torch.testing.assert_close(moments.mean, p @ z, rtol=0, atol=1e-12)
    torch.testing.assert_close(moments.second_moment, z.t() @ (p[:, None] * z), rtol=0, atol=1e-12)


def test_posterior_moments_clamp_the_data_and_average_the_hidden_posterior():
    model = random_bm(3, 3)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    h = binary_states(3, dtype=torch.float64)
    expected_second = torch.zeros(6, 6, dtype=torch.float64)
    for row in x:
        posterior = torch.softmax(-model.energy(row.expand(8, 3), h), 0)
        z = torch.cat([row.expand(8, 3), h], 1)
        expected_second += z.t() @ (posterior[:, None] * z) / 2
    moments = bm_posterior_moments(model, x)
    torch.testing.assert_close(moments.second_moment, expected_second, rtol=0, atol=1e-12)
    torch.testing.assert_close(moments.mean, expected_second.diagonal(), rtol=0, atol=1e-12)


def test_too_large_models_are_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="n_visible \\+ n_hidden <= 26"):
        bm_log_partition(BoltzmannMachine(20, 7))
    with pytest.raises(TypeError, match="BoltzmannMachine"):
        bm_log_partition(torch.nn.Linear(2, 2))


def test_generic_exact_log_partition_dispatches_to_boltzmann_machines():
    from ebmlab.estimators.exact import enumerate_binary, exact_log_likelihood, exact_log_partition

    model = random_bm(5, 2)
    weights = brute_force(model)
    assert exact_log_partition(model) == pytest.approx(math.log(sum(weights.values())), abs=1e-10)
    assert exact_log_partition(model, chunk_size=3) == pytest.approx(exact_log_partition(model))
    with pytest.raises(ValueError, match="max_units=6"):
        exact_log_partition(model, max_units=6)
    assert torch.equal(binary_states(6), enumerate_binary(6))  # one enumeration order everywhere
    data = binary_states(5, dtype=torch.float64)[[1, 7, 30]]
    expected = bm_log_marginals(model)[[1, 7, 30]].mean()
    assert exact_log_likelihood(model, data) == pytest.approx(float(expected), abs=1e-10)
