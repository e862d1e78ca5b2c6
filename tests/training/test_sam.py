"""Sharpness-aware minimisation: the step on a quadratic is the closed form, and JEM's
update takes the gradient at the ascended point but steps from the original one."""

from __future__ import annotations

import pytest
import torch

from ebmlab.training import sam
from ebmlab.training.jem import JEMConfig
from tests.training.test_jem_training import tiny_data, tiny_trainer


def test_sam_step_on_a_quadratic_is_the_closed_form():
    # L(theta) = 1/2 theta^T A theta: g = A theta, epsilon = rho g/|g|, g_SAM = A (theta + epsilon).
    a = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]], dtype=torch.float64)
    start = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    theta = torch.nn.Parameter(start.clone())
    bias = torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))  # no gradient: left alone
    rho, lr = 0.3, 0.1

    def loss():
        return 0.5 * theta @ a @ theta

    loss().backward()
    steps = sam.ascend([theta, bias], rho)
    g = a @ start
    assert torch.allclose(theta.detach(), start + rho * g / g.norm(), atol=1e-12)
    assert steps[1] is None and torch.equal(bias.detach(), torch.zeros(2, dtype=torch.float64))
    theta.grad = None
    loss().backward()
    sam.descend_back([theta, bias], steps)
    assert torch.allclose(theta.detach(), start, atol=1e-15)  # back where it started
    expected = a @ (start + rho * g / g.norm())
    assert torch.allclose(theta.grad, expected, atol=1e-12)
    with torch.no_grad():
        theta -= lr * theta.grad
    assert torch.allclose(theta.detach(), start - lr * expected, atol=1e-12)


def test_the_ball_radius_is_over_all_parameters_together():
    first = torch.nn.Parameter(torch.zeros(2))
    second = torch.nn.Parameter(torch.zeros(1))
    first.grad, second.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    steps = sam.ascend([first, second], 1.0)
    assert torch.allclose(torch.cat([s for s in steps]), torch.tensor([0.6, 0.0, 0.8]))


def test_jem_with_a_vanishing_radius_steps_as_without_sam():
    x, y = tiny_data(8)
    plain, tiny = tiny_trainer(), tiny_trainer(sam_rho=1e-12)
    for trainer in (plain, tiny):
        trainer.update(x, y)
    for a, b in zip(plain.model.parameters(), tiny.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7)


def test_jem_with_sam_steps_from_the_original_point_with_another_gradient():
    x, y = tiny_data(8)
    plain, sharp = tiny_trainer(lr=1e-2), tiny_trainer(lr=1e-2, sam_rho=0.5)
    before = [p.detach().clone() for p in sharp.model.parameters()]
    for trainer in (plain, sharp):
        trainer.update(x, y)
    moved = [
        (p.detach() - b).abs().max() for p, b in zip(sharp.model.parameters(), before, strict=True)
    ]
    # Adam's first step moves each weight by about lr: never by the radius 0.5 of the ascent.
    assert max(moved) < 0.02
    differences = [(a - b).abs().max() for a, b in zip(plain.model.parameters(),
                                                       sharp.model.parameters(), strict=True)]  # fmt: skip
    assert max(differences) > 1e-4  # another gradient: some signs of Adam's first step differ


def test_sam_rho_is_validated():
    with pytest.raises(ValueError, match="^sam_rho must be a finite number >= 0"):
        JEMConfig(sam_rho=-0.1)
