"""JEM's energy identities, its backbones, the SGLD direction and the objective's gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ebmlab.models.jem import JEM, build_classifier
from ebmlab.models.nets.mlp import MLP
from ebmlab.models.nets.wide_resnet import WideResNet
from ebmlab.samplers.langevin import Langevin
from ebmlab.training.jem import jem_loss

N_CLASSES = 5


@pytest.fixture
def model() -> JEM:
    generator = torch.Generator().manual_seed(0)
    mlp = MLP(12, N_CLASSES, hidden_sizes=(16,), activation="leaky_relu", generator=generator)
    mlp = mlp.double()
    return JEM(mlp, N_CLASSES)


def batch(n: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 12), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_energy_is_minus_logsumexp_of_joint_energies(model):
    x = batch()
    joint = torch.stack(
        [model.energy(x, torch.full((len(x),), c)) for c in range(N_CLASSES)], dim=1
    )
    torch.testing.assert_close(model.energy(x), -torch.logsumexp(-joint, dim=1))
    torch.testing.assert_close(joint, -model.logits(x))
    # log p(y|x) = E(x) - E(x, y), and the conditionals sum to one.
    torch.testing.assert_close(model.log_prob_y(x), model.energy(x)[:, None] - joint)
    torch.testing.assert_close(model.log_prob_y(x).exp().sum(1), torch.ones(len(x), dtype=x.dtype))
    torch.testing.assert_close(model.log_px_unnormalised(x), torch.logsumexp(model(x), 1))


def test_bad_labels_and_logit_shapes_raise(model):
    x = batch()
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\]"):
        model.energy(x, torch.full((len(x),), N_CLASSES))
    with pytest.raises(ValueError, match="y must be an integer tensor"):
        model.energy(x, torch.zeros(len(x)))
    with pytest.raises(ValueError, match="classifier must return logits of shape"):
        JEM(model.classifier, N_CLASSES + 1).energy(x)
    with pytest.raises(TypeError, match="classifier must be an nn.Module"):
        JEM(lambda x: x, 3)


def test_backbones_give_logits_for_rows_and_images():
    generator = torch.Generator().manual_seed(0)
    for name in ("small-cnn", "wrn", "mlp"):
        net = build_classifier(
            name, image_shape=(8, 8), n_classes=10, width=4, depth=10, widen_factor=1,
            hidden_sizes=(8,), generator=generator,
        )  # fmt: skip
        assert JEM(net, 10).logits(torch.rand(3, 64)).shape == (3, 10)
    wrn = WideResNet(1, (8, 8), 10, depth=10, widen_factor=1, generator=generator)
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(wrn(x), wrn(x.reshape(2, 64)))
    # No normalisation layers: a sample's logits do not depend on the rest of its batch.
    torch.testing.assert_close(wrn(x)[:1], wrn(x[:1]))
    assert not any("Norm" in type(m).__name__ for m in wrn.modules())


def test_backbone_bad_values_raise():
    with pytest.raises(ValueError, match="depth must be 6n \\+ 4"):
        WideResNet(1, (8, 8), 10, depth=12)
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_classifier("resnet", image_shape=(8, 8), n_classes=10)
    with pytest.raises(ValueError, match="needs square images"):
        build_classifier("small-cnn", image_shape=(8, 6), n_classes=10)


def test_langevin_step_without_noise_lowers_every_energy(model):
    # x' = x - a grad E(x): E(x') = E(x) - a |grad E|^2 + O(a^2), a decrease for small a.
    x = batch(32)
    sampler = Langevin(model.energy, step_size=1e-3, noise_scale=0.0)
    state, _ = sampler.step(sampler.init(x))
    with torch.no_grad():
        assert (model.energy(state.x) < model.energy(x)).all()
    assert all(p.grad is None for p in model.parameters()), "sampling wrote parameter gradients"


def test_generative_surrogate_gradient_is_difference_of_energy_gradients(model):
    x, x_negative, y = batch(6, 1), batch(5, 2), torch.tensor([0, 1, 2, 3, 4, 0])
    params = list(model.parameters())
    loss = jem_loss(model, x, y, x_negative=x_negative, p_x_weight=0.7).loss
    got = torch.autograd.grad(loss, params)
    ce = torch.autograd.grad(F.cross_entropy(model.logits(x), y), params)
    e_data = torch.autograd.grad(model.energy(x).mean(), params)
    e_negative = torch.autograd.grad(model.energy(x_negative).mean(), params)
    for g, c, d, n in zip(got, ce, e_data, e_negative, strict=True):
        torch.testing.assert_close(g, c + 0.7 * (d - n))


def test_conditional_term_and_penalty(model):
    x, x_negative, y = batch(4, 1), batch(4, 3), torch.tensor([0, 1, 2, 3])
    y_negative = torch.tensor([4, 3, 2, 1])
    parts = jem_loss(
        model, x, y, x_negative_y=x_negative, y_negative=y_negative, p_x_weight=0.0,
        p_x_given_y_weight=0.5, l2_weight=0.1,
    )  # fmt: skip
    e_data, e_negative = model.energy(x, y), model.energy(x_negative, y_negative)
    expected = (
        F.cross_entropy(model.logits(x), y)
        + 0.5 * (e_data.mean() - e_negative.mean())
        + 0.1 * (e_data.pow(2).mean() + e_negative.pow(2).mean())
    )
    torch.testing.assert_close(parts.loss, expected)
    # Without negatives the objective is the classifier's cross-entropy alone.
    torch.testing.assert_close(jem_loss(model, x, y).loss, F.cross_entropy(model.logits(x), y))
