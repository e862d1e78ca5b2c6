"""Energy-based models. Every model follows ``p(x) = exp(-E(x)) / Z``."""

from ebmlab.models.dbm import DBM, DBMClassifier, MeanFieldResult
from ebmlab.models.dbn import DBN
from ebmlab.models.rbm import BernoulliRBM, sample_bernoulli

__all__ = ["DBM", "DBN", "BernoulliRBM", "DBMClassifier", "MeanFieldResult", "sample_bernoulli"]
