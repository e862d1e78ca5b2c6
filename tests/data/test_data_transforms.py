"""Binarization statistics, scaling, seeded validation splits and check_data's messages."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.data import (
    BINARIZATION_METHODS,
    Dataset,
    binarize,
    check_data,
    prepare_binary,
    scale,
    train_validation_split,
)

N_ROWS = 4_000
# Column j holds the probability p_j; the first and last columns are 0 and 1 exactly.
PROBABILITIES = torch.linspace(0, 1, 21, dtype=torch.float64)


def _grey(n_rows: int = N_ROWS) -> torch.Tensor:
    return PROBABILITIES.expand(n_rows, -1).clone()


def test_stochastic_binarization_has_the_grey_levels_as_mean():
    x = _grey()
    b = binarize(x, "stochastic", generator=torch.Generator().manual_seed(0))
    assert b.dtype == x.dtype and b.shape == x.shape
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    # Each column mean of N Bernoulli(p) draws has standard error sqrt(p(1-p)/N); a 4-SE
    # band fails with probability ~6e-5 per column (~1e-3 for all 19 random columns).
    # Columns with p = 0 and p = 1 have SE 0 and must be exact.
    se = torch.sqrt(PROBABILITIES * (1 - PROBABILITIES) / N_ROWS)
    assert torch.all((b.mean(0) - PROBABILITIES).abs() <= 4 * se)
    assert b[:, 0].sum() == 0 and b[:, -1].sum() == N_ROWS


def test_stochastic_draws_are_seeded_and_fresh_draws_are_independent():
    x = _grey()
    first = binarize(x, "stochastic", generator=torch.Generator().manual_seed(1))
    again = binarize(x, "stochastic", generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    # "dynamic": a second draw from the same generator is a fresh, independent draw.
    # Two independent Bernoulli(p) draws disagree with probability q = 2p(1-p), so the
    # disagreement rate of a column has SE sqrt(q(1-q)/N); check within 4 SE.
    generator = torch.Generator().manual_seed(2)
    epoch_1 = binarize(x, "stochastic", generator=generator)
    epoch_2 = binarize(x, "stochastic", generator=generator)
    q = 2 * PROBABILITIES * (1 - PROBABILITIES)
    rate = (epoch_1 != epoch_2).double().mean(0)
    assert torch.all((rate - q).abs() <= 4 * torch.sqrt(q * (1 - q) / N_ROWS))


def test_threshold_binarization_is_strictly_greater_than():
    x = torch.tensor([[0.0, 0.2, 0.5, 0.500001, 1.0]])
    assert binarize(x).tolist() == [[0.0, 0.0, 0.0, 1.0, 1.0]]
    assert binarize(x, threshold=0.1).tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0]]


def test_prepare_binary_methods():
    x = _grey(50).float()
    assert BINARIZATION_METHODS == ("none", "threshold", "stochastic", "dynamic")
    assert prepare_binary(x, "none") is x
    assert prepare_binary(x, "dynamic") is x  # the trainer redraws every epoch
    assert torch.equal(prepare_binary(x, "threshold"), binarize(x, "threshold"))
    fixed = prepare_binary(x, "stochastic", generator=torch.Generator().manual_seed(3))
    assert torch.equal(fixed, binarize(x, "stochastic", generator=torch.Generator().manual_seed(3)))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: binarize(torch.tensor([0.5, -0.5])),
            ValueError,
            r"x must lie in \[0, 1\] for "
            r"threshold binarization; got min=-0.5, max=0.5",
        ),
        (lambda: binarize(torch.tensor([0.5, 2.0]), "stochastic"), ValueError, "max=2"),
        (lambda: binarize(torch.tensor([1, 0])), TypeError, "floating dtype; got torch.int64"),
        (lambda: binarize(torch.tensor([0.5, math.nan])), ValueError, "x contains NaN or inf"),
        (
            lambda: binarize(torch.ones(2), "bernoulli"),
            ValueError,
            "method must be one of threshold, stochastic; got 'bernoulli'",
        ),
        (lambda: binarize(torch.ones(2), threshold=1.5), ValueError, r"threshold must lie in"),
        (
            lambda: prepare_binary(torch.ones(2), "fixed"),
            ValueError,
            "method must be one of none, threshold, stochastic, dynamic; got 'fixed'",
        ),
        (
            lambda: prepare_binary(torch.full((2,), 3.0), "none"),
            ValueError,
            r"for binarization method 'none'; got min=3",
        ),
        (
            lambda: scale(torch.ones(2), to="minus-one"),
            ValueError,
            "to must be one of unit, symmetric; got 'minus-one'",
        ),
        (lambda: scale(torch.full((2,), 255.0)), ValueError, r"x must lie in \[0, 1\] for scaling"),
    ],
)
def test_transform_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_scale():
    x = torch.tensor([[0.0, 0.25, 1.0]])
    assert scale(x) is x
    assert scale(x, to="symmetric").tolist() == [[-1.0, -0.5, 1.0]]


def test_split_of_a_tensor_is_a_seeded_partition():
    x = torch.arange(103)
    train, validation = train_validation_split(x, validation_fraction=0.1, seed=5)
    assert (len(train), len(validation)) == (93, 10)  # round(0.1 * 103) = 10
    assert torch.equal(torch.cat([train, validation]).sort().values, x)  # disjoint, covering
    assert torch.all(train[1:] > train[:-1])  # original order kept within a part
    again = train_validation_split(x, validation_fraction=0.1, seed=5)
    assert torch.equal(again[1], validation)
    other = train_validation_split(x, validation_fraction=0.1, seed=6)
    assert not torch.equal(other[1], validation)


def test_split_keeps_rows_of_several_tensors_together():
    labels = torch.arange(40)
    images = torch.stack([labels * 2.0, labels * 3.0], dim=1)
    (train_x, train_y), (val_x, val_y) = train_validation_split((images, labels), seed=1)
    assert (len(train_y), len(val_y)) == (36, 4)
    assert torch.equal(train_x[:, 0], train_y * 2.0) and torch.equal(val_x[:, 1], val_y * 3.0)


def test_split_of_a_dataset_returns_datasets():
    labels = torch.arange(20)
    images = (labels[:, None] + torch.arange(4)).float() / 30  # row i determined by label i
    data = Dataset(images, labels, (2, 2), "toy", "test")
    train, validation = train_validation_split(data, validation_fraction=0.25, seed=0)
    assert isinstance(train, Dataset) and isinstance(validation, Dataset)
    assert (len(train), len(validation)) == (15, 5)
    assert train.name == "toy" and train.image_shape == (2, 2)
    assert torch.equal(torch.cat([train.labels, validation.labels]).sort().values, labels)
    for part in (train, validation):
        assert torch.equal(part.images, images[part.labels])  # rows stay with their labels


@pytest.mark.parametrize(
    ("data", "fraction", "error", "match"),
    [
        (torch.zeros(10), 0.0, ValueError, r"validation_fraction must lie in \(0, 1\); got 0.0"),
        (torch.zeros(10), 1.0, ValueError, r"validation_fraction must lie in \(0, 1\)"),
        (torch.zeros(3), 0.1, ValueError, "leaves 0 validation rows"),
        ((torch.zeros(3), torch.zeros(4)), 0.5, ValueError, r"as many rows; got \[3, 4\]"),
        ([1, 2, 3], 0.5, TypeError, "data must be a Dataset, a tensor or a sequence of tensors"),
    ],
)
def test_split_errors(data, fraction, error, match):
    with pytest.raises(error, match=match):
        train_validation_split(data, validation_fraction=fraction)


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "match"),
    [
        ([[0.5]], {}, TypeError, "data must be a torch.Tensor; got list"),
        (torch.zeros(3), {}, ValueError, r"data must be 2-D \(batch, features\); got shape \(3,\)"),
        (
            torch.zeros(2, 4),
            {"n_features": 5},
            ValueError,
            r"must have 5 columns; got shape \(2, 4\)",
        ),
        (torch.zeros(2, 4, dtype=torch.int64), {}, TypeError, "floating dtype; got torch.int64"),
        (torch.tensor([[0.0, math.inf]]), {}, ValueError, "data contains NaN or inf values"),
        (torch.tensor([[math.nan]]), {"name": "batch"}, ValueError, "batch contains NaN"),
        (torch.zeros(0, 4), {}, ValueError, r"data must not be empty; got shape \(0, 4\)"),
        (
            torch.tensor([[-0.5, 1.0]]),
            {"low": 0, "high": 1, "purpose": "a Bernoulli RBM"},
            ValueError,
            r"data must lie in \[0, 1\] for a Bernoulli RBM; got min=-0.5, max=1",
        ),
        (torch.tensor([[-1.0, 7.0]]), {"low": 0}, ValueError, "data must be >= 0; got min=-1"),
        (
            torch.tensor([[-1.0, 7.0]]),
            {"high": 5},
            ValueError,
            "data must be <= 5; got min=-1, max=7",
        ),
    ],
)
def test_check_data_messages(x, kwargs, error, match):
    with pytest.raises(error, match=match):
        check_data(x, **kwargs)


def test_check_data_returns_good_data():
    x = torch.rand(3, 4, generator=torch.Generator().manual_seed(0))
    assert check_data(x, n_features=4, low=0, high=1) is x
    assert check_data(-x) is not None  # no bounds asked: negative values are fine
