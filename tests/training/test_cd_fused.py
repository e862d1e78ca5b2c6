"""The fused CD update (no autograd, no .grad, no optimizer wrapper) equals the autograd path."""

from __future__ import annotations

import pytest
import torch

from ebmlab.models import BernoulliRBM
from ebmlab.training.cd import cd_loss
from ebmlab.training.centering import Centering
from ebmlab.training.fused_cd import fused_cd_update, sgd_apply
from ebmlab.training.optim import build_sgd
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError


def tiny_rbm(seed: int = 0) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(12, 7, generator=generator, dtype=torch.float64)
    with torch.no_grad():  # non-zero biases, so every term of the loss counts
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
    return model


def _batches(generator):
    v_data = torch.bernoulli(torch.full((9, 12), 0.4, dtype=torch.float64), generator=generator)
    v_model = torch.bernoulli(torch.full((5, 12), 0.6, dtype=torch.float64), generator=generator)
    return v_data, v_model


def _autograd_step(model, optimizer, v_data, v_model, centering, weight_decay):
    """The reference: autograd of the surrogate, the centering transform, torch's SGD."""
    h_data, h_model = model.mean_h(v_data).detach(), model.mean_h(v_model).detach()
    loss = cd_loss(model, v_data, h_data, v_model, h_model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if centering is not None:
        centering.center_gradients(weight_decay=weight_decay)
    optimizer.step()
    return loss.detach()


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize(("momentum", "dampened"), [(0.0, False), (0.9, False), (0.5, True)])
def test_fused_update_equals_autograd_centering_and_torch_sgd(centered, momentum, dampened):
    """Parameters, momentum buffers and the loss agree with the autograd path for 4 steps."""
    weight_decay = 0.01
    models = [tiny_rbm(), tiny_rbm()]
    # The reference optimizer decays the weights itself unless centering folds decay in.
    optimizers = [
        build_sgd(models[0], lr=0.1, momentum=momentum,
                  weight_decay=0.0 if centered else weight_decay, dampened=dampened),
        build_sgd(models[1], lr=0.1, momentum=momentum, weight_decay=0.0, dampened=dampened),
    ]  # fmt: skip
    centering = Centering(models[0], rate=0.5) if centered else None
    generator = torch.Generator().manual_seed(1)
    for _ in range(4):
        v_data, v_model = _batches(generator)
        offsets = (None, None)
        if centering is not None:
            # Offsets away from the batch means, so every centering term counts.
            centering.initialise(v_data.flip(0)[:3], models[0].mean_h(v_data[:3]).detach())
            offsets = (centering.visible_offset.clone(), centering.hidden_offset.clone())
        expected = _autograd_step(models[0], optimizers[0], v_data, v_model, centering,
                                  weight_decay)  # fmt: skip
        with torch.no_grad():
            h_data, h_model = models[1].mean_h(v_data), models[1].mean_h(v_model)
        loss = fused_cd_update(models[1], optimizers[1], v_data, h_data, v_model, h_model,
                               weight_decay=weight_decay, visible_offset=offsets[0],
                               hidden_offset=offsets[1])  # fmt: skip
        torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
        for reference, fused in zip(models[0].parameters(), models[1].parameters(), strict=True):
            torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
            assert fused.grad is None  # nothing written to .grad
    states = [o.state_dict()["state"] for o in optimizers]
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key]["momentum_buffer"], value["momentum_buffer"])


def test_fused_update_refuses_a_parameter_its_optimizer_does_not_hold():
    model, other = tiny_rbm(), tiny_rbm(1)
    optimizer = build_sgd(other, lr=0.1, momentum=0.0, weight_decay=0.0)
    v = torch.zeros(2, 12, dtype=torch.float64)
    h = model.mean_h(v).detach()
    with pytest.raises(ValueError, match="^the optimizer does not hold this parameter$"):
        fused_cd_update(model, optimizer, v, h, v, h)


