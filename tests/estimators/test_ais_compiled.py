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


def test_each_temperature_takes_the_next_block_of_the_stream_hidden_then_visible():
    """The documented layout: per temperature C*H hidden uniforms, then C*V visible ones."""
    from ebmlab.estimators.rbm_path_compiled import CounterChains
    from ebmlab.samplers.counter_random import CounterStream, counter_uniform

    model = make_rbm(0)
    path = CompiledRBMAnnealingPath(model, compile=False)
    generator = torch.Generator().manual_seed(1)
    state = path.sample_base(7, generator=generator)
    n, h, v = 7, model.n_hidden, model.n_visible
    start, weights = state.visible.clone(), torch.zeros(7, dtype=torch.float64)
    path.advance(state, 0.2, 0.3, weights, generator=generator)
    assert state.stream.counter == n * (h + v)

    def sweep(visible, beta, counter):  # the reference, written from the module's notes
        with torch.no_grad():
            uniforms = counter_uniform(state.stream.key, torch.tensor(counter), n * (h + v))
            preactivation = model.hidden_preactivation(visible)
            hidden = (uniforms[: n * h].view(n, h) < torch.sigmoid(beta * preactivation)).float()
            base = path.base_bias
            inputs = base + beta * (model.visible_bias - base) + beta * (hidden @ model.weight.t())
            return (uniforms[n * h :].view(n, v) < torch.sigmoid(inputs)).float()

    first = sweep(start, 0.3, 0)
    assert torch.equal(state.visible, first)
    exact = path.log_unnormalized(CounterChains(start), 0.3) - path.log_unnormalized(
        CounterChains(start), 0.2
    )
    torch.testing.assert_close(weights, exact, rtol=1e-5, atol=1e-4)
    path.advance(state, 0.3, 0.4, weights, generator=generator)  # the next block, no reuse
    assert state.stream.counter == 2 * n * (h + v)
    assert torch.equal(state.visible, sweep(first, 0.4, n * (h + v)))
    # transition: the same sweep without weights, from a data state (reverse AIS's start)
    moved = path.state_from_data(start.double())
    moved.stream = CounterStream(key=state.stream.key.clone())
    path.transition(moved, 0.3)
    assert moved.visible.dtype == torch.float32 and torch.equal(moved.visible, first)
    assert not torch.equal(first, start)  # the sweep moved the chains


def bfloat16_rounded(model: BernoulliRBM, path: CompiledRBMAnnealingPath) -> BernoulliRBM:
    """The float32 RBM whose products the bfloat16 path computes exactly: W and the
    visible biases' gap to the base model rounded to bfloat16."""
    rounded = make_rbm(0)
    with torch.no_grad():
        rounded.load_state_dict(model.state_dict())
        rounded.weight.copy_(model.weight.bfloat16().float())
        rounded.visible_bias.copy_(path.base_bias + path._bias_gap.bfloat16().float())
    return rounded


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1])  # the seed whose rounded log Z lies 0.03 nats off
def test_a_bfloat16_model_anneals_the_bfloat16_rounded_model(seed):
    model = make_rbm(seed)
    full = eager_estimate(model, seed)
    model.set_precision("bfloat16")
    lower, estimate, upper = eager_estimate(model, seed)
    rounded = bfloat16_rounded(model, CompiledRBMAnnealingPath(model, compile=False))
    # The estimate is of the model the rounded products define; with std-1 weights that
    # model's log Z lies up to 0.03 nats from the float one.
    assert lower <= exact_log_partition(rounded) <= upper and upper - lower < 0.3
    assert abs(estimate - exact_log_partition(model)) < 0.1
    assert (lower, estimate, upper) != full  # the same draws through rounded products
