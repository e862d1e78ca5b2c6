"""Frechet distance against closed forms, and FID through feature functions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from ebmlab.metrics.fid import (
    FIDResult,
    feature_statistics,
    fid,
    frechet_distance,
    statistics_from_features,
)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def _diagonal_closed_form(mu1, s1, mu2, s2) -> float:
    # Commuting covariances with eigenvalues s1, s2: tr sqrt(S1 S2) = sum sqrt(s1 s2).
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2.0 * np.sqrt(s1 * s2)))


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, size=6), rng.uniform(0.1, 3.0, size=6)
    expected = _diagonal_closed_form(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(
        expected, rel=1e-10
    )


def test_rotated_and_singular_covariances_match_closed_form():
    # Same eigenvectors, eigenvalues including zeros (rank-deficient, as when N < d).
    q = _rotation(8, seed=1)
    s1 = np.array([0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 0.1, 4.0])
    s2 = np.array([0.0, 1.0, 0.0, 2.0, 2.0, 0.5, 0.3, 1.0])
    mu1, mu2 = np.arange(8.0), np.arange(8.0)[::-1] * 0.5
    sigma1, sigma2 = q @ np.diag(s1) @ q.T, q @ np.diag(s2) @ q.T
    expected = _diagonal_closed_form(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)


def test_general_covariances_match_scipy_sqrtm_and_are_symmetric():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    root = scipy.linalg.sqrtm(sigma1 @ sigma2).real  # well conditioned: sqrtm is accurate here
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2.0 * root)
    forward = frechet_distance(mu1, sigma1, mu2, sigma2)
    assert forward == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(forward, rel=1e-9)


def test_distance_of_rank_deficient_sample_to_itself_is_rounding_level():
    # 30 samples in 50 dimensions: the covariance has rank 29, the case where sqrtm
    # of the product needs an eps offset; the distance must still be ~0.
    x = np.random.default_rng(3).normal(size=(30, 50))
    mu, sigma = statistics_from_features(x)
    assert 0.0 <= frechet_distance(mu, sigma, mu, sigma) < 1e-9 * np.trace(sigma)


@pytest.mark.parametrize(
    ("mu1", "sigma1", "mu2", "sigma2", "match"),
    [
        (np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2), "sigma1 must be positive semi-definite"),
        (np.zeros(2), np.eye(2), np.zeros(3), np.eye(3), "mu1 and mu2"),
        (np.zeros(2), np.eye(2), np.zeros(2), np.eye(3), r"sigma2 must have shape \(2, 2\)"),
        (np.array([0.0, np.nan]), np.eye(2), np.zeros(2), np.eye(2), "mu1 contains NaN"),
    ],
)
def test_bad_moments_raise_naming_the_argument(mu1, sigma1, mu2, sigma2, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(mu1, sigma1, mu2, sigma2)


def test_fid_of_a_sample_with_itself_is_zero_and_grows_with_a_mean_shift():
    x = torch.randn(400, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    identity = lambda batch: batch  # noqa: E731
    assert fid(x, x, identity, progress=False).fid < 1e-10
    # Shifting every row by delta * 1 leaves the covariance unchanged, so
    # FID = ||delta * 1||^2 = 5 delta^2 exactly (up to rounding).
    shifts = [0.1, 0.25, 0.5, 1.0, 2.0]
    values = [fid(x, x + shift, identity, progress=False).fid for shift in shifts]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    np.testing.assert_allclose(values, [5 * s**2 for s in shifts], rtol=1e-8)


class _Projector(nn.Module):
    """A fixed linear feature network with a ``features`` method and a name."""

    feature_name = "projector-test"

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 3)
        self.dropout = nn.Dropout(0.5)  # would make features random in training mode

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.linear(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("fid must use .features, not forward")


def test_fid_uses_features_method_records_name_and_restores_training_mode():
    torch.manual_seed(0)
    net = _Projector().train()
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(200, 6, generator=gen), torch.randn(150, 6, generator=gen) + 0.3
    result = fid(real, fake, net, batch_size=64, progress=False)
    assert isinstance(result, FIDResult)
    assert (result.n_real, result.n_fake, result.feature_name) == (200, 150, "projector-test")
    assert net.training  # eval mode only during the metric
    # Dropout was off: another batch size gives the same number up to float32
    # rounding of the features (~1e-7 relative); active dropout would change it by O(1).
    again = fid(real, fake, net, batch_size=7, progress=False)
    assert again.fid == pytest.approx(result.fid, rel=1e-5)
    # A bound method finds the name on its owner; an explicit name wins.
    assert fid(real, fake, net.features, progress=False).feature_name == "projector-test"
    named = fid(real, fake, net, progress=False, feature_name="other")
    assert named.feature_name == "other"


def test_fid_accepts_iterables_of_labelled_batches():
    gen = torch.Generator().manual_seed(2)
    real, fake = torch.randn(90, 4, generator=gen), torch.randn(60, 4, generator=gen)
    labels = torch.zeros(30, dtype=torch.int64)
    batches = [(real[i : i + 30], labels) for i in range(0, 90, 30)]
    identity = lambda batch: batch  # noqa: E731
    from_tensor = fid(real, fake, identity, progress=False)
    from_batches = fid(batches, fake.numpy(), identity, progress=False)
    assert from_batches.n_real == 90
    assert from_batches.fid == pytest.approx(from_tensor.fid, rel=1e-10)
    assert from_tensor.feature_name.startswith("unnamed:")


def test_feature_statistics_are_mean_and_unbiased_covariance():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mu, sigma = feature_statistics(x, lambda batch: 2 * batch, batch_size=16, progress=False)
    np.testing.assert_allclose(mu, 2 * x.numpy().mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, 4 * np.cov(x.numpy(), rowvar=False, ddof=1), rtol=1e-12)


def test_feature_functions_must_return_rows_of_equal_width():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        fid(x, x, lambda batch: batch.sum(), progress=False)
    with pytest.raises(ValueError, match="features for real"):
        fid(x, torch.zeros(4, 2), lambda batch: batch, progress=False)
