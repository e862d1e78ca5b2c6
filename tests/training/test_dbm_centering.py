"""DBM centering: the centered energy is the plain one plus a constant, the transformed
gradient is exactly the centered step written in plain parameters, and the trainer keeps
and checkpoints its offsets."""

from __future__ import annotations

import copy

import pytest
import torch

from ebmlab.samplers.dbm_gibbs import DBMGibbsState
from ebmlab.training.dbm import DBMTrainer, DBMTrainingConfig
from ebmlab.training.dbm_centering import DBMCentering
from tests.helpers.enumeration import all_binary
from tests.models.test_dbm import make_dbm

SIZES = (5, 4, 3, 2)  # three weight matrices: a middle layer has neighbours on both sides


def _offsets(seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(n, generator=generator, dtype=torch.float64) for n in SIZES]


def _centered_biases(weights, biases, mu):
    """b'_l = b_l + W_l mu_{l+1} + W_{l-1}^T mu_{l-1}: the inverse of the module's formula."""
    centered = []
    for layer, bias in enumerate(biases):
        shift = torch.zeros_like(bias)
        if layer < len(weights):
            shift = shift + weights[layer] @ mu[layer + 1]
        if layer > 0:
            shift = shift + weights[layer - 1].t() @ mu[layer - 1]
        centered.append(bias + shift)
    return centered


def _centered_energy(states, weights, centered_biases, mu):
    energy = -sum((x - m) @ b for x, b, m in zip(states, centered_biases, mu, strict=True))
    for k, weight in enumerate(weights):
        energy = energy - (((states[k] - mu[k]) @ weight) * (states[k + 1] - mu[k + 1])).sum(-1)
    return energy


def _random_states(seed: int, rows: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(rows, n, generator=generator, dtype=torch.float64) for n in SIZES]


def test_centered_energy_is_the_plain_energy_plus_a_constant():
    model, mu = make_dbm(list(SIZES), seed=1), _offsets(2)
    weights, biases = list(model.weights), list(model.biases)
    states = _random_states(3, 50)
    centered = _centered_energy(states, weights, _centered_biases(weights, biases, mu), mu)
    difference = (centered - model.energy(states)).detach()
    assert torch.allclose(difference, difference[0].expand_as(difference), atol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_transformed_gradient_is_the_centered_step_in_plain_parameters(weight_decay):
    model, mu, lr = make_dbm(list(SIZES), seed=4), _offsets(5), 0.1
    data, negatives = _random_states(6, 8), _random_states(7, 6)
    # The centered step, taken in centered coordinates by autograd and mapped back.
    weights = [w.detach().clone().requires_grad_() for w in model.weights]
    centered_biases = [
        b.detach().clone().requires_grad_()
        for b in _centered_biases(
            [w.detach() for w in model.weights], [b.detach() for b in model.biases], mu
        )
    ]
    loss = (
        _centered_energy(data, weights, centered_biases, mu).mean()
        - _centered_energy(negatives, weights, centered_biases, mu).mean()
        + weight_decay / 2 * sum((w**2).sum() for w in weights)
    )
    loss.backward()
    with torch.no_grad():
        new_weights = [w - lr * w.grad for w in weights]
        new_centered = [b - lr * b.grad for b in centered_biases]
        expected_biases = []
        for layer, bias in enumerate(new_centered):  # b = b' - W_l mu_{l+1} - W_{l-1}^T mu_{l-1}
            if layer < len(new_weights):
                bias = bias - new_weights[layer] @ mu[layer + 1]
            if layer > 0:
                bias = bias - new_weights[layer - 1].t() @ mu[layer - 1]
            expected_biases.append(bias)
    # The plain gradient, transformed, then a plain SGD step.
    plain = model.energy(data).mean() - model.energy(negatives).mean()
    plain.backward()
    centering = DBMCentering(model, rate=0.1)
    centering.offsets = [m.clone() for m in mu]
    centering.center_gradients(weight_decay=weight_decay)
    with torch.no_grad():
        for weight, expected in zip(model.weights, new_weights, strict=True):
            assert torch.allclose(weight - lr * weight.grad, expected, atol=1e-12)
        for bias, expected in zip(model.biases, expected_biases, strict=True):
            assert torch.allclose(bias - lr * bias.grad, expected, atol=1e-12)


def test_offsets_start_at_the_layer_means_and_move_at_their_rate():
    model = make_dbm([5, 4, 3], seed=0)
    centering = DBMCentering(model, rate=0.25)
    first = [torch.zeros(2, 5), torch.ones(2, 4), torch.full((2, 3), 0.5)]
    centering.initialise([x.double() for x in first])
    centering.update_offsets([torch.ones(3, 5).double(), torch.zeros(3, 4).double(),
                              torch.full((3, 3), 0.5).double()])  # fmt: skip
    assert [o.tolist() for o in centering.offsets] == [[0.25] * 5, [0.75] * 4, [0.5] * 3]
    restored = DBMCentering(model, rate=0.25)
    restored.load_state_dict(centering.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.offsets, centering.offsets, strict=True))


def test_bad_arguments_are_named():
    model = make_dbm([5, 4, 3], seed=0)
    with pytest.raises(ValueError, match="^offset_rate must lie in"):
        DBMCentering(model, rate=0.0)
    with pytest.raises(TypeError, match="^model must be a DBM"):
        DBMCentering(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="^layers must be one"):
        DBMCentering(model).initialise([torch.zeros(2, 5), torch.zeros(2, 4)])
    with pytest.raises(ValueError, match="^offsets must have the layer sizes"):
        DBMCentering(model).load_state_dict({"offsets": [torch.zeros(5), torch.zeros(3)]})
    with pytest.raises(ValueError, match="offset_rate"):
        DBMTrainingConfig(centering=True, offset_rate=1.5)


def _trainer(seed=0, **options):
    model = make_dbm([5, 4, 3], seed=seed, weight_std=0.3)
    config = DBMTrainingConfig(centering=True, offset_rate=0.1, n_chains=6, gibbs_steps=1,
                               batch_size=8, **options)  # fmt: skip
    return DBMTrainer(model, config, generator=torch.Generator().manual_seed(seed))


def test_trainer_takes_centered_steps_and_checkpoints_its_offsets():
    data = all_binary(5)
    trainer = _trainer(weight_decay=0.01)
    trainer.train_epoch(data)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.0  # folded into the transform
    offsets = [o.clone() for o in trainer.centering.offsets]
    assert abs(offsets[0] - 0.5).max() < 0.2  # the data mean of all 32 patterns, moved a little
    state = copy.deepcopy(trainer.state_dict())  # as a checkpoint file holds it
    resumed = _trainer(weight_decay=0.01)
    resumed.model.load_state_dict(trainer.model.state_dict())
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(resumed.centering.offsets, offsets, strict=True))
    trainer.train_epoch(data)
    resumed.train_epoch(data)
    for a, b in zip(trainer.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)  # the resumed run continues bit for bit


def test_centering_changes_the_update_but_not_without_it():
    plain, centered = _trainer(), _trainer()
    plain.centering = None  # the same trainer, plain gradients
    v = all_binary(5)[::3]
    for trainer in (plain, centered):
        trainer.chains = DBMGibbsState([torch.zeros(6, n, dtype=torch.float64) for n in (5, 4, 3)])
        trainer.update(v)
    differences = [(a - b).abs().max() for a, b in zip(plain.model.parameters(),
                                                       centered.model.parameters(), strict=True)]  # fmt: skip
    assert max(differences) > 1e-4
