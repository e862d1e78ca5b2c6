"""scikit-learn estimators backed by ebmlab models and training loops.

``ebmlab.sklearn.BernoulliRBM`` is a drop-in replacement for
``sklearn.neural_network.BernoulliRBM``; ``ebmlab.sklearn.DBNClassifier`` is DBN
pretraining plus discriminative fine-tuning as a classifier. Importing this
subpackage imports scikit-learn; ``import ebmlab`` alone does not.
"""

from ebmlab.sklearn.dbn import DBNClassifier
from ebmlab.sklearn.rbm import BernoulliRBM

__all__ = ["BernoulliRBM", "DBNClassifier"]
