"""`ebmlab eval --sample-quality N`: IS and FID of fresh samples, the same numbers as the metrics."""

from __future__ import annotations

import pytest
import torch

from ebmlab.data import load_dataset
from ebmlab.experiments import driver
from ebmlab.experiments.registry import get_recipe, open_run
from ebmlab.experiments.report_costs import evaluate_with_estimate, sample_in_batches
from ebmlab.metrics import fid, load_feature_net


@pytest.fixture(scope="module")
def rbm_run(tmp_path_factory):
    config = get_recipe("rbm").config_from_file(None, {"n_hidden": 16, "training.epochs": 1})
    return driver.train(config, tmp_path_factory.mktemp("runs") / "rbm", progress=False).path


def test_fid_of_fresh_samples_equals_fid_of_the_same_draws(rbm_run):
    result = evaluate_with_estimate(
        rbm_run, sample_quality=64, quality_steps=5, seed=3, progress=False, echo=lambda _: None
    )
    quality = result["sample_quality"]
    assert quality["sampling"] == "64 samples x 5 Gibbs sweeps"
    assert quality["feature_net"] == "digits-cnn" and quality["n_test"] == 359
    recipe = open_run(rbm_run)
    samples, _ = sample_in_batches(
        recipe, 64, 5, generator=torch.Generator().manual_seed(3), progress=False, desc=""
    )
    real = load_dataset("digits", split="test").images
    expected = fid(real, samples, load_feature_net("digits-cnn"), progress=False)
    assert quality["fid"] == pytest.approx(expected.fid, rel=1e-9)


def test_sample_quality_needs_a_feature_network(tmp_path):
    config = get_recipe("bm").config_from_file(None, {"n_hidden": 1, "epochs": 1})
    run = driver.train(config, tmp_path / "bm", progress=False).path
    with pytest.raises(ValueError, match="sample_quality needs"):
        evaluate_with_estimate(run, sample_quality=8, progress=False, echo=lambda _: None)


def test_sample_quality_must_not_be_negative(rbm_run):
    with pytest.raises(ValueError, match="sample_quality"):
        evaluate_with_estimate(rbm_run, sample_quality=-1, progress=False, echo=lambda _: None)
