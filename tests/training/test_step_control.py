"""The adaptive SGLD step count: more steps while the sampler lags, fewer once it keeps up."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.experiments import driver
from ebmlab.experiments.jem import JEMExperimentConfig
from ebmlab.experiments.registry import open_run
from ebmlab.training import JEMConfig
from ebmlab.training.step_control import adapted_steps

LIMITS = {"min_steps": 2, "max_steps": 6, "tolerance": 1.0}


@pytest.mark.parametrize(
    ("steps", "gap", "expected"),
    [(3, -1.5, 4), (6, -5.0, 6), (3, -0.5, 3), (3, -0.1, 2), (2, 0.3, 2), (4, math.nan, 4)],
)
def test_controller_rule(steps, gap, expected):
    assert adapted_steps(steps, gap, **LIMITS) == expected


def _gap(steps: int, start: float, generator: torch.Generator) -> float:
    """E(data) - E(negatives) on E(x) = x^2/2 (data ~ N(0, 1)), negatives: SGLD from ``start``."""
    data = torch.randn(4000, generator=generator)
    x = torch.full((4000,), start)
    step = 0.1  # x <- x - step * grad E + sqrt(2 step) xi: Langevin on N(0, 1)
    for _ in range(steps):
        x = x - step * x + math.sqrt(2 * step) * torch.randn(4000, generator=generator)
    return float((data**2 / 2).mean() - (x**2 / 2).mean())


def test_steps_rise_while_the_gap_is_open_and_fall_once_it_closes():
    generator = torch.Generator().manual_seed(0)
    limits = {"min_steps": 1, "max_steps": 40, "tolerance": 0.2}
    steps, history = 1, []
    for _ in range(40):  # chains start far out at x = 4: few steps leave them there
        steps = adapted_steps(steps, _gap(steps, 4.0, generator), **limits)
        history.append(steps)
    assert history[0] == 2 and max(history) > 10  # the gap opened: steps went up
    settled = history[-1]
    assert _gap(settled, 4.0, generator) > -0.2 * 1.5  # and the gap is closed at that count
    for _ in range(40):  # chains now start at the data: the gap is closed, steps fall
        steps = adapted_steps(steps, _gap(steps, 0.0, generator), **limits)
    assert steps < settled and steps <= 3


def test_jem_run_adapts_and_resumes_with_its_step_count(tmp_path, monkeypatch):
    from ebmlab.training import jem_trainer

    # The rule is tested above; here a stand-in that climbs every window tests the wiring:
    # applied once a window, logged as the window's steps, kept in checkpoints.
    def climb(steps, gap, *, min_steps, max_steps, tolerance):
        assert math.isfinite(gap) and (min_steps, max_steps, tolerance) == (1, 8, 0.5)
        return min(max_steps, steps + 1)

    monkeypatch.setattr(jem_trainer, "adapted_steps", climb)
    training = JEMConfig(
        iterations=40, log_every=5, checkpoint_every=10, n_steps=1, batch_size=16,
        buffer_size=200, adaptive_steps=True, max_steps=8, gap_tolerance=0.5,
    )  # fmt: skip
    config = JEMExperimentConfig(n_train=200, width=4, training=training)
    whole = driver.train(config, tmp_path / "whole", progress=False)
    steps = [r["n_steps"] for r in whole.read_metrics() if "event" not in r]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8]
    part = driver.train(config, tmp_path / "part", progress=False, stop_after=20)
    driver.resume(part.path, progress=False)
    resumed = [r["n_steps"] for r in part.read_metrics() if "event" not in r]
    assert resumed == steps  # the count is part of the checkpoint
    a, b = open_run(whole.path).model, open_run(part.path).model
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_max_steps_below_n_steps_is_refused():
    with pytest.raises(ValueError, match="max_steps must be at least n_steps"):
        JEMConfig(n_steps=10, max_steps=5)
