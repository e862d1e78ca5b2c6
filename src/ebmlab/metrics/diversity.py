r"""How many classes a set of samples covers, by a classifier's verdicts.

A model whose samples collapse onto a few modes can still score a middling FID; the
classes a trained classifier assigns to its samples say it plainly. With
:math:`\hat y_n = \arg\max_k p(k \mid x_n)` and :math:`q_k` the share of samples
assigned class :math:`k`,

.. math:: \text{classes assigned} = |\{k : q_k > 0\}|, \qquad
          \text{effective classes} = \exp\Big(-\sum_k q_k \log q_k\Big),

the second being the exponential of the entropy of the assignment histogram: :math:`K`
when every class gets the same share, 1 when every sample is one class, and not fooled
by a class that one stray sample reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ebmlab.metrics.inception_score import check_probabilities


@dataclass(frozen=True)
class ClassCoverage:
    """The classes a classifier assigns to samples: how many, how evenly, how often each."""

    classes_assigned: int
    effective_classes: float
    counts: tuple[int, ...]
    n_samples: int

    @property
    def n_classes(self) -> int:
        return len(self.counts)


def class_coverage(probs: object) -> ClassCoverage:
    """Coverage of the classifier's argmax classes over samples.

    Parameters
    ----------
    probs : Tensor or ndarray, shape (n_samples, n_classes)
        Class probabilities :math:`p(y \\mid x)` of each sample (rows sum to 1).

    Returns
    -------
    ClassCoverage
        ``classes_assigned`` (classes that are some sample's argmax), ``effective_classes``
        (exp of the entropy of the argmax histogram), the per-class ``counts``.
    """
    probs = check_probabilities("probs", probs)
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    shares = counts[counts > 0] / probs.shape[0]
    effective = float(np.exp(-(shares * np.log(shares)).sum()))
    return ClassCoverage(
        classes_assigned=int((counts > 0).sum()),
        effective_classes=effective,
        counts=tuple(int(c) for c in counts),
        n_samples=int(probs.shape[0]),
    )
