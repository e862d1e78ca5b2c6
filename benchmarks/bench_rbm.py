"""RBM training throughput: ebmlab CD-1 / PCD-1 against scikit-learn's BernoulliRBM, same run.

Workload (issue "Foundation and the Bernoulli RBM"): Fashion-MNIST, 784 visible,
500 hidden, batch 100, binarised at 0.5; scikit-learn is fed float32 so neither
side pays for a dtype conversion. Also prints the fraction of this machine's fp32
GEMM rate (measured here, on the GEMM shapes of one CD update) that ebmlab reaches.

    python benchmarks/bench_rbm.py [--n-samples 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from _common import best_of, gemm_flops_per_second, machine_summary

from ebmlab.data import load_dataset
from ebmlab.models import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer

N_VISIBLE, N_HIDDEN, BATCH = 784, 500, 100
# GEMMs per CD-1/PCD-1 update, counted in units of B*V*H multiply-adds: sampling h (1),
# sampling v (1), free energy of data and negatives (2), weight gradient of both (2).
GEMMS_PER_UPDATE = 6


def load_data(n_samples: int) -> torch.Tensor:
    images = load_dataset("fashion-mnist", split="train").images[:n_samples]
    return (images > 0.5).float()


def ebmlab_epoch_seconds(data: torch.Tensor, *, persistent: bool, repeats: int) -> float:
    def one_epoch() -> None:
        generator = torch.Generator().manual_seed(0)
        model = BernoulliRBM(N_VISIBLE, N_HIDDEN, generator=generator)
        config = CDConfig(epochs=1, batch_size=BATCH, lr=0.01, cd_k=1, persistent=persistent)
        CDTrainer(model, config, generator=generator).train_epoch(data)

    return best_of(one_epoch, repeats)


def sklearn_epoch_seconds(data: np.ndarray, *, repeats: int) -> float:
    from sklearn.neural_network import BernoulliRBM as SkRBM

    def one_epoch() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            SkRBM(
                n_components=N_HIDDEN,
                batch_size=BATCH,
                n_iter=1,
                learning_rate=0.01,
                random_state=0,
            ).fit(data)

    return best_of(one_epoch, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = load_data(args.n_samples)
    n = data.shape[0]
    peak = gemm_flops_per_second(BATCH, N_VISIBLE, N_HIDDEN)
    flops_per_sample = 2 * GEMMS_PER_UPDATE * N_VISIBLE * N_HIDDEN
    sklearn_rate = n / sklearn_epoch_seconds(data.numpy(), repeats=args.repeats)
    print(f"machine: {machine_summary()}")
    print(
        f"workload: Fashion-MNIST, {n} samples, {N_VISIBLE}-{N_HIDDEN}, batch {BATCH}, one epoch, best of {args.repeats}"
    )
    print(f"fp32 GEMM rate on the update's shapes: {peak / 1e9:.1f} GFLOP/s")
    print(
        f"{'workload':12s} {'ebmlab samples/s':>17s} {'sklearn samples/s':>18s} {'ratio':>6s} {'of GEMM bound':>14s}"
    )
    for name, persistent in (("CD-1", False), ("PCD-1", True)):
        rate = n / ebmlab_epoch_seconds(data, persistent=persistent, repeats=args.repeats)
        bound_fraction = rate * flops_per_sample / peak
        print(
            f"{name:12s} {rate:17.0f} {sklearn_rate:18.0f} {rate / sklearn_rate:6.2f} {bound_fraction:14.0%}"
        )
    print("(scikit-learn's BernoulliRBM always runs PCD-1: its figure is the peer for both rows)")


if __name__ == "__main__":
    main()
