"""Likelihood estimators: exact enumeration, AIS, reverse AIS (RAISE), pseudo-likelihood.

See docs/estimators.md for the maths and the JSON keys of :func:`evaluate_log_likelihood`.
"""

from ebmlab.estimators.ais import LogZEstimate, ais_log_partition
from ebmlab.estimators.annealing import AnnealingPath, annealing_path, check_betas, default_betas
from ebmlab.estimators.dbm import DBMAnnealingPath, dbm_elbo, variational_bound  # registers the DBM
from ebmlab.estimators.dbn_bound import DBNBound, dbn_exact_log_likelihood, dbn_log_likelihood_bound
from ebmlab.estimators.evaluate import evaluate_log_likelihood, quick_log_likelihood
from ebmlab.estimators.exact import enumerate_binary, exact_log_likelihood, exact_log_partition
from ebmlab.estimators.exact_bm import (  # registers the Boltzmann machine and Gaussian RBM
    bm_log_likelihood,
    bm_log_marginals,
    bm_log_partition,
    gaussian_rbm_log_partition,
)
from ebmlab.estimators.likelihood import LogLikelihoodEstimate, log_likelihood
from ebmlab.estimators.pseudo_likelihood import pseudo_log_likelihood
from ebmlab.estimators.rbm_path import RBMAnnealingPath, base_visible_bias
from ebmlab.estimators.reverse_ais import raise_log_likelihood

__all__ = [
    "AnnealingPath",
    "DBMAnnealingPath",
    "DBNBound",
    "LogLikelihoodEstimate",
    "LogZEstimate",
    "RBMAnnealingPath",
    "ais_log_partition",
    "annealing_path",
    "base_visible_bias",
    "bm_log_likelihood",
    "bm_log_marginals",
    "bm_log_partition",
    "check_betas",
    "dbm_elbo",
    "dbn_exact_log_likelihood",
    "dbn_log_likelihood_bound",
    "default_betas",
    "enumerate_binary",
    "evaluate_log_likelihood",
    "exact_log_likelihood",
    "exact_log_partition",
    "gaussian_rbm_log_partition",
    "log_likelihood",
    "pseudo_log_likelihood",
    "quick_log_likelihood",
    "raise_log_likelihood",
    "variational_bound",
]
