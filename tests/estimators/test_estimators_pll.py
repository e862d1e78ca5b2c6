"""Pseudo-log-likelihood against the enumerated joint conditionals."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ebmlab.estimators import pseudo_likelihood as pll_module
from ebmlab.estimators import pseudo_log_likelihood
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


def enumerated_pll(model: BernoulliRBM, data: torch.Tensor) -> torch.Tensor:
    """sum_i log p(v_i | v_-i) from the joint table over all (v, h) (no free energy)."""
    n_visible, n_hidden = model.n_visible, model.n_hidden
    states = list(itertools.product([0, 1], repeat=n_visible))
    all_v = torch.tensor(states, dtype=torch.float64)
    all_h = torch.tensor(list(itertools.product([0, 1], repeat=n_hidden)), dtype=torch.float64)
    weight, b_v, b_h = (p.detach() for p in (model.weight, model.visible_bias, model.hidden_bias))
    log_joint = all_v @ weight @ all_h.T + (all_v @ b_v)[:, None] + (all_h @ b_h)[None, :]
    log_p = dict(zip(states, torch.logsumexp(log_joint, 1).tolist(), strict=True))  # unnormalised
    totals = []
    for row in data.to(torch.int64).tolist():
        total = 0.0
        for i in range(n_visible):
            other = list(row)
            other[i] = 1 - other[i]
            mine, theirs = log_p[tuple(row)], log_p[tuple(other)]
            total += mine - max(mine, theirs) - math.log1p(math.exp(-abs(mine - theirs)))
        totals.append(total)
    return torch.tensor(totals, dtype=torch.float64)


def random_binary(n: int, n_visible: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(n, n_visible, generator=generator) < 0.5).double()


def test_exact_pll_matches_enumerated_conditionals():
    model = make_rbm(7, 4, seed=0)
    data = random_binary(9, 7, seed=1)
    torch.testing.assert_close(
        pseudo_log_likelihood(model, data, exact=True), enumerated_pll(model, data)
    )


def test_exact_pll_chunks(monkeypatch):
    model = make_rbm(7, 4, seed=2)
    data = random_binary(10, 7, seed=3)
    whole = pseudo_log_likelihood(model, data, exact=True)
    monkeypatch.setattr(pll_module, "_MAX_FLIPPED_ROWS", 15)  # two rows per chunk
    torch.testing.assert_close(
        pseudo_log_likelihood(model, data, exact=True), whole, rtol=1e-13, atol=1e-13
    )


def test_stochastic_pll_is_unbiased():
    model = make_rbm(10, 6, seed=4)
    data = random_binary(5, 10, seed=5)
    exact = pseudo_log_likelihood(model, data, exact=True)
    generator = torch.Generator().manual_seed(6)
    draws = pseudo_log_likelihood(model, data.repeat(4000, 1), generator=generator).view(4000, 5)
    stderr = draws.std(0) / 4000**0.5
    # Each draw is n_visible times one of the n_visible terms, picked uniformly: unbiased.
    # z-test per row at 4 standard errors (5 rows: false alarm ~3e-4 with a fixed seed).
    assert ((draws.mean(0) - exact).abs() < 4 * stderr).all(), (draws.mean(0), exact, stderr)


def test_stochastic_pll_reproducible_and_shaped():
    model = make_rbm(6, 3, seed=0)
    data = random_binary(4, 6, seed=0)
    first = pseudo_log_likelihood(model, data, generator=torch.Generator().manual_seed(1))
    again = pseudo_log_likelihood(model, data, generator=torch.Generator().manual_seed(1))
    assert first.shape == (4,) and torch.equal(first, again)
    assert (first <= 0).all() and not first.requires_grad
    assert pseudo_log_likelihood(model, data[:0]).shape == (0,)


def test_pll_validation():
    model = make_rbm(6, 3, seed=0)
    with pytest.raises(ValueError, match="v must have 6 columns"):
        pseudo_log_likelihood(model, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"v must lie in \[0, 1\]"):
        pseudo_log_likelihood(model, torch.full((2, 6), 1.5, dtype=torch.float64))
    with pytest.raises(TypeError, match="exact must be a bool"):
        pseudo_log_likelihood(model, torch.zeros(2, 6, dtype=torch.float64), exact="yes")
