"""Run folders written by the previous release (tests/fixtures/old_runs) still load, evaluate and sample.

Their config.yaml files use the old key names (``n_epochs``, ``learning_rate``,
``n_iterations``, ``hidden_sizes`` ...) and their checkpoints the layout from
before the driver; the recipes' ``renames`` and the driver read both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ebmlab.experiments.registry import evaluate_run, open_run, sample_run

OLD_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "old_runs"


@pytest.mark.parametrize("name", sorted(p.name for p in OLD_RUNS.iterdir()))
def test_an_old_run_folder_evaluates_and_samples(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(OLD_RUNS / name, run)
    assert open_run(run).name == name
    assert evaluate_run(run)["model"] == name
    path = sample_run(run, n=4, n_steps=2, seed=0, out=tmp_path / "s.png")
    assert path.stat().st_size > 300


def test_old_key_names_are_what_the_renames_map():
    text = (OLD_RUNS / "bm" / "config.yaml").read_text()
    assert "n_epochs:" in text and "learning_rate:" in text  # the old vocabulary, as stored
    config = open_run(OLD_RUNS / "bm").config
    assert (config.epochs, config.lr) == (2, 0.05)
