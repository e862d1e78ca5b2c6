"""JEM's learning-rate schedule is relative to the run's length unless given explicitly."""

from __future__ import annotations

import pytest

from ebmlab.experiments.jem import JEMRecipe
from ebmlab.training.jem import JEMConfig, WarmupStepDecay


@pytest.mark.parametrize(
    ("iterations", "points"),
    [
        (400, (40, (320, 360))),
        (3000, (300, (2400, 2700))),
        (150_000, (1000, (120_000, 135_000))),  # the warm-up stays the paper's 1,000
        (5, (0, (4, 4))),
    ],
)
def test_default_points_are_fractions_of_the_run(iterations, points):
    assert JEMConfig(iterations=iterations).schedule_points == points


def test_given_points_are_taken_as_they_are():
    config = JEMConfig(iterations=400, warmup_iterations=1000, decay_iterations=[160000, 180000])
    assert config.schedule_points == (1000, (160000, 180000))
    assert JEMConfig(iterations=400, decay_iterations=[]).schedule_points == (40, ())


def test_a_400_iteration_run_leaves_its_warm_up_and_decays_twice():
    config = JEMConfig(iterations=400)
    schedule = WarmupStepDecay(*config.schedule_points, config.decay_rate)
    assert schedule(0) == pytest.approx(1 / 40)
    assert schedule(39) == schedule(319) == 1.0
    assert schedule(320) == pytest.approx(0.3) and schedule(399) == pytest.approx(0.09)


def test_old_configs_keep_their_explicit_schedule():
    # A config.yaml of the previous release stores warmup_iterations: 1000 and [] decays.
    config = JEMRecipe.config_from({"training": {"n_iterations": 400, "warmup_iterations": 1000,
                                                 "decay_iterations": []}})  # fmt: skip
    assert config.training.schedule_points == (1000, ())


def test_the_papers_recipe_is_one_config_file_away():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "jem_paper.yaml"
    config = JEMRecipe.config_from_file(path)
    assert (config.backbone, config.depth, config.widen_factor) == ("wrn", 28, 10)
    training = config.training
    assert (training.lr, training.n_steps, training.step_size, training.noise_scale) == (
        1e-4,
        20,
        1.0,
        0.01,
    )
    assert training.schedule_points == (1000, (150_000, 168_750))
