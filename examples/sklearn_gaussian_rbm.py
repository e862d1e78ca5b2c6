"""Gaussian-Bernoulli RBM features for real-valued data, in a scikit-learn pipeline.

scikit-learn's BernoulliRBM reads its inputs as probabilities in [0, 1]; real-valued
features have to be squeezed there first (MinMaxScaler). ebmlab.sklearn.GaussianBernoulliRBM
models them directly after StandardScaler. On three real-valued data sets that ship with
scikit-learn (digits, wine, breast cancer; stratified 75/25 split, random_state=0), the
same LogisticRegression is trained on

- ``StandardScaler -> GaussianBernoulliRBM`` features,
- ``MinMaxScaler -> BernoulliRBM`` features, ebmlab's drop-in and scikit-learn's own,
- the standardised features themselves, without an RBM (the baseline),

with 256 hidden units, batch 10 and 20 passes for both RBMs at their default learning rates
(0.01 Gaussian, 0.1 Bernoulli), for each RBM seed. Prints the test accuracies and writes
OUT/sklearn_gaussian_rbm.png (mean and spread over the seeds); ``--json`` also writes them.

    python examples/sklearn_gaussian_rbm.py --seeds 0 1 2 3 4 --out docs/figures   # ~3 min, 1 core
    python examples/sklearn_gaussian_rbm.py --tiny --out /tmp/x                     # a few seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM as SklearnRBM
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_limits

from ebmlab.sklearn import BernoulliRBM, GaussianBernoulliRBM
from ebmlab.viz._mpl import pyplot

DATASETS = {"digits": load_digits, "wine": load_wine, "breast cancer": load_breast_cancer}
FULL = {"n_components": 256, "n_iter": 20}
TINY = {"n_components": 16, "n_iter": 2}
PIPELINES = (
    "Gaussian RBM (ebmlab)",
    "Bernoulli RBM (ebmlab)",
    "Bernoulli RBM (scikit-learn)",
    "no RBM",
)


def split(load):
    X, y = load(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def pipeline(kind: str, seed: int, rbm_params: dict):
    """The three pipelines, sharing one LogisticRegression configuration."""
    logistic = LogisticRegression(max_iter=5000)
    if kind == "Gaussian RBM (ebmlab)":
        rbm = GaussianBernoulliRBM(**rbm_params, random_state=seed)
        return make_pipeline(StandardScaler(), rbm, logistic)
    if kind.startswith("Bernoulli RBM"):
        # clip=True keeps test features inside [0, 1], where a Bernoulli RBM's inputs belong.
        cls = BernoulliRBM if kind == "Bernoulli RBM (ebmlab)" else SklearnRBM
        return make_pipeline(
            MinMaxScaler(clip=True), cls(**rbm_params, random_state=seed), logistic
        )
    return make_pipeline(StandardScaler(), logistic)


def run(datasets, seeds, rbm_params) -> list[dict]:
    rows = []
    for name in datasets:
        X_train, X_test, y_train, y_test = split(DATASETS[name])
        for kind in PIPELINES:
            for seed in seeds if kind != "no RBM" else seeds[:1]:  # the baseline has no seed
                start = time.perf_counter()
                model = pipeline(kind, seed, rbm_params).fit(X_train, y_train)
                seconds = time.perf_counter() - start
                accuracy = float(model.score(X_test, y_test))
                rows.append({"dataset": name, "pipeline": kind, "seed": seed, "accuracy": accuracy})
                print(
                    f"{name:>13s}  {kind:28s}  seed {seed}: accuracy {accuracy:.4f}  ({seconds:.1f} s)"
                )
    return rows


def summary(rows, dataset, kind) -> tuple[float, float]:
    scores = [
        row["accuracy"] for row in rows if (row["dataset"], row["pipeline"]) == (dataset, kind)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def plot(rows, datasets, path: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    width, lowest = 0.2, 1.0
    for offset, kind in enumerate(PIPELINES):
        means, spreads = zip(*(summary(rows, name, kind) for name in datasets), strict=True)
        positions = np.arange(len(datasets)) + (offset - 1.5) * width
        axis.bar(positions, means, width, yerr=spreads, capsize=3, label=kind)
        lowest = min(lowest, *means)
    axis.set_xticks(np.arange(len(datasets)), list(datasets))
    # The differences sit near the top: show from a little below the lowest bar.
    axis.set_ylim(min(0.8, np.floor(lowest * 20) / 20 - 0.05), 1.0)
    axis.set_ylabel("test accuracy (logistic regression)")
    axis.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4, fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    parser.add_argument("--seed", type=int, default=0, help="the RBM seed (one run)")
    parser.add_argument("--seeds", type=int, nargs="+", help="several RBM seeds (overrides --seed)")
    parser.add_argument("--tiny", action="store_true", help="tiny settings (for the tests)")
    parser.add_argument("--json", type=Path, help="also write the accuracies here")
    args = parser.parse_args()
    # Small matrix products: one thread is fastest, and the same for torch and NumPy's BLAS.
    torch.set_num_threads(1)
    threadpool_limits(1)
    seeds = args.seeds or [args.seed]
    datasets = ["wine"] if args.tiny else list(DATASETS)
    rows = run(datasets, seeds, TINY if args.tiny else FULL)
    for name in datasets:
        cells = [f"{kind} {summary(rows, name, kind)[0]:.4f}" for kind in PIPELINES]
        print(f"{name:>13s} mean over seeds: " + ", ".join(cells))
    plot(rows, datasets, args.out / "sklearn_gaussian_rbm.png")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
