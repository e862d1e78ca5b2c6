"""Held-out log-likelihood of RBM training variants at an equal compute budget (Fashion-MNIST).

CD-1, CD-10, PCD-1 at the shipped defaults, centered PCD-1, parallel tempering with 10
replicas (PT-10) and centered PT-10, each a 784-500 RBM on the 60,000 binarised
(threshold 0.5) training images, batch 100, every other setting at ``CDConfig``'s defaults.
Each variant gets the same budget of one thread's CPU time (``time.process_time``, so a
busy machine slows every variant alike): a short calibration measures its seconds per
update, and its epochs are set to fill the budget, so its learning-rate schedule runs to
the end. A cheap AIS estimate (16 chains x 1,000 temperatures) of the log-likelihood of
1,000 test images is logged at about 12 points of each run for the curve of log-likelihood against
time (not counted in the budget). The final models are scored by AIS (100 chains,
14,501 temperatures; the chains are doubled up to 400 while the interval is open) on
all 10,000 test images and RAISE on the first 100.

    OMP_NUM_THREADS=1 python benchmarks/experiment_rbm_training.py --budget 600 \\
        --out benchmarks/results/rbm_training
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from _common import machine_summary
from safetensors.torch import save_file

from ebmlab.data import load_dataset
from ebmlab.estimators import evaluate_log_likelihood, quick_log_likelihood
from ebmlab.models import BernoulliRBM
from ebmlab.samplers import sample_visible
from ebmlab.training import CDConfig, CDTrainer
from ebmlab.viz.images import save_image_grid

N_HIDDEN, BATCH = 500, 100
# The defaults are centered: the plain variants switch centering off.
VARIANTS = {
    "CD-1": {"cd_k": 1},
    "CD-10": {"cd_k": 10},
    "PCD-1": {"persistent": True, "centering": False},
    "centered PCD-1": {"persistent": True},
    "PT-10": {"persistent": True, "tempering": 10, "centering": False},
    "centered PT-10": {"persistent": True, "tempering": 10},
}
CURVE_POINTS = 12  # cheap AIS estimates per run, for the curve against time
CALIBRATION_UPDATES = 20


def seconds_per_update(train: torch.Tensor, settings: dict, seed: int) -> float:
    """CPU seconds of one update of this variant, from a throwaway model."""
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(train.shape[1], N_HIDDEN, generator=generator).init_visible_bias(train)
    config = CDConfig(batch_size=BATCH, **settings)
    trainer = CDTrainer(model, config, generator=generator)
    trainer.train_epoch(train[: 2 * BATCH])  # warm-up: allocations, persistent chains
    start = time.process_time()
    trainer.train_epoch(train[: CALIBRATION_UPDATES * BATCH])
    return (time.process_time() - start) / CALIBRATION_UPDATES


def train_variant(train, monitor, settings, budget: float, seed: int):
    epoch_seconds = seconds_per_update(train, settings, seed) * math.ceil(len(train) / BATCH)
    epochs = max(1, int(budget / epoch_seconds))
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(train.shape[1], N_HIDDEN, generator=generator).init_visible_bias(train)
    config = CDConfig(epochs=epochs, batch_size=BATCH, **settings)
    trainer = CDTrainer(model, config, generator=generator)
    curve, used = [], 0.0
    for epoch in range(epochs):
        start = time.process_time()
        record = trainer.train_epoch(train)
        used += time.process_time() - start
        if (epoch + 1) % max(1, epochs // CURVE_POINTS) and epoch + 1 < epochs:
            continue
        estimate = quick_log_likelihood(
            model, monitor, train_data=train, generator=torch.Generator().manual_seed(epoch)
        )
        curve.append({"epoch": epoch + 1, "cpu_seconds": used, **estimate, **_tempering(record)})
        print(
            f"  epoch {epoch + 1}/{epochs}  {used:6.0f} s  cheap AIS {estimate['value']}",
            flush=True,
        )
    return model, config, curve


def _tempering(record: dict) -> dict:
    return {k: v for k, v in record.items() if k.startswith("tempering")}


def final_scores(model, test, train, seed: int, raise_samples: int) -> dict:
    chains = 100
    while True:
        scores = evaluate_log_likelihood(
            model, test, train_data=train, n_chains=chains, raise_max_samples=raise_samples,
            generator=torch.Generator().manual_seed(seed), progress=False,
        )  # fmt: skip
        if math.isfinite(scores["test_loglik"]["upper"]) or chains >= 400:
            return scores
        chains *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="CPU seconds per variant")
    parser.add_argument("--variants", default="|".join(VARIANTS), help="names separated by |")
    parser.add_argument("--raise-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rbm_training"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train = (load_dataset("fashion-mnist", split="train").images > 0.5).float()
    test = (load_dataset("fashion-mnist", split="test").images > 0.5).float()
    for name in args.variants.split("|"):
        print(name, flush=True)
        model, config, curve = train_variant(
            train, test[:1000], VARIANTS[name], args.budget, args.seed
        )
        scores = final_scores(model, test, train, args.seed, args.raise_samples)
        slug = "".join(c if c.isalnum() else "_" for c in name.lower())
        result = {
            "machine": machine_summary(), "budget_cpu_seconds": args.budget,
            "config": config.to_dict(), "curve": curve, **scores,
        }  # fmt: skip
        (args.out / f"{slug}.json").write_text(json.dumps(result, indent=2))
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(args.out / f"{slug}.safetensors"),
        )
        samples = sample_visible(
            model, 64, 1000, generator=torch.Generator().manual_seed(args.seed)
        )
        save_image_grid(
            samples, (28, 28), args.out / f"{slug}_samples.png", title=f"{name}: 1,000 Gibbs sweeps"
        )
        ll, raised = scores["test_loglik"], scores["raise_loglik"]
        print(
            f"{name:16s} epochs {config.epochs:3d}  AIS {ll['value']:8.2f} [{ll['lower']:.2f}, "
            f"{ll['upper']:.2f}] ({scores['log_z']['n_chains']} chains)  RAISE {raised['value']:8.2f} "
            f"(AIS on the same points {raised['ais_value']:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
