"""JEM's sampler metrics while training: the energy gap and the replay buffer's FID."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from ebmlab.data import load_dataset, scale
from ebmlab.experiments import driver
from ebmlab.experiments.jem import JEMExperimentConfig
from ebmlab.experiments.jem_monitor import BufferFID, energy_gap
from ebmlab.metrics import fid
from ebmlab.training import JEMConfig


def test_energy_gap_is_data_minus_negatives_and_absent_without_both():
    assert energy_gap({"energy_data": -3.0, "energy_negative": 1.5}) == -4.5
    assert energy_gap({"energy_data": -3.0}) is None


@pytest.fixture(scope="module")
def digits_test():
    return scale(load_dataset("digits", split="test").images, to="symmetric")


def _buffer(rows: torch.Tensor) -> SimpleNamespace:
    return SimpleNamespace(buffer=rows.clone())  # all BufferFID reads of a ReplayBuffer


def test_buffer_fid_equals_fid_on_the_same_samples(digits_test):
    monitor = BufferFID("digits", digits_test, n=200)
    noise = torch.rand(300, digits_test.shape[1], generator=torch.Generator().manual_seed(1))
    buffer = _buffer(noise * 2 - 1)
    chosen = monitor.samples(buffer)
    expected = fid((digits_test[:200] + 1) / 2, (chosen + 1) / 2, monitor.net, progress=False)
    assert monitor(buffer) == pytest.approx(expected.fid, rel=1e-9)


def test_buffer_fid_is_small_for_real_images_and_large_for_noise(digits_test):
    monitor = BufferFID("digits", digits_test[:150], n=150)
    real = monitor(_buffer(digits_test[150:300]))  # other test digits
    noise = monitor(_buffer(torch.rand(150, digits_test.shape[1]) * 2 - 1))
    assert real * 5 < noise


def test_buffer_fid_needs_a_shipped_feature_network(digits_test):
    with pytest.raises(ValueError, match="fid_every needs a dataset with a shipped feature"):
        BufferFID("cifar10", digits_test)


def test_fid_every_must_be_a_multiple_of_log_every():
    with pytest.raises(ValueError, match="fid_every must be a multiple of log_every"):
        JEMExperimentConfig(fid_every=15, training=JEMConfig(log_every=10))


def test_jem_run_logs_gap_and_buffer_fid(tmp_path):
    training = JEMConfig(iterations=20, log_every=5, n_steps=2, buffer_size=200, batch_size=16)
    config = JEMExperimentConfig(n_train=200, width=4, fid_every=10, training=training)
    folder = driver.train(config, tmp_path / "jem", progress=False)
    records = [r for r in folder.read_metrics() if "event" not in r]
    assert all(
        r["energy_gap"] == pytest.approx(r["energy_data"] - r["energy_negative"]) for r in records
    )
    with_fid = [r["iteration"] for r in records if "buffer_fid" in r]
    assert with_fid == [10, 20]
    assert all(r["buffer_fid"] > 0 for r in records if "buffer_fid" in r)
    assert json.loads(json.dumps(records))  # plain JSON numbers
