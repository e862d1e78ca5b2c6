"""Kernel Inception Distance (KID): unbiased MMD^2 with a cubic polynomial kernel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ebmlab._validation import check_positive_int
from ebmlab.metrics.feature_nets import paired_features, resolve_name


@dataclass(frozen=True)
class KIDResult:
    """KID: mean and standard deviation of the unbiased MMD^2 over random subsets."""

    kid: float
    std: float
    n_real: int
    n_fake: int
    n_subsets: int
    subset_size: int
    feature_name: str


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    r"""Unbiased MMD^2 between feature rows ``x`` (m, d) and ``y`` (n, d), cubic kernel.

    Notes
    -----
    With :math:`k(a, b) = (a^\top b / d + 1)^3`,

    .. math:: \widehat{\mathrm{MMD}}^2 = \frac{1}{m(m-1)}\sum_{i \ne j} k(x_i, x_j)
              + \frac{1}{n(n-1)}\sum_{i \ne j} k(y_i, y_j)
              - \frac{2}{mn}\sum_{i, j} k(x_i, y_j),

    whose expectation is the population MMD^2 (0 for equal distributions),
    so the estimate may be negative.
    """
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs at least 2 rows in each set; got {m} and {n}")
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def kid_from_features(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Mean and standard deviation of :func:`mmd2_unbiased` over random subsets.

    Each subset draws ``min(subset_size, n_real, n_fake)`` rows without
    replacement from each set, using ``generator``.
    """
    check_positive_int("n_subsets", n_subsets)
    check_positive_int("subset_size", subset_size)
    size = min(subset_size, real_features.shape[0], fake_features.shape[0])
    values = []
    for _ in range(n_subsets):
        real_rows = torch.randperm(real_features.shape[0], generator=generator)[:size]
        fake_rows = torch.randperm(fake_features.shape[0], generator=generator)[:size]
        values.append(mmd2_unbiased(real_features[real_rows], fake_features[fake_rows]))
    values_array = np.asarray(values)
    return float(values_array.mean()), float(values_array.std())


def kid(
    real: object,
    fake: object,
    feature_fn: object,
    *,
    n_subsets: int = 100,
    subset_size: int = 1000,
    batch_size: int = 256,
    progress: bool = True,
    feature_name: str | None = None,
    generator: torch.Generator | None = None,
) -> KIDResult:
    r"""Kernel Inception Distance between the features of two image sets.

    Parameters
    ----------
    real, fake, feature_fn, batch_size, progress, feature_name
        As for :func:`ebmlab.metrics.fid.fid`.
    n_subsets, subset_size : int
        The estimate is averaged over ``n_subsets`` random subsets of
        ``subset_size`` rows of each set (the protocol of Binkowski et al.:
        100 subsets of 1000).
    generator : torch.Generator, optional
        Randomness for the subsets.

    Returns
    -------
    KIDResult
        ``kid`` is the mean unbiased MMD^2 over subsets, ``std`` its spread.

    Notes
    -----
    Unlike FID, the estimator is unbiased, so values from different sample
    sizes are comparable (within one feature space) and may be slightly
    negative when the distributions agree. See :func:`mmd2_unbiased`.

    References
    ----------
    Binkowski, M. et al. (2018). Demystifying MMD GANs. ICLR.
    """
    real_features, fake_features = paired_features(
        real, fake, feature_fn, batch_size=batch_size, progress=progress
    )
    mean, std = kid_from_features(
        real_features,
        fake_features,
        n_subsets=n_subsets,
        subset_size=subset_size,
        generator=generator,
    )
    return KIDResult(
        kid=mean,
        std=std,
        n_real=real_features.shape[0],
        n_fake=fake_features.shape[0],
        n_subsets=n_subsets,
        subset_size=min(subset_size, real_features.shape[0], fake_features.shape[0]),
        feature_name=resolve_name(feature_fn, feature_name),
    )
