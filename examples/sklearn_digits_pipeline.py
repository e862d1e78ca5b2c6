"""scikit-learn's "RBM features for digit classification" with ebmlab's drop-in BernoulliRBM.

The pipeline is scikit-learn's example unchanged (digits nudged by one pixel in four
directions, scaled to [0, 1], RBM features + logistic regression, its hyperparameters),
run once with ``sklearn.neural_network.BernoulliRBM`` and once with
``ebmlab.sklearn.BernoulliRBM``, with the same seeds. Prints test accuracies and
fit times; ``--json`` also writes them to a file. About 10 s per seed on one idle CPU core.

One change from scikit-learn's example: its ``LogisticRegression(solver="newton-cg", tol=1)``
stops before its first iteration with scikit-learn 1.9 (the loss is now scaled by 1/n, so
the gradient starts below tol=1: chance accuracy, 0.097, with either RBM), so the
default ``tol=1e-4`` is used.

    python examples/sklearn_digits_pipeline.py
    python examples/sklearn_digits_pipeline.py --seeds 0 1 2 --grid-search
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import BernoulliRBM as SklearnRBM
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import minmax_scale
from threadpoolctl import threadpool_limits

from ebmlab.sklearn import BernoulliRBM as EbmlabRBM

# The example's hyperparameters (found by grid search in scikit-learn's documentation).
RBM_PARAMS = {"learning_rate": 0.06, "n_iter": 10, "n_components": 100}
LOGISTIC_C = 6000


def nudge_dataset(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Five times the data: each 8x8 image as is and moved one pixel up, left, right, down."""
    kernels = [np.zeros((3, 3)) for _ in range(4)]
    for kernel, (row, column) in zip(kernels, [(0, 1), (1, 0), (1, 2), (2, 1)], strict=True):
        kernel[row, column] = 1

    def shifted(kernel: np.ndarray) -> np.ndarray:
        images = X.reshape(-1, 8, 8)
        moved = [convolve(image, kernel, mode="constant") for image in images]
        return np.stack(moved).reshape(len(X), 64)

    return np.concatenate([X] + [shifted(k) for k in kernels]), np.tile(y, 5)


def load_data(seed: int = 0):
    X, y = datasets.load_digits(return_X_y=True)
    X, y = nudge_dataset(np.asarray(X, "float32"), y)
    X = minmax_scale(X, feature_range=(0, 1))
    return train_test_split(X, y, test_size=0.2, random_state=seed)


def pipeline(rbm) -> Pipeline:
    logistic = LogisticRegression(solver="newton-cg", C=LOGISTIC_C)
    return Pipeline(steps=[("rbm", rbm.set_params(**RBM_PARAMS)), ("logistic", logistic)])


def evaluate(rbm, data, *, grid_search: bool = False) -> dict[str, float]:
    """Fit the pipeline (or a small grid search over it); test accuracy and seconds."""
    X_train, X_test, y_train, y_test = data
    model = pipeline(rbm)
    if grid_search:
        grid = {"rbm__learning_rate": [0.03, 0.06], "rbm__n_components": [50, 100]}
        model = GridSearchCV(model, grid, cv=3)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    result = {"accuracy": float(model.score(X_test, y_test)), "fit_seconds": seconds}
    if grid_search:
        result["best_params"] = model.best_params_
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="RBM random_state values")
    parser.add_argument("--grid-search", action="store_true", help="also run a 2x2 GridSearchCV")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch and BLAS threads (tiny GEMMs: 1 is fastest)"
    )
    args = parser.parse_args()
    # Same thread budget for both RBMs: torch's intra-op pool and NumPy's BLAS.
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)

    data = load_data()
    raw = LogisticRegression(solver="newton-cg", C=100.0).fit(data[0], data[2])
    results = {"raw_pixels_accuracy": float(raw.score(data[1], data[3])), "runs": []}
    print(f"logistic regression on raw pixels: accuracy {results['raw_pixels_accuracy']:.4f}")
    for seed in args.seeds:
        for name, rbm in [("scikit-learn", SklearnRBM), ("ebmlab", EbmlabRBM)]:
            run = {"rbm": name, "seed": seed, **evaluate(rbm(random_state=seed), data)}
            results["runs"].append(run)
            print(
                f"{name:>12} seed {seed}: accuracy {run['accuracy']:.4f}, fit {run['fit_seconds']:.1f} s"
            )
    if args.grid_search:
        for name, rbm in [("scikit-learn", SklearnRBM), ("ebmlab", EbmlabRBM)]:
            run = {"rbm": name, "grid_search": True}
            run.update(evaluate(rbm(random_state=0), data, grid_search=True))
            results["runs"].append(run)
            print(f"{name:>12} grid search: accuracy {run['accuracy']:.4f}, {run['best_params']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
