"""scikit-learn estimators backed by ebmlab models and training loops.

``ebmlab.sklearn.BernoulliRBM`` is a drop-in replacement for
``sklearn.neural_network.BernoulliRBM``; ``ebmlab.sklearn.GaussianBernoulliRBM`` is the
same transformer for real-valued (standardised) features; ``ebmlab.sklearn.DBNClassifier``
is DBN pretraining plus discriminative fine-tuning as a classifier.
``expected_failed_checks(estimator)`` lists the scikit-learn estimator checks each is
expected to fail (only the two scikit-learn lists for its own ``BernoulliRBM``). Importing this
subpackage imports scikit-learn; ``import ebmlab`` alone does not.
"""

from ebmlab.sklearn._checks import expected_failed_checks
from ebmlab.sklearn._common import OutOfRangeWarning
from ebmlab.sklearn.dbn import DBNClassifier
from ebmlab.sklearn.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.sklearn.rbm import BernoulliRBM

__all__ = [
    "BernoulliRBM",
    "DBNClassifier",
    "GaussianBernoulliRBM",
    "OutOfRangeWarning",
    "expected_failed_checks",
]
