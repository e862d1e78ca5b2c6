"""The inception score (IS) of a set of samples under a classifier."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import xlogy

from ebmlab._validation import check_positive_int
from ebmlab.metrics.feature_nets import apply_in_batches, resolve_method, resolve_name

# float32 softmax outputs sum to 1 within a few ulps per class; this allows for
# that while still catching logits or unnormalised scores passed by mistake.
_ROW_SUM_ATOL = 1e-4


@dataclass(frozen=True)
class ISResult:
    """Inception score: mean and standard deviation over splits."""

    mean: float
    std: float
    n_samples: int
    splits: int
    classifier_name: str


def check_probabilities(name: str, probs: object) -> np.ndarray:
    """Return ``probs`` as float64 rows ``(N, K)`` that are non-negative and sum to 1."""
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().double().numpy()
    if not isinstance(probs, np.ndarray):
        raise TypeError(
            f"{name} must be a Tensor or ndarray of probabilities; got {type(probs).__name__}"
        )
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(
            f"{name} must be (N >= 1, n_classes) probabilities; got shape {probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0:
        raise ValueError(f"{name} must be finite and non-negative; got min={np.nanmin(probs):.4g}")
    worst = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if worst > _ROW_SUM_ATOL:
        raise ValueError(
            f"{name} rows must sum to 1 (pass logits through softmax); "
            f"got a row sum off by {worst:.4g}"
        )
    return probs


def _score(probs: np.ndarray) -> float:
    marginal = probs.mean(axis=0, keepdims=True)
    # xlogy gives 0 log 0 = 0: confident predictions have exact zeros.
    kl = (xlogy(probs, probs) - xlogy(probs, marginal)).sum(axis=1)
    return float(np.exp(kl.mean()))


def inception_score(
    probs_or_images: object,
    classifier_fn: object | None = None,
    *,
    splits: int = 10,
    batch_size: int = 256,
    progress: bool = True,
    classifier_name: str | None = None,
) -> ISResult:
    r"""Inception score of samples, from class probabilities or via a classifier.

    Parameters
    ----------
    probs_or_images : Tensor, ndarray or iterable of batches
        Class probabilities ``(N, n_classes)`` when ``classifier_fn`` is None;
        otherwise images in the format ``classifier_fn`` expects.
    classifier_fn : classifier or callable, optional
        Its ``logits`` method is used when it has one; otherwise it is called
        and must return logits. Probabilities are the softmax of the logits.
    splits : int
        Number of equal parts the samples are split into (as in the original
        protocol, 10); the score is computed per part.
    batch_size, progress
        Passed to the batched forward pass.
    classifier_name : str, optional
        Name recorded in the result; defaults to ``classifier_fn.feature_name``
        (``"unspecified"`` for probabilities passed in directly).

    Returns
    -------
    ISResult
        Mean and (population) standard deviation of the per-split scores.

    Notes
    -----
    .. math:: \mathrm{IS} = \exp\big(\mathbb{E}_x\, \mathrm{KL}(p(y \mid x) \,\Vert\, p(y))\big),
              \qquad p(y) = \mathbb{E}_x\, p(y \mid x),

    with both expectations over the samples of one split. It lies in
    ``[1, n_classes]``: 1 when every sample gets the same prediction, and
    ``n_classes`` when predictions are confident and the classes balanced.

    References
    ----------
    Salimans, T. et al. (2016). Improved techniques for training GANs. NeurIPS.
    Barratt, S. & Sharma, R. (2018). A note on the inception score. arXiv:1801.01973.
    """
    check_positive_int("splits", splits)
    if classifier_fn is None:
        probs = check_probabilities("probs_or_images", probs_or_images)
        name = "unspecified" if classifier_name is None else str(classifier_name)
    else:
        logits_fn = resolve_method(classifier_fn, "logits")
        logits = apply_in_batches(
            logits_fn, probs_or_images, batch_size=batch_size, progress=progress
        )
        probs = torch.softmax(logits, dim=1).numpy()
        name = resolve_name(classifier_fn, classifier_name)
    n_samples = probs.shape[0]
    if splits > n_samples:
        raise ValueError(f"splits must be <= the number of samples ({n_samples}); got {splits}")
    scores = np.array([_score(part) for part in np.array_split(probs, splits)])
    return ISResult(
        mean=float(scores.mean()),
        std=float(scores.std()),
        n_samples=n_samples,
        splits=splits,
        classifier_name=name,
    )
