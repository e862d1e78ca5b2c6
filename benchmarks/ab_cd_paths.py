"""A/B: CDTrainer's update paths for a Bernoulli RBM against scikit-learn, in one run.

Fashion-MNIST (10,000 images binarised at 0.5), 784-500, batch 100, one epoch, best of 3,
scikit-learn's algorithm (uncentered, no momentum; PCD's sweep starts from the previous
update's hidden means, ``reuse_hidden_means``). The paths alternate twice so that drifting
load on a shared machine hits each, and scikit-learn is timed anew beside every row:
autograd (the path of other models), fused (``training/fused_cd.py``, the default), fused
in bfloat16 (only on a CPU with bfloat16 units, see ``workloads.precisions``), fused with
compiled sweeps (``--compile``; its compilation happens in the first, untimed call of
``best_of``), the whole epoch on bias-augmented matrices (``training/augmented_cd.py``, what
an untracked loss gives: the scikit-learn adapter's path) and, for PCD, fused with the
chains' hidden means recomputed (six GEMMs instead of five).

    cd benchmarks && python ab_cd_paths.py
"""

from __future__ import annotations

import torch
from _common import best_of, machine_summary
from workloads import fashion_binary, precisions, sklearn_rbm_epoch

from ebmlab.models import BernoulliRBM
from ebmlab.training.trainer import CDConfig, CDTrainer

N_SAMPLES = 10_000
PATHS = {  # name: CDConfig overrides
    "autograd": {},
    "fused": {},
    "fused, bfloat16": {"precision": "bfloat16"},
    "fused + compiled sweeps": {"compile": True},
    "augmented epoch (untracked loss)": {},
}
if "bfloat16" not in precisions():
    del PATHS["fused, bfloat16"]
PCD_ONLY = {"fused, fresh hidden means": {"reuse_hidden_means": False}}


def epoch(data: torch.Tensor, *, persistent: bool, path: str) -> None:
    generator = torch.Generator().manual_seed(0)
    model = BernoulliRBM(784, 500, generator=generator)
    options = {"reuse_hidden_means": persistent} | (PATHS | PCD_ONLY)[path]
    config = CDConfig(epochs=1, batch_size=100, lr=0.01, persistent=persistent,
                      centering=False, **options)  # fmt: skip
    trainer = CDTrainer(model, config, generator=generator, track_loss="untracked" not in path)
    trainer._fused = path != "autograd"  # the switch the trainer sets for a plain RBM
    trainer.train_epoch(data)


def main() -> None:
    data = fashion_binary(N_SAMPLES)
    print(f"machine: {machine_summary()}")
    for persistent in (False, True):
        name = "PCD-1" if persistent else "CD-1"
        paths = list(PATHS) + (list(PCD_ONLY) if persistent else [])
        for path in paths + paths:
            sklearn = N_SAMPLES / best_of(sklearn_rbm_epoch(data.numpy()), 3)
            run = lambda p=persistent, q=path: epoch(data, persistent=p, path=q)  # noqa: E731
            ours = N_SAMPLES / best_of(run, 3)
            print(f"{name:6s} {path:33s} {ours:8.0f} samples/s  {ours / sklearn:5.2f}x "
                  f"scikit-learn ({sklearn:.0f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
