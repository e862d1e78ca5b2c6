"""Unadjusted Langevin dynamics: exact one-step updates, options, input-only gradients and
stationary statistics against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.metrics.mcmc import effective_sample_size
from ebmlab.models.nets.mlp import MLPEnergy
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.langevin import Langevin, LangevinState


def gaussian_energy(mean: torch.Tensor, sd: torch.Tensor):
    """E(x) = sum_i (x_i - mean_i)^2 / (2 sd_i^2): the target N(mean, diag(sd^2))."""

    def energy(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x - mean) / sd).pow(2).sum(dim=1)

    return energy


def test_one_step_is_the_langevin_update():
    energy = gaussian_energy(torch.zeros(3), torch.tensor([1.0, 2.0, 0.5]))
    sampler = Langevin(energy, step_size=0.1, noise_scale=0.3)
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    state, info = sampler.step(sampler.init(x0), generator=torch.Generator().manual_seed(1))
    grad = x0 / torch.tensor([1.0, 4.0, 0.25])
    noise = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(state.x, x0 - 0.1 * grad + 0.3 * noise)
    assert info["energy"].item() == pytest.approx(energy(x0).mean().item())
    assert info["grad_norm"].item() == pytest.approx(grad.norm(dim=1).mean().item())


def test_jem_style_noise_free_step_is_gradient_descent_and_calibrated_noise():
    energy = gaussian_energy(torch.zeros(2), torch.ones(2))
    x0 = torch.tensor([[1.0, -2.0]])
    state, _ = Langevin(energy, step_size=1.0, noise_scale=0.0).step(
        Langevin(energy, step_size=1.0, noise_scale=0.0).init(x0)
    )
    torch.testing.assert_close(state.x, torch.zeros(1, 2))  # x - 1 * x
    assert Langevin.calibrated(energy, 0.02).noise_scale == pytest.approx(math.sqrt(0.04))


def test_gradient_clipping_is_per_sample_and_clamp_bounds_samples():
    energy = gaussian_energy(torch.zeros(2), torch.full((2,), 0.01))  # huge gradients
    x0 = torch.tensor([[1.0, 0.0], [0.0, -3.0], [1e-4, 0.0]])
    sampler = Langevin(energy, step_size=1.0, noise_scale=0.0, max_grad_norm=0.5)
    state, _ = sampler.step(sampler.init(x0))
    steps = (x0 - state.x).norm(dim=1)
    # Rows 0 and 1 are clipped to norm 0.5; row 2's gradient (1e-4 / 1e-4 = 1) is clipped too.
    torch.testing.assert_close(steps, torch.full((3,), 0.5))
    clamped = Langevin(energy, step_size=1.0, noise_scale=0.0, clamp=(-1.0, 1.0))
    state, _ = clamped.step(clamped.init(torch.tensor([[0.5, -0.5]])))
    assert state.x.abs().max() <= 1.0


def test_sampling_leaves_parameter_gradients_untouched():
    generator = torch.Generator().manual_seed(0)
    model = MLPEnergy(2, hidden_sizes=[16], generator=generator)
    sampler = Langevin.calibrated(model, 0.01)
    run_chain(sampler, sampler.init(torch.randn(8, 2, generator=generator)), 5, generator=generator)
    assert all(p.grad is None for p in model.parameters())
    # Existing gradients (from a loss's backward before optimizer.step) are not changed.
    model(torch.randn(4, 2, generator=generator)).sum().backward()
    before = [p.grad.clone() for p in model.parameters()]
    with torch.no_grad():  # also works inside no_grad
        run_chain(sampler, sampler.init(torch.randn(8, 2)), 5, generator=generator)
    for p, g in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_bad_arguments_raise_clear_errors():
    energy = gaussian_energy(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="step_size"):
        Langevin(energy, step_size=0.0, noise_scale=1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        Langevin(energy, step_size=0.1, noise_scale=-1.0)
    with pytest.raises(ValueError, match="clamp"):
        Langevin(energy, step_size=0.1, noise_scale=0.1, clamp=(1.0, -1.0))
    with pytest.raises(TypeError, match="energy"):
        Langevin("energy", step_size=0.1, noise_scale=0.1)
    bad = Langevin(lambda x: x.sum(1, keepdim=True), step_size=0.1, noise_scale=0.1)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        bad.step(bad.init(torch.zeros(4, 2)))


def cross_section_variance(
    sampler: Langevin, n_chains: int, burn_in: int, gap: int, n_sections: int
):
    """Pool the chains' states at times burn_in + k * gap: nearly independent draws."""
    generator = torch.Generator().manual_seed(123)
    state = LangevinState(x=torch.randn(n_chains, 1, generator=generator, dtype=torch.float64))
    state, _, _ = run_chain(sampler, state, burn_in, generator=generator)
    sections = []
    for _ in range(n_sections):
        state, _, _ = run_chain(sampler, state, gap, generator=generator)
        sections.append(state.x[:, 0])
    draws = torch.cat(sections)
    return draws.pow(2).mean().item(), len(draws)  # the target mean is 0


