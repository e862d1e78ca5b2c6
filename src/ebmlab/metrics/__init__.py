"""Metrics: classification and calibration, OOD detection, FID/KID/IS, class coverage of
samples, MCMC diagnostics.

FID, KID and IS always take the feature network as an argument and record its
name, so numbers from different feature spaces are never compared by mistake.
"""

from ebmlab.metrics.classification import ECEResult, accuracy, expected_calibration_error, ood_auroc
from ebmlab.metrics.diversity import ClassCoverage, class_coverage
from ebmlab.metrics.feature_nets import FEATURE_NETS, feature_net_info, load_feature_net
from ebmlab.metrics.fid import (
    FIDResult,
    feature_statistics,
    fid,
    frechet_distance,
    statistics_from_features,
)
from ebmlab.metrics.inception_score import ISResult, inception_score
from ebmlab.metrics.kid import KIDResult, kid, mmd2_unbiased
from ebmlab.metrics.mcmc import ChainSummary, effective_sample_size, split_rhat, summarize_chains
from ebmlab.metrics.ood import OOD_SCORES, ood_scores

__all__ = [
    "FEATURE_NETS",
    "ChainSummary",
    "ClassCoverage",
    "ECEResult",
    "FIDResult",
    "ISResult",
    "KIDResult",
    "OOD_SCORES",
    "accuracy",
    "class_coverage",
    "effective_sample_size",
    "expected_calibration_error",
    "feature_net_info",
    "feature_statistics",
    "fid",
    "frechet_distance",
    "inception_score",
    "kid",
    "load_feature_net",
    "mmd2_unbiased",
    "ood_auroc",
    "ood_scores",
    "split_rhat",
    "statistics_from_features",
    "summarize_chains",
]
