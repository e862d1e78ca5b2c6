"""The direct CD update (no autograd, no optimizer wrapper) equals the autograd path."""

from __future__ import annotations

import pytest
import torch

from ebmlab.models import BernoulliRBM
from ebmlab.training.cd import bernoulli_cd_gradients, cd_loss
from ebmlab.training.optim import build_sgd, sgd_step
from ebmlab.training.trainer import CDConfig, CDTrainer


def tiny_rbm(seed: int = 0) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(12, 7, generator=generator, dtype=torch.float64)
    with torch.no_grad():  # non-zero biases, so every term of the loss counts
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
    return model


def test_gradients_and_loss_equal_autograd_of_the_cd_surrogate():
    model = tiny_rbm()
    generator = torch.Generator().manual_seed(1)
    v_data = torch.bernoulli(torch.full((9, 12), 0.4, dtype=torch.float64), generator=generator)
    v_model = torch.bernoulli(torch.full((5, 12), 0.6, dtype=torch.float64), generator=generator)
    h_data, h_model = model.mean_h(v_data).detach(), model.mean_h(v_model).detach()

    expected_loss = cd_loss(model, v_data, h_data, v_model, h_model)
    expected_loss.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    loss = bernoulli_cd_gradients(model, v_data, h_data, v_model, h_model)
    torch.testing.assert_close(loss, expected_loss.detach(), rtol=1e-12, atol=1e-12)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("momentum", "dampened"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_step_equals_torch_sgd_with_the_same_state(momentum, dampened):
    models = [tiny_rbm(), tiny_rbm()]
    optimizers = [
        build_sgd(m, lr=0.1, momentum=momentum, weight_decay=0.01, dampened=dampened)
        for m in models
    ]
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.5**epoch) for o in optimizers
    ]
    generator = torch.Generator().manual_seed(2)
    for _ in range(4):
        grads = [
            torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in models[0].parameters()
        ]
        for model in models:
            for parameter, grad in zip(model.parameters(), grads, strict=True):
                parameter.grad = grad.clone()
        optimizers[0].step()
        sgd_step(optimizers[1])
        for scheduler in schedulers:
            scheduler.step()
    for reference, direct in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(direct, reference, rtol=1e-12, atol=1e-12)
    # The momentum buffers sit where torch keeps them: a checkpoint of either loads into both.
    states = [o.state_dict()["state"] for o in optimizers]
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        if value.get("momentum_buffer") is not None:
            torch.testing.assert_close(states[1][key]["momentum_buffer"], value["momentum_buffer"])


@pytest.mark.parametrize("persistent", [False, True])
def test_a_trained_epoch_matches_the_autograd_path(persistent):
    data = torch.bernoulli(torch.full((60, 12), 0.3, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(3))  # fmt: skip
    config = CDConfig(epochs=3, batch_size=10, lr=0.1, persistent=persistent, weight_decay=1e-3)
    trained = []
    for direct in (True, False):
        model = tiny_rbm()
        trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(4))
        assert trainer._direct
        trainer._direct = direct
        losses = [trainer.train_epoch(data)["loss"] for _ in range(3)]
        trained.append((model, losses))
    (direct, direct_losses), (autograd, autograd_losses) = trained
    assert direct_losses == pytest.approx(autograd_losses, rel=1e-9, abs=1e-12)
    for a, b in zip(direct.parameters(), autograd.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_models_with_other_energies_keep_the_autograd_path():
    from ebmlab.models import GaussianBernoulliRBM

    model = GaussianBernoulliRBM(4, 3, generator=torch.Generator().manual_seed(0))
    assert not CDTrainer(model, CDConfig(), generator=torch.Generator())._direct
    sparse = CDConfig(sparsity_target=0.1, sparsity_cost=0.5)
    assert not CDTrainer(tiny_rbm(), sparse, generator=torch.Generator())._direct


def test_dampened_momentum_moves_a_steady_gradient_by_lr_per_step():
    """With buf = m buf + (1 - m) g a constant gradient g moves p by lr * g, not lr * g / (1 - m)."""
    steps = {}
    for dampened in (False, True):
        model = tiny_rbm()
        optimizer = build_sgd(model, lr=0.1, momentum=0.9, weight_decay=0.0, dampened=dampened)
        for _ in range(200):  # long enough for the undampened velocity to reach g / (1 - m)
            before = model.visible_bias.detach().clone()
            model.visible_bias.grad = torch.ones_like(model.visible_bias)
            sgd_step(optimizer)
        steps[dampened] = float((before - model.visible_bias.detach()).mean())
    assert steps[True] == pytest.approx(0.1, rel=1e-6)
    assert steps[False] == pytest.approx(1.0, rel=1e-6)
