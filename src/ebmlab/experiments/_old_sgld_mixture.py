"""Welling & Teh (2011), section 5.1: SGLD on the posterior of a two-component mixture.

Model: :math:`\\theta_1 \\sim \\mathcal N(0, 10)`, :math:`\\theta_2 \\sim \\mathcal N(0, 1)`
(variances) and :math:`x_i \\sim \\tfrac12 \\mathcal N(\\theta_1, 2) + \\tfrac12
\\mathcal N(\\theta_1 + \\theta_2, 2)`, with 100 points drawn at
:math:`(\\theta_1, \\theta_2) = (0, 1)`. Swapping the components,
:math:`(\\theta_1, \\theta_2) \\mapsto (\\theta_1 + \\theta_2, -\\theta_2)`, leaves the
likelihood unchanged, so the posterior has a second mode near (1, -1).
SGLD uses batch size 1 and a step size decaying polynomially
(:math:`\\gamma = 0.55`) from 0.01 to 0.0001; ebmlab runs many chains in parallel.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ebmlab._validation import check_positive_int
from ebmlab.metrics.mcmc import effective_sample_size, split_rhat
from ebmlab.samplers.schedules import PolynomialDecay
from ebmlab.samplers.sgld import SGLD, SampleCollector

N_DATA = 100
PRIOR_VARIANCE = (10.0, 1.0)
LIKELIHOOD_VARIANCE = 2.0
TRUE_THETA = (0.0, 1.0)
EXTENT = (-1.5, 2.5, -3.0, 3.0)  # theta1 range, theta2 range of the figure and grid


def mixture_data(seed: int = 0) -> torch.Tensor:
    """The 100 observations, drawn at theta = (0, 1) from a seeded generator (float64)."""
    generator = torch.Generator().manual_seed(seed)
    component = torch.randint(0, 2, (N_DATA,), generator=generator).double()
    centre = TRUE_THETA[0] + component * TRUE_THETA[1]
    noise = torch.randn(N_DATA, generator=generator, dtype=torch.float64)
    return centre + math.sqrt(LIKELIHOOD_VARIANCE) * noise


def log_prior(theta: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(\\theta)` up to a constant; ``theta`` has shape (..., 2)."""
    return -0.5 * (theta[..., 0] ** 2 / PRIOR_VARIANCE[0] + theta[..., 1] ** 2 / PRIOR_VARIANCE[1])


