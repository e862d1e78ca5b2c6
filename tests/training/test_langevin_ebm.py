"""EBM training with Langevin negatives: the contrastive loss, negative sampling, and the
2-D experiment's run folder with an exact resume."""

from __future__ import annotations

import json

import pytest
import torch

from ebmlab.experiments import driver
from ebmlab.experiments.ebm2d import EBM2DConfig, EBM2DRecipe
from ebmlab.experiments.registry import evaluate_run, open_run, sample_run
from ebmlab.experiments.run_folder import RunFolderError
from ebmlab.models.nets.mlp import MLPEnergy
from ebmlab.samplers.langevin import Langevin
from ebmlab.samplers.replay_buffer import ReplayBuffer, UniformInit
from ebmlab.training.checkpoint import load_checkpoint
from ebmlab.training.ebm import LangevinNegatives, contrastive_loss, contrastive_step


def test_contrastive_loss_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    model = MLPEnergy(2, hidden_sizes=[8], generator=generator)
    x_data = torch.randn(16, 2, generator=generator)
    x_negative = torch.randn(16, 2, generator=generator).requires_grad_(True)
    parts = contrastive_loss(model, x_data, x_negative, l2_weight=0.5)
    e_data, e_negative = model(x_data), model(x_negative)
    expected = e_data.mean() - e_negative.mean() + 0.5 * (e_data**2 + e_negative**2).mean()
    assert parts.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    parts.loss.backward()
    assert x_negative.grad is None  # negatives are detached: no gradient through the sampler
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="l2_weight"):
        contrastive_loss(model, x_data, x_negative, l2_weight=-1.0)


def test_persistent_negatives_push_back_and_short_run_negatives():
    generator = torch.Generator().manual_seed(1)
    model = MLPEnergy(2, hidden_sizes=[8], generator=generator)
    sampler = Langevin.calibrated(model, 0.01)
    buffer = ReplayBuffer(64, UniformInit((2,)), reinit_prob=0.0, generator=generator)
    before = buffer.buffer.clone()
    negatives = LangevinNegatives(sampler, n_steps=3, buffer=buffer)
    x, info = negatives.sample(16, generator=generator)
    changed = (buffer.buffer != before).any(dim=1)
    assert 1 <= int(changed.sum()) <= 16  # the drawn slots (possibly repeated) were rewritten
    assert any(torch.equal(row, buffer.buffer[changed][0]) for row in x)
    assert "grad_norm" in info
    short = LangevinNegatives(sampler, n_steps=2, init=UniformInit((2,)))
    x, _ = short.sample(5, generator=generator)
    assert x.shape == (5, 2) and not x.requires_grad
    with pytest.raises(ValueError, match="exactly one"):
        LangevinNegatives(sampler, n_steps=2)


def test_non_finite_loss_stops_before_the_update():
    generator = torch.Generator().manual_seed(2)
    model = MLPEnergy(2, hidden_sizes=[8], generator=generator)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    negatives = LangevinNegatives(
        Langevin.calibrated(model, 0.01), n_steps=1, init=UniformInit((2,))
    )
    before = [p.detach().clone() for p in model.parameters()]
    x_data = torch.full((4, 2), float("inf"))
    with pytest.raises(FloatingPointError, match="EBM loss is"):
        contrastive_step(model, optimizer, x_data, negatives, generator=generator)
    for p, q in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, q)


def tiny_config(**changes) -> EBM2DConfig:
    base = dict(
        n_data=500,
        hidden_sizes=[16, 16],
        batch_size=32,
        iterations=12,
        n_steps=3,
        buffer_size=200,
        log_every=2,
        checkpoint_every=4,
    )
    return EBM2DConfig(**{**base, **changes})


def test_ebm2d_run_folder_and_exact_resume(tmp_path):
    full = driver.train(tiny_config(), tmp_path / "full", progress=False).path
    assert (full / "config.yaml").is_file() and (full / "figures" / "density.png").is_file()
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [2, 4, 6, 8, 10, 12]
    # Killed after 9 iterations (checkpoint at 8, a stray metrics line 9), then resumed to 12:
    # same parameters and buffer, bit for bit.
    part = tmp_path / "part"
    driver.train(tiny_config(), part, progress=False, stop_after=8)
    (part / "metrics.jsonl").open("a").write(json.dumps({"iteration": 9, "loss": 0.0}) + "\n")
    driver.resume(part, progress=False)
    state_full, extra_full = load_checkpoint(full / "checkpoints" / "step-00000012.safetensors")
    state_part, extra_part = load_checkpoint(part / "checkpoints" / "step-00000012.safetensors")
    for name, tensor in state_full.items():
        assert torch.equal(tensor, state_part[name]), name
    buffers = [extra["local"]["buffer"]["buffer"] for extra in (extra_full, extra_part)]
    assert torch.equal(*buffers)
    resumed = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in resumed] == [2, 4, 6, 8, 10, 12]  # the stray line 9 is gone
    assert [r["loss"] for r in resumed] == [r["loss"] for r in records]


def test_ebm2d_config_validation_and_resume_guard(tmp_path):
    with pytest.raises(ValueError, match="dataset"):
        EBM2DConfig(dataset="nope")
    with pytest.raises(ValueError, match="data_range"):
        EBM2DConfig(data_range=[1.0, -1.0])
    config = EBM2DRecipe.config_from({"n_iterations": 4, "n_sampler_steps": 2})  # old keys
    assert (config.iterations, config.n_steps) == (4, 2)
    driver.train(tiny_config(iterations=4, persistent=False), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="lr"):
        driver.resume(tmp_path / "run", changes={"lr": 0.5}, progress=False)
    with pytest.raises(RunFolderError, match="not empty"):
        driver.train(tiny_config(), tmp_path / "run", progress=False)
    driver.resume(tmp_path / "run", changes={"iterations": 6}, progress=False)
    assert open_run(tmp_path / "run").completed_steps() == 6


def test_ebm2d_evaluate_and_sample(tmp_path):
    run = driver.train(tiny_config(iterations=4), tmp_path / "run", progress=False).path
    result = evaluate_run(run)
    assert json.loads(json.dumps(result)) == result  # JSON-ready
    # Samples after 4 updates are nowhere near 8 Gaussians on a circle of radius ~2.8;
    # two fresh data sets of 5,000 points are close (TV of 400-bin histograms, mostly noise).
    assert result["total_variation_baseline"] < 0.15 < result["total_variation"] <= 1
    assert result["frechet_distance"] > 0.1 and result["energy_gap"] == pytest.approx(
        result["energy_samples"] - result["energy_data"]
    )
    recipe = open_run(run)
    samples, _ = recipe.sample(7, 2, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, 2) and torch.isfinite(samples).all()
    path = sample_run(run, n=50, n_steps=3, seed=1, out=tmp_path / "s.png")
    assert path == tmp_path / "s.png" and path.stat().st_size > 1000
