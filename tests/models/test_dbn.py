"""The DBN model, its sampler and its variational bound against brute-force enumeration."""

from __future__ import annotations

import pytest
import torch

from ebmlab.estimators.dbn_bound import (
    dbn_bound_terms,
    dbn_exact_log_likelihood,
    dbn_log_likelihood_bound,
)
from ebmlab.models import BernoulliRBM
from ebmlab.models.dbn import DBN
from tests.helpers.enumeration import all_binary, chi_square_p_value


def random_dbn(layer_sizes, seed=0, weight_std=1.0) -> DBN:
    """A float64 DBN with strong random weights and biases, so the distributions are not flat."""
    generator = torch.Generator().manual_seed(seed)
    dbn = DBN(layer_sizes, weight_std=weight_std, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        for rbm in dbn.rbms:
            rbm.visible_bias.normal_(0, 0.5, generator=generator)
            rbm.hidden_bias.normal_(0, 0.5, generator=generator)
    return dbn


def brute_force_log_p(dbn: DBN, v: torch.Tensor) -> torch.Tensor:
    """log p(v) of a 2-layer DBN from the definition: sum over h1, h2 of p_top(h1, h2) p(v|h1)."""
    bottom, top = dbn.rbms
    h1, h2 = all_binary(top.n_visible), all_binary(top.n_hidden)
    W, b, c = top.weight.detach(), top.visible_bias.detach(), top.hidden_bias.detach()
    log_joint_top = h1 @ W @ h2.T + (h1 @ b)[:, None] + (h2 @ c)[None, :]
    log_p_h1 = torch.logsumexp(log_joint_top, 1) - torch.logsumexp(log_joint_top.reshape(-1), 0)
    p_v = torch.sigmoid(h1 @ bottom.weight.detach().T + bottom.visible_bias.detach())  # (H1, V)
    log_p_v_given_h1 = v @ p_v.log().T + (1 - v) @ (1 - p_v).log().T  # (B, H1)
    return torch.logsumexp(log_p_v_given_h1 + log_p_h1[None, :], 1)


def states_to_index(x: torch.Tensor) -> torch.Tensor:
    """Row of :func:`all_binary` (first bit most significant) of each binary row of ``x``."""
    weights = 2 ** torch.arange(x.shape[1] - 1, -1, -1, dtype=torch.float64)
    return (x.double() @ weights).long()


# ----- construction, shapes and errors ---------------------------------------------------
def test_layers_and_state_dict_keys():
    dbn = DBN([10, 7, 5, 3], generator=torch.Generator().manual_seed(0))
    assert [(r.n_visible, r.n_hidden) for r in dbn.rbms] == [(10, 7), (7, 5), (5, 3)]
    assert dbn.n_layers == 3 and dbn.n_visible == 10 and dbn.top is dbn.rbms[2]
    assert "rbms.0.weight" in dbn.state_dict() and "rbms.2.hidden_bias" in dbn.state_dict()


@pytest.mark.parametrize(
    ("sizes", "error"),
    [
        ([5], ValueError),
        ([5, 0], ValueError),
        ([5, 2.5], ValueError),
        ("54", TypeError),
        (5, TypeError),
    ],
)
def test_bad_layer_sizes_raise(sizes, error):
    with pytest.raises(error, match="layer_sizes"):
        DBN(sizes)


def test_transform_shapes_and_errors():
    dbn = DBN([6, 4, 3], generator=torch.Generator().manual_seed(0))
    v = torch.rand(5, 6)
    assert dbn.transform(v).shape == (5, 3)
    assert dbn.transform(v, layer=1).shape == (5, 4)
    assert torch.equal(dbn.transform(v, layer=0), v)
    assert torch.allclose(dbn.transform(v), dbn.rbms[1].mean_h(dbn.rbms[0].mean_h(v)))
    with pytest.raises(ValueError, match="v must have 6 columns"):
        dbn.transform(torch.rand(5, 7))
    with pytest.raises(ValueError, match="layer must lie in"):
        dbn.transform(v, layer=3)
    with pytest.raises(ValueError, match="propagation"):
        dbn.up_pass(v, propagation="mode")
    with pytest.raises(ValueError, match="init must have n=2 rows"):
        dbn.sample(2, 1, init=v)


def test_sample_shapes_and_reproducibility():
    dbn = random_dbn([6, 4, 3])
    a = dbn.sample(7, 5, generator=torch.Generator().manual_seed(3))
    b = dbn.sample(7, 5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (7, 6) and torch.equal(a, b)
    assert ((a > 0) & (a < 1)).all()  # means p(v | h1) for display
    binary = dbn.sample(
        7, 5, mean=False, init=torch.ones(7, 6, dtype=torch.float64), generator=torch.Generator()
    )
    assert set(binary.unique().tolist()) <= {0.0, 1.0}


# ----- a one-layer DBN is its RBM ------------------------------------------------------------
def test_one_layer_dbn_likelihood_equals_its_rbm(tiny_rbm):
    dbn = DBN([6, 4], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dbn.rbms[0].load_state_dict(tiny_rbm.state_dict())
    vs = all_binary(6)
    log_weights = -tiny_rbm.free_energy(vs)
    expected = log_weights - torch.logsumexp(log_weights, 0)
    assert torch.allclose(dbn_exact_log_likelihood(dbn, vs), expected)
    bound = dbn_log_likelihood_bound(dbn, vs, n_samples=1)
    assert bound.value == pytest.approx(expected.mean().item(), abs=1e-10)
    assert bound.standard_error == 0


def test_one_layer_dbn_samples_follow_the_rbm_marginal(tiny_rbm):
    dbn = DBN([6, 4], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dbn.rbms[0].load_state_dict(tiny_rbm.state_dict())
    n = 4000
    samples = dbn.sample(n, 50, mean=False, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(states_to_index(samples), minlength=64)
    log_weights = -tiny_rbm.free_energy(all_binary(6))
    law = torch.softmax(log_weights.detach(), 0)
    # Independent chains: a calibrated test rejects a correct sampler with probability 1e-4.
    assert chi_square_p_value(counts, law) > 1e-4


def test_two_layer_dbn_samples_follow_the_exact_marginal():
    dbn = random_dbn([4, 3, 3], seed=1)
    n = 4000
    samples = dbn.sample(n, 30, mean=False, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(states_to_index(samples), minlength=16)
    law = brute_force_log_p(dbn, all_binary(4)).exp()
    assert law.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert chi_square_p_value(counts, law) > 1e-4


# ----- the variational bound ----------------------------------------------------------------
def test_exact_log_likelihood_matches_brute_force():
    dbn = random_dbn([5, 4, 3])
    vs = all_binary(5)
    assert torch.allclose(dbn_exact_log_likelihood(dbn, vs), brute_force_log_p(dbn, vs))


def test_bound_is_below_the_exact_log_likelihood_per_example():
    dbn = random_dbn([5, 4, 3], seed=2)
    vs = all_binary(5)
    exact_log_p = brute_force_log_p(dbn, vs)
    log_z = torch.logsumexp(-dbn.top.free_energy(all_binary(4)), 0).item()
    bound = dbn_log_likelihood_bound(dbn, vs, exact=True)
    assert bound.log_z == pytest.approx(log_z, abs=1e-10)
    assert bound.value <= exact_log_p.mean().item()
    # Per example too: the gap is KL(Q(h1|v) || p(h1|v)) >= 0 for every v.
    from ebmlab.estimators.dbn_bound import _enumerated_terms

    terms, _ = _enumerated_terms(dbn, vs, max_units=20)
    assert (terms - log_z <= exact_log_p + 1e-12).all()
    assert (exact_log_p - (terms - log_z)).max() > 1e-3  # not tight for random weights


def test_sampled_bound_agrees_with_the_enumerated_bound():
    dbn = random_dbn([5, 4, 3], seed=3)
    vs = all_binary(5)
    exact = dbn_log_likelihood_bound(dbn, vs, exact=True)
    sampled = dbn_log_likelihood_bound(
        dbn, vs, n_samples=200, generator=torch.Generator().manual_seed(0)
    )
    assert sampled.standard_error > 0
    # The sampled mean is unbiased; 4 standard errors: false alarm rate about 6e-5.
    assert abs(sampled.value - exact.value) < 4 * sampled.standard_error


def test_bound_is_tight_when_the_top_rbm_is_the_transposed_bottom(tiny_rbm):
    # Then p_top(h1) is the RBM's own marginal over h1, the DBN is the RBM, and Q(h1|v) is its
    # exact posterior: bound = log p(v) = the RBM's log-likelihood, for every v.
    dbn = DBN([6, 4, 6], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dbn.rbms[0].load_state_dict(tiny_rbm.state_dict())
    with torch.no_grad():
        dbn.rbms[1].weight.copy_(tiny_rbm.weight.t())
        dbn.rbms[1].visible_bias.copy_(tiny_rbm.hidden_bias)
        dbn.rbms[1].hidden_bias.copy_(tiny_rbm.visible_bias)
    vs = all_binary(6)
    log_weights = -tiny_rbm.free_energy(vs)
    rbm_log_p = log_weights - torch.logsumexp(log_weights, 0)
    assert torch.allclose(dbn_exact_log_likelihood(dbn, vs), rbm_log_p)
    bound = dbn_log_likelihood_bound(dbn, vs, exact=True)
    assert bound.value == pytest.approx(rbm_log_p.mean().item(), abs=1e-9)


def test_bound_interval_follows_the_log_z_interval():
    from ebmlab.estimators import LogZEstimate

    dbn = random_dbn([5, 4, 3])
    vs = all_binary(5)
    estimate = LogZEstimate(2.0, 1.5, 2.25, n_chains=10, n_betas=100, seconds=0.0)
    bound = dbn_log_likelihood_bound(dbn, vs, exact=True, log_z=estimate)
    assert bound.upper - bound.value == pytest.approx(0.5)
    assert bound.value - bound.lower == pytest.approx(0.25)


def test_three_layer_bound_is_below_the_exact_log_likelihood():
    # p(v) = sum_{h1,h2} p_top(h2) p(h1|h2) p(v|h1), enumerated; the sampled bound over the
    # up-pass chain Q(h1, h2 | v) must lie below it (4 standard errors of sampling slack).
    dbn = random_dbn([4, 3, 3, 2], seed=4)
    vs = all_binary(4)
    h1, h2 = all_binary(3), all_binary(3)
    log_p_h2 = -dbn.rbms[2].free_energy(h2)
    log_p_h2 = log_p_h2 - torch.logsumexp(log_p_h2, 0)
    p_h1 = torch.sigmoid(dbn.rbms[1].visible_preactivation(h2))  # (H2, H1 units)
    log_p_h1 = torch.logsumexp(
        (h1 @ p_h1.log().T + (1 - h1) @ (1 - p_h1).log().T) + log_p_h2[None, :], 1
    )
    p_v = torch.sigmoid(dbn.rbms[0].visible_preactivation(h1))
    exact = torch.logsumexp(vs @ p_v.log().T + (1 - vs) @ (1 - p_v).log().T + log_p_h1, 1)
    bound = dbn_log_likelihood_bound(
        dbn, vs, n_samples=400, generator=torch.Generator().manual_seed(0)
    )
    assert bound.value < exact.mean().item() + 4 * bound.standard_error


def test_bound_rejects_grey_data_and_bad_exact_requests():
    dbn = random_dbn([5, 4, 3])
    with pytest.raises(ValueError, match="binary"):
        dbn_log_likelihood_bound(dbn, torch.full((2, 5), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="2 hidden layers"):
        dbn_log_likelihood_bound(random_dbn([4, 3, 3, 2]), all_binary(4), exact=True)
    with pytest.raises(ValueError, match="n_samples"):
        dbn_bound_terms(dbn, all_binary(5), n_samples=0)


def test_bernoulli_rbm_is_the_layer_type():
    assert all(
        isinstance(r, BernoulliRBM)
        for r in DBN([3, 2, 2], generator=torch.Generator().manual_seed(0)).rbms
    )
