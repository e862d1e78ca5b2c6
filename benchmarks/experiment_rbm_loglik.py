"""Test log-likelihood of 500-hidden RBMs on binarised Fashion-MNIST at equal wall time.

Trains ebmlab RBMs with CD-1, CD-10 and PCD-1 and scikit-learn's BernoulliRBM,
each for the same wall-clock budget, loads every model into
``ebmlab.models.BernoulliRBM`` and scores all of them with the same AIS
(optimistic) and reverse AIS (conservative) estimators. Also saves samples and
filters of each ebmlab model.

    python benchmarks/experiment_rbm_loglik.py --budget 240 --out benchmarks/results/rbm_loglik
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
from safetensors.torch import save_file

from ebmlab.data import load_dataset
from ebmlab.estimators import evaluate_log_likelihood
from ebmlab.models import BernoulliRBM
from ebmlab.samplers import sample_visible
from ebmlab.training import CDConfig, CDTrainer
from ebmlab.viz.images import save_filters, save_image_grid

N_HIDDEN, BATCH = 500, 100


def train_ebmlab(train: torch.Tensor, *, cd_k: int, persistent: bool, budget: float, seed: int):
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(train.shape[1], N_HIDDEN, generator=generator).init_visible_bias(train)
    # Persistent chains mix only while the weights move slowly: PCD takes a quarter of CD's step
    # (at lr 0.02 with momentum 0.9 its chains lost the data's modes in an earlier run).
    lr = 0.005 if persistent else 0.02
    config = CDConfig(epochs=1000, batch_size=BATCH, lr=lr, cd_k=cd_k, persistent=persistent)
    trainer = CDTrainer(model, config, generator=generator)
    start, epochs = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        trainer.train_epoch(train)
        epochs += 1
    return model, epochs, time.perf_counter() - start


def train_sklearn(train: np.ndarray, *, budget: float, seed: int):
    from sklearn.neural_network import BernoulliRBM as SkRBM

    rbm = SkRBM(n_components=N_HIDDEN, batch_size=BATCH, learning_rate=0.1, random_state=seed)
    rng, start, epochs = np.random.default_rng(seed), time.perf_counter(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while time.perf_counter() - start < budget:
            for batch in np.array_split(train[rng.permutation(len(train))], len(train) // BATCH):
                rbm.partial_fit(batch)
            epochs += 1
    model = BernoulliRBM(train.shape[1], N_HIDDEN)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(rbm.components_.T.astype(np.float32)))
        model.hidden_bias.copy_(torch.from_numpy(rbm.intercept_hidden_.astype(np.float32)))
        model.visible_bias.copy_(torch.from_numpy(rbm.intercept_visible_.astype(np.float32)))
    return model, epochs, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=240.0, help="training seconds per model")
    parser.add_argument(
        "--n-betas", type=int, default=None, help="AIS temperatures (default 14,501)"
    )
    parser.add_argument("--raise-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rbm_loglik"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    train = (load_dataset("fashion-mnist", split="train").images > 0.5).float()
    test = (load_dataset("fashion-mnist", split="test").images > 0.5).float()
    results = {"machine": machine_summary(), "budget_seconds": args.budget, "models": {}}
    runs = {
        "ebmlab CD-1": lambda: train_ebmlab(
            train, cd_k=1, persistent=False, budget=args.budget, seed=args.seed
        ),
        "ebmlab CD-10": lambda: train_ebmlab(
            train, cd_k=10, persistent=False, budget=args.budget, seed=args.seed
        ),
        "ebmlab PCD-1": lambda: train_ebmlab(
            train, cd_k=1, persistent=True, budget=args.budget, seed=args.seed
        ),
        "scikit-learn PCD-1": lambda: train_sklearn(
            train.numpy(), budget=args.budget, seed=args.seed
        ),
    }
    for name, train_model in runs.items():
        model, epochs, seconds = train_model()
        generator = torch.Generator().manual_seed(args.seed)
        scores = evaluate_log_likelihood(
            model, test, train_data=train, n_betas=args.n_betas, raise_max_samples=args.raise_samples,
            generator=generator, progress=False,
        )  # fmt: skip
        results["models"][name] = {"epochs": epochs, "train_seconds": seconds, **scores}
        slug = name.lower().replace(" ", "_").replace("-", "")
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(args.out / f"{slug}.safetensors"),
        )
        samples = sample_visible(model, 64, 1000, generator=generator)
        save_image_grid(
            samples, (28, 28), args.out / f"{slug}_samples.png", title=f"{name}: 1,000 Gibbs sweeps"
        )
        save_filters(model.weight, (28, 28), args.out / f"{slug}_filters.png")
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        test_ll = scores["test_loglik"]
        print(
            f"{name:20s} epochs {epochs:3d}  AIS {test_ll['value']:8.2f} [{test_ll['lower']:.2f}, {test_ll['upper']:.2f}]"
            f"  RAISE {scores['raise_loglik']['value']:8.2f} (AIS on same points {scores['raise_loglik']['ais_value']:.2f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
