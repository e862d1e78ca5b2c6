"""The compiled RBM annealing path: the same estimator, its own random stream, one step per beta."""

from __future__ import annotations

import pytest
import torch

from ebmlab.estimators import ais_log_partition, exact_log_partition
from ebmlab.estimators.ais import log_mean_exp_interval
from ebmlab.estimators.annealing import check_betas, run_annealing
from ebmlab.estimators.rbm_path_compiled import CompiledRBMAnnealingPath
from ebmlab.models.rbm import BernoulliRBM


def make_rbm(seed: int, dtype=torch.float32) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(20, 12, weight_std=1.0, generator=generator, dtype=dtype)
    with torch.no_grad():
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
    return model


def eager_estimate(model, seed, n_betas=3000, n_chains=100):
    """AIS through the compiled path's step run eagerly: (lower, estimate, upper)."""
    path = CompiledRBMAnnealingPath(model, compile=False)
    generator = torch.Generator().manual_seed(seed)
    state = path.sample_base(n_chains, generator=generator)
    log_weights = torch.zeros(n_chains, dtype=torch.float64)
    run_annealing(path, state, check_betas(n_betas).tolist(), log_weights, generator=generator)
    log_mean, lower, upper = log_mean_exp_interval(log_weights)
    base = path.log_base_partition
    return base + lower, base + log_mean, base + upper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counter_path_interval_contains_exact_log_z(seed):
    model = make_rbm(seed)
    lower, _, upper = eager_estimate(model, seed)
    assert lower <= exact_log_partition(model) <= upper
    assert upper - lower < 0.2


def test_counter_path_is_reproducible_from_the_seed_and_moves_with_it():
    model = make_rbm(3)
    first, again, other = (eager_estimate(model, s, n_betas=200) for s in (5, 5, 6))
    assert first == again
    assert first != other


def test_a_wrong_weight_update_is_caught_by_the_exact_check():
    """The same check fails when the step drops the linear (bias) part of the increment."""
    model = make_rbm(0)
    path = CompiledRBMAnnealingPath(model, compile=False)
    path._weight_ext = path._weight_ext.clone()
    path._weight_ext[:, -1] = 0  # the column that carries v . (b_v - b_A)
    generator = torch.Generator().manual_seed(0)
    state = path.sample_base(100, generator=generator)
    log_weights = torch.zeros(100, dtype=torch.float64)
    run_annealing(path, state, check_betas(3000).tolist(), log_weights, generator=generator)
    _, lower, upper = log_mean_exp_interval(log_weights)
    exact = exact_log_partition(model)
    assert not (path.log_base_partition + lower <= exact <= path.log_base_partition + upper)


def test_compiled_is_refused_for_other_models_and_dtypes():
    from ebmlab.models import GaussianBernoulliRBM

    with pytest.raises(ValueError, match="compiled=True is for a BernoulliRBM"):
        ais_log_partition(GaussianBernoulliRBM(4, 3), compiled=True, progress=False)
    with pytest.raises(ValueError, match="needs float32 parameters"):
        ais_log_partition(make_rbm(0, torch.float64), compiled=True, progress=False)


@pytest.mark.slow
def test_compiled_step_draws_what_the_eager_step_draws():
    """torch.compile changes the speed, not the estimate (the same counter-based draws)."""
    model = make_rbm(4)
    eager = eager_estimate(model, 7, n_betas=500)
    compiled = ais_log_partition(model, n_chains=100, betas=500, progress=False,
                                 generator=torch.Generator().manual_seed(7),
                                 compiled=True)  # fmt: skip
    # Fused arithmetic may round a probability differently and flip a rare comparison:
    # equal to well inside the interval's width, not necessarily bit for bit.
    width = eager[2] - eager[0]
    assert abs(compiled.log_z - eager[1]) < 0.05 * width
    assert compiled.log_z_lower <= exact_log_partition(model) <= compiled.log_z_upper
