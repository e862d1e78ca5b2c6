"""JEM training: config checks, schedule, minibatch stream, buffer bookkeeping, rollback, resume."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ebmlab.experiments import driver
from ebmlab.experiments.jem import JEMExperimentConfig, JEMRecipe
from ebmlab.experiments.registry import open_run
from ebmlab.models.jem import JEM
from ebmlab.models.nets.mlp import MLP
from ebmlab.training.checkpoint import load_checkpoint
from ebmlab.training.distributed import DistributedContext
from ebmlab.training.jem import DivergenceError, JEMConfig, MinibatchStream, WarmupStepDecay
from ebmlab.training.jem_trainer import JEMTrainer

N_CLASSES, N_FEATURES = 4, 6


def tiny_data(n: int = 40):
    generator = torch.Generator().manual_seed(5)
    return torch.rand((n, N_FEATURES), generator=generator) * 2 - 1, torch.arange(n) % N_CLASSES


def tiny_trainer(**overrides) -> JEMTrainer:
    options = dict(batch_size=8, buffer_size=40, n_steps=3, warmup_iterations=2, log_every=1,
                   checkpoint_every=3, iterations=8, lr=1e-3)  # fmt: skip
    options.update(overrides)
    net = MLP(N_FEATURES, N_CLASSES, hidden_sizes=(8,), generator=torch.Generator().manual_seed(0))
    return JEMTrainer(JEM(net, N_CLASSES), JEMConfig(**options), seed=3,
                      sample_shape=(N_FEATURES,), fit_data=tiny_data())  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("batch_size", 0, "batch_size must be a positive integer"),
        ("decay_rate", 1.5, r"decay_rate must lie in \(0, 1\)"),
        ("buffer_init", "normal", "buffer_init must be one of uniform"),
        ("rollback_lr_factor", 2.0, r"rollback_lr_factor must lie in \(0, 1\]"),
        ("p_x_weight", -1.0, "p_x_weight must be a finite number >= 0"),
        ("reinit_prob", 1.5, r"reinit_prob must lie in \[0, 1\]"),
        ("sampling_dtype", "float16", "sampling_dtype must be one of float32, bfloat16"),
    ],
)
def test_bad_config_values_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        JEMConfig(**{field: value})


def test_bad_experiment_and_buffer_values_raise():
    with pytest.raises(ValueError, match="backbone must be one of"):
        JEMExperimentConfig(backbone="resnet")
    with pytest.raises(ValueError, match="buffer_size must be divisible by"):
        tiny_trainer(buffer_size=42, class_conditional=True)


def test_warmup_and_step_decay():
    schedule = WarmupStepDecay(4, (10, 20), 0.3)
    assert [schedule(t) for t in (0, 3, 9)] == [0.25, 1.0, 1.0]
    assert schedule(10) == pytest.approx(0.3) and schedule(25) == pytest.approx(0.09)


def test_minibatch_stream_epochs_and_rank_slices():
    x, y = tiny_data()
    stream = MinibatchStream(x, y, batch_size=8, noise=0.0, seed=1)
    rows = torch.cat([stream.batch(i)[0] for i in range(5)])  # one epoch = 5 batches
    assert torch.equal(rows[rows[:, 0].argsort()], x[x[:, 0].argsort()])  # each row once
    noisy = MinibatchStream(x, y, batch_size=8, noise=0.03, seed=1)
    assert torch.equal(noisy.batch(7)[0], noisy.batch(7)[0])  # a pure function of the iteration
    parts = [
        MinibatchStream(x, y, batch_size=8, noise=0.03, seed=1,
                        context=DistributedContext(rank=r, world_size=2)).batch(7)
        for r in range(2)
    ]  # fmt: skip
    assert torch.equal(torch.cat([p[0] for p in parts]), noisy.batch(7)[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), noisy.batch(7)[1])


def test_class_conditional_buffer_updates_only_the_requested_blocks():
    trainer = tiny_trainer(class_conditional=True, reinit_prob=0.0)
    before = trainer.buffer.buffer.clone()
    samples = trainer.sample(6, torch.full((6,), 2))
    changed = (trainer.buffer.buffer != before).any(dim=1).nonzero().squeeze(1)
    per_class = 40 // N_CLASSES
    assert len(changed) > 0 and (changed // per_class == 2).all()
    # Every changed slot holds one of the samples (two draws of one slot keep the last).
    stored = trainer.buffer.buffer[changed]
    assert all((samples == s).all(dim=1).any() for s in stored)


def test_classifier_baseline_has_no_buffer_and_does_not_sample():
    trainer = tiny_trainer(p_x_weight=0.0)
    assert trainer.buffer is None
    record = trainer.update(*tiny_data(8))
    assert record["generative_loss"] == 0.0 and record["sample_seconds"] < 0.01


def small_config(**training) -> JEMExperimentConfig:
    options = dict(iterations=6, batch_size=8, buffer_size=40, n_steps=2, warmup_iterations=2,
                   checkpoint_every=2, log_every=2, lr=1e-3)  # fmt: skip
    options.update(training)
    return JEMExperimentConfig(dataset="digits", backbone="mlp", hidden_sizes=[16], n_train=64,
                               training=JEMConfig(**options))  # fmt: skip


def final(run_dir):
    model, extra = load_checkpoint(sorted((run_dir / "checkpoints").glob("step-*"))[-1])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in records]
    return model, extra["local"]["buffer"]["buffer"], extra["local"]["generator"], strip


@pytest.mark.parametrize("sampling_dtype", ["float32", "bfloat16"])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path, sampling_dtype):
    config = small_config(sampling_dtype=sampling_dtype)
    driver.train(config, tmp_path / "full", progress=False)
    # Stopped between two log lines: the open metrics window is part of the checkpoint.
    driver.train(config, tmp_path / "split", progress=False, stop_after=3)
    driver.resume(tmp_path / "split", progress=False)
    full, split = final(tmp_path / "full"), final(tmp_path / "split")
    assert full[0].keys() == split[0].keys()
    for name in full[0]:
        assert torch.equal(full[0][name], split[0][name]), name
    assert torch.equal(full[1], split[1]) and torch.equal(full[2], split[2])
    assert full[3] == split[3] and [r["iteration"] for r in full[3]] == [2, 4, 6]


def test_resume_extends_a_finished_run_and_reads_old_keys(tmp_path):
    run = tmp_path / "run"
    driver.train(small_config(iterations=4), run, progress=False)
    driver.resume(run, changes={"training.iterations": 6}, progress=False)
    assert [r["iteration"] for r in final(run)[3]] == [2, 4, 6]
    assert "iterations: 6" in (run / "config.yaml").read_text()
    with pytest.raises(ValueError, match=r"may change only \['fid_every', 'training.iterations'\]"):
        driver.resume(run, changes={"training.lr": 0.1}, progress=False)
    old = JEMRecipe.config_from({"training": {"n_iterations": 7}})
    assert old.training.iterations == 7


def test_every_config_field_has_help():
    for config_class in (JEMConfig, JEMExperimentConfig):
        for field in dataclasses.fields(config_class):
            assert field.metadata.get("help"), (config_class.__name__, field.name)


def nan_once_at(at: int):
    fired = []

    def hook(iteration, loss):
        if iteration == at and not fired:
            fired.append(iteration)
            return loss * float("nan")
        return loss

    return hook


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]


def test_rollback_on_injected_nan_restores_last_checkpoint(tmp_path, monkeypatch):
    restored = []
    real_log = driver.TrainingRun.log

    def log(run, record):
        if record.get("event") == "rollback":
            # The model is the last good checkpoint's (iteration 3) when the event is logged.
            model_state, _ = load_checkpoint(run.folder.checkpoints.latest())
            restored.append(record["iteration"])
            for name, value in run.recipe.model.state_dict().items():
                assert torch.equal(value, model_state[name]), name
        real_log(run, record)

    monkeypatch.setattr(driver.TrainingRun, "log", log)
    monkeypatch.setattr(JEMRecipe, "fault_hook", nan_once_at(4))
    config = small_config(iterations=8, checkpoint_every=3, log_every=1, rollback_lr_factor=0.5)
    driver.train(config, tmp_path / "run", progress=False)
    records = metrics(tmp_path / "run")
    events = [r for r in records if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["iteration"] == 3 and events[0]["diverged_at"] == 5
    assert "loss is nan" in events[0]["reason"] and restored == [3]
    assert records[-1]["rollbacks"] == 1 and records[-1]["iteration"] == 8
    # Iteration 4's line was logged before the divergence and again after the rollback.
    assert [r["iteration"] for r in records if "event" not in r] == [1, 2, 3, 4, 4, 5, 6, 7, 8]
    trainer = open_run(tmp_path / "run").trainer
    assert trainer.iteration == 8 and trainer.rollbacks == 1 and trainer.lr_scale == 0.5


def test_too_many_rollbacks_stop_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(JEMRecipe, "fault_hook", lambda it, loss: loss * 1e6 if it >= 4 else loss)
    config = small_config(iterations=8, max_rollbacks=2, divergence_threshold=1e3)
    with pytest.raises(DivergenceError, match="gave up after 2 rollbacks"):
        driver.train(config, tmp_path / "run", progress=False)
    assert [r["rollbacks"] for r in metrics(tmp_path / "run") if "event" in r] == [1, 2]


def test_rollback_end_to_end_writes_rollbacks_to_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(JEMRecipe, "fault_hook", nan_once_at(3))
    driver.train(small_config(), tmp_path / "run", progress=False)
    records = metrics(tmp_path / "run")
    events = [r for r in records if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["iteration"] == 2 and events[0]["rollbacks"] == 1
    assert records[-1]["iteration"] == 6 and records[-1]["rollbacks"] == 1
