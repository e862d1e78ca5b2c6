"""KID: the unbiased MMD^2 estimator against its population value."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from ebmlab.metrics.kid import KIDResult, kid, mmd2_unbiased


def test_mmd2_matches_the_definition_written_as_explicit_sums():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 3, generator=gen, dtype=torch.float64), torch.randn(7, 3, generator=gen)
    y = y.double()

    def kernel(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    within_x = sum(kernel(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    within_y = sum(kernel(y[i], y[j]) for i, j in itertools.permutations(range(7), 2)) / 42
    between = sum(kernel(x[i], y[j]) for i in range(5) for j in range(7)) / 35
    assert mmd2_unbiased(x, y) == pytest.approx(within_x + within_y - 2 * between, rel=1e-10)


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_mmd2_is_unbiased_for_the_population_value(shift):
    # In 1-D the kernel (ab + 1)^3 has features (1, sqrt3 a, sqrt3 a^2, a^3), so for
    # X ~ N(0, 1), Y ~ N(m, 1): MMD^2 = 3 m^2 + 3 (m^2)^2 + (m^3 + 3 m)^2
    # (E Y = m, E Y^2 = 1 + m^2, E Y^3 = m^3 + 3 m). 400 independent replicates of
    # sets of 20: the mean lies within 3.5 standard errors of the truth (a biased
    # V-statistic would sit about one replicate standard deviation away).
    gen = torch.Generator().manual_seed(1)
    truth = 3 * shift**2 + 3 * shift**4 + (shift**3 + 3 * shift) ** 2
    values = np.array(
        [
            mmd2_unbiased(
                torch.randn(20, 1, generator=gen, dtype=torch.float64),
                torch.randn(20, 1, generator=gen, dtype=torch.float64) + shift,
            )
            for _ in range(400)
        ]
    )
    standard_error = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - truth) < 3.5 * standard_error


def test_kid_records_feature_space_grows_with_shift_and_is_reproducible():
    gen = torch.Generator().manual_seed(2)
    real = torch.randn(300, 4, generator=gen)
    fake = torch.randn(300, 4, generator=gen)

    def run(shift: float, seed: int) -> KIDResult:
        return kid(
            real,
            fake + shift,
            lambda batch: batch,
            n_subsets=20,
            subset_size=100,
            progress=False,
            feature_name="identity",
            generator=torch.Generator().manual_seed(seed),
        )

    same, shifted = run(0.0, 0), run(1.0, 0)
    assert same.feature_name == "identity" and same.subset_size == 100
    assert shifted.kid > same.kid + 10 * (same.std + shifted.std) / np.sqrt(20)
    assert run(0.0, 0) == same  # same generator seed, same subsets


def test_kid_needs_two_rows_per_set():
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd2_unbiased(torch.zeros(1, 2), torch.zeros(3, 2))
