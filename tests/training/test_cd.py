"""CD/PCD: the surrogate's autograd gradient is the analytic CD update; the trainer learns."""

from __future__ import annotations

import pytest
import torch

from ebmlab.models import BernoulliRBM
from ebmlab.samplers import BlockGibbs, GibbsState, run_chain
from ebmlab.samplers.counter_random import CounterStream
from ebmlab.samplers.tempering import ParallelTempering
from ebmlab.training.cd import ContrastiveDivergence, cd_loss, sparsity_penalty
from ebmlab.training.compiled_gibbs import CompiledGibbs
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError
from tests.helpers.enumeration import all_binary


def cd_batch(model, k: int = 3):
    generator = torch.Generator().manual_seed(0)
    v_data = torch.bernoulli(torch.full((32, 6), 0.4, dtype=torch.float64), generator=generator)
    with torch.no_grad():
        h_data = model.mean_h(v_data)
    v_model, h_model = ContrastiveDivergence(model, k=k).negatives(
        v_data, h_data, generator=generator
    )
    return v_data, h_data, v_model, h_model


def test_cd_surrogate_gradient_equals_the_analytic_update(tiny_rbm):
    v_data, h_data, v_model, h_model = cd_batch(tiny_rbm)
    tiny_rbm.zero_grad()
    cd_loss(tiny_rbm, v_data, h_data, v_model, h_model).backward()
    # Classic CD-k: dW = <v h>_data - <v h>_k; the loss gradient is its negative.
    d_weight = (v_data.T @ h_data - v_model.T @ h_model) / 32
    assert torch.allclose(tiny_rbm.weight.grad, -d_weight)
    assert torch.allclose(tiny_rbm.visible_bias.grad, -(v_data - v_model).mean(0))
    assert torch.allclose(tiny_rbm.hidden_bias.grad, -(h_data - h_model).mean(0))


def test_cd_surrogate_has_the_free_energy_difference_gradient(tiny_rbm):
    # dF(v)/dtheta = dE(v, E[h|v])/dtheta for an energy affine in h.
    v_data, h_data, v_model, h_model = cd_batch(tiny_rbm)
    gradients = []
    for loss in (
        lambda: cd_loss(tiny_rbm, v_data, h_data, v_model, h_model),
        lambda: tiny_rbm.free_energy(v_data).mean() - tiny_rbm.free_energy(v_model).mean(),
    ):
        tiny_rbm.zero_grad()
        loss().backward()
        gradients.append([p.grad.clone() for p in tiny_rbm.parameters()])
    for fast, reference in zip(*gradients, strict=True):
        assert torch.allclose(fast, reference)


def test_weighted_energy_equals_the_weighted_sum_of_energies(tiny_rbm):
    generator = torch.Generator().manual_seed(5)
    v = torch.bernoulli(torch.full((9, 6), 0.5, dtype=torch.float64), generator=generator)
    h = torch.rand(9, 4, generator=generator, dtype=torch.float64)
    weights = torch.randn(9, generator=generator, dtype=torch.float64)
    expected = (weights * tiny_rbm.energy(v, h)).sum()
    assert torch.allclose(tiny_rbm.weighted_energy(v, h, weights), expected)


def test_negatives_carry_no_gradient(tiny_rbm):
    _, _, v_model, h_model = cd_batch(tiny_rbm, k=1)
    assert not v_model.requires_grad and not h_model.requires_grad


def test_persistent_chains_continue_across_updates(tiny_rbm):
    objective = ContrastiveDivergence(tiny_rbm, k=1, persistent=True, n_chains=7)
    generator = torch.Generator().manual_seed(0)
    zeros, ones = torch.zeros(5, 6, dtype=torch.float64), torch.ones(5, 6, dtype=torch.float64)
    first, _ = objective.negatives(zeros, tiny_rbm.mean_h(zeros), generator=generator)
    assert first.shape == (7, 6)
    replay = torch.Generator()
    replay.set_state(generator.get_state())
    second, _ = objective.negatives(ones, tiny_rbm.mean_h(ones), generator=generator)
    # PCD continues from the previous negatives, not from the new minibatch.
    expected, _, _ = run_chain(BlockGibbs(tiny_rbm), GibbsState(first), 1, generator=replay)
    assert torch.equal(second, expected.visible)
    assert torch.equal(objective.state_dict()["chains"], second)


