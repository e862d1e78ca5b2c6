"""SGLD and pSGLD: exact updates, sample collection, and posterior moments on a conjugate
Gaussian model with many parallel chains."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.samplers.sgld import SGLD, PreconditionedSGLD, SampleCollector


def test_step_is_half_lr_gradient_plus_gaussian_noise_of_variance_lr():
    theta = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    optimizer = SGLD([theta], lr=0.04)
    loss = (theta**2).sum()  # grad U = 2 theta
    loss.backward()
    start = theta.detach().clone()
    optimizer.step(generator=torch.Generator().manual_seed(5))
    noise = torch.randn(3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(theta.detach(), start - 0.02 * 2 * start + 0.2 * noise)


def test_constructor_generator_closure_and_reproducibility():
    def run(seed: int) -> torch.Tensor:
        theta = torch.zeros(4, requires_grad=True)
        optimizer = SGLD([theta], lr=0.1, generator=torch.Generator().manual_seed(seed))

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = 0.5 * theta.pow(2).sum()
            loss.backward()
            return loss

        for _ in range(10):
            assert optimizer.step(closure) is not None
        return theta.detach()

    torch.testing.assert_close(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    with pytest.raises(ValueError, match="lr"):
        SGLD([torch.zeros(1, requires_grad=True)], lr=0.0)


def test_temperature_zero_is_gradient_descent_with_half_step():
    theta = torch.tensor([3.0], requires_grad=True)
    optimizer = SGLD([theta], lr=0.2, temperature=0.0)
    (theta**2).sum().backward()
    optimizer.step()
    assert theta.item() == pytest.approx(3.0 - 0.1 * 6.0)


def test_preconditioned_step_formula():
    theta = torch.tensor([1.0, 4.0], requires_grad=True)
    optimizer = PreconditionedSGLD([theta], lr=0.01, alpha=0.9, eps=1e-3)
    (theta**2).sum().backward()
    grad = 2 * theta.detach().clone()
    start = theta.detach().clone()
    optimizer.step(generator=torch.Generator().manual_seed(0))
    square_avg = 0.1 * grad**2
    precond = 1 / (square_avg.sqrt() + 1e-3)
    noise = torch.randn(2, generator=torch.Generator().manual_seed(0))
    expected = start - 0.005 * precond * grad + (0.01 * precond).sqrt() * noise
    torch.testing.assert_close(theta.detach(), expected)


def test_sample_collector_burn_in_thinning_and_step_size_weights():
    collector = SampleCollector(burn_in=3, thin=2)
    kept = [collector.update(torch.tensor([float(t)]), weight=1.0 / (t + 1)) for t in range(10)]
    # Calls 4..10 are after burn-in; every 2nd one (calls 5, 7, 9) is kept: t = 4, 6, 8.
    assert kept == [t in (4, 6, 8) for t in range(10)]
    torch.testing.assert_close(collector.samples, torch.tensor([[4.0], [6.0], [8.0]]))
    weights = torch.tensor([1 / 5, 1 / 7, 1 / 9], dtype=torch.float64)
    expected = (weights * torch.tensor([4.0, 6.0, 8.0], dtype=torch.float64)).sum() / weights.sum()
    assert collector.weighted_mean().item() == pytest.approx(expected.item())
    assert collector.weighted_mean(lambda s: s**2).item() == pytest.approx(
        (
            (weights * torch.tensor([16.0, 36.0, 64.0], dtype=torch.float64)).sum() / weights.sum()
        ).item()
    )
    with pytest.raises(ValueError, match="no samples"):
        _ = SampleCollector(burn_in=5).samples


def conjugate_problem():
    """x_i ~ N(theta, 1), i = 1..100, prior theta ~ N(0, 1); posterior N(m, v), v = 1/101."""
    generator = torch.Generator().manual_seed(0)
    data = 0.7 + torch.randn(100, generator=generator, dtype=torch.float64)
    precision = 1.0 + len(data)
    return data, data.sum().item() / precision, 1.0 / precision


def run_minibatch_sgld(optimizer_class, lr: float, n_chains: int, n_steps: int, batch_size: int):
    data, _, _ = conjugate_problem()
    generator = torch.Generator().manual_seed(1)
    theta = torch.randn(n_chains, 1, generator=generator, dtype=torch.float64).requires_grad_(True)
    optimizer = optimizer_class([theta], lr=lr, generator=generator)
    scale = len(data) / batch_size
    for _ in range(n_steps):
        # Each chain draws its own minibatch (with replacement).
        rows = torch.randint(len(data), (n_chains, batch_size), generator=generator)
        batch = data[rows]
        log_lik = -0.5 * (batch - theta).pow(2).sum(dim=1)
        loss = (0.5 * theta[:, 0].pow(2) - scale * log_lik).sum()  # summed over chains
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return theta.detach()[:, 0]


@pytest.mark.slow
def test_sgld_matches_the_conjugate_gaussian_posterior():
    # U(theta) = theta^2/2 + (N/n) sum_batch (x_i - theta)^2 / 2 has gradient P theta - b - eta,
    # P = 1 + N, b = sum x_i, eta = minibatch noise with zero mean and variance
    # g = N^2 / n * var_pop(x). The update theta' = a theta + (eps/2)(b + eta) + sqrt(eps) xi,
    # a = 1 - eps P / 2, is linear: stationary mean b / P = m (exact) and variance
    # (eps + eps^2 g / 4) / (1 - a^2) = v (1 + eps g / 4) / (1 - eps P / 4).
    # With eps = 1e-4, N = 100, n = 50, var_pop ~ 1: relative bias 0.5% + 0.25% < 1%.
    # 2500 steps are 12.6 relaxation times (1 - a = 0.005), so the start is forgotten.
    # The 4,000 chains are independent: mean sd sqrt(v / 4000), variance sd v sqrt(2 / 4000)
    # = 2.2%; the bias is below half an sd and the test allows 3.5 sd.
    data, mean, variance = conjugate_problem()
    n_chains, eps, batch_size = 4000, 1e-4, 50
    samples = run_minibatch_sgld(SGLD, eps, n_chains, 2500, batch_size)
    assert abs(samples.mean().item() - mean) < 3.5 * math.sqrt(variance / n_chains)
    assert abs(samples.var().item() / variance - 1) < 3.5 * math.sqrt(2 / n_chains)
    # The exact finite-step law (bias included) is also within tolerance.
    g = len(data) ** 2 / batch_size * data.var(unbiased=False).item()
    biased = variance * (1 + eps * g / 4) / (1 - eps * (1 + len(data)) / 4)
    assert abs(samples.var().item() / biased - 1) < 3.5 * math.sqrt(2 / n_chains)


def test_constant_step_full_gradient_variance_inflation():
    # Welling & Teh's step on N(0, s^2) with full gradients: theta' = (1 - eps/(2 s^2)) theta
    # + N(0, eps) has stationary variance s^2 / (1 - eps / (4 s^2)). With s = 1, eps = 1:
    # 4/3. 20,000 independent chains: sd of the variance estimate (4/3) sqrt(2/20000) = 1.3%.
    generator = torch.Generator().manual_seed(2)
    theta = torch.zeros(20_000, dtype=torch.float64, requires_grad=True)
    optimizer = SGLD([theta], lr=1.0, generator=generator)
    for _ in range(60):  # relaxation factor 1/2 per step
        optimizer.zero_grad()
        (0.5 * theta.pow(2)).sum().backward()
        optimizer.step()
    estimate = theta.detach().pow(2).mean().item()
    assert abs(estimate / (4 / 3) - 1) < 4 * math.sqrt(2 / 20_000)


@pytest.mark.slow
def test_preconditioned_sgld_posterior_mean():
    # pSGLD drops Li et al.'s Gamma term; at stationarity V (hence G) is nearly constant, so
    # the mean is unbiased for this linear model: z-test with independent chains. G is about
    # 1 / sqrt(E[g^2]) ~ 1/14 here, so lr = 4e-3 is an effective step ~3e-4: 1500 steps are
    # about 15 relaxation times once V has settled (it starts at 0 and the first gradients,
    # far from the posterior, are large, which makes the first steps small): 3000 steps.
    # The variance comes out ~9% high (G correlates with the minibatch noise; no Gamma term).
    _, mean, variance = conjugate_problem()
    samples = run_minibatch_sgld(PreconditionedSGLD, 4e-3, 2000, 3000, 50)
    assert abs(samples.mean().item() - mean) < 3.5 * math.sqrt(variance / 2000)
    assert abs(samples.var().item() / variance - 1) < 0.2


def test_sgld_mean_z_test_with_ess_and_collector():
    # N(mu, s^2) target with full gradients and a constant step: the stationary mean is exactly
    # mu (linear Gaussian update), so |mean - mu| / (sd / sqrt(ESS)) < 3.5 with ESS estimated
    # from 16 chains; the kept draws come from SampleCollector (burn-in 300, thin 2).
    from ebmlab.metrics.mcmc import effective_sample_size

    mu, s, eps = 1.5, 0.5, 0.01
    generator = torch.Generator().manual_seed(3)
    theta = torch.zeros(16, dtype=torch.float64, requires_grad=True)
    optimizer = SGLD([theta], lr=eps, generator=generator)
    collector = SampleCollector(burn_in=300, thin=2)
    for _ in range(4300):
        optimizer.zero_grad()
        (0.5 * (theta - mu).pow(2) / s**2).sum().backward()
        optimizer.step()
        collector.update(theta, weight=eps)
    chains = collector.samples.T  # (n_chains, n_draws)
    ess = effective_sample_size(chains).item()
    z = abs(chains.mean().item() - mu) / (chains.std().item() / math.sqrt(ess))
    assert z < 3.5, (z, ess)
    assert collector.weighted_mean().mean().item() == pytest.approx(chains.mean().item())


def test_preconditioned_sgld_defaults_are_li_et_als_and_arguments_are_named():
    # Li, Chen, Carlson & Carin (2016), pSGLD: RMSprop decay 0.99, regulariser 1e-5.
    group = PreconditionedSGLD([torch.zeros(2, requires_grad=True)], lr=0.1).param_groups[0]
    assert (group["alpha"], group["eps"]) == (0.99, 1e-5)
    theta = torch.zeros(2, requires_grad=True)
    for kwargs, message in [
        ({"lr": 0.0}, "^lr must be a finite number > 0"),
        ({"lr": 0.1, "alpha": 1.5}, r"^alpha must lie in \[0, 1\]"),
        ({"lr": 0.1, "eps": 0.0}, "^eps must be a finite number > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            PreconditionedSGLD([theta], **kwargs)