def log_likelihood(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:math:`\\log p(x \\mid \\theta)` up to a constant, broadcasting ``theta[..., 0]`` with ``x``."""
    first = -((x - theta[..., 0]) ** 2) / (2 * LIKELIHOOD_VARIANCE)
    second = -((x - theta[..., 0] - theta[..., 1]) ** 2) / (2 * LIKELIHOOD_VARIANCE)
    return torch.logaddexp(first, second) - math.log(2.0)


def log_posterior(theta: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Exact unnormalised log posterior for ``theta`` of shape (..., 2)."""
    return log_prior(theta) + log_likelihood(theta[..., None, :], data).sum(-1)


def sgld_mixture_chains(
    data: torch.Tensor, n_chains: int, n_steps: int, seed: int
) -> SampleCollector:
    """Run ``n_chains`` parallel SGLD chains (batch size 1 each) for ``n_steps`` steps.

    Returns the collector of the draws after a 10% burn-in, thinned to about
    2,000 per chain, weighted by the step size.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    # Start every chain at a prior draw: chains see both modes only if SGLD finds them.
    prior_sd = torch.tensor(PRIOR_VARIANCE, dtype=torch.float64).sqrt()
    theta = prior_sd * torch.randn(n_chains, 2, generator=generator, dtype=torch.float64)
    theta.requires_grad_(True)
    optimizer = SGLD([theta], lr=1.0, generator=generator)
    decay = PolynomialDecay.from_range(0.01, 0.0001, n_steps, gamma=0.55)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    collector = SampleCollector(burn_in=n_steps // 10, thin=max(1, n_steps // 2000))
    for _ in range(n_steps):
        rows = torch.randint(len(data), (n_chains,), generator=generator)  # batch size 1 per chain
        loss = -(log_prior(theta) + len(data) * log_likelihood(theta, data[rows])).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        collector.update(theta, weight=lr)
    return collector


def _grid(data: torch.Tensor, resolution: int = 300):
    xs = torch.linspace(EXTENT[0], EXTENT[1], resolution, dtype=torch.float64)
    ys = torch.linspace(EXTENT[2], EXTENT[3], resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [i, j] = (xs[j], ys[i])
    log_p = log_posterior(grid, data)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return xs, ys, log_p - torch.logsumexp(log_p.reshape(-1), 0) - cell.log()


def _summary(collector: SampleCollector, xs, ys, log_p, seconds: float) -> dict[str, Any]:
    samples = collector.samples  # (n_kept, n_chains, 2)
    weights = collector.weights
    probs = log_p.exp() * (xs[1] - xs[0]) * (ys[1] - ys[0])
    grid_theta2 = ys[:, None].expand_as(probs)
    upper = (samples[..., 1] > 0).double().mean(dim=1)  # per draw: fraction of chains
    chains = samples.transpose(0, 1)
    ess = effective_sample_size(chains)
    return {
        "n_chains": samples.shape[1],
        "n_kept_per_chain": samples.shape[0],
        "fraction_mode_upper_sgld": float((weights * upper).sum() / weights.sum()),
        "fraction_mode_upper_exact": float(probs[grid_theta2 > 0].sum()),
        "posterior_mean_sgld": collector.weighted_mean().mean(dim=0).tolist(),
        "posterior_mean_exact": [
            float((probs * torch.stack(torch.meshgrid(xs, ys, indexing="xy"))[k]).sum())
            for k in range(2)
        ],
        "ess": ess.tolist(),
        "rhat": split_rhat(chains).tolist(),
        "seconds": round(seconds, 3),
        "ess_per_second": (ess.min() / seconds).item(),
    }


def run_sgld_mixture(
    out_dir: Path,
    *,
    n_steps: int = 10_000,
    seed: int = 0,
    n_chains: int = 200,
) -> dict[str, Any]:
    """Run the experiment; write ``samples.npy``, ``posterior.png``, ``trace.png`` and
    ``summary.json`` under ``out_dir`` and return the summary.

    ``samples.npy`` has shape (n_kept, n_chains, 2) (after burn-in, thinned);
    the summary compares SGLD's step-size-weighted estimates (fraction of
    mass at the (0, 1) mode, i.e. theta2 > 0, and the posterior mean) with the
    exact posterior on a 300 x 300 grid, and gives ESS and split R-hat.
    """
    import json

    from ebmlab.viz.density2d import save_posterior2d, save_trace_plot

    check_positive_int("n_steps", n_steps)
    check_positive_int("n_chains", n_chains)
    if n_steps < 20:
        raise ValueError(f"n_steps must be >= 20 (burn-in and thinning need room); got {n_steps}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = mixture_data(seed)
    started = time.perf_counter()
    collector = sgld_mixture_chains(data, n_chains, n_steps, seed)
    seconds = time.perf_counter() - started
    xs, ys, log_p = _grid(data)
    summary = _summary(collector, xs, ys, log_p, seconds)
    samples = collector.samples
    np.save(out_dir / "samples.npy", samples.numpy())
    save_posterior2d(
        xs,
        ys,
        log_p,
        samples.reshape(-1, 2),
        out_dir / "posterior.png",
        title=f"SGLD ({n_chains} chains, {n_steps} steps) over the exact posterior",
    )
    save_trace_plot(samples.transpose(0, 1), out_dir / "trace.png", names=["theta1", "theta2"])
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
