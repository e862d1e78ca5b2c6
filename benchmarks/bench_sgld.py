"""Effective samples per second: ebmlab's SGLD against BlackJAX's on the Welling & Teh
mixture posterior (same data, chains, steps, schedule and batch size 1), in one run.

    python benchmarks/bench_sgld.py [--n-steps 10000] [--n-chains 100] [--seed 0]

BlackJAX is optional: install it in a separate environment
(``pip install torch==2.13.0 && pip install -e . jax blackjax``); without it the
script says so and reports ebmlab's figure alone. Both run on the CPU in float64.
ESS is ebmlab's split ESS (min over theta1, theta2) of the draws kept after a 10%
burn-in, pooled over chains; seconds are sampling wall time (BlackJAX's compile
time is reported separately and excluded).
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from ebmlab.experiments.sgld_mixture import (
    LIKELIHOOD_VARIANCE,
    PRIOR_VARIANCE,
    mixture_data,
    sgld_mixture_chains,
)
from ebmlab.metrics.mcmc import effective_sample_size
from ebmlab.samplers.schedules import PolynomialDecay


def bench_ebmlab(data: torch.Tensor, n_chains: int, n_steps: int, seed: int) -> dict:
    started = time.perf_counter()
    collector = sgld_mixture_chains(data, n_chains, n_steps, seed)
    seconds = time.perf_counter() - started
    ess = effective_sample_size(collector.samples.transpose(0, 1)).min().item()
    return {"library": "ebmlab", "seconds": seconds, "ess": ess, "ess_per_second": ess / seconds}


def bench_parallel(data: torch.Tensor, n_chains: int, n_steps: int, seed: int) -> dict:
    """ebmlab's ParallelSGLD: 10 steps per compiled call; compile time reported apart."""
    from ebmlab.experiments.sgld_mixture import PRIOR_VARIANCE, log_likelihood, log_prior
    from ebmlab.samplers.parallel_sgld import ParallelSGLD

    chains = ParallelSGLD(log_prior, log_likelihood, data, steps_per_call=10)
    generator = torch.Generator().manual_seed(seed)
    prior_sd = torch.tensor(PRIOR_VARIANCE, dtype=torch.float64).sqrt()
    state = chains.init(prior_sd * torch.randn(n_chains, 2, generator=generator,
                                               dtype=torch.float64), generator=generator)  # fmt: skip
    decay = PolynomialDecay.from_range(0.01, 0.0001, n_steps, gamma=0.55)
    steps = torch.tensor([decay(t) for t in range(n_steps)], dtype=torch.float64)
    started = time.perf_counter()
    chains.run(state, steps[:10])  # compiles
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _, trace = chains.run(state, steps)
    seconds = time.perf_counter() - started
    burn_in, thin = n_steps // 10, max(1, n_steps // 2000)
    ess = effective_sample_size(trace[burn_in + thin - 1 :: thin].transpose(0, 1)).min().item()
    return {"library": "ebmlab ParallelSGLD", "seconds": seconds, "ess": ess,
            "compile_seconds": compile_seconds, "ess_per_second": ess / seconds}  # fmt: skip


def bench_blackjax(data: torch.Tensor, n_chains: int, n_steps: int, seed: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import blackjax
    import jax.numpy as jnp

    x = jnp.asarray(data.numpy())

    def logprior(theta):
        return -0.5 * (theta[0] ** 2 / PRIOR_VARIANCE[0] + theta[1] ** 2 / PRIOR_VARIANCE[1])

    def loglikelihood(theta, xi):
        first = -((xi - theta[0]) ** 2) / (2 * LIKELIHOOD_VARIANCE)
        second = -((xi - theta[0] - theta[1]) ** 2) / (2 * LIKELIHOOD_VARIANCE)
        return jnp.logaddexp(first, second) - math.log(2.0)

    grad_fn = blackjax.sgmcmc.gradients.grad_estimator(logprior, loglikelihood, len(data))
    sgld = blackjax.sgld(grad_fn)
    decay = PolynomialDecay.from_range(0.01, 0.0001, n_steps, gamma=0.55)
    # BlackJAX steps theta + h grad + sqrt(2h) xi: h = eps_t / 2 in Welling & Teh's terms.
    half_steps = jnp.asarray([decay(t) / 2 for t in range(n_steps)])
    burn_in, thin = n_steps // 10, max(1, n_steps // 2000)

    def one_chain(key, theta0):
        def body(theta, inputs):
            key, h = inputs
            key_batch, key_step = jax.random.split(key)
            batch = x[jax.random.randint(key_batch, (1,), 0, len(data))]
            theta = sgld.step(key_step, theta, batch, h)
            return theta, theta

        keys = jax.random.split(key, n_steps)
        _, trace = jax.lax.scan(body, theta0, (keys, half_steps))
        return trace

    run = jax.jit(jax.vmap(one_chain))
    key_init, key_run = jax.random.split(jax.random.PRNGKey(seed))
    prior_sd = jnp.sqrt(jnp.asarray(PRIOR_VARIANCE))
    theta0 = prior_sd * jax.random.normal(key_init, (n_chains, 2), dtype=jnp.float64)
    keys = jax.random.split(key_run, n_chains)
    started = time.perf_counter()
    compiled = run.lower(keys, theta0).compile()
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    trace = compiled(keys, theta0).block_until_ready()
    seconds = time.perf_counter() - started
    kept = torch.from_numpy(jax.device_get(trace)[:, burn_in + thin - 1 :: thin].copy())
    ess = effective_sample_size(kept).min().item()
    return {
        "library": "blackjax",
        "seconds": seconds,
        "compile_seconds": compile_seconds,
        "ess": ess,
        "ess_per_second": ess / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-steps", type=int, default=10_000)
    parser.add_argument("--n-chains", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = mixture_data(args.seed)
    results = [bench_ebmlab(data, args.n_chains, args.n_steps, args.seed)]
    results.append(bench_parallel(data, args.n_chains, args.n_steps, args.seed))
    try:
        results.append(bench_blackjax(data, args.n_chains, args.n_steps, args.seed))
    except ImportError as error:
        print(f"BlackJAX not available ({error}); `pip install jax blackjax` to compare.")
    print(
        f"{args.n_chains} chains x {args.n_steps} steps, batch size 1, torch threads "
        f"{torch.get_num_threads()}"
    )
    for r in results:
        print(
            f"{r['library']:>19}: {r['seconds']:8.2f} s  ESS {r['ess']:8.1f}  "
            f"ESS/s {r['ess_per_second']:8.1f}"
        )
    if results[-1]["library"] == "blackjax":
        for ours in results[:-1]:
            ratio = ours["ess_per_second"] / results[-1]["ess_per_second"]
            print(f"{ours['library']} / blackjax ESS per second: {ratio:.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
