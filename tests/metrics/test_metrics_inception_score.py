"""Inception score against its closed-form values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ebmlab.metrics.inception_score import ISResult, inception_score


def test_constant_predictions_score_one():
    probs = np.tile([0.1, 0.6, 0.3], (100, 1))
    result = inception_score(probs, splits=5)
    assert isinstance(result, ISResult)
    assert result.mean == pytest.approx(1.0, abs=1e-12)
    assert result.std == pytest.approx(0.0, abs=1e-12)
    assert (result.n_samples, result.splits, result.classifier_name) == (100, 5, "unspecified")


@pytest.mark.parametrize("n_classes", [2, 7, 10])
def test_confident_balanced_predictions_score_n_classes(n_classes):
    # Labels cycle through the classes, so every contiguous split is balanced.
    splits, per_split = 4, 3 * n_classes
    labels = np.tile(np.arange(n_classes), splits * per_split // n_classes)
    probs = np.eye(n_classes)[labels]
    result = inception_score(torch.from_numpy(probs), splits=splits)
    assert result.mean == pytest.approx(n_classes, rel=1e-12)
    assert result.std == pytest.approx(0.0, abs=1e-9)


def test_symmetric_two_class_case_matches_closed_form():
    # Rows (p, 1-p) and (1-p, p) in equal numbers: p(y) = (1/2, 1/2), so
    # KL = log 2 - H(p) for every row and IS = 2 exp(-H(p)).
    p = 0.8
    probs = np.array([[p, 1 - p], [1 - p, p]] * 50)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert inception_score(probs, splits=1).mean == pytest.approx(2 * np.exp(-entropy), rel=1e-12)


def test_split_scores_are_averaged():
    # Split 1 is confident and balanced (IS 2); split 2 is constant (IS 1).
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    result = inception_score(probs, splits=2)
    assert result.mean == pytest.approx(1.5, rel=1e-12)
    assert result.std == pytest.approx(0.5, rel=1e-12)


class _LinearClassifier(nn.Module):
    feature_name = "linear-test"

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def test_classifier_path_equals_softmax_of_logits():
    torch.manual_seed(0)
    net = _LinearClassifier()
    images = torch.randn(120, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        probs = torch.softmax(net.logits(images).double(), dim=1)
    via_net = inception_score(images, net, splits=3, batch_size=50, progress=False)
    direct = inception_score(probs, splits=3)
    assert via_net.mean == pytest.approx(direct.mean, rel=1e-6)  # float32 logits
    assert via_net.classifier_name == "linear-test"
    assert 1.0 <= via_net.mean <= 3.0


@pytest.mark.parametrize(
    ("probs", "splits", "match"),
    [
        (np.array([[0.5, 0.6]]), 1, "rows must sum to 1"),
        (np.array([[1.5, -0.5]]), 1, "non-negative"),
        (np.array([0.5, 0.5]), 1, r"\(N >= 1, n_classes\)"),
        (np.array([[0.5, 0.5]] * 3), 4, "splits must be <= the number of samples"),
        (np.array([[0.5, 0.5]] * 3), 0, "splits must be a positive integer"),
    ],
)
def test_bad_input_raises(probs, splits, match):
    with pytest.raises(ValueError, match=match):
        inception_score(probs, splits=splits)
