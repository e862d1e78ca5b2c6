"""docs/adding-a-model.md works as written: its recipe file trains, resumes, evaluates and samples."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest
import torch

# Imported before the walkthrough registers its recipe: the CLI's train app is built once,
# on import, and a later import would keep the walkthrough's command in it for good.
from ebmlab.cli.train_commands import _train_command
from ebmlab.experiments import driver, registry
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.training.checkpoint import load_checkpoint

PAGE = Path(__file__).resolve().parents[2] / "docs" / "adding-a-model.md"


@pytest.fixture
def walkthrough(tmp_path):
    """The page's recipe file, imported as a module and registered; unregistered afterwards."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    source = next(block for block in blocks if "@register" in block)
    path = tmp_path / "independent_bernoulli.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("independent_bernoulli", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    yield module
    registry._RECIPES.pop("independent-bernoulli", None)
    sys.modules.pop(spec.name, None)


def test_the_walkthrough_recipe_runs_the_whole_lifecycle(walkthrough, tmp_path, capsys):
    config = walkthrough.IndependentBernoulliConfig(epochs=4)
    whole, parted = tmp_path / "whole", tmp_path / "parted"
    driver.train(config, whole, progress=False)
    driver.train(config, parted, progress=False, stop_after=2)
    driver.resume(parted, progress=False)
    expected = load_checkpoint(RunFolder(whole).checkpoints.latest())[0]
    got = load_checkpoint(RunFolder(parted).checkpoints.latest())[0]
    assert torch.equal(expected["visible_bias"], got["visible_bias"])

    result = registry.evaluate_run(parted)
    # Fitted marginals beat the uniform model on held-out digits by a wide margin.
    assert result["test_loglik"] > result["uniform_loglik"] + 10
    assert math.isfinite(result["test_loglik"])
    path = registry.sample_run(parted, n=16, n_steps=1, seed=0, out=tmp_path / "s.png")
    assert path.stat().st_size > 500
    # The generated command knows every field of the config.
    parameters = _train_command(walkthrough.IndependentBernoulliRecipe).__signature__.parameters
    assert {"epochs", "batch_size", "lr", "seed", "dataset"} <= set(parameters)
