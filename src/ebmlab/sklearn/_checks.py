"""The scikit-learn estimator checks each estimator is expected to fail, and why.

Declared as scikit-learn declares its own (``PER_ESTIMATOR_XFAIL_CHECKS`` in
``sklearn.utils._test_common.instance_generator``): a mapping from estimator class to
``{check name: reason}``, read through a function suitable as the
``expected_failed_checks`` argument of ``check_estimator`` and
``parametrize_with_checks``.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator

from ebmlab.sklearn.dbn import DBNClassifier
from ebmlab.sklearn.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.sklearn.rbm import BernoulliRBM

# score_samples flips one random unit per row, chosen by the row's position and the draws
# before it, so a row's score depends on where it sits in X. The same two checks that
# scikit-learn lists for its own BernoulliRBM, for the same reason.
_RANDOM_BIT_FLIP = (
    "score_samples flips a random unit per row position (stochastic pseudo-likelihood)"
)

PER_ESTIMATOR_XFAIL_CHECKS: dict[type[BaseEstimator], dict[str, str]] = {
    BernoulliRBM: {
        "check_methods_subset_invariance": _RANDOM_BIT_FLIP,
        "check_methods_sample_order_invariance": _RANDOM_BIT_FLIP,
    },
    GaussianBernoulliRBM: {},  # score_samples is the deterministic -F(v): nothing to excuse
    DBNClassifier: {},
}


def expected_failed_checks(estimator: BaseEstimator) -> dict[str, str]:
    """The checks ``estimator`` is expected to fail, as ``{check name: reason}``.

    Parameters
    ----------
    estimator : BaseEstimator
        An instance of one of ``ebmlab.sklearn``'s estimators (others get ``{}``).

    Returns
    -------
    dict of str to str

    Examples
    --------
    >>> from sklearn.utils.estimator_checks import check_estimator
    >>> from ebmlab.sklearn import BernoulliRBM, expected_failed_checks
    >>> rbm = BernoulliRBM(n_components=8, n_iter=5)
    >>> check_estimator(rbm, expected_failed_checks=expected_failed_checks(rbm))  # doctest: +SKIP
    """
    return dict(PER_ESTIMATOR_XFAIL_CHECKS.get(type(estimator), {}))
