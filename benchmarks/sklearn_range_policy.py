"""What ebmlab.sklearn's BernoulliRBM and DBNClassifier should do with data outside [0, 1] at fit.

The question (issue 25): when ``fit`` meets finite data outside [0, 1], should it train on
the values as given (with a warning, as scikit-learn trains without one) or clip them to
[0, 1] first? Both choices are run on scikit-learn's digits (75/25 split, ``random_state=0``)
with the same seeds, in pipelines that hand the estimator out-of-range data at fit:

- ``minmax, test +10%``: the issue's pipeline, ``MinMaxScaler -> RBM -> LogisticRegression``,
  scored on test images 10% brighter (fit sees [0, 1]; only transform sees more, so the
  fit choice cannot matter here: the row checks that);
- ``brightness x1.1``: images / 16, the training images augmented by a copy 10% brighter
  (fit sees [0, 1.1]);
- ``standard scaler``: ``StandardScaler`` in place of ``MinMaxScaler`` (about [-1, 40]);
- ``raw pixels``: no scaler at all (0-16).

``transform`` is not clipped (it is defined for any real input); "clip at fit" (what the
estimators do) clips at fit only, and "clip everywhere" clips at transform too, for comparison. scikit-learn's own RBM is the
reference. Prints a table of mean test accuracy (and its spread over seeds) and writes JSON.

    python benchmarks/sklearn_range_policy.py --seeds 0 1 2 3 4 --json runs/range_policy.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import BernoulliRBM as SklearnRBM
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_limits

import ebmlab.sklearn.dbn as dbn_module
from ebmlab.models import DBN
from ebmlab.sklearn import BernoulliRBM, DBNClassifier, OutOfRangeWarning
from ebmlab.sklearn.rbm import _AnyRealRBM


class TrainAsGivenRBM(BernoulliRBM):
    """The other choice: fit trains on ``X`` as given (scikit-learn's behaviour)."""

    _torch_model = _AnyRealRBM  # ebmlab's RBM checks its training data for [0, 1]

    def _check_range(self, X, method, *, warn=True):
        clipped = super()._check_range(X, method, warn=warn)
        return X if method == "fit" else clipped


class ClipEverywhereRBM(BernoulliRBM):
    """For comparison: every method, transform included, works on ``clip(X, 0, 1)``."""

    def _check_range(self, X, method, *, warn=True):
        return np.clip(super()._check_range(X, method, warn=warn), 0, 1)


class _AnyRealDBN(DBN):
    """A DBN whose bottom RBM takes any finite input (ebmlab's DBN checks for [0, 1])."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Same parameters, drawn above; only the range check of the visible layer goes.
        self.rbms[0].__class__ = _AnyRealRBM


class TrainAsGivenDBN(DBNClassifier):
    """The other choice for the DBN: pretraining and fine-tuning see ``X`` as given."""

    def _check_range(self, X, method, *, warn=True):
        clipped = super()._check_range(X, method, warn=warn)
        return X if method == "fit" else clipped

    def _network(self, data, layer_sizes, *, seeds):
        with mock.patch.object(dbn_module, "DBN", _AnyRealDBN):
            return super()._network(data, layer_sizes, seeds=seeds)


RBMS = {
    "scikit-learn": SklearnRBM,
    "ebmlab: clip at fit": BernoulliRBM,
    "ebmlab: train as given": TrainAsGivenRBM,
    "ebmlab: clip everywhere": ClipEverywhereRBM,
}
DBNS = {"ebmlab DBN: clip at fit": DBNClassifier, "ebmlab DBN: train as given": TrainAsGivenDBN}


def scenarios():
    """(name, X_train, y_train, X_test, y_test, scaler or None) on one digits split."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    bright = np.concatenate([X_train / 16, np.minimum(X_train / 16 * 1.1, 1.1)])
    yield "minmax, test +10%", X_train, y_train, X_test * 1.1, y_test, MinMaxScaler
    yield "brightness x1.1", bright, np.tile(y_train, 2), X_test / 16, y_test, None
    yield "standard scaler", X_train, y_train, X_test, y_test, StandardScaler
    yield "raw pixels", X_train, y_train, X_test, y_test, None


def accuracy(estimator, scaler, data) -> float:
    X_train, y_train, X_test, y_test = data
    steps = [("scale", scaler())] if scaler else []
    if not isinstance(estimator, DBNClassifier):
        steps += [("rbm", estimator)]
        estimator = LogisticRegression(max_iter=2000)
    model = Pipeline([*steps, ("classifier", estimator)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfRangeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's overflow in exp
            return float(model.fit(X_train, y_train).score(X_test, y_test))
    except (FloatingPointError, ValueError) as error:  # non-finite parameters
        print(f"    failed: {type(error).__name__}: {str(error)[:80]}")
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-dbn", action="store_true", help="skip the DBNClassifier rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    results = []
    for name, X_train, y_train, X_test, y_test, scaler in scenarios():
        data = (X_train, y_train, X_test, y_test)
        seen = scaler().fit_transform(X_train) if scaler else X_train
        print(f"{name}: fit sees [{seen.min():.3g}, {seen.max():.3g}]")
        choices = {**RBMS, **({} if args.no_dbn else DBNS)}
        for choice, cls in choices.items():
            if cls in DBNS.values():
                params = {"hidden_layer_sizes": (64,), "pretrain_epochs": 5, "batch_size": 32}
            else:
                params = {"n_components": 64, "n_iter": 5}
            scores = [accuracy(cls(**params, random_state=s), scaler, data) for s in args.seeds]
            row = {"scenario": name, "choice": choice, "seeds": args.seeds, "accuracy": scores}
            results.append(row)
            print(f"  {choice:28s} {np.mean(scores):.4f} +- {np.std(scores, ddof=1):.4f}  {scores}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
