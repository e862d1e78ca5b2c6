"""CD/PCD: the surrogate's autograd gradient is the analytic CD update; the trainer learns."""

from __future__ import annotations

import pytest
import torch

from ebmlab.models import BernoulliRBM
from ebmlab.samplers import BlockGibbs, GibbsState, run_chain
from ebmlab.samplers.counter_random import CounterStream
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
    objective = ContrastiveDivergence(tiny_rbm, k=1, persistent=True, reuse_hidden_means=True)
    if compiled:
        objective.compiled_gibbs = CompiledGibbs(tiny_rbm, compile=False)
    data = torch.ones(5, 6, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    first, first_means = objective.negatives(data, tiny_rbm.mean_h(data), generator=generator)
    torch.testing.assert_close(first_means, tiny_rbm.mean_h(first))
    assert torch.equal(objective.state_dict()["chain_hidden_means"], first_means)
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
