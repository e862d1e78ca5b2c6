"""Energy-based models. Every model follows ``p(x) = exp(-E(x)) / Z``."""

from ebmlab.models.rbm import BernoulliRBM, sample_bernoulli

__all__ = ["BernoulliRBM", "sample_bernoulli"]
