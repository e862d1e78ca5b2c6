"""A/B: CDTrainer's direct Bernoulli-RBM update against the autograd path, in one run.

Fashion-MNIST (10,000 images binarised at 0.5), 784-500, batch 100, one epoch, best
of 3, the two paths alternating twice so that load on a shared machine hits both:

    cd benchmarks && python ab_direct_cd.py
"""

from __future__ import annotations

import torch
from _common import best_of

from ebmlab.data import load_dataset
from ebmlab.models import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer

N_SAMPLES = 10_000


def epoch(data: torch.Tensor, *, persistent: bool, direct: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    model = BernoulliRBM(784, 500, generator=generator)
    config = CDConfig(epochs=1, batch_size=100, lr=0.01, persistent=persistent)
    trainer = CDTrainer(model, config, generator=generator)
    trainer._direct = direct  # the switch the trainer sets itself for a plain Bernoulli RBM
    trainer.train_epoch(data)


def main() -> None:
    data = (load_dataset("fashion-mnist", split="train").images[:N_SAMPLES] > 0.5).float()
    for persistent in (False, True):
        for direct in (True, False, True, False):
            seconds = best_of(lambda p=persistent, d=direct: epoch(data, persistent=p, direct=d), 3)
            name = "PCD-1" if persistent else "CD-1"
            path = "direct" if direct else "autograd"
            print(f"{name:6s} {path:9s} {N_SAMPLES / seconds:8.0f} samples/s")


if __name__ == "__main__":
    main()
