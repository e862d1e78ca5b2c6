"""The default learning rate of ebmlab.sklearn.GaussianBernoulliRBM, chosen by measurement.

``StandardScaler -> GaussianBernoulliRBM -> LogisticRegression`` on three real-valued data
sets that ship with scikit-learn (digits, wine, breast cancer; stratified 75/25 split,
``random_state=0``), at the estimator's other defaults (256 hidden units, batch 10, 10
passes, PCD-1), for learning rates from 1e-4 to 1e-1 and several seeds. Prints the mean
test accuracy per data set and learning rate (NaN: the fit diverged) and writes JSON.

    python benchmarks/sklearn_gaussian_lr.py --seeds 0 1 2 --json runs/gaussian_lr.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ebmlab.sklearn import GaussianBernoulliRBM

DATASETS = {"digits": load_digits, "wine": load_wine, "breast cancer": load_breast_cancer}
LEARNING_RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def accuracy(load, learning_rate: float, seed: int, persistent: bool) -> float:
    X, y = load(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    rbm = GaussianBernoulliRBM(
        learning_rate=learning_rate, persistent=persistent, random_state=seed
    )
    model = make_pipeline(StandardScaler(), rbm, LogisticRegression(max_iter=5000))
    try:
        return float(model.fit(X_train, y_train).score(X_test, y_test))
    except FloatingPointError:  # NonFiniteError: the fit diverged
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cd", action="store_true", help="CD-1 instead of PCD-1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    rows = []
    print(f"{'learning rate':>13s} " + " ".join(f"{name:>14s}" for name in DATASETS))
    for learning_rate in LEARNING_RATES:
        means = []
        for name, load in DATASETS.items():
            scores = [accuracy(load, learning_rate, s, not args.cd) for s in args.seeds]
            rows.append({"dataset": name, "learning_rate": learning_rate, "accuracy": scores})
            means.append(np.mean(scores))
        print(f"{learning_rate:13g} " + " ".join(f"{m:14.4f}" for m in means))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"persistent": not args.cd, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
