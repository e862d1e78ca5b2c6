"""Time AIS on a 784-500 RBM against this machine's GEMM-bound time for the same work.

AIS does two GEMMs per temperature (100x784 @ 784x500 for the hidden input and
100x500 @ 500x784 for the visible input); everything else (softplus, sigmoid,
uniform draws, comparisons) is overhead. The script times the AIS run, then a tight
loop of just those two fp32 GEMMs per temperature on the same threads, and prints
the ratio (target: at most 1.5).

    python benchmarks/bench_ais.py                 # 14,501 temperatures
    python benchmarks/bench_ais.py --n-betas 2000  # quick run
"""

from __future__ import annotations

import argparse
import time

import torch

from ebmlab.estimators import ais_log_partition, default_betas
from ebmlab.models.rbm import BernoulliRBM


def build_model(n_visible: int, n_hidden: int, seed: int) -> BernoulliRBM:
    """Random weights (std 0.01) plus a sparse "trained-like" component of scale ~1."""
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(n_visible, n_hidden, weight_std=0.01, generator=generator)
    with torch.no_grad():
        mask = torch.rand(n_visible, n_hidden, generator=generator) < 0.05
        model.weight += mask * torch.randn(n_visible, n_hidden, generator=generator)
        model.visible_bias.normal_(-1.0, 1.0, generator=generator)
        model.hidden_bias.normal_(-2.0, 0.5, generator=generator)
    return model


def gemm_bound_seconds(
    model: BernoulliRBM, n_chains: int, n_temperatures: int, *, dtype=torch.float32
) -> float:
    """Seconds for the two GEMMs per temperature alone (operands in ``dtype``), outputs preallocated."""
    weight = model.weight.detach().to(dtype)
    weight_t = weight.t().contiguous()
    visible = (torch.rand(n_chains, model.n_visible) < 0.5).to(dtype)
    hidden = (torch.rand(n_chains, model.n_hidden) < 0.5).to(dtype)
    hidden_out = torch.empty(n_chains, model.n_hidden, dtype=dtype)
    visible_out = torch.empty(n_chains, model.n_visible, dtype=dtype)
    for _ in range(50):  # warm-up
        torch.mm(visible, weight, out=hidden_out)
        torch.mm(hidden, weight_t, out=visible_out)
    start = time.perf_counter()
    for _ in range(n_temperatures):
        torch.mm(visible, weight, out=hidden_out)
        torch.mm(hidden, weight_t, out=visible_out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n-betas", type=int, default=None, help="evenly spaced temperatures (default: 14,501)"
    )
    parser.add_argument("--n-chains", type=int, default=100)
    parser.add_argument("--n-visible", type=int, default=784)
    parser.add_argument("--n-hidden", type=int, default=500)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="alternate AIS and GEMM runs this many times"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = build_model(args.n_visible, args.n_hidden, seed=0)
    betas = default_betas() if args.n_betas is None else args.n_betas
    n_betas = betas.numel() if isinstance(betas, torch.Tensor) else betas
    print(
        f"RBM {args.n_visible}-{args.n_hidden}, {args.n_chains} chains, {n_betas} temperatures, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    ratios = []
    for repeat in range(args.repeats):
        estimate = ais_log_partition(
            model,
            n_chains=args.n_chains,
            betas=betas,
            generator=torch.Generator().manual_seed(repeat),
            progress=False,
        )
        # The AIS loop runs n_betas - 1 weight updates and n_betas - 2 transitions.
        gemm = gemm_bound_seconds(model, args.n_chains, n_betas - 1)
        ratios.append(estimate.seconds / gemm)
        print(
            f"[{repeat}] AIS {estimate.seconds:.2f} s (log Z = {estimate.log_z:.3f} "
            f"[{estimate.log_z_lower:.3f}, {estimate.log_z_upper:.3f}]); GEMM-bound {gemm:.2f} s; "
            f"ratio {ratios[-1]:.2f}"
        )
    print(
        f"ratio AIS / GEMM-bound: best {min(ratios):.2f}, median {sorted(ratios)[len(ratios) // 2]:.2f}"
    )


if __name__ == "__main__":
    main()
