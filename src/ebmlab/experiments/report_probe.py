r"""A linear probe for the report: how linearly a generative model's features separate classes.

An RBM, a DBN that was not fine-tuned or a DBM without its classifier has no
accuracy of its own. The usual measure of what its hidden units learnt is a
*linear probe*: freeze the model, map every image :math:`v` to deterministic
features :math:`\phi(v)`, fit multinomial logistic regression on the features of
the training split and score the test split. The features are the ones the
models already offer:

- RBM (Bernoulli or Gaussian visible units): the hidden means
  :math:`\phi(v) = p(h = 1 \mid v) = \sigma(c + W^\top \tilde v)`, with
  :math:`\tilde v = v` for binary units and :math:`v / \sigma_v` for Gaussian ones;
- DBN: the top layer of the mean-field up-pass,
  :math:`\mu_0 = v,\ \mu_l = \sigma(c_l + W_l^\top \mu_{l-1})`, :math:`\phi(v) = \mu_L`;
- DBM: the top layer :math:`\mu_L` of the mean-field fixed point
  (:meth:`~ebmlab.experiments.dbm.DBMRecipe.posterior`), the features the DBM's own
  softmax head would read.

Each feature is standardised with the training mean and standard deviation,
:math:`z_j = (\phi_j - m_j) / s_j`, and the probe is the softmax regression

.. math::
    p(y = k \mid z) = \frac{\exp(a_k^\top z + b_k)}{\sum_{k'} \exp(a_{k'}^\top z + b_{k'})},
    \qquad
    \min_{A, b}\ -\sum_i \log p(y_i \mid z_i) + \frac{1}{2C} \lVert A \rVert_F^2,

fitted by L-BFGS (scikit-learn's :class:`~sklearn.linear_model.LogisticRegression`,
:math:`C = 1`). The probe sees the same images and labels as the recipe's
evaluation (:class:`~ebmlab.experiments.rbm.PreparedData`: the training split
without its validation part, and the test split), at most :data:`MAX_TRAIN`
training images. A probe measures the representation, not a classifier the
model was trained to be, so the report marks its accuracy as a probe's.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ebmlab.experiments.report_costs import Work

MAX_TRAIN = 10_000  # training images of the probe: beyond this the accuracy hardly moves
MAX_ITER = 500  # L-BFGS iterations; standardised features converge well before this
FEATURE_BATCH = 1000  # images per feature pass (bounds the memory of a DBM's mean field)
# L-BFGS iterations the cost estimate charges: an RBM's 64 hidden means on digits took
# about 50, synthetic 500- and 2,000-feature sets 10 to 60; the fit stops at MAX_ITER anyway.
ESTIMATED_ITERATIONS = 100


@dataclass(frozen=True)
class ProbeResult:
    """A probe's test accuracy (None: no probe, and ``note`` says why) and what it measured."""

    accuracy: float | None
    note: str
    n_train: int = 0
    n_test: int = 0
    n_features: int = 0
    n_iterations: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class FeatureMap:
    """Deterministic features of a batch of model-space images, and what they are."""

    features: Callable[[torch.Tensor], torch.Tensor]
    description: str


def feature_map(recipe: Any) -> FeatureMap | None:
    """The frozen features of an RBM, DBN or DBM recipe; None for a model without hidden means."""
    if recipe.name == "rbm":
        return FeatureMap(recipe.model.mean_h, "hidden means p(h=1|v)")
    if recipe.name == "dbn":
        return FeatureMap(recipe.dbn.transform, "top-layer means of the DBN's up-pass")
    if recipe.name == "dbm":
        # The top layer, as the DBM's own head reads it (DBMClassifier at the fixed point).
        return FeatureMap(lambda v: recipe.posterior(v)[-1], "top-layer mean-field means")
    return None


def _labelled_splits(recipe: Any) -> tuple[torch.Tensor, ...] | str:
    """``(train, train labels, test, test labels)`` of the recipe's evaluation, or why not."""
    data = getattr(recipe, "data", None)
    parts = [getattr(data, key, None) for key in ("train", "train_labels", "test", "test_labels")]
    if any(not isinstance(part, torch.Tensor) for part in parts):
        return "the run's data carry no labelled train and test splits"
    if int(torch.unique(parts[1]).numel()) < 2:
        return "the run's training labels hold fewer than two classes"
    return tuple(parts)


def _fixed_binary(recipe: Any, train: torch.Tensor, seed: int) -> torch.Tensor:
    """Training images as binary vectors, as the model saw them (and as the test split is).

    Under dynamic binarisation ``data.train`` keeps grey levels (each epoch redraws
    them), while the test split is one fixed draw: features of grey levels would
    come from another input distribution than those the probe is scored on.
    """
    config = recipe.config
    if getattr(config, "visible", "bernoulli") != "bernoulli":
        return train  # standardised pixels of a Gaussian RBM
    if getattr(config, "binarization", None) != "dynamic":
        return train
    from ebmlab.data import binarize

    generator = torch.Generator(device=train.device).manual_seed(seed + 1)
    return binarize(train, "stochastic", generator=generator)


