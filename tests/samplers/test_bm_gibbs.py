"""Gibbs sampling of Boltzmann machines against the enumerated distribution."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.estimators.exact_bm import bm_log_marginals
from ebmlab.models.bm import BoltzmannMachine, binary_states
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.bm_gibbs import BMGibbs

N_CHAINS = 20_000
N_SWEEPS = 60


def strong_bm() -> BoltzmannMachine:
    """5 visible + 2 hidden units with couplings of order 1: far from independent units."""
    generator = torch.Generator().manual_seed(3)
    model = BoltzmannMachine(5, 2, weight_std=1.0, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        model.visible_bias.copy_(torch.randn(5, generator=generator, dtype=torch.float64))
        model.hidden_bias.copy_(torch.randn(2, generator=generator, dtype=torch.float64))
    return model


def frequencies(x: torch.Tensor) -> torch.Tensor:
    """Empirical distribution over the 2^n states, in the order of binary_states (unit j = bit j)."""
    n = x.shape[1]
    index = (x.long() * (2 ** torch.arange(n))).sum(1)
    return torch.bincount(index, minlength=2**n).double() / x.shape[0]


def tv_threshold(p: torch.Tensor, n: int, *, delta: float = 1e-4) -> float:
    """A bound that an exact sampler's total variation exceeds with probability < delta.

    With n independent draws, E|p_hat_k - p_k| <= sqrt(p_k (1 - p_k) / n) (Jensen), so
    E[TV] <= 0.5 * sum_k sqrt(p_k (1 - p_k) / n). TV changes by at most 1/n when one draw
    changes, so McDiarmid gives P(TV > E[TV] + t) <= exp(-2 n t^2): t = sqrt(log(1/delta) / (2n)).
    The chains are independent (one final state per chain), so n_eff = n exactly; 60 sweeps
    of a 7-unit model leave a burn-in bias far below this (checked by the two scan orders
    agreeing with each other and with the exact distribution).
    """
    expected_tv = 0.5 * float(torch.sqrt(p * (1 - p) / n).sum())
    return expected_tv + math.sqrt(math.log(1 / delta) / (2 * n))


@pytest.mark.parametrize("scan", ["systematic", "random"])
def test_gibbs_frequencies_match_the_enumerated_distribution(scan):
    model = strong_bm()
    exact = bm_log_marginals(model).exp()
    samples = model.sample(
        N_CHAINS, N_SWEEPS, scan=scan, generator=torch.Generator().manual_seed(11)
    )
    tv = 0.5 * float((frequencies(samples) - exact).abs().sum())
    assert tv < tv_threshold(exact, N_CHAINS), f"TV {tv:.4f} for scan={scan}"


def test_the_test_detects_a_sampler_that_forgets_the_factor_two():
    # The factor 2 in p(x_i=1|rest) = sigma(b + 2 (W x)_i + ...) matters: the distribution a
    # sampler without it targets (couplings halved) lies far beyond the tolerance above.
    model = strong_bm()
    exact = bm_log_marginals(model).exp()
    halved = strong_bm()
    halved.weight_vv = 0.5 * model.weight_vv.detach()
    halved.weight_hh = 0.5 * model.weight_hh.detach()
    wrong = bm_log_marginals(halved).exp()
    assert 0.5 * float((wrong - exact).abs().sum()) > 3 * tv_threshold(exact, N_CHAINS)


def test_sampler_protocol_steps_match_the_model_sweeps():
    model = strong_bm()
    x0 = binary_states(5, dtype=torch.float64)
    sampler = BMGibbs(model, scan="random")
    state, kept, _ = run_chain(
        sampler,
        sampler.init(x0),
        3,
        generator=torch.Generator().manual_seed(0),
        collect=lambda s: s.visible,
    )
    assert kept.shape == (3, 32, 5) and state.hidden.shape == (32, 2)
    generator = torch.Generator().manual_seed(0)
    x, h = x0, torch.zeros(32, 2, dtype=torch.float64)
    for _ in range(3):
        x, h = model.gibbs_sweep(x, h, scan="random", generator=generator)
    assert torch.equal(x, state.visible) and torch.equal(h, state.hidden)


def test_sampling_is_reproducible_and_binary():
    model = strong_bm()
    first = model.sample(50, 5, generator=torch.Generator().manual_seed(4))
    second = model.sample(50, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
