"""without_grad and grad_off: autograd off inside, the caller's grad mode restored after."""

from __future__ import annotations

import torch

from ebmlab._grad import grad_off, without_grad


@without_grad
def grad_mode_inside() -> bool:
    return torch.is_grad_enabled()


def test_autograd_is_off_inside_and_restored_after():
    for outer in (True, False):
        with torch.set_grad_enabled(outer):
            assert grad_mode_inside() is False
            with grad_off():
                assert torch.is_grad_enabled() is False
            assert torch.is_grad_enabled() is outer


def test_no_graph_is_built_from_a_parameter():
    weight = torch.nn.Parameter(torch.ones(3))
    assert not without_grad(lambda: weight * 2)().requires_grad
    with grad_off():
        assert not (weight * 2).requires_grad
