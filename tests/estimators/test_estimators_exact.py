"""Exact enumeration against an independent brute-force sum over all (v, h)."""

from __future__ import annotations

import itertools

import pytest
import torch

from ebmlab.estimators import enumerate_binary, exact_log_likelihood, exact_log_partition
from ebmlab.models.rbm import BernoulliRBM


def make_rbm(n_visible: int, n_hidden: int, seed: int) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(
        n_visible, n_hidden, weight_std=1.0, generator=generator, dtype=torch.float64
    )
    with torch.no_grad():
        model.visible_bias.normal_(0.0, 0.5, generator=generator)
        model.hidden_bias.normal_(0.0, 0.5, generator=generator)
    return model


def all_binary(n: int) -> torch.Tensor:
    # Built with itertools so the reference does not reuse enumerate_binary.
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=torch.float64)


def brute_joint_log_f(model: BernoulliRBM) -> torch.Tensor:
    """-E(v, h) for every (v, h): rows v, columns h, written from the energy formula."""
    v, h = all_binary(model.n_visible), all_binary(model.n_hidden)
    weight, b_v, b_h = (p.detach() for p in (model.weight, model.visible_bias, model.hidden_bias))
    return v @ weight @ h.T + (v @ b_v)[:, None] + (h @ b_h)[None, :]


@pytest.mark.parametrize(("n_visible", "n_hidden"), [(5, 4), (4, 5), (6, 6)])
def test_exact_log_partition_matches_brute_force(n_visible, n_hidden):
    model = make_rbm(n_visible, n_hidden, seed=n_visible * 10 + n_hidden)
    expected = torch.logsumexp(brute_joint_log_f(model).flatten(), 0).item()
    # Both are float64 sums of at most 2**12 terms: agreement to ~1e-12 relative.
    assert exact_log_partition(model) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize(("n_visible", "n_hidden"), [(7, 9), (9, 7)])
def test_chunking_gives_the_same_answer(n_visible, n_hidden):
    model = make_rbm(n_visible, n_hidden, seed=3)
    whole = exact_log_partition(model)
    assert exact_log_partition(model, chunk_size=5) == pytest.approx(whole, rel=1e-13, abs=1e-13)
    assert exact_log_partition(model, chunk_size=1) == pytest.approx(whole, rel=1e-13, abs=1e-13)


def test_float32_model_is_enumerated_in_float64():
    model = make_rbm(8, 5, seed=1)
    model32 = make_rbm(8, 5, seed=1).to(torch.float32)
    # Only the float32 rounding of the parameters (~1e-7 relative) separates them.
    assert exact_log_partition(model32) == pytest.approx(exact_log_partition(model), rel=1e-6)
    assert model32.weight.dtype == torch.float32  # the user's model is untouched


def test_exact_log_likelihood_matches_brute_force():
    model = make_rbm(6, 4, seed=7)
    log_f = brute_joint_log_f(model)
    log_p = torch.logsumexp(log_f, 1) - torch.logsumexp(log_f.flatten(), 0)
    rows = torch.tensor([0, 5, 17, 63, 40])
    data = all_binary(6)[rows]
    assert exact_log_likelihood(model, data) == pytest.approx(log_p[rows].mean().item(), rel=1e-12)


def test_max_units_is_enforced_with_a_clear_message():
    model = make_rbm(30, 27, seed=0)
    with pytest.raises(ValueError, match=r"2\*\*27 configurations, above max_units=25"):
        exact_log_partition(model)
    with pytest.raises(ValueError, match="max_units must be a positive integer"):
        exact_log_partition(make_rbm(3, 3, seed=0), max_units=0)


def test_unregistered_model_raises_type_error_and_registration_works():
    class TwoStates:
        """p(x) proportional to exp(x), x in {0, 1}."""

    with pytest.raises(TypeError, match="no enumeration for TwoStates"):
        exact_log_partition(TwoStates())

    @exact_log_partition.register(TwoStates)
    def _(model, *, max_units=25, chunk_size=2**16):
        return torch.logsumexp(torch.tensor([0.0, 1.0]), 0).item()

    assert exact_log_partition(TwoStates()) == pytest.approx(
        torch.log1p(torch.e * torch.ones(())).item()
    )


def test_enumerate_binary_table_and_chunks():
    table = enumerate_binary(4)
    assert table.shape == (16, 4)
    assert table.dtype == torch.get_default_dtype()
    # Row i holds the bits of i, least significant first.
    assert torch.equal(table @ torch.tensor([1.0, 2.0, 4.0, 8.0]), torch.arange(16.0))
    pieces = [enumerate_binary(4, start=s, stop=min(s + 5, 16)) for s in range(0, 16, 5)]
    assert torch.equal(torch.cat(pieces), table)
    assert enumerate_binary(0).shape == (1, 0)
    assert enumerate_binary(3, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "n must be a non-negative integer"),
        ({"n": 63}, "n must be at most 62 bits"),
        ({"n": 3, "start": 5, "stop": 2}, r"need 0 <= start <= stop <= 2\*\*n = 8"),
        ({"n": 3, "stop": 9}, r"need 0 <= start <= stop <= 2\*\*n = 8"),
    ],
)
def test_enumerate_binary_validation(kwargs, message):
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match=message):
        enumerate_binary(n, **kwargs)


def test_exact_log_likelihood_validates_data():
    model = make_rbm(4, 3, seed=0)
    with pytest.raises(ValueError, match="data must have 4 columns"):
        exact_log_likelihood(model, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"data must lie in \[0, 1\]"):
        exact_log_likelihood(model, torch.full((2, 4), 2.0, dtype=torch.float64))
