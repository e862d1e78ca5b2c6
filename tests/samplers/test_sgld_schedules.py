"""Step-size schedules: the polynomial decay's closed form and its use through LambdaLR."""

from __future__ import annotations

import pytest
import torch

from ebmlab.samplers.schedules import ConstantSchedule, PolynomialDecay
from ebmlab.samplers.sgld import SGLD


def test_polynomial_decay_formula_and_from_range_endpoints():
    decay = PolynomialDecay(a=2.0, b=3.0, gamma=0.55)
    assert decay(5) == pytest.approx(2.0 * 8.0**-0.55)
    fitted = PolynomialDecay.from_range(0.01, 0.0001, 10_000, gamma=0.55)
    assert fitted(0) == pytest.approx(0.01, rel=1e-12)
    assert fitted(9_999) == pytest.approx(0.0001, rel=1e-12)
    values = [fitted(t) for t in range(0, 10_000, 500)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert fitted.to_dict() == {"a": fitted.a, "b": fitted.b, "gamma": 0.55}


def test_lambda_lr_makes_the_optimizer_lr_follow_the_schedule():
    decay = PolynomialDecay.from_range(0.01, 0.0001, 100)
    theta = torch.zeros(3, requires_grad=True)
    optimizer = SGLD([theta], lr=1.0, generator=torch.Generator().manual_seed(0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    for t in range(100):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(decay(t))
        theta.grad = torch.zeros(3)
        optimizer.step()
        scheduler.step()


def test_schedule_arguments_are_validated():
    with pytest.raises(ValueError, match="gamma"):
        PolynomialDecay(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="end must be smaller"):
        PolynomialDecay.from_range(0.001, 0.01, 100)
    with pytest.raises(ValueError, match="n_steps"):
        PolynomialDecay.from_range(0.01, 0.001, 1)
    with pytest.raises(ValueError, match="t must be"):
        PolynomialDecay(1.0, 1.0, 0.55)(-1)
    assert ConstantSchedule(0.1)(1000) == 0.1
    with pytest.raises(ValueError, match="value"):
        ConstantSchedule(0.0)
