"""Classifier metrics: accuracy, expected calibration error, OOD AUROC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from ebmlab._validation import check_positive_int
from ebmlab.metrics.inception_score import check_probabilities


@dataclass(frozen=True)
class ECEResult:
    """Expected calibration error and the per-bin data of a reliability diagram.

    ``bin_confidence`` and ``bin_accuracy`` are NaN for empty bins.
    """

    ece: float
    bin_edges: np.ndarray
    bin_confidence: np.ndarray
    bin_accuracy: np.ndarray
    bin_count: np.ndarray


def _to_numpy(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_labels(labels: object, n_rows: int, n_classes: int) -> np.ndarray:
    labels = _to_numpy(labels)
    if labels.shape != (n_rows,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {n_rows} integer class indices (one per row); "
            f"got shape {labels.shape}, dtype {labels.dtype}"
        )
    if n_rows and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes - 1}]; got min={labels.min()}, max={labels.max()}"
        )
    return labels


def accuracy(logits_or_probs: object, labels: object) -> float:
    """Fraction of rows whose arg-max class equals the label.

    ``logits_or_probs`` is ``(N, n_classes)``; the arg-max is the same for
    logits and their softmax, so either may be passed.
    """
    scores = _to_numpy(logits_or_probs)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"logits_or_probs must be (N >= 1, n_classes); got shape {scores.shape}")
    labels = _check_labels(labels, scores.shape[0], scores.shape[1])
    return float(np.mean(scores.argmax(axis=1) == labels))


def expected_calibration_error(probs: object, labels: object, *, n_bins: int = 15) -> ECEResult:
    r"""Top-label expected calibration error with equal-width confidence bins.

    Parameters
    ----------
    probs : Tensor or ndarray, shape (N, n_classes)
        Predicted class probabilities (rows sum to 1).
    labels : Tensor or ndarray of int, shape (N,)
        True classes.
    n_bins : int
        Number of equal-width bins on [0, 1].

    Returns
    -------
    ECEResult

    Notes
    -----
    With confidence :math:`c_i = \max_k p_{ik}`, prediction
    :math:`\hat y_i = \arg\max_k p_{ik}` and bins
    :math:`B_1 = [0, 1/M], B_m = ((m-1)/M, m/M]`,

    .. math:: \mathrm{ECE} = \sum_{m=1}^{M} \frac{|B_m|}{N}
              \Big| \frac{1}{|B_m|}\sum_{i \in B_m} 1[\hat y_i = y_i]
              - \frac{1}{|B_m|}\sum_{i \in B_m} c_i \Big|.

    References
    ----------
    Guo, C. et al. (2017). On calibration of modern neural networks. ICML (eq. 3).
    Naeini, M. P. et al. (2015). Obtaining well calibrated probabilities using
    Bayesian binning. AAAI.
    """
    check_positive_int("n_bins", n_bins)
    probs = check_probabilities("probs", probs)
    labels = _check_labels(labels, probs.shape[0], probs.shape[1])
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Right-closed bins, (lo, hi]: confidence exactly 1 falls in the last bin; the
    # clip puts confidence 0 (impossible for a top label, but harmless) in the first.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
        bin_accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    gaps = np.where(count > 0, np.abs(bin_accuracy - bin_confidence), 0.0)
    ece = float(np.sum(count / probs.shape[0] * gaps))
    return ECEResult(ece, edges, bin_confidence, bin_accuracy, count)


def _check_scores(name: str, scores: object) -> np.ndarray:
    scores = _to_numpy(scores).astype(np.float64)
    if scores.ndim != 1 or scores.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D array of scores; got shape {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} contains NaN or inf values")
    return scores


def ood_auroc(scores_in: object, scores_out: object) -> float:
    r"""Area under the ROC curve for telling in-distribution from OOD inputs.

    Parameters
    ----------
    scores_in, scores_out : array_like, 1-D
        Scores of in-distribution and out-of-distribution inputs; higher
        should mean "more in-distribution" (e.g. log p(x) = LSE of logits, or
        max p(y|x)). Negate a score for which lower means in-distribution.

    Returns
    -------
    float
        In [0, 1]; 0.5 is chance, 1 perfect separation.

    Notes
    -----
    AUROC is the Mann-Whitney U statistic normalised by the number of pairs:

    .. math:: \mathrm{AUROC} = P(s_{in} > s_{out}) + \tfrac12 P(s_{in} = s_{out})
              = \frac{R_{in} - n_{in}(n_{in}+1)/2}{n_{in}\, n_{out}},

    where :math:`R_{in}` is the sum of the in-distribution scores' ranks in
    the pooled sample, tied scores sharing their average rank (which counts
    each tied pair as one half). O(N log N), exact, no thresholds.

    References
    ----------
    Hanley, J. A. & McNeil, B. J. (1982). The meaning and use of the area under
    a receiver operating characteristic (ROC) curve. Radiology 143(1).
    """
    scores_in = _check_scores("scores_in", scores_in)
    scores_out = _check_scores("scores_out", scores_out)
    n_in, n_out = scores_in.shape[0], scores_out.shape[0]
    ranks = rankdata(np.concatenate([scores_in, scores_out]), method="average")
    u_statistic = ranks[:n_in].sum() - n_in * (n_in + 1) / 2.0
    return float(u_statistic / (n_in * n_out))