@torch.no_grad()
def _features(features: FeatureMap, images: torch.Tensor) -> np.ndarray:
    parts = [features.features(batch) for batch in images.split(FEATURE_BATCH)]
    return torch.cat(parts).detach().cpu().double().numpy()


def _subset(n: int, max_train: int, seed: int) -> torch.Tensor | None:
    """A seeded random subset of ``max_train`` rows (None: keep all): the split may be ordered."""
    if n <= max_train:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_train]


def fit_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    seed: int = 0,
    max_iter: int = MAX_ITER,
) -> tuple[float, int]:
    """Test accuracy of logistic regression on standardised features, and its L-BFGS iterations.

    Parameters
    ----------
    train_features, test_features : ndarray, shape (n, d)
        Features of the training and test images.
    train_labels, test_labels : ndarray of int, shape (n,)
        Their classes.
    seed : int
        ``random_state`` of the fit (L-BFGS is deterministic; kept for solvers that are not).
    max_iter : int
        Most L-BFGS iterations.

    Returns
    -------
    (float, int)
        Share of test images whose most probable class is their label, and the
        iterations the fit took (``max_iter``: it stopped before converging).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_features)  # constant features get scale 1
    probe = LogisticRegression(max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # The note reports an unconverged fit; a warning on stderr would only repeat it.
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(scaler.transform(train_features), train_labels)
    accuracy = probe.score(scaler.transform(test_features), test_labels)
    return float(accuracy), int(np.max(probe.n_iter_))


def linear_probe(
    recipe: Any, *, max_train: int = MAX_TRAIN, seed: int = 0, max_iter: int = MAX_ITER
) -> ProbeResult:
    """Fit and score a linear probe on an opened run's frozen features (see the module notes).

    Parameters
    ----------
    recipe : Recipe
        As returned by :func:`~ebmlab.experiments.registry.open_run`.
    max_train : int
        Most training images the probe is fitted on (a seeded random subset).
    seed : int
        Seeds the subset, the fixed binarisation of dynamically binarised data and the fit.
    max_iter : int
        Most L-BFGS iterations of the fit.

    Returns
    -------
    ProbeResult
        ``accuracy`` on the whole test split and a note saying what was fitted on
        what; ``accuracy=None`` and the reason in ``note`` for a run without
        labels or without deterministic features.
    """
    start = time.perf_counter()
    features = feature_map(recipe)
    if features is None:
        return ProbeResult(
            None, f"no linear probe: a {recipe.name} run has no hidden-unit features"
        )
    splits = _labelled_splits(recipe)
    if isinstance(splits, str):
        return ProbeResult(None, f"no linear probe: {splits}")
    train, train_labels, test, test_labels = splits
    rows = _subset(len(train), max_train, seed)
    if rows is not None:
        train, train_labels = train[rows.to(train.device)], train_labels[rows.to(train.device)]
    train = _fixed_binary(recipe, train, seed)
    x_train, x_test = _features(features, train), _features(features, test)
    accuracy, iterations = fit_probe(
        x_train,
        train_labels.cpu().numpy(),
        x_test,
        test_labels.cpu().numpy(),
        seed=seed,
        max_iter=max_iter,
    )
    d = x_train.shape[1]
    note = (
        f"linear probe: logistic regression on frozen {features.description} ({d} features) "
        f"fitted on {len(x_train)} train images, test split ({len(x_test)} images)"
    )
    if iterations >= max_iter:
        note += f"; L-BFGS stopped unconverged after {max_iter} iterations"
    seconds = time.perf_counter() - start
    return ProbeResult(accuracy, note, len(x_train), len(x_test), d, iterations, seconds)


def probe_work(recipe: Any, *, max_train: int = MAX_TRAIN, seed: int = 0) -> Work | None:
    """The probe's cost, measured: features of one batch, and one gradient of the fit.

    The features cost ``(n_train + n_test)`` times the seconds per image of one
    batch. An L-BFGS iteration of softmax regression costs about two products of
    the ``n x d`` feature matrix with a ``d x k`` matrix (scores, then gradient);
    they are timed on random numbers of that shape and charged
    :data:`ESTIMATED_ITERATIONS` times. None where :func:`linear_probe` fits nothing.
    """
    features = feature_map(recipe)
    splits = _labelled_splits(recipe) if features is not None else "no features"
    if isinstance(splits, str):
        return None
    train, train_labels, test, _ = splits
    n_train = min(len(train), max_train)
    batch = train[: min(FEATURE_BATCH, n_train)]
    _features(features, batch[:2])  # warm-up: first calls allocate
    seconds, start = 0.0, time.perf_counter()
    d = _features(features, batch).shape[1]
    per_image = (time.perf_counter() - start) / len(batch)
    seconds += per_image * (n_train + len(test))
    k = int(torch.unique(train_labels).numel())
    rng = np.random.default_rng(seed)
    x, a = rng.standard_normal((n_train, d)), rng.standard_normal((d, k))
    start = time.perf_counter()
    x.T @ (x @ a)
    seconds += ESTIMATED_ITERATIONS * (time.perf_counter() - start)
    label = f"linear probe on {n_train} train + {len(test)} test images ({d} features)"
    return Work(label, seconds)
