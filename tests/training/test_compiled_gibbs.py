"""Compiled Gibbs sweeps with counter-based draws: exact stationary law, training, resume."""

from __future__ import annotations

import copy

import pytest
import torch

from ebmlab.estimators.exact import exact_log_likelihood
from ebmlab.models import GaussianBernoulliRBM
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.counter_random import CounterStream
from ebmlab.training.compiled_gibbs import CompiledGibbs, gibbs_sweep
from ebmlab.training.trainer import CDConfig, CDTrainer
from tests.helpers.enumeration import all_binary, chi_square_p_value


def tiny_rbm(seed=0, weight_std=0.8) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(6, 4, weight_std=weight_std, generator=generator)
    with torch.no_grad():
        model.visible_bias.normal_(0.0, 0.5, generator=generator)
        model.hidden_bias.normal_(0.0, 0.5, generator=generator)
    return model


def exact_visible_probabilities(model) -> torch.Tensor:
    states = all_binary(model.n_visible, dtype=torch.float32)
    with torch.no_grad():
        return torch.softmax(-model.free_energy(states).double(), 0)


def final_visible_counts(model, sweep, n_chains=4000, n_sweeps=25) -> torch.Tensor:
    stream = CounterStream.from_generator(torch.Generator().manual_seed(1))
    visible = torch.bernoulli(torch.full((n_chains, model.n_visible), 0.5),
                              generator=torch.Generator().manual_seed(2))  # fmt: skip
    with torch.no_grad():
        hidden_mean = model.mean_h(visible)
        for _ in range(n_sweeps):
            counter = torch.tensor(stream.counter)
            visible, hidden_mean = sweep(hidden_mean, model.weight, model.hidden_bias,
                                         model.visible_bias, stream.key, counter)  # fmt: skip
            stream.counter += n_chains * (model.n_hidden + model.n_visible)
    codes = (visible * 2 ** torch.arange(model.n_visible - 1, -1, -1)).sum(1).long()
    return torch.bincount(codes, minlength=2**model.n_visible)


def test_sweeps_sample_the_exact_visible_distribution():
    model = tiny_rbm()
    counts = final_visible_counts(model, gibbs_sweep)
    assert chi_square_p_value(counts, exact_visible_probabilities(model)) > 1e-3


def test_bfloat16_sweeps_sample_the_exact_visible_distribution():
    """bfloat16 operands perturb each probability by about 0.4 %: invisible at this sample size."""
    model = tiny_rbm()
    weight_bf16 = model.weight.detach().to(torch.bfloat16)

    def sweep(hidden_mean, weight, hidden_bias, visible_bias, key, counter):
        return gibbs_sweep(hidden_mean, weight_bf16, hidden_bias, visible_bias, key, counter)

    counts = final_visible_counts(model, sweep)
    assert chi_square_p_value(counts, exact_visible_probabilities(model)) > 1e-3


def test_a_sweep_that_does_not_sample_h_is_caught():
    """The most probable h in place of a draw from p(h | v): the same check rejects it."""

    def argmax_sweep(hidden_mean, weight, hidden_bias, visible_bias, key, counter):
        rounded = (hidden_mean > 0.5).to(weight.dtype)  # every u replaced by 1/2
        return gibbs_sweep(rounded, weight, hidden_bias, visible_bias, key, counter)

    model = tiny_rbm()
    counts = final_visible_counts(model, argmax_sweep)
    assert chi_square_p_value(counts, exact_visible_probabilities(model)) < 1e-6


def eager_trainer(config: CDConfig, model: BernoulliRBM, seed: int = 0) -> CDTrainer:
    trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(seed))
    trainer.objective.compiled_gibbs = CompiledGibbs(model, compile=False)  # same draws, no C
    return trainer


def digits_like(n=400):
    generator = torch.Generator().manual_seed(9)
    prototypes = torch.bernoulli(torch.full((4, 10), 0.5), generator=generator)
    rows = prototypes[torch.randint(0, 4, (n,), generator=generator)]
    return (rows + torch.bernoulli(torch.full_like(rows, 0.05), generator=generator)) % 2


@pytest.mark.parametrize("persistent", [False, True])
def test_training_with_counter_sweeps_learns_the_data(persistent):
    data = digits_like()
    config = CDConfig(epochs=30, batch_size=10, lr=0.2, persistent=persistent, compile=True)
    model = BernoulliRBM(10, 8, generator=torch.Generator().manual_seed(0))
    start = exact_log_likelihood(model, data)
    trainer = eager_trainer(config, model)
    for _ in range(config.epochs):
        trainer.train_epoch(data)
    # From 10 log 2 = 6.9 nats to near the data's entropy (3.4 nats), as torch.rand's CD does.
    assert exact_log_likelihood(model, data) > start + 2.5
    assert trainer.objective.compiled_gibbs.stream.counter > 0


