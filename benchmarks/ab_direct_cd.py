"""A/B: CDTrainer's direct Bernoulli-RBM update against the autograd path, same run.

cd benchmarks && python ab_direct_cd.py     # Fashion-MNIST 10k, 784-500, batch 100
"""

from __future__ import annotations

import torch
from _common import best_of
from ebmlab.data import load_dataset
from ebmlab.models import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer

data = (load_dataset("fashion-mnist", split="train").images[:10000] > 0.5).float()
for persistent in (False, True):
    for direct in (True, False, True, False):

        def one():
            g = torch.Generator().manual_seed(0)
            m = BernoulliRBM(784, 500, generator=g)
            t = CDTrainer(
                m, CDConfig(epochs=1, batch_size=100, lr=0.01, persistent=persistent), generator=g
            )
            t._direct = direct
            t.train_epoch(data)

        s = best_of(one, 3)
        print("PCD" if persistent else "CD", "direct" if direct else "autograd", round(10000 / s))
