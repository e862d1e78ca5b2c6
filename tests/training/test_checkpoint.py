"""Checkpoints: exact round trips, atomic writes, clear errors on damaged files."""

from __future__ import annotations

import os

import pytest
import torch

from ebmlab.models import BernoulliRBM
from ebmlab.training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from ebmlab.training.trainer import CDConfig, CDTrainer


def trained_trainer(seed: int = 0) -> CDTrainer:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(6, 3, generator=generator)
    # Momentum, so that the optimizer has state to save; centering, so that offsets exist.
    config = CDConfig(epochs=3, batch_size=4, persistent=True, momentum=0.5, centering=True)
    trainer = CDTrainer(model, config, generator=generator)
    trainer.train_epoch(torch.bernoulli(torch.full((16, 6), 0.3), generator=generator))
    return trainer


def test_round_trip_restores_model_optimizer_chains_and_rng(tmp_path):
    trainer = trained_trainer()
    path = save_checkpoint(
        tmp_path / "c.safetensors", trainer.model.state_dict(), {"trainer": trainer.state_dict()}
    )
    model_state, extra = load_checkpoint(path)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(model_state[name], tensor)
    restored = extra["trainer"]
    assert restored["epoch"] == 1
    assert torch.equal(restored["objective"]["chains"], trainer.objective.chains)
    assert torch.equal(restored["generator"], trainer.generator.get_state())
    for name in ("visible_offset", "hidden_offset"):
        assert torch.equal(restored["centering"][name], getattr(trainer.centering, name))
    momentum = trainer.optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(restored["optimizer"]["state"][0]["momentum_buffer"], momentum)
    assert restored["optimizer"]["param_groups"] == trainer.optimizer.state_dict()["param_groups"]


def test_parameter_names_are_the_safetensors_keys(tmp_path):
    from safetensors import safe_open

    trainer = trained_trainer()
    path = save_checkpoint(tmp_path / "c.safetensors", trainer.model.state_dict(), {})
    with safe_open(str(path), framework="pt") as handle:
        assert {"weight", "visible_bias", "hidden_bias"} <= set(handle.keys())


def test_truncated_file_gets_a_clear_error(tmp_path):
    trainer = trained_trainer()
    path = save_checkpoint(tmp_path / "c.safetensors", trainer.model.state_dict(), {})
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_garbage_file_gets_a_clear_error(tmp_path):
    path = tmp_path / "c.safetensors"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="c.safetensors"):
        load_checkpoint(path)


def test_shape_mismatch_names_the_parameter(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", BernoulliRBM(6, 3).state_dict(), {})
    state, _ = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="weight has shape \\(6, 3\\)"):
        load_model_state(BernoulliRBM(6, 4), state, source=str(path))


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.safetensors", BernoulliRBM(6, 3).state_dict(), {"step": 1})

    def failing_replace(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(path, BernoulliRBM(6, 3).state_dict(), {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)[1] == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temporary file left


def test_unwritable_folder_gets_a_clear_error(tmp_path):
    # A regular file where the folder should be fails for root too (unlike chmod).
    blocker = tmp_path / "checkpoints"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match="cannot write .*checkpoints"):
        save_checkpoint(blocker / "c.safetensors", BernoulliRBM(2, 2).state_dict(), {})


def test_manager_keeps_the_last_n_and_the_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    state = BernoulliRBM(2, 2).state_dict()
    for step in range(1, 6):
        manager.save(step, state, {"step": step}, is_best=step == 2)
    assert [step for step, _ in manager.numbered()] == [4, 5]
    assert load_checkpoint(manager.latest())[1] == {"step": 5}
    assert load_checkpoint(manager.best)[1] == {"step": 2}
