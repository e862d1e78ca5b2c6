"""Replay buffer: reinitialisation frequency, class-conditional storage, initial
distributions and a pickle-free state dict."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ebmlab.samplers.replay_buffer import (
    ClassGaussianInit,
    GaussianInit,
    ReplayBuffer,
    UniformInit,
)

SENTINEL = 100.0  # outside U(-1, 1): marks samples that came from the buffer


def test_reinitialisation_frequency_is_binomial():
    # Fill the buffer with a sentinel; every returned sample that is not the sentinel was
    # reinitialised. Over n = 20,000 draws the count is Binomial(n, rho): mean n rho = 1000,
    # sd sqrt(n rho (1 - rho)) = 30.8; |count - 1000| < 4 sd.
    generator = torch.Generator().manual_seed(0)
    buffer = ReplayBuffer(500, UniformInit((3,)), reinit_prob=0.05, generator=generator)
    buffer.push(torch.full((500, 3), SENTINEL), torch.arange(500))
    fresh = 0
    for _ in range(100):
        x, indices = buffer.sample(200, generator=generator)
        assert ((indices >= 0) & (indices < 500)).all()
        is_fresh = (x != SENTINEL).all(dim=1)
        assert (x[is_fresh].abs() <= 1).all()  # fresh draws come from U(-1, 1)
        fresh += int(is_fresh.sum())
    sd = math.sqrt(20_000 * 0.05 * 0.95)
    assert abs(fresh - 1000) < 4 * sd


def test_push_writes_back_and_sample_reads_the_slots():
    generator = torch.Generator().manual_seed(1)
    buffer = ReplayBuffer(50, UniformInit((2, 2)), reinit_prob=0.0, generator=generator)
    x, indices = buffer.sample(8, generator=generator)
    torch.testing.assert_close(x, buffer.buffer[indices])
    buffer.push(x + 5.0, indices)
    torch.testing.assert_close(buffer.buffer[indices], x + 5.0)
    with pytest.raises(ValueError, match="one index per row"):
        buffer.push(torch.zeros(8, 4), indices)


def test_class_conditional_storage():
    generator = torch.Generator().manual_seed(2)
    with pytest.raises(ValueError, match="divisible by n_classes"):
        ReplayBuffer(10, UniformInit((2,)), n_classes=3)
    buffer = ReplayBuffer(30, UniformInit((2,)), reinit_prob=0.0, n_classes=3, generator=generator)
    # Mark each class block with its class number; samples for y = c come from block c only.
    buffer.push(
        torch.arange(3).repeat_interleave(10)[:, None].float().expand(30, 2), torch.arange(30)
    )
    y = torch.randint(3, (300,), generator=generator)
    x, indices = buffer.sample(300, generator=generator, y=y)
    assert torch.equal(indices // 10, y)
    torch.testing.assert_close(x[:, 0], y.float())
    with pytest.raises(ValueError, match=r"y must lie in \[0, 2\]"):
        buffer.sample(2, y=torch.tensor([0, 3]))
    unconditional = ReplayBuffer(30, UniformInit((2,)))
    with pytest.raises(ValueError, match="unconditional"):
        unconditional.sample(2, y=torch.tensor([0, 1]))


def two_class_data(generator: torch.Generator):
    n = 4000
    y = torch.arange(2).repeat(n // 2)
    means = torch.tensor([[2.0, -1.0], [-3.0, 0.5]])
    chol = torch.tensor([[[1.0, 0.0], [0.8, 0.6]], [[0.5, 0.0], [0.0, 2.0]]])
    z = torch.randn(n, 2, generator=generator, dtype=torch.float64).float()
    x = means[y] + torch.einsum("nij,nj->ni", chol[y], z)
    return x, y, means, chol @ chol.transpose(1, 2)


def test_class_gaussian_init_fits_and_samples_each_class():
    generator = torch.Generator().manual_seed(3)
    x, y, means, covs = two_class_data(generator)
    init = ClassGaussianInit.fit(x, y, 2)
    # Fitted means from 2000 points per class have sd <= sqrt(4 / 2000) = 0.045.
    torch.testing.assert_close(init.means, means, atol=0.2, rtol=0)
    labels = torch.tensor([0, 1]).repeat(5000)
    draws = init.sample(10_000, generator=generator, y=labels)
    for c in range(2):
        # Draws of class c follow N(fitted mean, fitted cov): sample moments of 5000 draws.
        block = draws[labels == c].double()
        sd = covs[c].diagonal().sqrt().double()
        assert ((block.mean(0) - init.means[c].double()).abs() < 4 * sd / math.sqrt(5000)).all()
        torch.testing.assert_close(torch.cov(block.T).float(), covs[c], atol=0.25, rtol=0.1)
    diagonal = ClassGaussianInit.fit(x, y, 2, diagonal=True)
    assert diagonal.scale_tril.shape == (2, 2)
    unlabelled = diagonal.sample(1000, generator=generator)
    assert unlabelled.shape == (1000, 2)


def test_class_conditional_buffer_with_informative_init_reinitialises_per_class():
    generator = torch.Generator().manual_seed(4)
    x, y, means, _ = two_class_data(generator)
    init = ClassGaussianInit.fit(x, y, 2)
    buffer = ReplayBuffer(1000, init, reinit_prob=1.0, n_classes=2, generator=generator)
    # Every initial slot of block c was drawn from class c's Gaussian.
    assert (buffer.buffer[:500].mean(0) - means[0]).abs().max() < 0.2
    assert (buffer.buffer[500:].mean(0) - means[1]).abs().max() < 0.2
    fresh, _ = buffer.sample(2000, generator=generator, y=torch.ones(2000, dtype=torch.long))
    assert (fresh.mean(0) - means[1]).abs().max() < 0.2


def test_state_dict_is_tensors_and_numbers_and_round_trips_without_pickle():
    generator = torch.Generator().manual_seed(5)
    for init in (
        UniformInit((4,), low=-2.0, high=3.0),
        GaussianInit.fit(torch.randn(100, 4, generator=generator)),
        ClassGaussianInit.fit(torch.randn(100, 4, generator=generator), torch.arange(100) % 2, 2),
    ):
        buffer = ReplayBuffer(20, init, generator=generator)
        state = buffer.state_dict()
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        numbers = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
        assert all(isinstance(v, int | float) for v in numbers.values())
        restored_tensors = load_safetensors(save_safetensors(tensors))
        restored = {**restored_tensors, **json.loads(json.dumps(numbers))}
        other = ReplayBuffer(20, init, generator=torch.Generator().manual_seed(99))
        other.load_state_dict(restored)
        torch.testing.assert_close(other.buffer, buffer.buffer)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict({**restored, "buffer": torch.zeros(3, 4)})


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer(10, UniformInit((2,)), reinit_prob=1.5)
    with pytest.raises(ValueError, match="low must be smaller"):
        UniformInit((2,), low=1.0, high=0.0)
    with pytest.raises(ValueError, match="every class needs"):
        ClassGaussianInit.fit(torch.randn(5, 2), torch.tensor([0, 0, 0, 0, 1]), 2)
    with pytest.raises(ValueError, match="std"):
        GaussianInit(torch.zeros(2), 0.0)


def test_gaussian_init_round_trip_restores_what_it_samples():
    generator = torch.Generator().manual_seed(0)
    fitted = GaussianInit.fit(torch.randn(200, 3, generator=generator) * 2 + 5)
    other = GaussianInit(torch.zeros(3), 1.0)  # another init: everything must come from the state
    other.load_state_dict(fitted.state_dict())
    assert torch.equal(other.mean, fitted.mean) and torch.equal(other.std, fitted.std)
    draws = [
        init.sample(50, generator=torch.Generator().manual_seed(1)) for init in (fitted, other)
    ]
    assert torch.equal(*draws)
    assert abs(draws[0].mean() - 5) < 1  # N(5, 2^2) per feature, not the other init's N(0, 1)
    for name in ("mean", "std"):
        state = {**fitted.state_dict(), name: torch.zeros(4)}
        with pytest.raises(
            ValueError, match=rf"^state\['{name}'\] must be a tensor of shape \(3,\)"
        ):
            other.load_state_dict(state)
