"""The Bernoulli RBM's formulas against brute-force enumeration of its joint distribution."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.models import BernoulliRBM, sample_bernoulli
from tests.helpers.enumeration import all_binary


def joint_log_weights(model: BernoulliRBM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unnormalised log p(v, h) = -E(v, h) over all (v, h), written out from the energy formula."""
    vs, hs = all_binary(model.n_visible), all_binary(model.n_hidden)
    W, b, c = model.weight.detach(), model.visible_bias.detach(), model.hidden_bias.detach()
    log_w = vs @ W @ hs.T + (vs @ b)[:, None] + (hs @ c)[None, :]
    return vs, hs, log_w


def test_energy_matches_formula(tiny_rbm):
    vs, hs, log_w = joint_log_weights(tiny_rbm)
    v, h = vs.repeat_interleave(len(hs), 0), hs.repeat(len(vs), 1)
    assert torch.allclose(-tiny_rbm.energy(v, h), log_w.reshape(-1))


def test_free_energy_sums_out_hidden_units(tiny_rbm):
    vs, _, log_w = joint_log_weights(tiny_rbm)
    assert torch.allclose(tiny_rbm.free_energy(vs), -torch.logsumexp(log_w, 1))


def test_hidden_free_energy_sums_out_visible_units(tiny_rbm):
    _, hs, log_w = joint_log_weights(tiny_rbm)
    assert torch.allclose(tiny_rbm.free_energy_hidden(hs), -torch.logsumexp(log_w, 0))


def test_conditionals_are_ratios_of_the_joint(tiny_rbm):
    vs, hs, log_w = joint_log_weights(tiny_rbm)
    p_h_given_v = torch.softmax(log_w, 1)  # rows: v, columns: h
    p_v_given_h = torch.softmax(log_w, 0)
    assert torch.allclose(tiny_rbm.mean_h(vs), p_h_given_v @ hs)
    assert torch.allclose(tiny_rbm.mean_v(hs), p_v_given_h.T @ vs)


def test_sample_bernoulli_is_unbiased():
    generator = torch.Generator().manual_seed(0)
    p = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    n = 40_000
    draws = sample_bernoulli(p.expand(n, -1), generator=generator)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    standard_error = (p * (1 - p) / n).sqrt()
    # 4.5 standard errors: a false alarm rate below 1e-5 per coordinate.
    assert ((draws.mean(0) - p).abs() <= 4.5 * standard_error + 1e-12).all()


def test_visible_bias_initialised_from_data_means():
    data = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    model = BernoulliRBM(3, 2).init_visible_bias(data, smoothing=0.01)
    expected = torch.tensor([math.log(0.75 / 0.25), math.log(0.01 / 0.99), math.log(0.75 / 0.25)])
    assert torch.allclose(model.visible_bias, expected.float(), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_visible": 0, "n_hidden": 3}, "n_visible must be a positive integer; got 0"),
        ({"n_visible": 3, "n_hidden": -1}, "n_hidden must be a positive integer; got -1"),
        ({"n_visible": 3, "n_hidden": 2, "weight_std": float("nan")}, "weight_std must be"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BernoulliRBM(**kwargs)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (torch.zeros(4, 5), ValueError, "must have 3 columns; got shape \\(4, 5\\)"),
        (torch.zeros(3), ValueError, "must be 2-D"),
        (
            torch.full((2, 3), -0.5),
            ValueError,
            "must lie in \\[0, 1\\] for a Bernoulli RBM; got min=-0.5",
        ),
        (torch.full((2, 3), float("nan")), ValueError, "contains NaN or inf"),
        (torch.zeros(2, 3, dtype=torch.int64), TypeError, "floating dtype"),
    ],
)
def test_bad_data_gets_one_clear_error(data, error, message):
    with pytest.raises(error, match=message):
        BernoulliRBM(3, 2).check_visible(data, "data")
