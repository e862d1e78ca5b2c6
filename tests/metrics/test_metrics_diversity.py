"""Class coverage of samples: counts of argmax classes and exp(entropy) of their histogram."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmlab.metrics import class_coverage


def _one_hot(labels, n_classes=4, sharpness=5.0):
    logits = sharpness * torch.nn.functional.one_hot(torch.tensor(labels), n_classes).double()
    return torch.softmax(logits, dim=1)


def test_even_samples_cover_every_class_and_collapsed_ones_one():
    even = class_coverage(_one_hot([0, 1, 2, 3] * 25))
    assert (even.classes_assigned, even.n_classes, even.n_samples) == (4, 4, 100)
    assert even.effective_classes == pytest.approx(4.0)
    assert even.counts == (25, 25, 25, 25)
    collapsed = class_coverage(_one_hot([2] * 100))
    assert (collapsed.classes_assigned, collapsed.effective_classes) == (1, pytest.approx(1.0))
    assert collapsed.counts == (0, 0, 100, 0)


def test_effective_classes_is_the_exponential_of_the_histogram_entropy():
    labels = [0] * 70 + [1] * 20 + [3] * 10
    coverage = class_coverage(_one_hot(labels).numpy())
    shares = np.array([0.7, 0.2, 0.1])
    assert coverage.effective_classes == pytest.approx(math.exp(-(shares * np.log(shares)).sum()))
    assert coverage.classes_assigned == 3  # one stray class counts once, weighs little
    assert coverage.effective_classes < 3


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="probs"):
        class_coverage(torch.ones(3, 4))  # rows sum to 4: logits or scores, not probabilities
