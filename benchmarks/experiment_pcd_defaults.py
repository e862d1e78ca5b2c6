"""Which PCD settings learn well? ebmlab variants against scikit-learn at its nominal settings.

scikit-learn's usual RBM settings (PCD-1, 200 hidden units, batch 100, lr 0.05, 15 epochs)
on the first 8,000 binarised Fashion-MNIST training images; each ebmlab variant changes
one thing (momentum, its dampening, the learning-rate decay, weight decay, centering);
scikit-learn trains for the same wall time as ebmlab's run at those settings. Every model
is scored by the same AIS (100 chains, 14,501 temperatures) on 2,000 test images.

    OMP_NUM_THREADS=1 python benchmarks/experiment_pcd_defaults.py --out benchmarks/results/pcd_defaults
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import machine_summary

from ebmlab.data import load_dataset
from ebmlab.estimators import evaluate_log_likelihood
from ebmlab.models import BernoulliRBM
from ebmlab.samplers import sample_visible
from ebmlab.training import CDConfig, CDTrainer
from ebmlab.viz.images import save_image_grid

N_TRAIN, N_TEST, N_HIDDEN = 8000, 2000, 200
NOMINAL = {"epochs": 15, "batch_size": 100, "lr": 0.05, "cd_k": 1, "persistent": True}
# What each variant sets on top of NOMINAL (everything else at CDConfig's defaults).
VARIANTS = {
    "defaults": {},
    "recommended (defaults, lr 0.1)": {"lr": 0.1},
    "no momentum or decay": {"momentum": 0.0, "final_momentum": 0.0, "weight_decay": 0.0},
    "dampened momentum": {"dampened_momentum": True},
    "lr->0": {"final_lr_fraction": 0.0},
    "dampened + lr->0": {"dampened_momentum": True, "final_lr_fraction": 0.0},
    "dampened + lr->0 + centered": {
        "dampened_momentum": True,
        "final_lr_fraction": 0.0,
        "centering": True,
    },
    "no momentum + lr->0 + centered": {
        "momentum": 0.0,
        "final_momentum": 0.0,
        "final_lr_fraction": 0.0,
        "centering": True,
    },
    "no momentum or decay + lr->0": {
        "momentum": 0.0, "final_momentum": 0.0, "weight_decay": 0.0, "final_lr_fraction": 0.0,
    },
    "no momentum or decay + lr->0 + centered": {
        "momentum": 0.0, "final_momentum": 0.0, "weight_decay": 0.0, "final_lr_fraction": 0.0,
        "centering": True,
    },
    "no momentum + centered": {"momentum": 0.0, "final_momentum": 0.0, "centering": True},
    "momentum 0.5 dampened + lr->0 + centered": {
        "final_momentum": 0.5, "dampened_momentum": True, "final_lr_fraction": 0.0,
        "centering": True,
    },
    "CD-1 defaults": {"persistent": False},
    **{
        f"no momentum + lr {lr}->0 + centered": {
            "momentum": 0.0, "final_momentum": 0.0, "final_lr_fraction": 0.0,
            "centering": True, "lr": lr,
        }
        for lr in (0.02, 0.1, 0.2)
    },
    "centered": {"centering": True},
    "centered + momentum 0.9 dampened": {"centering": True, "dampened_momentum": True},
    "CD-1 no momentum + lr->0 + centered": {
        "persistent": False, "momentum": 0.0, "final_momentum": 0.0, "final_lr_fraction": 0.0,
        "centering": True,
    },
}  # fmt: skip


def train_ebmlab(train: torch.Tensor, settings: dict, seed: int):
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(train.shape[1], N_HIDDEN, generator=generator).init_visible_bias(train)
    config = CDConfig(**{**NOMINAL, **settings})
    trainer = CDTrainer(model, config, generator=generator)
    start = time.perf_counter()
    for _ in range(config.epochs):
        trainer.train_epoch(train)
    return model, time.perf_counter() - start


def train_sklearn(train: np.ndarray, budget: float, seed: int):
    from sklearn.neural_network import BernoulliRBM as SkRBM

    rbm = SkRBM(
        n_components=N_HIDDEN, batch_size=NOMINAL["batch_size"],
        learning_rate=NOMINAL["lr"], random_state=seed,
    )  # fmt: skip
    rng, start, epochs = np.random.default_rng(seed), time.perf_counter(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while time.perf_counter() - start < budget:
            order = rng.permutation(len(train))
            for batch in np.array_split(train[order], len(train) // NOMINAL["batch_size"]):
                rbm.partial_fit(batch)
            epochs += 1
    model = BernoulliRBM(train.shape[1], N_HIDDEN)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rbm.components_.T.astype(np.float32)))
        model.hidden_bias.copy_(torch.from_numpy(rbm.intercept_hidden_.astype(np.float32)))
        model.visible_bias.copy_(torch.from_numpy(rbm.intercept_visible_.astype(np.float32)))
    return model, time.perf_counter() - start, epochs


def score(model, test, train, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    result = evaluate_log_likelihood(
        model, test, train_data=train, raise_chains=0, generator=generator, progress=False
    )
    return result["test_loglik"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="|".join(VARIANTS), help="names separated by |")
    parser.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn")
    parser.add_argument("--epochs", type=int, default=NOMINAL["epochs"], help="epochs of every run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pcd_defaults"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    full = load_dataset("fashion-mnist", split="train").images
    train = (full[:N_TRAIN] > 0.5).float()
    test = (load_dataset("fashion-mnist", split="test").images[:N_TEST] > 0.5).float()
    results = {"machine": machine_summary(), "nominal": NOMINAL, "models": {}}
    nominal_seconds = None
    for name in args.variants.split("|"):
        model, seconds = train_ebmlab(train, {"epochs": args.epochs, **VARIANTS[name]}, args.seed)
        nominal_seconds = nominal_seconds or seconds  # the first variant's time
        record(results, args, f"ebmlab {name}", model, seconds, test, train)
    if args.no_sklearn:
        return
    model, seconds, epochs = train_sklearn(train.numpy(), nominal_seconds, args.seed)
    record(results, args, f"scikit-learn ({epochs} epochs)", model, seconds, test, train)


def record(results, args, name, model, seconds, test, train) -> None:
    test_ll = score(model, test, train, args.seed)
    results["models"][name] = {"train_seconds": seconds, "test_loglik": test_ll}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    samples = sample_visible(model, 64, 1000, generator=torch.Generator().manual_seed(args.seed))
    slug = "".join(c if c.isalnum() else "_" for c in name.lower())
    save_image_grid(samples, (28, 28), args.out / f"{slug}.png", title=name)
    print(
        f"{name:34s} {seconds:6.1f} s  AIS {test_ll['value']:8.2f} "
        f"[{test_ll['lower']:.2f}, {test_ll['upper']:.2f}]",
        flush=True,
    )


if __name__ == "__main__":
    main()
