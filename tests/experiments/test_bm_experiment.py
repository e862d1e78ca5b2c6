"""The BM recipe: run folder layout, checkpoint keys, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from ebmlab.experiments import driver
from ebmlab.experiments.bm import BMConfig, BMRecipe
from ebmlab.experiments.registry import evaluate_run, open_run


def small_config(**changes) -> BMConfig:
    # 3x3 bars-and-stripes (14 patterns) with 2 hidden units: 2^11 joint states, milliseconds.
    base = dict(image_size=3, n_hidden=2, epochs=6, checkpoint_every=2, lr=0.1)
    return BMConfig(**{**base, **changes})


def test_run_folder_holds_config_metrics_checkpoints_and_figures(tmp_path):
    path = driver.train(small_config(eval_every=2), tmp_path / "run", progress=False).path
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["epoch_seconds"] > 0 for r in records)
    assert [r["epoch"] for r in records if "log_likelihood" in r] == [2, 4, 6]
    assert records[-1]["log_likelihood"] > records[1]["log_likelihood"]  # training helps
    with safe_open(str(path / "checkpoints" / "step-00000006.safetensors"), framework="pt") as f:
        assert {"weight_vv", "weight_vh", "weight_hh", "visible_bias", "hidden_bias"} <= set(
            f.keys()
        )
    assert (path / "figures" / "log_likelihood.png").is_file()
    assert (path / "figures" / "samples.png").is_file()
    recipe = open_run(path)
    assert recipe.config == small_config(eval_every=2) and recipe.model.n_hidden == 2
    metrics = evaluate_run(path)
    assert metrics["log_likelihood"] == pytest.approx(records[-1]["log_likelihood"], abs=1e-5)
    assert metrics["n_patterns"] == 14 and metrics["log_likelihood"] < metrics["max_log_likelihood"]
    # The best checkpoint is the epoch of the highest exact log-likelihood.
    best = open_run(path, which="best").evaluate()["log_likelihood"]
    assert best == pytest.approx(max(r.get("log_likelihood", -1e9) for r in records), abs=1e-5)


@pytest.mark.parametrize("model_term", ["exact", "pcd"])
def test_resume_continues_to_the_same_parameters(tmp_path, model_term):
    full = small_config(model_term=model_term, data_term="mean_field", n_chains=20)
    driver.train(full, tmp_path / "full", progress=False)
    # Killed after epoch 3, before its checkpoint: resume goes back to epoch 2 and drops line 3.
    driver.train(full, tmp_path / "split", progress=False, stop_after=3)
    (tmp_path / "split" / "checkpoints" / "step-00000003.safetensors").unlink()
    driver.resume(tmp_path / "split", progress=False)
    a, b = open_run(tmp_path / "full").model, open_run(tmp_path / "split").model
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_resume_extends_epochs_and_refuses_other_changes(tmp_path):
    driver.train(small_config(epochs=2), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="lr"):
        driver.resume(tmp_path / "run", changes={"lr": 0.5}, progress=False)
    driver.resume(tmp_path / "run", changes={"epochs": 4}, progress=False)
    assert open_run(tmp_path / "run").completed_steps() == 4


def test_old_config_keys_are_renamed():
    old = {"n_epochs": 7, "learning_rate": 0.2, "n_gibbs_steps": 3, "mean_field_tol": 1e-4}
    config = BMRecipe.config_from({**old, "mean_field_max_iter": 9, "image_size": 3})
    assert (config.epochs, config.lr, config.gibbs_steps) == (7, 0.2, 3)
    assert (config.mean_field_tolerance, config.mean_field_iterations) == (1e-4, 9)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"dataset": "mnist"}, "dataset must be one of"),
        ({"data_term": "gibbs"}, "data_term must be one of"),
        ({"eval_every": 0}, "eval_every"),
        ({"dtype": "float16"}, "dtype must be one of"),
        ({"scan": "reverse"}, "scan must be one of"),
    ],
)
def test_bad_config_values_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        small_config(**changes)
