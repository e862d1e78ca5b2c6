"""Accuracy, ECE and OOD AUROC against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ebmlab.metrics.classification import (
    ECEResult,
    accuracy,
    expected_calibration_error,
    ood_auroc,
)


def test_accuracy_is_the_same_for_logits_and_probabilities():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0], [1.0, 0.0, 4.0], [5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 1])
    assert accuracy(logits, labels) == 0.5
    assert accuracy(torch.softmax(logits, dim=1).numpy(), labels.numpy()) == 0.5


def test_accuracy_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        accuracy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="labels must be 2 integer class indices"):
        accuracy(np.zeros((2, 3)), np.array([0.0, 1.0]))


def _two_class_rows(
    confidence: float, n_rows: int, n_correct: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n_rows`` rows predicting class 0 with ``confidence``; ``n_correct`` labelled 0."""
    probs = np.tile([confidence, 1.0 - confidence], (n_rows, 1))
    labels = np.array([0] * n_correct + [1] * (n_rows - n_correct))
    return probs, labels


def test_ece_is_zero_when_every_bin_is_calibrated():
    # In each bin the accuracy equals the confidence exactly: 10 rows at c, 10 c correct.
    parts = [_two_class_rows(c, 10, round(10 * c)) for c in (0.6, 0.7, 0.8, 0.9, 1.0)]
    probs, labels = np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts])
    result = expected_calibration_error(probs, labels, n_bins=10)
    assert isinstance(result, ECEResult)
    assert result.ece == pytest.approx(0.0, abs=1e-12)
    assert result.bin_count.sum() == 50


def test_ece_of_a_constructed_miscalibrated_case():
    # 30 rows at confidence 0.95 with 18 correct (gap 0.35) and 10 rows at 0.55
    # with 8 correct (gap 0.25): ECE = 30/40 * 0.35 + 10/40 * 0.25 = 0.325.
    over, over_labels = _two_class_rows(0.95, 30, 18)
    under, under_labels = _two_class_rows(0.55, 10, 8)
    probs = np.concatenate([over, under])
    labels = np.concatenate([over_labels, under_labels])
    result = expected_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(labels), n_bins=10
    )
    assert result.ece == pytest.approx(0.325, rel=1e-12)
    np.testing.assert_allclose(result.bin_edges, np.linspace(0, 1, 11))
    assert result.bin_count.tolist() == [0] * 5 + [10, 0, 0, 0, 30]
    assert result.bin_accuracy[5] == pytest.approx(0.8) and result.bin_accuracy[9] == pytest.approx(
        0.6
    )
    assert result.bin_confidence[5] == pytest.approx(0.55)
    assert result.bin_confidence[9] == pytest.approx(0.95)
    assert np.isnan(result.bin_accuracy[0]) and np.isnan(result.bin_confidence[6])


def test_bins_are_closed_on_the_right():
    # With 4 bins, confidence 0.5 lies in (0.25, 0.5] and 0.75 in (0.5, 0.75]; 1.0 in the last.
    probs = np.array([[0.5, 0.5], [0.75, 0.25], [1.0, 0.0]])
    result = expected_calibration_error(probs, np.array([0, 0, 0]), n_bins=4)
    assert result.bin_count.tolist() == [0, 1, 1, 1]


def test_ece_of_labels_drawn_from_the_predictions_is_within_sampling_error():
    # If y ~ Categorical(p), correctness in a bin is a sum of independent
    # Bernoulli(c_i), so E|acc_b - conf_b| <= sqrt(sum_i c_i (1 - c_i)) / n_b and
    # E[ECE] <= bound = sum_b sqrt(sum_{i in b} c_i (1 - c_i)) / N. Sharpening the
    # same predictions (temperature 1/3) makes them overconfident, far beyond it.
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(4000, 5))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in probs])
    calibrated = expected_calibration_error(probs, labels)
    confidence = probs.max(axis=1)
    index = np.clip(np.searchsorted(calibrated.bin_edges, confidence) - 1, 0, 14)
    variance = np.bincount(index, weights=confidence * (1 - confidence), minlength=15)
    bound = np.sqrt(variance).sum() / len(labels)
    assert calibrated.ece < 3 * bound
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    assert expected_calibration_error(sharp, labels).ece > 3 * bound


def test_ece_rejects_logits():
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        expected_calibration_error(np.array([[2.0, 1.0]]), np.array([0]))


def test_auroc_matches_sklearn_for_continuous_scores():
    rng = np.random.default_rng(1)
    scores_in, scores_out = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.5, 200)
    truth = np.r_[np.ones(300), np.zeros(200)]
    expected = roc_auc_score(truth, np.r_[scores_in, scores_out])
    assert ood_auroc(scores_in, scores_out) == pytest.approx(expected, rel=1e-12)


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(2)
    scores_in = rng.integers(0, 5, 157).astype(float)
    scores_out = rng.integers(-1, 3, 93).astype(float)
    truth = np.r_[np.ones(157), np.zeros(93)]
    expected = roc_auc_score(truth, np.r_[scores_in, scores_out])
    assert ood_auroc(torch.from_numpy(scores_in), scores_out) == pytest.approx(expected, rel=1e-12)


def test_auroc_extremes():
    assert ood_auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert ood_auroc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert ood_auroc([1.0, 1.0], [1.0, 1.0, 1.0]) == 0.5


def test_auroc_rejects_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="scores_out must be a non-empty 1-D array"):
        ood_auroc([1.0], [])
    with pytest.raises(ValueError, match="scores_in contains NaN"):
        ood_auroc([np.nan], [1.0])


def test_reliability_diagram_draws_and_saves(tmp_path):
    from ebmlab.viz.reliability import plot_reliability_diagram, save_reliability_diagram

    probs, labels = _two_class_rows(0.95, 30, 18)
    result = expected_calibration_error(probs, labels)
    figure = plot_reliability_diagram(result, title="test")
    assert "ECE = 35.00%" in figure.axes[0].get_title()
    path = save_reliability_diagram(result, tmp_path / "figs" / "reliability.png")
    assert path.stat().st_size > 1000
