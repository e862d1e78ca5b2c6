"""Frechet distance between Gaussians and the Frechet Inception Distance (FID)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ebmlab.metrics.feature_nets import (
    apply_in_batches,
    paired_features,
    resolve_method,
    resolve_name,
)

# Eigenvalues of a covariance computed in float64 are exact up to about
# eps * ||S|| times a small factor; anything more negative than this fraction
# of the largest eigenvalue means the input was not a covariance matrix.
_PSD_RTOL = 1e-6


@dataclass(frozen=True)
class FIDResult:
    """FID between two samples, with the feature space it was measured in."""

    fid: float
    n_real: int
    n_fake: int
    feature_name: str


def _as_float64(name: str, x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{name} must be a numeric array or tensor; got {type(x).__name__}"
        ) from error
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf values")
    return array


def _psd_sqrt(name: str, matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; raise naming ``name`` if it is not PSD."""
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    scale = max(float(np.abs(values).max(initial=0.0)), np.finfo(np.float64).tiny)
    if values.min(initial=0.0) < -_PSD_RTOL * scale:
        raise ValueError(
            f"{name} must be positive semi-definite; got smallest eigenvalue {values.min():.4g} "
            f"(largest {scale:.4g})"
        )
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: object, sigma1: object, mu2: object, sigma2: object) -> float:
    r"""Squared Frechet (2-Wasserstein) distance between two Gaussians.

    Parameters
    ----------
    mu1, mu2 : array_like, shape (d,)
        Means.
    sigma1, sigma2 : array_like, shape (d, d)
        Covariance matrices (symmetric positive semi-definite).

    Returns
    -------
    float
        :math:`d^2 \ge 0`, computed in float64.

    Notes
    -----
    .. math:: d^2 = \lVert \mu_1 - \mu_2 \rVert^2 + \operatorname{tr}\Sigma_1
              + \operatorname{tr}\Sigma_2 - 2 \operatorname{tr}(\Sigma_1 \Sigma_2)^{1/2}.

    With :math:`B = \Sigma_2^{1/2} \Sigma_1^{1/2}`, :math:`B^\top B =
    \Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2}`, which is similar to
    :math:`\Sigma_1 \Sigma_2`; hence :math:`\operatorname{tr}(\Sigma_1\Sigma_2)^{1/2}`
    is the sum of the singular values of :math:`B` (its nuclear norm). The
    symmetric square roots come from ``eigh`` (negative rounding noise in the
    eigenvalues clipped to 0). This replaces ``scipy.linalg.sqrtm`` of the
    non-symmetric product: no complex arithmetic, no eps-offset retry when
    the product is singular (sample covariances with N < d), and, unlike
    taking square roots of the eigenvalues of :math:`B^\top B`, no
    amplification of rounding noise near zero (sqrt(1e-16) = 1e-8): the FID
    of a sample with itself comes out at rounding level.

    References
    ----------
    Dowson, D. C. & Landau, B. V. (1982). The Frechet distance between
    multivariate normal distributions. J. Multivariate Anal. 12(3).
    Heusel, M. et al. (2017). GANs trained by a two time-scale update rule
    converge to a local Nash equilibrium. NeurIPS (eq. 6).
    """
    mu1, mu2 = _as_float64("mu1", mu1), _as_float64("mu2", mu2)
    sigma1, sigma2 = _as_float64("sigma1", sigma1), _as_float64("sigma2", sigma2)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(
            f"mu1 and mu2 must be vectors of one length; got {mu1.shape} and {mu2.shape}"
        )
    d = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (d, d):
            raise ValueError(
                f"{name} must have shape ({d}, {d}) to match the means; got {sigma.shape}"
            )
    root1 = _psd_sqrt("sigma1", sigma1)
    root2 = _psd_sqrt("sigma2", sigma2)
    trace_root = float(np.linalg.svd(root2 @ root1, compute_uv=False).sum())
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)
    # The inputs are validated PSD, so the true value is >= 0: a negative one is rounding.
    return max(distance, 0.0)


def statistics_from_features(features: object) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (ddof=1) covariance of feature rows ``(N, d)``, in float64."""
    features = _as_float64("features", features)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, d) rows; got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(
        features.shape[1], features.shape[1]
    )


def feature_statistics(
    x: object, feature_fn: object, *, batch_size: int = 256, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``feature_fn``'s features of the images ``x``.

    ``feature_fn`` is a feature network (an object with a ``features`` method,
    such as :func:`~ebmlab.metrics.feature_nets.load_feature_net`'s result) or
    any callable mapping a batch of images to ``(batch, d)`` features. ``x`` is
    a tensor/ndarray of images or an iterable of batches.
    """
    features = apply_in_batches(
        resolve_method(feature_fn, "features"), x, batch_size=batch_size, progress=progress
    )
    return statistics_from_features(features)


def fid(
    real: object,
    fake: object,
    feature_fn: object,
    *,
    batch_size: int = 256,
    progress: bool = True,
    feature_name: str | None = None,
) -> FIDResult:
    r"""Frechet distance between the feature distributions of two image sets.

    Parameters
    ----------
    real, fake : Tensor, ndarray or iterable of batches
        Images in the input format ``feature_fn`` expects (for the shipped
        networks: values in [0, 1], ``(N, 1, H, W)`` or ``(N, H*W)``).
    feature_fn : feature network or callable
        Its ``features`` method is used when it has one; otherwise it is called.
    batch_size : int
        Images per forward pass (when ``real``/``fake`` are tensors).
    progress : bool
        Show a tqdm bar.
    feature_name : str, optional
        Name of the feature space; defaults to ``feature_fn.feature_name``.

    Returns
    -------
    FIDResult

    Notes
    -----
    Gaussians are fitted to the features of each set (mean, covariance with
    ddof=1) and compared with :func:`frechet_distance`. FID is biased upwards
    for small samples (the bias falls like 1/N), so compare values computed
    with equal sample sizes, in one feature space.

    References
    ----------
    Heusel, M. et al. (2017). GANs trained by a two time-scale update rule
    converge to a local Nash equilibrium. NeurIPS.
    """
    real_features, fake_features = paired_features(
        real, fake, feature_fn, batch_size=batch_size, progress=progress
    )
    mu_real, sigma_real = statistics_from_features(real_features)
    mu_fake, sigma_fake = statistics_from_features(fake_features)
    return FIDResult(
        fid=frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake),
        n_real=real_features.shape[0],
        n_fake=fake_features.shape[0],
        feature_name=resolve_name(feature_fn, feature_name),
    )