def test_a_resumed_run_continues_the_same_stream_bit_for_bit():
    data = digits_like(200)
    # Four scheduled epochs: the third, the one compared, still has a learning rate (0.1/3).
    config = CDConfig(epochs=4, batch_size=20, lr=0.1, persistent=True, compile=True)
    whole_model = BernoulliRBM(10, 8, generator=torch.Generator().manual_seed(0))
    whole = eager_trainer(config, whole_model)
    for _ in range(2):
        whole.train_epoch(data)
    saved = copy.deepcopy(whole.state_dict())  # as a checkpoint file would freeze it
    saved_parameters = {k: v.clone() for k, v in whole_model.state_dict().items()}
    whole.train_epoch(data)

    resumed_model = BernoulliRBM(10, 8)
    resumed_model.load_state_dict(saved_parameters)
    resumed = eager_trainer(config, resumed_model, seed=123)  # state below replaces the seed
    resumed.load_state_dict(saved)
    resumed.train_epoch(data)
    for name, parameter in whole_model.state_dict().items():
        assert torch.equal(resumed_model.state_dict()[name], parameter), name
        assert not torch.equal(saved_parameters[name], parameter), name  # the epoch did learn


def test_a_checkpoint_taken_before_the_first_sweep_resumes_too():
    data = digits_like(100)
    config = CDConfig(epochs=2, batch_size=20, lr=0.1, persistent=True, compile=True)
    models = [BernoulliRBM(10, 8, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    fresh = eager_trainer(config, models[0])
    state = copy.deepcopy(fresh.state_dict())
    assert "stream" not in state["objective"]  # no key drawn yet
    early = eager_trainer(config, models[1], seed=5)
    early.load_state_dict(state)
    fresh.train_epoch(data)
    early.train_epoch(data)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_compile_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="compile=True runs sweeps without tempering"):
        CDConfig(compile=True, persistent=True, tempering=4)
    assert CDConfig(compile=True, precision="bfloat16").compile  # both precisions compile
    with pytest.raises(ValueError, match="compile=True needs a BernoulliRBM"):
        CDTrainer(GaussianBernoulliRBM(4, 3), CDConfig(compile=True), generator=torch.Generator())


@pytest.mark.slow
def test_compiled_sweeps_draw_what_eager_sweeps_draw():
    model = tiny_rbm()
    compiled = CompiledGibbs(model)
    eager = CompiledGibbs(model, compile=False)
    with torch.no_grad():
        start = model.mean_h(torch.bernoulli(torch.full((200, 6), 0.5),
                                             generator=torch.Generator().manual_seed(3)))  # fmt: skip
    results = [
        g.run(start, 3, generator=torch.Generator().manual_seed(4)) for g in (compiled, eager)
    ]
    (v_compiled, h_compiled), (v_eager, h_eager) = results
    # Fused arithmetic may round a probability differently and flip a rare comparison.
    assert (v_compiled == v_eager).float().mean() > 0.999
    assert compiled.stream.counter == eager.stream.counter


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_each_sweep_takes_the_next_block_of_the_stream_hidden_then_visible(precision):
    """The documented layout: per sweep C*H hidden uniforms, then C*V visible ones, no reuse.

    In bfloat16 the sweep's products are the model's own bfloat16 conditionals, bit for bit.
    """
    from ebmlab.samplers.counter_random import counter_uniform

    model = tiny_rbm().set_precision(precision)
    sweeps = CompiledGibbs(model, compile=False)
    n, h, v = 5, model.n_hidden, model.n_visible
    with torch.no_grad():
        start = model.mean_h(torch.bernoulli(torch.full((n, v), 0.5),
                                             generator=torch.Generator().manual_seed(3)))  # fmt: skip
        visible, hidden_mean = sweeps.run(start, 2, generator=torch.Generator().manual_seed(4))
        assert sweeps.stream.counter == 2 * n * (h + v)
        expected, mean = None, start
        for sweep in range(2):  # the reference, written from the module's notes
            u = counter_uniform(sweeps.stream.key, torch.tensor(sweep * n * (h + v)), n * (h + v))
            hidden = (u[: n * h].view(n, h) < mean).float()
            expected = (u[n * h :].view(n, v) < model.mean_v(hidden)).float()
            mean = model.mean_h(expected)
    assert torch.equal(visible, expected)
    assert torch.equal(hidden_mean, mean)
