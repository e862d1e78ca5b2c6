"""Fit time of ebmlab.sklearn's RBMs against scikit-learn's BernoulliRBM on digits, in one run.

The workload of issue 25: scikit-learn's 1,797 digits (64 features, / 16 into [0, 1]),
``n_components=100, batch_size=10, n_iter=10`` (1,800 PCD-1 updates), learning rate 0.1.
The two libraries' fits alternate in one process, ``--repeats`` times each, after one
untimed warm-up fit apiece; the median is reported, in float64 (digits' dtype) and float32.
``GaussianBernoulliRBM`` on the standardised digits (learning rate 0.01, otherwise the same)
is timed alongside, with no peer. torch and NumPy's BLAS get the same thread count.

    python benchmarks/bench_sklearn_fit.py --repeats 5 --json runs/sklearn_fit.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import machine_summary
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM as SklearnRBM
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ebmlab.sklearn import BernoulliRBM, GaussianBernoulliRBM

PARAMS = {"n_components": 100, "batch_size": 10, "n_iter": 10, "random_state": 0}


def seconds(fit) -> float:
    start = time.perf_counter()
    fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    digits = load_digits().data
    rows = []
    for dtype in (np.float64, np.float32):
        X = (digits / 16).astype(dtype)
        fits = {
            "scikit-learn BernoulliRBM": lambda X=X: SklearnRBM(**PARAMS).fit(X),
            "ebmlab BernoulliRBM": lambda X=X: BernoulliRBM(**PARAMS).fit(X),
        }
        standardised = StandardScaler().fit_transform(digits).astype(dtype)
        fits["ebmlab GaussianBernoulliRBM"] = lambda X=standardised: GaussianBernoulliRBM(
            **PARAMS, learning_rate=0.01
        ).fit(X)
        times: dict[str, list[float]] = {name: [] for name in fits}
        for fit in fits.values():  # warm-up: first-call costs (allocator, kernels) excluded
            fit()
        for _ in range(args.repeats):  # alternate, so that load changes hit all alike
            for name, fit in fits.items():
                times[name].append(seconds(fit))
        reference = statistics.median(times["scikit-learn BernoulliRBM"])
        for name, values in times.items():
            median = statistics.median(values)
            rows.append(
                {
                    "estimator": name,
                    "dtype": np.dtype(dtype).name,
                    "median_seconds": median,
                    "seconds": values,
                    "speed_vs_scikit_learn": reference / median,
                }
            )
    print(machine_summary())
    print(f"threads {args.threads}; median of {args.repeats}")
    print(
        f"{'estimator':30s} {'dtype':8s} {'median s':>9s} {'min-max s':>13s} {'speed vs sklearn':>17s}"
    )
    for row in rows:
        low, high = min(row["seconds"]), max(row["seconds"])
        print(
            f"{row['estimator']:30s} {row['dtype']:8s} {row['median_seconds']:9.3f} "
            f"{low:6.3f}-{high:6.3f} {row['speed_vs_scikit_learn']:16.2f}x"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine_summary(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
