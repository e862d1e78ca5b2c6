"""Block Gibbs sampling against the exactly propagated distribution of the chain."""

from __future__ import annotations

import math

import torch

from ebmlab.samplers import BlockGibbs, GibbsState, run_chain, sample_visible
from tests.helpers.enumeration import all_binary, chi_square_p_value


def exact_visible_transition(model) -> tuple[torch.Tensor, torch.Tensor]:
    """All visible states and the exact one-sweep transition matrix T[v, v'] = sum_h p(h|v) p(v'|h)."""
    vs, hs = all_binary(model.n_visible), all_binary(model.n_hidden)
    W, b, c = model.weight.detach(), model.visible_bias.detach(), model.hidden_bias.detach()
    p_h = torch.sigmoid(vs @ W + c)  # (V, n_hidden)
    prob_h_given_v = torch.prod(torch.where(hs[None] == 1, p_h[:, None], 1 - p_h[:, None]), -1)
    p_v = torch.sigmoid(hs @ W.T + b)
    prob_v_given_h = torch.prod(torch.where(vs[None] == 1, p_v[:, None], 1 - p_v[:, None]), -1)
    return vs, prob_h_given_v @ prob_v_given_h


def state_index(samples: torch.Tensor) -> torch.Tensor:
    weights = 2 ** torch.arange(samples.shape[1] - 1, -1, -1, dtype=torch.float64)
    return (samples.double() @ weights).long()


def test_gibbs_frequencies_match_the_exact_chain_distribution(tiny_rbm):
    vs, transition = exact_visible_transition(tiny_rbm)
    n_chains, n_steps = 20_000, 30
    start = torch.zeros(n_chains, tiny_rbm.n_visible, dtype=torch.float64)
    # The exact law of the chain after n_steps sweeps from v = 0 (no mixing assumption needed).
    law = torch.linalg.matrix_power(transition, n_steps)[0]
    generator = torch.Generator().manual_seed(7)
    state, _, _ = run_chain(BlockGibbs(tiny_rbm), GibbsState(start), n_steps, generator=generator)
    frequencies = torch.bincount(state_index(state.visible), minlength=len(vs)).double() / n_chains
    total_variation = 0.5 * (frequencies - law).abs().sum()
    # E[TV] <= 0.5 sum sqrt(p(1-p)/n) (Jensen); TV moves by <= 1/n per sample, so by
    # McDiarmid P(TV > E + t) <= exp(-2 n t^2): t for a 1e-6 false-alarm rate.
    expected_bound = 0.5 * (law * (1 - law) / n_chains).sqrt().sum()
    slack = math.sqrt(math.log(1e6) / (2 * n_chains))
    assert total_variation < expected_bound + slack
    # The chi-square test is far more powerful than the TV bound; 1e-6 false-alarm rate.
    assert chi_square_p_value(frequencies * n_chains, law) > 1e-6


def test_the_chain_converges_to_the_rbm_marginal(tiny_rbm):
    vs, transition = exact_visible_transition(tiny_rbm)
    marginal = torch.softmax(-tiny_rbm.free_energy(vs).detach(), 0)
    # The stationary law of the exact transition matrix is p(v) = exp(-F(v)) / Z.
    assert torch.allclose(marginal @ transition, marginal, atol=1e-12)


def test_same_seed_same_chain(tiny_rbm):
    start = torch.zeros(5, tiny_rbm.n_visible, dtype=torch.float64)
    draws = [
        sample_visible(tiny_rbm, 5, 10, generator=torch.Generator().manual_seed(3), init=start)
        for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1])


def test_run_chain_collects_thinned_states(tiny_rbm):
    start = torch.zeros(3, tiny_rbm.n_visible, dtype=torch.float64)
    _, samples, infos = run_chain(
        BlockGibbs(tiny_rbm),
        GibbsState(start),
        10,
        thin=5,
        collect=lambda s: s.visible,
        generator=torch.Generator().manual_seed(0),
    )
    assert samples.shape == (2, 3, tiny_rbm.n_visible) and len(infos) == 2
