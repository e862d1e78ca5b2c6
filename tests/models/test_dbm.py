"""The DBM's formulas, sampler, mean-field and estimators against brute-force enumeration."""

from __future__ import annotations

import math

import pytest
import torch

import ebmlab.estimators.dbm as dbm_estimators
from ebmlab.estimators import ais_log_partition, exact_log_partition
from ebmlab.estimators.annealing import annealing_path
from ebmlab.models.dbm import DBM
from ebmlab.samplers.dbm_gibbs import DBMBlockGibbs, sample_dbm
from tests.helpers.enumeration import all_binary, chi_square_p_value


def make_dbm(layer_sizes, seed=0, weight_std=1.0):
    generator = torch.Generator().manual_seed(seed)
    model = DBM(layer_sizes, weight_std=weight_std, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        for bias in model.biases:
            bias.normal_(0, 0.5, generator=generator)
    return model


def joint_table(model: DBM) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every joint state (one tensor per layer, rows aligned) and -E, written out by hand."""
    tables = [all_binary(n) for n in model.layer_sizes]
    grids = torch.cartesian_prod(*[torch.arange(len(t)) for t in tables])
    states = [t[grids[:, k]] for k, t in enumerate(tables)]
    W = [w.detach() for w in model.weights]
    b = [c.detach() for c in model.biases]
    neg_energy = sum(x @ c for x, c in zip(states, b, strict=True))
    for k in range(len(W)):
        neg_energy = neg_energy + torch.einsum("ni,ij,nj->n", states[k], W[k], states[k + 1])
    return states, neg_energy


def state_index(states: list[torch.Tensor]) -> torch.Tensor:
    """Row index in joint_table / all_binary order (first bit most significant)."""
    bits = torch.cat(states, 1)
    powers = 2 ** torch.arange(bits.shape[1] - 1, -1, -1, dtype=torch.float64)
    return (bits @ powers).long()


@pytest.fixture
def tiny_dbm():
    return make_dbm([5, 4, 3])


# ----- energies and marginals ---------------------------------------------------------------
def test_energy_matches_formula(tiny_dbm):
    states, neg_energy = joint_table(tiny_dbm)
    assert torch.allclose(-tiny_dbm.energy(states), neg_energy)


def test_even_and_odd_free_energies_are_marginals(tiny_dbm):
    states, neg_energy = joint_table(tiny_dbm)
    grid = neg_energy.reshape(32, 16, 8)  # (v, h1, h2)
    v, h2 = all_binary(5).repeat_interleave(8, 0), all_binary(3).repeat(32, 1)
    expected_even = -torch.logsumexp(grid, 1).reshape(-1)
    assert torch.allclose(tiny_dbm.free_energy_even(v, h2), expected_even)
    expected_odd = -torch.logsumexp(grid, (0, 2))
    assert torch.allclose(tiny_dbm.free_energy_odd(all_binary(4)), expected_odd)
    expected_visible = -torch.logsumexp(grid.reshape(32, -1), 1)
    assert torch.allclose(tiny_dbm.free_energy(all_binary(5)), expected_visible)


def test_conditionals_are_ratios_of_the_joint(tiny_dbm):
    states, neg_energy = joint_table(tiny_dbm)
    grid = neg_energy.reshape(32, 16, 8)
    vs, h1s, h2s = all_binary(5), all_binary(4), all_binary(3)
    p_h1 = torch.softmax(grid, 1)  # p(h1 | v, h2)
    expected = torch.einsum("vhw,hj->vwj", p_h1, h1s).reshape(-1, 4)
    given = [vs.repeat_interleave(8, 0), None, h2s.repeat(32, 1)]
    assert torch.allclose(tiny_dbm.mean_layer(given, 1), expected)
    p_v = torch.softmax(grid, 0)  # p(v | h1, h2): depends on h1 only
    expected_v = torch.einsum("vhw,vi->hwi", p_v, vs)[:, 0]
    assert torch.allclose(tiny_dbm.mean_layer([None, h1s], 0), expected_v)


@pytest.mark.parametrize("layer_sizes", [[5, 4, 3], [3, 2, 3, 2], [4, 3]])
def test_exact_log_partition_matches_enumeration_of_all_layers(layer_sizes):
    model = make_dbm(layer_sizes, seed=3)
    _, neg_energy = joint_table(model)
    assert exact_log_partition(model) == pytest.approx(
        torch.logsumexp(neg_energy, 0).item(), abs=1e-10
    )


# ----- annealed importance sampling ----------------------------------------------------------
def test_annealing_path_end_points(tiny_dbm):
    data = all_binary(5)[[1, 7, 30]]
    path = annealing_path(tiny_dbm, base_data=data)
    odd = all_binary(4)
    state = [None, odd, None]
    # beta = 1: the odd-layer marginal of the DBM itself.
    assert torch.allclose(path.log_unnormalized(state, 1.0), -tiny_dbm.free_energy_odd(odd))
    # beta = 0: f_0 sums to Z_0 over the odd states.
    log_z0 = torch.logsumexp(path.log_unnormalized(state, 0.0), 0).item()
    assert log_z0 == pytest.approx(path.log_base_partition, abs=1e-10)


@pytest.mark.parametrize("use_data", [False, True])
def test_ais_interval_contains_exact_log_z(tiny_dbm, use_data):
    exact = exact_log_partition(tiny_dbm)
    base_data = all_binary(5)[::3] if use_data else None
    estimate = ais_log_partition(
        tiny_dbm,
        n_chains=200,
        betas=1000,
        base_data=base_data,
        generator=torch.Generator().manual_seed(11),
        progress=False,
    )
    # The interval is +/- 3 standard errors of Z-hat over 200 chains; with 1,000 betas
    # the Jensen bias of log Z-hat (~ variance / 2) is far below that width.
    assert estimate.log_z_lower <= exact <= estimate.log_z_upper
    assert estimate.log_z_upper - estimate.log_z_lower < 0.2


# ----- block Gibbs ----------------------------------------------------------------------------
def test_block_gibbs_matches_enumerated_joint():
    model = make_dbm([3, 2, 3], seed=5)
    _, neg_energy = joint_table(model)
    probabilities = torch.softmax(neg_energy, 0)  # 256 joint states
    n_chains = 20_000
    generator = torch.Generator().manual_seed(2)
    state = sample_dbm(model, n_chains, 40, generator=generator)
    counts = torch.bincount(state_index(state.layers), minlength=probabilities.numel())
    # Independent chains give a multinomial sample of the 40-sweep distribution; mixing
    # of this 8-unit model takes a few sweeps, so a chi-square test at level 1e-3 applies.
    assert chi_square_p_value(counts, probabilities) > 1e-3
    # Total variation: E[TV] <= sqrt(K / n) / 2 = 0.057 for K = 256 states, n = 20,000.
    assert 0.5 * (counts / n_chains - probabilities).abs().sum() < 0.06


def test_visible_marginal_of_gibbs_samples(tiny_dbm):
    probabilities = torch.exp(-tiny_dbm.free_energy(all_binary(5)) - exact_log_partition(tiny_dbm))
    state = sample_dbm(tiny_dbm, 20_000, 40, generator=torch.Generator().manual_seed(4))
    counts = torch.bincount(state_index([state.visible]), minlength=32)
    assert chi_square_p_value(counts, probabilities) > 1e-3


def test_sampler_init_and_step_shapes(tiny_dbm):
    sampler = DBMBlockGibbs(tiny_dbm)
    state = sampler.init(torch.ones(6, 5, dtype=torch.float64))
    state, info = sampler.step(state, generator=torch.Generator().manual_seed(0))
    assert [x.shape for x in state.layers] == [(6, 5), (6, 4), (6, 3)]
    assert all(set(x.unique().tolist()) <= {0.0, 1.0} for x in state.layers)
    assert state.visible_mean.shape == (6, 5) and info == {}


# ----- mean field and the bound -----------------------------------------------------------------
@pytest.mark.parametrize("damping", [0.0, 0.5])
def test_mean_field_fixed_point_satisfies_its_equations(damping):
    model = make_dbm([5, 4, 3, 2], seed=8, weight_std=0.7)
    v = all_binary(5)
    result = model.mean_field(v, n_iterations=500, tolerance=1e-9, damping=damping)
    assert result.converged and result.residual < 1e-9
    mu1, mu2, mu3 = result.means
    W, b = [w.detach() for w in model.weights], [c.detach() for c in model.biases]
    equations = [
        torch.sigmoid(b[1] + v @ W[0] + mu2 @ W[1].T) - mu1,
        torch.sigmoid(b[2] + mu1 @ W[1] + mu3 @ W[2].T) - mu2,
        torch.sigmoid(b[3] + mu2 @ W[2]) - mu3,
    ]
    assert max(e.abs().max().item() for e in equations) < 1e-9


def test_elbo_never_exceeds_exact_log_likelihood(tiny_dbm):
    v = all_binary(5)
    log_z = exact_log_partition(tiny_dbm)
    exact = -tiny_dbm.free_energy(v) - log_z
    start = tiny_dbm.bottom_up_means(v)
    fixed_point = tiny_dbm.mean_field(v, n_iterations=200, tolerance=1e-10).means
    for means in (start, fixed_point):
        bound = dbm_estimators.variational_bound(tiny_dbm, v, means) - log_z
        assert (bound <= exact + 1e-12).all()
    # Coordinate ascent never lowers the bound, so the fixed point beats its start.
    before = dbm_estimators.variational_bound(tiny_dbm, v, start)
    after = dbm_estimators.variational_bound(tiny_dbm, v, fixed_point)
    assert (after >= before - 1e-12).all()
    estimate = dbm_estimators.dbm_elbo(tiny_dbm, v, log_z)
    assert estimate.value == pytest.approx((after - log_z).mean().item())
    assert (
        estimate.value <= exact.mean().item() and estimate.lower == estimate.upper == estimate.value
    )


def test_elbo_interval_comes_from_log_z_interval(tiny_dbm):
    estimate = ais_log_partition(
        tiny_dbm, n_chains=50, betas=200, generator=torch.Generator().manual_seed(0), progress=False
    )
    bound = dbm_estimators.dbm_elbo(tiny_dbm, all_binary(5), estimate)
    assert bound.lower == pytest.approx(bound.value + estimate.log_z - estimate.log_z_upper)
    assert bound.upper == pytest.approx(bound.value + estimate.log_z - estimate.log_z_lower)


def test_exact_log_likelihood_uses_the_dbm_free_energy(tiny_dbm):
    from ebmlab.estimators import exact_log_likelihood

    _, neg_energy = joint_table(tiny_dbm)
    v = all_binary(5)[[0, 9, 31]]
    log_p = torch.logsumexp(neg_energy.reshape(32, -1), 1) - torch.logsumexp(neg_energy, 0)
    assert exact_log_likelihood(tiny_dbm, v) == pytest.approx(log_p[[0, 9, 31]].mean().item())


# ----- errors -------------------------------------------------------------------------------
def test_bad_arguments_raise_clear_errors(tiny_dbm):
    with pytest.raises(ValueError, match="at least 2"):
        DBM([5])
    with pytest.raises(TypeError, match="layer_sizes"):
        DBM("784")
    with pytest.raises(ValueError, match=r"layer_sizes\[1\]"):
        DBM([5, 0])
    with pytest.raises(ValueError, match="damping"):
        tiny_dbm.mean_field(all_binary(5), damping=1.0)
    with pytest.raises(ValueError, match="one tensor per layer"):
        tiny_dbm.energy([all_binary(5)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny_dbm.mean_field(2 * all_binary(5))
    with pytest.raises(ValueError, match="max_units"):
        exact_log_partition(make_dbm([30, 30, 30], weight_std=0.01))
    with pytest.raises(ValueError, match="max_units"):
        make_dbm([4, 25, 25]).free_energy(all_binary(4))
    with pytest.raises(TypeError, match="log_z"):
        dbm_estimators.dbm_elbo(tiny_dbm, all_binary(5), "1.0")
    with pytest.raises(TypeError, match="DBM"):
        DBMBlockGibbs(object())


def test_log_z_is_finite_for_float32_models():
    model = DBM([6, 5, 4], weight_std=0.5, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(exact_log_partition(model))
