"""The likelihood check behind the fast modes: the same RBM trained eagerly, with compiled
sweeps and in bfloat16, scored by the same AIS on held-out Fashion-MNIST.

A fast mode passes when its test log-likelihood lies within the spread that the float32
eager runs show across seeds (plus the AIS intervals), i.e. it learns the same model.
Defaults: 784-500 PCD-1 at the shipped CD defaults (centered, lr 0.1 falling to 0), the
first 10,000 binarised training images, 10 epochs; AIS with 100 chains x 14,501
temperatures (compiled) on the first 2,000 test images.

    python benchmarks/check_fast_modes.py [--n-train 10000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine_summary

from ebmlab.data import load_dataset
from ebmlab.estimators import ais_log_partition
from ebmlab.estimators.likelihood import log_likelihood
from ebmlab.models import BernoulliRBM
from ebmlab.training import CDConfig, CDTrainer

MODES = {  # name: (CDConfig overrides, seed)
    "float32 eager, seed 0": ({}, 0),
    "float32 eager, seed 1": ({}, 1),
    "float32 compiled sweeps, seed 0": ({"compile": True}, 0),
    "bfloat16, seed 0": ({"precision": "bfloat16"}, 0),
}


def binary(split: str, n: int) -> torch.Tensor:
    return (load_dataset("fashion-mnist", split=split).images[:n] > 0.5).float()


def train(
    data: torch.Tensor, epochs: int, overrides: dict, seed: int
) -> tuple[BernoulliRBM, float]:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(784, 500, generator=generator).init_visible_bias(data)
    config = CDConfig(epochs=epochs, persistent=True, **overrides)
    trainer = CDTrainer(model, config, generator=generator)
    started = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch(data)
    return model.set_precision("float32"), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    train_data, test_data = binary("train", args.n_train), binary("test", args.n_test)
    print(f"machine: {machine_summary()}")
    print(
        f"784-500 PCD-1, {args.n_train} images, {args.epochs} epochs; AIS on {args.n_test} test images"
    )
    print(f"{'mode':34s} {'train s':>8s}  test log-likelihood (AIS, nats)")
    for name, (overrides, seed) in MODES.items():
        model, seconds = train(train_data, args.epochs, overrides, seed)
        log_z = ais_log_partition(model, n_chains=100, compiled=True, progress=False,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
        score = log_likelihood(model, test_data, log_z)
        print(f"{name:34s} {seconds:8.1f}  {score.value:.2f} [{score.lower:.2f}, {score.upper:.2f}]",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
