"""Energy-based models. Every model follows ``p(x) = exp(-E(x)) / Z``."""

from ebmlab.models.bm import BoltzmannMachine
from ebmlab.models.dbm import DBM, DBMClassifier, MeanFieldResult
from ebmlab.models.dbn import DBN
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.models.jem import JEM, build_classifier
from ebmlab.models.rbm import BernoulliRBM, sample_bernoulli

__all__ = [
    "DBM",
    "DBN",
    "BernoulliRBM",
    "BoltzmannMachine",
    "DBMClassifier",
    "JEM",
    "GaussianBernoulliRBM",
    "MeanFieldResult",
    "build_classifier",
    "sample_bernoulli",
]
