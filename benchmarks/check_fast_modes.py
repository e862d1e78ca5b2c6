"""The likelihood check behind the fast modes: the same RBM trained eagerly, with compiled
sweeps, in bfloat16 and with PCD's hidden means reused from the previous update (scikit-learn's
PCD), scored by the same AIS on held-out Fashion-MNIST.

A fast mode passes when its test log-likelihoods over seeds agree with the float32 eager
runs' within their seed-to-seed spread (the AIS intervals are far narrower), i.e. it
learns models of the same quality.
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

MODES = {  # name: CDConfig overrides
    "float32 eager": {},
    "float32 compiled sweeps": {"compile": True},
    "bfloat16": {"precision": "bfloat16"},
    "float32 reused hidden means": {"reuse_hidden_means": True},
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
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per mode")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    train_data, test_data = binary("train", args.n_train), binary("test", args.n_test)
    print(f"machine: {machine_summary()}")
    print(
        f"784-500 PCD-1, {args.n_train} images, {args.epochs} epochs; AIS on {args.n_test} test images"
    )
    print(f"{'mode':26s} {'seed':>4s} {'train s':>8s}  test log-likelihood (AIS, nats)")
    for name in args.modes:
        scores = []
        for seed in range(args.seeds):
            model, seconds = train(train_data, args.epochs, MODES[name], seed)
            log_z = ais_log_partition(model, n_chains=100, compiled=True, progress=False,
                                      generator=torch.Generator().manual_seed(0))  # fmt: skip
            score = log_likelihood(model, test_data, log_z)
            scores.append(score.value)
            print(f"{name:26s} {seed:4d} {seconds:8.1f}  {score.value:.2f} "
                  f"[{score.lower:.2f}, {score.upper:.2f}]", flush=True)  # fmt: skip
        values = torch.tensor(scores)
        spread = f" +/- {values.std():.2f} (sd over seeds)" if len(scores) > 1 else ""
        print(f"{name:26s} mean {values.mean():.2f}{spread}", flush=True)


if __name__ == "__main__":
    main()