@pytest.mark.parametrize(
    ("step_size", "noise_scale", "gap"),
    [(0.5, 1.0, 30), (0.1, 0.2, 120)],  # calibrated (noise = sqrt(2 step)) and JEM-like
)
def test_fixed_step_stationary_variance_matches_closed_form(step_size, noise_scale, gap):
    # On N(0, s^2) the step is x' = a x + sigma xi with a = 1 - step/s^2, so the stationary
    # variance is v = sigma^2 / (1 - a^2); calibrated: v = s^2 / (1 - step / (2 s^2)) (the
    # SGLD form s^2 / (1 - eps/(4 s^2)) with eps = 2 step). Cross-sections `gap` steps apart
    # have correlation a^gap < 1e-5, so the pooled mean of x^2 over n draws has sd
    # v sqrt(2/n) (Gaussian fourth moment): |estimate - v| < 4 sd.
    s = 1.0
    energy = gaussian_energy(
        torch.zeros(1, dtype=torch.float64), torch.tensor([s], dtype=torch.float64)
    )
    sampler = Langevin(energy, step_size=step_size, noise_scale=noise_scale)
    a = 1 - step_size / s**2
    expected = noise_scale**2 / (1 - a**2)
    estimate, n = cross_section_variance(sampler, 20_000, burn_in=gap, gap=gap, n_sections=5)
    sd = expected * math.sqrt(2 / n)
    assert abs(estimate - expected) < 4 * sd, (estimate, expected, sd)
    # The discretisation bias is real: the target's own variance is excluded.
    assert abs(estimate - s**2) > 10 * sd


def test_langevin_mean_z_test_with_ess():
    # Small calibrated step on N(mu, diag(sd^2)): the stationary mean is exactly mu for a
    # Gaussian, so |mean - mu| / (sd / sqrt(ESS)) is ~N(0, 1); 3.5 keeps false alarms < 1e-3
    # for both coordinates together.
    mu = torch.tensor([1.0, -2.0], dtype=torch.float64)
    sd = torch.tensor([1.0, 0.5], dtype=torch.float64)
    sampler = Langevin.calibrated(gaussian_energy(mu, sd), 0.02)
    generator = torch.Generator().manual_seed(7)
    state = sampler.init(mu + 3 * torch.randn(16, 2, generator=generator, dtype=torch.float64))
    state, _, _ = run_chain(sampler, state, 500, generator=generator)  # burn-in
    _, draws, _ = run_chain(sampler, state, 3000, generator=generator, collect=lambda s: s.x)
    chains = draws.transpose(0, 1)  # (n_chains, n_draws, 2)
    ess = effective_sample_size(chains)
    flat = chains.reshape(-1, 2)
    z = (flat.mean(0) - mu).abs() / (flat.std(0) / ess.sqrt())
    assert (z < 3.5).all(), z
    # The variance, E[(x - mu)^2], is s^2 / (1 - step / (2 s^2)); same z-test on the squares.
    squares = (chains - mu).pow(2)
    expected = sd**2 / (1 - 0.02 / (2 * sd**2))
    ess_sq = effective_sample_size(squares)
    flat_sq = squares.reshape(-1, 2)
    z_var = (flat_sq.mean(0) - expected).abs() / (flat_sq.std(0) / ess_sq.sqrt())
    assert (z_var < 3.5).all(), z_var
