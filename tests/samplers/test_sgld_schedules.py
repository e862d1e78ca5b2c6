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


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: PolynomialDecay(0.0, 1.0, 0.55), "^a must be a finite number > 0"),
        (lambda: PolynomialDecay(1.0, -1.0, 0.55), "^b must be a finite number > 0"),
        (lambda: PolynomialDecay(1.0, 1.0, 0.0), "^gamma must be a finite number > 0"),
        (lambda: PolynomialDecay.from_range(0.0, 0.001, 100), "^start must be"),
        (lambda: PolynomialDecay.from_range(0.01, 0.0, 100), "^end must be a finite"),
        (lambda: PolynomialDecay.from_range(0.01, 0.001, 0), "^n_steps must be a positive"),
        (lambda: PolynomialDecay.from_range(0.01, 0.001, 9, gamma=-1.0), "^gamma must be"),
        (lambda: PolynomialDecay.from_range(0.001, 0.01, 100), "^end must be smaller than start"),
        (lambda: PolynomialDecay.from_range(0.01, 0.01, 100), "^end must be smaller than start"),
        (lambda: PolynomialDecay.from_range(0.01, 0.001, 1), "^n_steps must be >= 2"),
        (lambda: PolynomialDecay(1.0, 1.0, 0.55)(-1), "^t must be a non-negative integer"),
        (lambda: PolynomialDecay(1.0, 1.0, 0.55)(True), "^t must be a non-negative integer"),
        (lambda: ConstantSchedule(0.0), "^value must be a finite number > 0"),
        (lambda: ConstantSchedule(0.1)(-1), "^t must be a non-negative integer"),
    ],
)
def test_schedule_arguments_are_validated_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_from_range_defaults_to_welling_and_tehs_exponent():
    assert PolynomialDecay.from_range(0.01, 0.0001, 100).gamma == 0.55
    fitted = PolynomialDecay.from_range(0.01, 0.001, 2, gamma=1.0)  # b = 1 / (10 - 1)
    assert (fitted.a, fitted.b) == pytest.approx((0.01 / 9, 1 / 9), rel=1e-12)


def test_constant_schedule_is_its_value_at_every_step():
    schedule = ConstantSchedule(2)
    assert [schedule(t) for t in (0, 1, 1000)] == [2.0, 2.0, 2.0]
    assert type(schedule(0)) is float  # LambdaLR multiplies it into a float lr
    assert schedule.to_dict() == {"value": 2}
