"""The DBN recipe: run folder, resume after a stop, loading and evaluation (on digits)."""

from __future__ import annotations

import json

import pytest
import torch

from ebmlab.experiments import driver
from ebmlab.experiments.config import set_dotted
from ebmlab.experiments.dbn import DBNExperimentConfig, DBNRecipe
from ebmlab.experiments.registry import evaluate_run, open_run
from ebmlab.experiments.run_folder import RunFolderError
from ebmlab.training.finetune import FinetuneConfig
from ebmlab.training.trainer import CDConfig


def small_config(**changes) -> DBNExperimentConfig:
    options = dict(
        layers=[16, 8],
        training=[CDConfig(epochs=2, persistent=True), CDConfig(epochs=2)],
        propagation="sample",
        finetune=FinetuneConfig(epochs=3, lr=0.01, patience=0),
        n_labelled=500,
        keep_last=2,
    )
    return DBNExperimentConfig(**{**options, **changes})


def records(path) -> list[dict]:
    lines = (path / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k != "epoch_seconds"} for x in lines]


def trained_after(recipe, stop: int) -> dict[str, torch.Tensor]:
    """What the epochs after ``stop`` train: the RBM in training (two epochs each), or the
    fine-tuned network."""
    if stop < 4:
        prefix = f"rbms.{stop // 2}."
        state = {k: v for k, v in recipe.dbn.state_dict().items() if k.startswith(prefix)}
    else:
        state = recipe.finetuner.model.state_dict()
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.slow
def test_stopped_run_resumes_to_bitwise_equal_parameters(tmp_path):
    # final_lr_fraction > 0: at the default 0 an RBM's last epoch runs at rate 0, so a stop
    # in the middle of a two-epoch RBM would resume into a stretch that cannot change it.
    config = small_config(
        training=[
            CDConfig(epochs=2, persistent=True, final_lr_fraction=0.5),
            CDConfig(epochs=2, final_lr_fraction=0.5),
        ]
    )
    reference = driver.train(config, tmp_path / "reference", progress=False).path
    expected = open_run(reference)
    # 1: in the middle of the first (persistent) RBM; 3: of the second; 5: of fine-tuning.
    for stop in (1, 3, 5):
        out = tmp_path / f"stopped-{stop}"
        driver.train(config, out, progress=False, stop_after=stop)
        assert len(records(out)) == stop
        before = trained_after(open_run(out), stop)
        driver.resume(out, progress=False)
        resumed = open_run(out)
        for key, value in expected.dbn.state_dict().items():
            assert torch.equal(resumed.dbn.state_dict()[key], value), (stop, key)
        for key, value in expected.classifier().state_dict().items():
            assert torch.equal(resumed.classifier().state_dict()[key], value), (stop, key)
        assert records(out) == records(reference)
        after = trained_after(resumed, stop)
        for key, value in before.items():  # the resumed stretch learned: it could fail
            assert not torch.equal(after[key], value), (stop, key)


@pytest.mark.slow
def test_run_folder_contents_and_evaluation(tmp_path):
    run = driver.train(small_config(), tmp_path / "run", progress=False)
    for name in ("samples.png", "filters.png", "training_curves.png"):
        assert (run.figures / name).is_file()
    assert [r["epoch"] for r in records(run.path)] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["phase"] for r in records(run.path)] == ["pretrain"] * 4 + ["finetune"] * 3
    assert DBNRecipe.config_from_file(run.config_path) == small_config()
    result = evaluate_run(run.path, loglik=True, n_samples=5, progress=False)
    assert result["layer_sizes"] == [64, 16, 8]
    assert [layer["n_hidden"] for layer in result["layers"]] == [16, 8]
    # Ten balanced classes, 359 test images: chance is 0.10 +- 0.016 (three short epochs here).
    assert result["test_accuracy"] > 0.15
    bound = result["loglik_bound"]
    # The top RBM (16 x 8) is small enough for an exact log Z: the interval collapses.
    assert bound["lower"] == bound["value"] == bound["upper"] < 0
    with pytest.raises(RunFolderError, match="not empty"):
        driver.train(small_config(), run.path, progress=False)


def test_early_stopping_ends_the_run_and_fine_tuning_can_be_extended(tmp_path):
    config = small_config(
        training=CDConfig(epochs=1),
        finetune=FinetuneConfig(epochs=30, lr=0.5, optimizer="sgd", patience=1),
        n_labelled=100,
    )
    path = driver.train(config, tmp_path / "run", progress=False).path
    recipe = open_run(path)
    assert recipe.finetuner.done and recipe.completed_steps() == recipe.total_steps() == 32
    n_lines = len(records(path))
    assert n_lines < 32 and records(path)[-1]["epoch"] == 32  # the skipped epochs count as done
    assert (path / "figures" / "samples.png").is_file()
    # Pretraining cannot grow once fine-tuning has started.
    with pytest.raises(ValueError, match="epochs cannot change when resuming"):
        driver.resume(path, changes={"training.epochs": 2}, progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="one per RBM"):
        DBNExperimentConfig(layers=[8, 4], training=[CDConfig()])
    with pytest.raises(ValueError, match="propagation"):
        DBNExperimentConfig(propagation="mode")
    with pytest.raises(ValueError, match="layers"):
        DBNExperimentConfig(layers=[])
    with pytest.raises(ValueError, match="n_labelled"):
        DBNExperimentConfig(n_labelled=0)
    with pytest.raises(ValueError, match="patience"):
        DBNRecipe.config_from({"finetune": {"patience": "5"}})
    shared = DBNExperimentConfig(layers=[8, 4], training=CDConfig(epochs=1))
    first, second = shared.layer_configs()
    assert first.dynamic_binarization and not second.dynamic_binarization
    assert not shared.training.dynamic_binarization  # the user's config is left as given
    # An option given beside a per-layer list applies to every layer.
    settings = {"layers": [8, 4], "training": [{"epochs": 2}, {"epochs": 3}]}
    set_dotted(settings, "training.lr", 0.2)
    config = DBNRecipe.config_from(settings)
    assert [(c.epochs, c.lr) for c in config.training] == [(2, 0.2), (3, 0.2)]


@pytest.mark.slow
def test_up_down_phase_runs_between_pretraining_and_fine_tuning_and_resumes(tmp_path):
    from ebmlab.training.updown import UpDownConfig

    config = small_config(updown=UpDownConfig(epochs=2, lr=0.01, cd_k=2))
    reference = driver.train(config, tmp_path / "reference", progress=False).path
    phases = [r["phase"] for r in records(reference)]
    assert phases == ["pretrain"] * 4 + ["updown"] * 2 + ["finetune"] * 3
    assert all(
        "updown_reconstruction_error" in r for r in records(reference) if r["phase"] == "updown"
    )
    expected = open_run(reference)
    assert expected.total_steps() == expected.completed_steps() == 9
    assert "recognition.0.weight" in expected.dbn.state_dict()
    out = tmp_path / "stopped"
    driver.train(config, out, progress=False, stop_after=5)  # in the middle of up-down
    driver.resume(out, progress=False)
    resumed = open_run(out)
    for key, value in expected.dbn.state_dict().items():
        assert torch.equal(resumed.dbn.state_dict()[key], value), key
    assert records(out) == records(reference)
    with pytest.raises(ValueError, match="updown.epochs needs 2 or more hidden layers"):
        small_config(layers=[16], training=CDConfig(epochs=1), updown=UpDownConfig(epochs=1))
