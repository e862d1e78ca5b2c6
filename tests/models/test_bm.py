"""BoltzmannMachine: energy, conditionals and structure against direct evaluation."""

from __future__ import annotations

import itertools

import pytest
import torch

from ebmlab.models.bm import BoltzmannMachine, binary_states


def tiny_bm(n_visible: int = 4, n_hidden: int = 3, *, seed: int = 0) -> BoltzmannMachine:
    generator = torch.Generator().manual_seed(seed)
    model = BoltzmannMachine(
        n_visible, n_hidden, weight_std=0.8, generator=generator, dtype=torch.float64
    )
    with torch.no_grad():
        model.visible_bias.copy_(torch.randn(n_visible, generator=generator, dtype=torch.float64))
        model.hidden_bias.copy_(torch.randn(n_hidden, generator=generator, dtype=torch.float64))
    return model


def direct_energy(model: BoltzmannMachine, x: list[float], h: list[float]) -> float:
    """The seed's formula written as explicit double sums over every ordered pair (i, j)."""
    w_v, w_vh, w_h = model.weight_vv.tolist(), model.weight_vh.tolist(), model.weight_hh.tolist()
    b_v, b_h = model.visible_bias.tolist(), model.hidden_bias.tolist()
    nv, nh = len(x), len(h)
    energy = -sum(x[i] * w_v[i][j] * x[j] for i in range(nv) for j in range(nv))
    energy -= sum(x[i] * w_vh[i][j] * h[j] for i in range(nv) for j in range(nh))
    energy -= sum(h[i] * w_h[i][j] * h[j] for i in range(nh) for j in range(nh))
    return (
        energy
        - sum(b * v for b, v in zip(b_h, h, strict=True))
        - sum(b * v for b, v in zip(b_v, x, strict=True))
    )


def test_energy_matches_the_seed_formula_term_by_term():
    model = tiny_bm()
    states = list(itertools.product([0.0, 1.0], repeat=model.n_units))
    z = torch.tensor(states, dtype=torch.float64)
    energies = model.energy(z[:, :4], z[:, 4:])
    expected = torch.tensor(
        [direct_energy(model, list(s[:4]), list(s[4:])) for s in states], dtype=torch.float64
    )
    torch.testing.assert_close(energies, expected, rtol=0, atol=1e-12)


def test_joint_form_gives_the_same_energy():
    model = tiny_bm()
    z = binary_states(model.n_units, dtype=torch.float64)
    coupling, bias = model.joint_coupling()
    joint = -((z @ coupling) * z).sum(1) - z @ bias
    torch.testing.assert_close(joint, model.energy(z[:, :4], z[:, 4:]), rtol=0, atol=1e-12)


def test_conditionals_are_ratios_of_joint_probabilities():
    # p(z_k = 1 | rest) = e^{-E(z_k=1)} / (e^{-E(z_k=1)} + e^{-E(z_k=0)}): the factor 2 in
    # sigma(b + 2 W x + ...) must come out of the energy, not be assumed.
    model = tiny_bm()
    z = binary_states(model.n_units, dtype=torch.float64)
    x, h = z[:, :4], z[:, 4:]
    conditionals = torch.cat(
        [model.visible_conditional(x, h), model.hidden_conditional(x, h)], dim=1
    )
    for k in range(model.n_units):
        on, off = z.clone(), z.clone()
        on[:, k], off[:, k] = 1.0, 0.0
        e_on, e_off = model.energy(on[:, :4], on[:, 4:]), model.energy(off[:, :4], off[:, 4:])
        expected = torch.sigmoid(e_off - e_on)
        torch.testing.assert_close(conditionals[:, k], expected, rtol=0, atol=1e-12)


def test_free_energy_sums_the_hidden_units_out():
    model = tiny_bm()
    x = binary_states(4, dtype=torch.float64)
    h = binary_states(3, dtype=torch.float64)
    expected = torch.stack([-torch.logsumexp(-model.energy(row.expand(8, 4), h), 0) for row in x])
    torch.testing.assert_close(model.free_energy(x), expected, rtol=0, atol=1e-12)


def test_fully_visible_energy_is_minus_xWx_minus_bx():
    model = tiny_bm(5, 0)
    x = binary_states(5, dtype=torch.float64)
    w, b = model.weight_vv, model.visible_bias
    torch.testing.assert_close(model.energy(x), -((x @ w) * x).sum(1) - x @ b)
    torch.testing.assert_close(model.free_energy(x), model.energy(x))


def test_couplings_are_symmetric_with_zero_diagonal_by_construction():
    model = tiny_bm(5, 4)
    for w in (model.weight_vv, model.weight_hh):
        assert torch.equal(w, w.t()) and torch.all(w.diagonal() == 0)
    asymmetric = torch.arange(25, dtype=torch.float64).reshape(5, 5)
    model.weight_vv = asymmetric  # assignment projects onto symmetric zero-diagonal matrices
    expected = 0.5 * (asymmetric + asymmetric.t()) * (1 - torch.eye(5, dtype=torch.float64))
    assert torch.equal(model.weight_vv, expected)


def test_state_dict_uses_plain_names_and_projects_on_load():
    model = tiny_bm(3, 2)
    state = model.state_dict()
    assert set(state) == {"weight_vv", "weight_vh", "weight_hh", "visible_bias", "hidden_bias"}
    state["weight_vv"] = torch.tensor(
        [[5.0, 1.0, 2.0], [3.0, 5.0, 0.0], [0.0, 4.0, 5.0]], dtype=torch.float64
    )
    other = BoltzmannMachine(3, 2, dtype=torch.float64)
    other.load_state_dict(state)
    expected = torch.tensor(
        [[0.0, 2.0, 1.0], [2.0, 0.0, 2.0], [1.0, 2.0, 0.0]], dtype=torch.float64
    )
    assert torch.equal(other.weight_vv, expected)
    torch.testing.assert_close(other.weight_vh, model.weight_vh)


def test_initial_couplings_have_the_requested_spread():
    model = BoltzmannMachine(200, 0, weight_std=0.5, generator=torch.Generator().manual_seed(1))
    upper = model.weight_vv[torch.triu_indices(200, 200, 1).unbind()]
    # 19,900 draws: the sample sd has standard error 0.5 / sqrt(2 * 19,900) ~ 0.0025; allow 4 of them.
    assert abs(float(upper.detach().std()) - 0.5) < 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_visible": 0}, "n_visible"),
        ({"n_visible": 3, "n_hidden": -1}, "n_hidden"),
        ({"n_visible": 3, "weight_std": -1.0}, "weight_std"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BoltzmannMachine(**kwargs)


def test_bad_inputs_raise_clear_errors():
    model = tiny_bm(3, 2)
    x = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="h is required"):
        model.energy(x)
    with pytest.raises(ValueError, match="h must have shape"):
        model.energy(x, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="scan must be one of"):
        model.sample(2, 1, scan="diagonal")
    with pytest.raises(ValueError, match=r"x0 must lie in \[0, 1\]"):
        model.sample(4, 1, x0=x + 2)
    with pytest.raises(ValueError, match="n_hidden must be <= 20"):
        BoltzmannMachine(2, 21).free_energy(torch.zeros(1, 2))