def shift_parameters(model, amount=0.3):
    with torch.no_grad():
        model.weight.add_(amount)


@pytest.mark.parametrize("compiled", [False, True], ids=["gibbs", "compiled-sweeps"])
def test_reused_hidden_means_start_the_next_sweep(tiny_rbm, compiled):
    sweeps = CompiledGibbs(tiny_rbm, compile=False) if compiled else None
    objective = ContrastiveDivergence(tiny_rbm, k=1, persistent=True, reuse_hidden_means=True,
                                      compiled_gibbs=sweeps)  # fmt: skip
    data = torch.ones(5, 6, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    first, first_means = objective.negatives(data, tiny_rbm.mean_h(data), generator=generator)
    torch.testing.assert_close(first_means, tiny_rbm.mean_h(first))
    assert torch.equal(objective.state_dict()["chain_hidden_means"], first_means)
    assert torch.equal(objective.chains, first)
    shift_parameters(tiny_rbm)  # the parameter update between the two calls
    replay = generator.get_state()
    second, _ = objective.negatives(data, tiny_rbm.mean_h(data), generator=generator)

    def sweep_from(hidden_mean):
        if compiled:  # the second call's block of the counter stream: one sweep = 5 x 10 draws
            sweep = CompiledGibbs(tiny_rbm, compile=False)
            key = objective.compiled_gibbs.stream.key
            sweep.stream = CounterStream(key=key, counter=5 * 10)
            return sweep.run(hidden_mean, 1)[0]
        start = GibbsState(first, hidden_mean=hidden_mean)
        return run_chain(BlockGibbs(tiny_rbm), start, 1,
                         generator=torch.Generator().set_state(replay))[0].visible  # fmt: skip

    # The sweep starts from the means under the old parameters, not from mean_h(first) now.
    assert torch.equal(second, sweep_from(first_means))
    assert not torch.equal(second, sweep_from(tiny_rbm.mean_h(first)))


def test_reused_hidden_means_resume_from_the_state_dict(tiny_rbm):
    def objective():
        return ContrastiveDivergence(tiny_rbm, k=2, persistent=True, reuse_hidden_means=True)

    data = torch.ones(5, 6, dtype=torch.float64)
    running, generator = objective(), torch.Generator().manual_seed(3)
    running.negatives(data, tiny_rbm.mean_h(data), generator=generator)
    resumed = objective()
    resumed.load_state_dict(running.state_dict())
    shift_parameters(tiny_rbm)
    replay = torch.Generator()
    replay.set_state(generator.get_state())
    expected, _ = running.negatives(data, None, generator=generator)
    assert torch.equal(resumed.negatives(data, None, generator=replay)[0], expected)


def test_reused_hidden_means_need_plain_persistent_chains(tiny_rbm):
    with pytest.raises(ValueError, match="reuse_hidden_means needs persistent"):
        ContrastiveDivergence(tiny_rbm, reuse_hidden_means=True)
    with pytest.raises(ValueError, match="reuse_hidden_means needs persistent"):
        CDConfig(persistent=True, tempering=4, reuse_hidden_means=True)


def test_the_default_is_one_sweep_from_the_data(tiny_rbm):
    v_data = torch.ones(4, 6, dtype=torch.float64)
    h_data = tiny_rbm.mean_h(v_data)
    generator = torch.Generator().manual_seed(8)
    replay = generator.get_state()
    v_model, h_model = ContrastiveDivergence(tiny_rbm).negatives(v_data, h_data,
                                                                 generator=generator)  # fmt: skip
    start = GibbsState(v_data, hidden_mean=h_data)
    expected = run_chain(BlockGibbs(tiny_rbm), start, 1,
                         generator=torch.Generator().set_state(replay))[0].visible  # fmt: skip
    assert torch.equal(v_model, expected)
    torch.testing.assert_close(h_model, tiny_rbm.mean_h(expected))


def tempered_objective(model):
    tempering = ParallelTempering(model, n_replicas=3, min_beta=0.3)
    return ContrastiveDivergence(model, k=2, persistent=True, n_chains=4, tempering=tempering)


def test_tempered_negatives_are_the_cold_replicas_and_resume(tiny_rbm):
    objective = tempered_objective(tiny_rbm)
    data = torch.ones(5, 6, dtype=torch.float64)
    generator = torch.Generator().manual_seed(9)
    replay = generator.get_state()
    v_model, h_model = objective.negatives(data, None, generator=generator)
    sampler = tempered_objective(tiny_rbm).tempering
    state = run_chain(sampler, sampler.init(data[torch.arange(4) % 5]), 2,
                      generator=torch.Generator().set_state(replay))[0]  # fmt: skip
    assert torch.equal(v_model, state.cold)
    torch.testing.assert_close(h_model, tiny_rbm.mean_h(state.cold))
    # A resumed objective continues the same replicas; one without saved replicas starts anew.
    resumed, fresh = tempered_objective(tiny_rbm), tempered_objective(tiny_rbm)
    resumed.load_state_dict(objective.state_dict())
    fresh.load_state_dict({})
    assert fresh.tempering_state is None and resumed.tempering_state is not None
    replay = generator.get_state()
    expected, _ = objective.negatives(data, None, generator=generator)
    again, _ = resumed.negatives(data, None, generator=torch.Generator().set_state(replay))
    assert torch.equal(again, expected)


def test_saved_chains_load_in_the_models_dtype_and_nothing_is_saved_before_an_update(tiny_rbm):
    objective = ContrastiveDivergence(tiny_rbm, persistent=True, reuse_hidden_means=True)
    assert objective.state_dict() == {}
    saved = {"chains": torch.ones(3, 6), "chain_hidden_means": torch.full((3, 4), 0.5)}
    objective.load_state_dict(saved)  # float32 checkpoint, float64 model
    assert objective.chains.dtype == objective.chain_hidden_means.dtype == torch.float64


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (lambda model: {"k": 0}, "^k must be"),
        (lambda model: {"n_chains": 0}, "^n_chains must be"),
        (lambda model: {"tempering": ParallelTempering(model, n_replicas=2)},
         r"^tempering needs persistent chains \(persistent=True\)$"),
        (lambda model: {"persistent": True, "tempering": ParallelTempering(model, n_replicas=2),
                        "compiled_gibbs": CompiledGibbs(model, compile=False)},
         "^compiled Gibbs sweeps and tempering cannot be combined$"),
        (lambda model: {"reuse_hidden_means": True},
         r"^reuse_hidden_means needs persistent chains without tempering \(persistent=True, "
         r"tempering=None\); got persistent=False$"),
    ],
)  # fmt: skip
def test_bad_objective_settings_are_refused_by_name(tiny_rbm, options, message):
    with pytest.raises(ValueError, match=message):
        ContrastiveDivergence(tiny_rbm, **options(tiny_rbm))


