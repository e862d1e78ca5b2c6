"""scikit-learn estimators backed by ebmlab models and training loops.

``ebmlab.sklearn.BernoulliRBM`` is a drop-in replacement for
``sklearn.neural_network.BernoulliRBM``. Importing this subpackage imports
scikit-learn; ``import ebmlab`` alone does not.
"""

from ebmlab.sklearn.rbm import BernoulliRBM

__all__ = ["BernoulliRBM"]
