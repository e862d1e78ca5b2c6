"""The BM recipe: run folder layout, checkpoint keys, exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from ebmlab.experiments.bm import BMConfig, evaluate_bm, load_bm, run_bm
from ebmlab.experiments.run_folder import RunFolderError


def small_config(**changes) -> BMConfig:
    # 3x3 bars-and-stripes (14 patterns) with 2 hidden units: 2^11 joint states, milliseconds.
    base = dict(image_size=3, n_hidden=2, n_epochs=6, checkpoint_every=2, learning_rate=0.1)
    return BMConfig(**{**base, **changes})


def test_run_folder_holds_config_metrics_checkpoints_and_figures(tmp_path):
    path = run_bm(small_config(eval_every=2), tmp_path / "run")
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
    config, model = load_bm(path)
    assert config == small_config(eval_every=2) and model.n_hidden == 2
    metrics = evaluate_bm(path)
    assert metrics["log_likelihood"] == pytest.approx(records[-1]["log_likelihood"], abs=1e-5)
    assert metrics["n_patterns"] == 14 and metrics["log_likelihood"] < metrics["max_log_likelihood"]


@pytest.mark.parametrize("model_term", ["exact", "pcd"])
def test_resume_continues_to_the_same_parameters(tmp_path, model_term):
    full = small_config(model_term=model_term, data_term="mean_field", n_chains=20)
    run_bm(full, tmp_path / "full")
    first_part = small_config(
        model_term=model_term, data_term="mean_field", n_chains=20, n_epochs=4
    )
    run_bm(first_part, tmp_path / "split")
    run_bm(full, tmp_path / "split", resume=True)
    _, a = load_bm(tmp_path / "full")
    _, b = load_bm(tmp_path / "split")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_a_different_config(tmp_path):
    run_bm(small_config(n_epochs=2), tmp_path / "run")
    with pytest.raises(RunFolderError, match="learning_rate"):
        run_bm(small_config(learning_rate=0.5), tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"dataset": "mnist"}, "dataset must be one of"),
        ({"data_term": "gibbs"}, "data_term must be one of"),
        ({"eval_every": 0}, "eval_every"),
        ({"dtype": "float16"}, "dtype must be one of"),
    ],
)
def test_bad_config_values_name_the_field(changes, match):
    with pytest.raises(ValueError, match=match):
        small_config(**changes)