@pytest.mark.parametrize(("momentum", "dampened"), [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_apply_equals_torch_sgd_with_the_same_state(momentum, dampened):
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
    for fused in (True, False):
        model = tiny_rbm()
        trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(4))
        assert trainer._fused
        trainer._fused = fused
        losses = [trainer.train_epoch(data)["loss"] for _ in range(3)]
        trained.append((model, losses))
    (fused, fused_losses), (autograd, autograd_losses) = trained
    assert fused_losses == pytest.approx(autograd_losses, rel=1e-9, abs=1e-12)
    for a, b in zip(fused.parameters(), autograd.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"reuse_hidden_means": True}], ids=["pcd", "reused"])
def test_untracked_loss_takes_the_plain_step_and_matches_the_autograd_path(options):
    # No momentum, no centering, weight decay on, a decaying learning rate: plain_sgd_step.
    data = torch.bernoulli(torch.full((60, 12), 0.3, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(5))  # fmt: skip
    config = CDConfig(epochs=3, batch_size=10, lr=0.1, persistent=True, weight_decay=1e-2,
                      centering=False, **options)  # fmt: skip
    trained, records = [], []
    for fused in (True, False):
        model = tiny_rbm()
        trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(6),
                            track_loss=not fused)  # fmt: skip
        trainer._fused = fused
        records.append([trainer.train_epoch(data) for _ in range(3)])
        trained.append(model)
    assert all("loss" not in record for record in records[0])
    assert all("loss" in record for record in records[1])
    for a, b in zip(*(model.parameters() for model in trained), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_plain_step_is_the_sgd_step_written_out():
    model, generator = tiny_rbm(), torch.Generator().manual_seed(7)
    optimizer = build_sgd(model, lr=0.3, momentum=0.0, weight_decay=0.0)
    v_data, v_model = _batches(generator)
    h_data, h_model = model.mean_h(v_data).detach(), model.mean_h(v_model).detach()
    weight, visible_bias, hidden_bias = (p.detach().clone() for p in model.parameters())
    assert fused_cd_update(model, optimizer, v_data, h_data, v_model, h_model,
                           weight_decay=0.05, compute_loss=False) is None  # fmt: skip
    expected_weight = (1 - 0.3 * 0.05) * weight + 0.3 * (
        v_data.T @ h_data / 9 - v_model.T @ h_model / 5
    )
    torch.testing.assert_close(model.weight, expected_weight)
    torch.testing.assert_close(
        model.hidden_bias, hidden_bias + 0.3 * (h_data.mean(0) - h_model.mean(0))
    )
    torch.testing.assert_close(
        model.visible_bias, visible_bias + 0.3 * (v_data.mean(0) - v_model.mean(0))
    )


def test_untracked_loss_still_stops_on_non_finite_parameters():
    model = tiny_rbm()
    trainer = CDTrainer(model, CDConfig(epochs=1, batch_size=4, centering=False),
                        generator=torch.Generator().manual_seed(0), track_loss=False)  # fmt: skip
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="parameter weight became non-finite"):
        trainer.train_epoch(torch.ones(8, 12, dtype=torch.float64))


def test_models_with_other_energies_keep_the_autograd_path():
    from ebmlab.models import GaussianBernoulliRBM

    model = GaussianBernoulliRBM(4, 3, generator=torch.Generator().manual_seed(0))
    assert not CDTrainer(model, CDConfig(), generator=torch.Generator())._fused
    sparse = CDConfig(sparsity_target=0.1, sparsity_cost=0.5)
    assert not CDTrainer(tiny_rbm(), sparse, generator=torch.Generator())._fused


def sgd_step(optimizer):
    """optimizer.step() through sgd_apply, weight decay added as torch adds it."""
    with torch.no_grad():
        _sgd_step(optimizer)


def _sgd_step(optimizer):
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.grad is None:
                continue
            grad = parameter.grad.add(parameter.detach(), alpha=group["weight_decay"])
            sgd_apply(optimizer, parameter, grad)
    optimizer._opt_called = True  # as fused_cd_update tells the LR scheduler


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