def test_sparsity_penalty_is_the_summed_cross_entropy_of_the_batch_mean(tiny_rbm):
    v = torch.bernoulli(torch.full((16, 6), 0.5, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(2))  # fmt: skip
    q = tiny_rbm.mean_h(v).mean(0)  # mean activation of each hidden unit over the batch
    expected = -(0.1 * torch.log(q) + 0.9 * torch.log(1 - q)).sum()
    torch.testing.assert_close(sparsity_penalty(tiny_rbm, v, target=0.1, cost=2.0), 2 * expected)


def test_sparsity_penalty_gradient_pushes_activation_towards_target(tiny_rbm):
    v = torch.bernoulli(
        torch.full((64, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1)
    )
    tiny_rbm.zero_grad()
    sparsity_penalty(tiny_rbm, v, target=0.05, cost=1.0).backward()
    q = tiny_rbm.mean_h(v).mean(0).detach()
    # Gradient descent on the bias moves q towards the target: sign(grad) = sign(q - target).
    assert torch.equal(torch.sign(tiny_rbm.hidden_bias.grad), torch.sign(q - 0.05))


@torch.no_grad()
def exact_log_likelihood(model: BernoulliRBM, data: torch.Tensor) -> float:
    vs = all_binary(model.n_visible, dtype=data.dtype)
    log_z = torch.logsumexp(-model.free_energy(vs), 0)
    return float((-model.free_energy(data) - log_z).mean())


@pytest.mark.parametrize(
    "options",
    [{}, {"persistent": True}, {"persistent": True, "reuse_hidden_means": True}],
    ids=["cd", "pcd", "pcd-reused-means"],
)
def test_training_raises_the_exact_likelihood(options):
    # Data: two prototypes with 5% bit noise; the RBM must learn them.
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.tensor(
        [[1, 1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 0, 1]], dtype=torch.float64
    )
    data = prototypes[torch.randint(0, 2, (400,), generator=generator)]
    data = (data + torch.bernoulli(torch.full_like(data, 0.05), generator=generator)) % 2
    model = BernoulliRBM(8, 4, generator=generator, dtype=torch.float64).init_visible_bias(data)
    before = exact_log_likelihood(model, data)
    config = CDConfig(epochs=30, batch_size=20, lr=0.1, cd_k=1, **options)
    trainer = CDTrainer(model, config, generator=generator)
    for _ in range(config.epochs):
        trainer.train_epoch(data)
    after = exact_log_likelihood(model, data)
    # The data entropy is about 2 * H(0.05) * 8 / 2 + log 2 = 2.0 nats; the start is near 5.3.
    assert after > before + 1.5, (before, after)


def test_non_finite_loss_stops_training_with_a_message(tiny_rbm):
    with torch.no_grad():
        tiny_rbm.weight[0, 0] = float("nan")
    trainer = CDTrainer(
        tiny_rbm, CDConfig(epochs=1, batch_size=4), generator=torch.Generator().manual_seed(0)
    )
    with pytest.raises(NonFiniteError, match="became nan"):
        trainer.train_epoch(torch.ones(8, 6, dtype=torch.float64))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", 0.0, "lr must be a finite number > 0; got 0.0"),
        ("lr", float("nan"), "lr must be a finite number > 0"),
        ("cd_k", 0, "cd_k must be a positive integer; got 0"),
        ("batch_size", -5, "batch_size must be a positive integer; got -5"),
        ("momentum", 1.5, "momentum must lie in \\[0, 1\\]; got 1.5"),
        ("sparsity_target", 1.0, "sparsity_target must lie in \\(0, 1\\)"),
    ],
)
def test_bad_hyperparameters(field, value, message):
    with pytest.raises(ValueError, match=message):
        CDConfig(**{field: value})


def test_hidden_means_from_a_reusing_runs_checkpoint_are_recomputed_when_not_reused():
    model = BernoulliRBM(6, 4, generator=torch.Generator().manual_seed(0))
    chains = torch.bernoulli(torch.full((5, 6), 0.5), generator=torch.Generator().manual_seed(1))
    stale = torch.full((5, 4), 0.99)  # far from p(h | chains): reusing them would show
    negatives = []
    for state in ({"chains": chains, "chain_hidden_means": stale}, {"chains": chains}):
        objective = ContrastiveDivergence(model, persistent=True)
        objective.load_state_dict(state)
        assert objective.chain_hidden_means is None
        v_data = chains.clone()
        negatives.append(objective.negatives(v_data, model.mean_h(v_data).detach(),
                                             generator=torch.Generator().manual_seed(2)))  # fmt: skip
    for a, b in zip(*negatives, strict=True):
        assert torch.equal(a, b)
