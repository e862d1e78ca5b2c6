"""CompiledChain: each step against its formula, the stream layout, the stationary laws, errors."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.samplers import CompiledChain, Langevin
from ebmlab.samplers.counter_random import counter_normal, counter_uniform
from ebmlab.samplers.mala import MALA

VARIANCE = 4.0


def gaussian_energy(x):
    return 0.5 * (x**2).sum(1) / VARIANCE


def quartic_energy(x):
    """A non-Gaussian, non-separable energy: its gradient has no linear shortcut."""
    return 0.25 * (x**4).sum(1) - x[:, 0] * x[:, 1] + x.sum(1)


def quartic_grad(x):
    grad = x**3 + 1.0
    return grad - torch.stack([x[:, 1], x[:, 0]], dim=1)


def start(n_chains=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_chains, 2, generator=generator, dtype=torch.float64)


def chain(sampler, **kwargs) -> CompiledChain:
    kwargs.setdefault("compile", False)
    return CompiledChain(sampler, **kwargs)


def normals(key, counter, x):
    return counter_normal(key, counter, x.numel(), x.dtype).view(x.shape)


@pytest.mark.parametrize(
    "options", [{}, {"max_grad_norm": 0.7}, {"clamp": (-1.0, 1.5)}], ids=["plain", "clip", "clamp"]
)
def test_each_langevin_step_is_the_update_on_the_next_block_of_the_stream(options):
    sampler = Langevin(quartic_energy, step_size=0.05, noise_scale=0.3, **options)
    compiled = chain(sampler, steps_per_call=2)
    x0 = start()
    state = compiled.init(x0, generator=torch.Generator().manual_seed(1))
    new_state, info = compiled.run(state, 3)
    expected, key, per_step = x0, state.stream.key, compiled.draws_per_step(x0)
    for t in range(3):
        grad = quartic_grad(expected)
        if "max_grad_norm" in options:
            norms = grad.norm(dim=1, keepdim=True)
            grad = grad * torch.clamp(options["max_grad_norm"] / norms, max=1.0)
        last_energy = quartic_energy(expected).mean()
        expected = expected - 0.05 * grad + 0.3 * normals(key, torch.tensor(t * per_step), x0)
        if "clamp" in options:
            expected = expected.clamp(*options["clamp"])
    torch.testing.assert_close(new_state.x, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(info["energy"], last_energy, rtol=1e-12, atol=1e-12)
    assert per_step == 2 * x0.numel()
    assert new_state.stream.counter == 3 * per_step
    assert torch.equal(state.x, x0) and state.stream.counter == 0  # the old state is untouched


def test_each_mala_step_is_the_metropolis_adjusted_update():
    tau = 0.3  # large enough that some proposals are rejected
    compiled = chain(MALA(quartic_energy, step_size=tau), steps_per_call=3)
    x0 = start(n_chains=40)
    state = compiled.init(x0, generator=torch.Generator().manual_seed(2))
    new_state, info = compiled.run(state, 5)
    x, key, per_step, accepted = x0, state.stream.key, compiled.draws_per_step(x0), 0
    for t in range(5):
        counter = torch.tensor(t * per_step)
        proposal = x - tau * quartic_grad(x) + math.sqrt(2 * tau) * normals(key, counter, x)
        forward = -((proposal - x + tau * quartic_grad(x)) ** 2).sum(1) / (4 * tau)
        backward = -((x - proposal + tau * quartic_grad(proposal)) ** 2).sum(1) / (4 * tau)
        log_ratio = quartic_energy(x) - quartic_energy(proposal) + backward - forward
        u = counter_uniform(key, counter + 2 * x.numel(), len(x)).double()
        accept = torch.log1p(-u) < log_ratio
        x = torch.where(accept[:, None], proposal, x)
        accepted += int(accept.sum())
    torch.testing.assert_close(new_state.x, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_state.energy, quartic_energy(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(new_state.grad, quartic_grad(x), rtol=1e-12, atol=1e-12)
    assert 0 < accepted < 5 * len(x0)  # both branches of the accept step were exercised
    assert float(info["acceptance_rate"]) == pytest.approx(accepted / (5 * len(x0)))
    assert per_step == 2 * x0.numel() + len(x0)


@pytest.mark.parametrize("mala", [False, True], ids=["langevin", "mala"])
def test_blocks_of_any_length_draw_the_numbers_of_an_unbroken_run(mala):
    sampler = MALA(quartic_energy, step_size=0.2) if mala else Langevin.calibrated(
        quartic_energy, 0.05)  # fmt: skip
    x0, finals = start(), []
    for per_call in (1, 7, 23):
        compiled = chain(sampler, steps_per_call=per_call)
        state = compiled.init(x0, generator=torch.Generator().manual_seed(3))
        finals.append(compiled.run(state, 23)[0].x)
    # Split into two calls, as a resumed run does.
    compiled = chain(sampler, steps_per_call=5)
    state = compiled.init(x0, generator=torch.Generator().manual_seed(3))
    state, _ = compiled.run(state, 9)
    finals.append(compiled.run(state, 14)[0].x)
    for other in finals[1:]:
        torch.testing.assert_close(other, finals[0], rtol=0, atol=1e-12)


def stationary_variance(sampler, *, n_chains=20_000, n_steps=150):
    compiled = chain(sampler, steps_per_call=25)
    state = compiled.init(torch.zeros(n_chains, 1, dtype=torch.float64),
                          generator=torch.Generator().manual_seed(4))  # fmt: skip
    state, info = compiled.run(state, n_steps)
    return float(state.x.var()), VARIANCE * math.sqrt(2 / (n_chains - 1)), info


def test_langevin_reaches_its_discretised_gaussian_stationary_law():
    # x <- (1 - a / s^2) x + sqrt(2 a) xi has stationary variance s^2 / (1 - a / (2 s^2)).
    step = 1.0
    variance, standard_error, _ = stationary_variance(Langevin.calibrated(gaussian_energy, step))
    exact = VARIANCE / (1 - step / (2 * VARIANCE))
    assert abs(variance - exact) < 4 * standard_error
    assert abs(VARIANCE - exact) > 8 * standard_error  # the test resolves the step's bias


def test_mala_samples_the_gaussian_exactly_where_langevin_is_biased():
    step = 1.0
    variance, standard_error, info = stationary_variance(MALA(gaussian_energy, step_size=step))
    assert abs(variance - VARIANCE) < 4 * standard_error
    unadjusted = VARIANCE / (1 - step / (2 * VARIANCE))
    assert abs(unadjusted - VARIANCE) > 8 * standard_error  # no Metropolis step would fail
    assert 0.5 < float(info["acceptance_rate"]) < 1.0


def test_without_noise_langevin_is_gradient_descent_and_draws_nothing():
    compiled = chain(Langevin(gaussian_energy, step_size=0.5, noise_scale=0.0))
    x0 = start()
    state = compiled.init(x0)
    new_state, _ = compiled.run(state, 4)
    torch.testing.assert_close(new_state.x, x0 * (1 - 0.5 / VARIANCE) ** 4)
    assert compiled.draws_per_step(x0) == 0 and new_state.stream.counter == 0


def test_the_energys_parameters_get_no_gradient():
    net = torch.nn.Linear(2, 1).double()
    compiled = chain(Langevin.calibrated(lambda x: net(x).squeeze(1) + (x**2).sum(1), 0.1))
    compiled.run(compiled.init(start()), 3)
    assert net.weight.grad is None and net.bias.grad is None


def test_zero_steps_return_the_state_and_bad_arguments_are_refused_by_name():
    compiled = chain(Langevin.calibrated(gaussian_energy, 0.1))
    state = compiled.init(start())
    new_state, info = compiled.run(state, 0)
    assert torch.equal(new_state.x, state.x) and info == {}
    with pytest.raises(ValueError, match="n_steps"):
        compiled.run(state, -1)
    with pytest.raises(ValueError, match="steps_per_call"):
        chain(Langevin.calibrated(gaussian_energy, 0.1), steps_per_call=0)
    with pytest.raises(TypeError, match="sampler must be a Langevin or MALA"):
        chain(gaussian_energy)
    with pytest.raises(TypeError, match="x0 must be a floating"):
        compiled.init(torch.zeros(3, 2, dtype=torch.int64))
    bad = chain(Langevin.calibrated(lambda x: x.sum(), 0.1))
    with pytest.raises(ValueError, match="energy"):
        bad.init(start())


@pytest.mark.slow
@pytest.mark.parametrize("mala", [False, True], ids=["langevin", "mala"])
def test_compiled_steps_follow_the_eager_steps(mala):
    sampler = MALA(quartic_energy, step_size=0.2) if mala else Langevin.calibrated(
        quartic_energy, 0.05)  # fmt: skip
    finals = []
    for compile in (False, True):
        compiled = CompiledChain(sampler, steps_per_call=4, compile=compile)
        state = compiled.init(start(50), generator=torch.Generator().manual_seed(5))
        finals.append(compiled.run(state, 8)[0].x)
    assert compiled._block.compiled  # noqa: SLF001 - the compiled path ran, not the fallback
    torch.testing.assert_close(finals[1], finals[0], rtol=1e-9, atol=1e-9)
