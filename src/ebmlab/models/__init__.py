"""Energy-based models. Every model follows ``p(x) = exp(-E(x)) / Z``."""

from ebmlab.models.dbn import DBN
from ebmlab.models.rbm import BernoulliRBM, sample_bernoulli

__all__ = ["DBN", "BernoulliRBM", "sample_bernoulli"]
