"""The DBN recipe: run folder, resume after a kill, loading and evaluation (on digits)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from ebmlab.experiments.dbn import (
    DBNExperimentConfig,
    evaluate_dbn,
    load_dbn,
    resume_dbn,
    run_dbn,
)
from ebmlab.training.finetune import FinetuneConfig
from ebmlab.training.trainer import CDConfig


def small_config() -> DBNExperimentConfig:
    return DBNExperimentConfig(
        layers=[16, 8],
        training=[CDConfig(epochs=2, persistent=True), CDConfig(epochs=2)],
        propagation="sample",
        finetune=FinetuneConfig(epochs=3, lr=0.01, patience=0),
        n_labelled=500,
        keep_last=2,
    )


def comparable(records):
    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in records]


@pytest.mark.slow
def test_killed_run_resumes_to_bitwise_equal_parameters(tmp_path):
    reference = run_dbn(small_config(), tmp_path / "reference", progress=False)
    _, dbn, classifier = load_dbn(reference.path)
    # 3: in the middle of the second RBM; 5: in the middle of fine-tuning.
    for stop in (3, 5):
        out = tmp_path / f"stopped-{stop}"
        run_dbn(small_config(), out, progress=False, stop_after=stop)
        assert len((out / "metrics.jsonl").read_text().splitlines()) == stop
        resume_dbn(out, progress=False)
        _, resumed, resumed_classifier = load_dbn(out)
        for key, value in dbn.state_dict().items():
            assert torch.equal(resumed.state_dict()[key], value), (stop, key)
        for key, value in classifier.state_dict().items():
            assert torch.equal(resumed_classifier.state_dict()[key], value), (stop, key)
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        reference_lines = [json.loads(x) for x in reference.metrics_path.read_text().splitlines()]
        assert comparable(lines) == comparable(reference_lines)


@pytest.mark.slow
def test_run_folder_contents_and_evaluation(tmp_path):
    run = run_dbn(small_config(), tmp_path / "run", progress=False)
    for name in ("samples.png", "filters.png", "training_curves.png"):
        assert (run.figures / name).is_file()
    config = DBNExperimentConfig.from_dict(yaml.safe_load(run.config_path.read_text()))
    assert config == small_config()
    result = evaluate_dbn(run.path, loglik=True, n_samples=5, progress=False)
    assert result["layer_sizes"] == [64, 16, 8]
    assert [layer["n_hidden"] for layer in result["layers"]] == [16, 8]
    assert 0.0 <= result["test_accuracy"] <= 1.0
    bound = result["loglik_bound"]
    # The top RBM (16 x 8) is small enough for an exact log Z: the interval collapses.
    assert bound["lower"] == bound["value"] == bound["upper"] < 0
    with pytest.raises(ValueError, match="not empty"):
        run_dbn(small_config(), run.path, progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="one per RBM"):
        DBNExperimentConfig(layers=[8, 4], training=[CDConfig()])
    with pytest.raises(ValueError, match="propagation"):
        DBNExperimentConfig(propagation="mode")
    with pytest.raises(ValueError, match="layers"):
        DBNExperimentConfig(layers=[])
    with pytest.raises(ValueError, match="n_labelled"):
        DBNExperimentConfig(n_labelled=0)
    shared = DBNExperimentConfig(layers=[8, 4], training=CDConfig(epochs=1))
    first, second = shared.layer_configs()
    assert first.dynamic_binarization and not second.dynamic_binarization
    assert not shared.training.dynamic_binarization  # the user's config is left as given
