"""Reduced-precision energies for samplers: what changes (the arithmetic) and what must not (the law)."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.models.jem import JEM
from ebmlab.models.nets.small_cnn import SmallCNN
from ebmlab.samplers import Langevin, LangevinState, autocast_energy, energy_and_grad, run_chain


def test_float32_is_the_energy_itself_and_bad_dtypes_are_refused():
    def energy(x):
        return x.pow(2).sum(1)

    assert autocast_energy(energy, "float32") is energy
    with pytest.raises(ValueError, match="dtype"):
        autocast_energy(energy, "float16")


def test_bfloat16_gradient_of_a_cnn_energy_is_close_but_not_identical():
    torch.manual_seed(0)
    model = JEM(SmallCNN(1, 12, 5, width=4), n_classes=5)
    x = torch.rand(16, 144) * 2 - 1
    values, grad = energy_and_grad(model.energy, x)
    values_bf16, grad_bf16 = energy_and_grad(autocast_energy(model.energy, "bfloat16"), x)
    assert values_bf16.dtype == grad_bf16.dtype == torch.float32
    assert not torch.equal(values_bf16, values)  # the passes really ran in bfloat16...
    # ...with bfloat16's relative error (2^-9 per operation, a few dozen operations deep).
    torch.testing.assert_close(values_bf16, values, rtol=0.05, atol=0.02)
    # The gradient keeps its direction. Near-equal logits make the LSE gradient a cancelling
    # sum, so its relative error (here 0.2-23 %) exceeds the energies': an approximation.
    assert torch.nn.functional.cosine_similarity(grad_bf16, grad, dim=1).min() > 0.9
    error = (grad_bf16 - grad).norm(dim=1) / grad.norm(dim=1)
    assert error.median() < 0.15, error


def test_bfloat16_langevin_keeps_the_closed_form_stationary_variance():
    # JEM-like step on N(0, 1) written with a matrix product (an autocast op): x' = a x + sigma
    # xi with a = 1 - step, stationary variance sigma^2 / (1 - a^2). Cross-sections 120 steps
    # apart are independent (a^120 < 1e-5); the pooled mean of x^2 has sd v sqrt(2 / n).
    step_size, noise_scale, gap, n_chains = 0.1, 0.2, 120, 20_000
    identity = torch.eye(2)

    def energy(x):
        return 0.5 * (x @ identity).pow(2).sum(1)

    sampler = Langevin(
        autocast_energy(energy, "bfloat16"), step_size=step_size, noise_scale=noise_scale
    )
    generator = torch.Generator().manual_seed(11)
    state = LangevinState(x=torch.randn(n_chains, 2, generator=generator))
    draws = []
    for _ in range(4):
        state, _, _ = run_chain(sampler, state, gap, generator=generator)
        draws.append(state.x.double())
    assert state.x.dtype == torch.float32  # the chain state never drops to bfloat16
    draws = torch.cat(draws)
    expected = noise_scale**2 / (1 - (1 - step_size) ** 2)
    sd = expected * math.sqrt(2 / draws.numel())
    assert abs(draws.pow(2).mean().item() - expected) < 4 * sd
