"""Parallel tempering against exact enumeration of a tiny, multimodal RBM."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load, save

from ebmlab.models import BernoulliRBM
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.samplers import tempering
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.tempering import (
    MIN_ADAPTIVE_BETA,
    ParallelTempering,
    check_betas,
    swap_log_acceptance,
    temperature_ladder,
)
from tests.helpers.enumeration import all_binary, chi_square_p_value

FIELDS = ("visible", "hidden", "energy", "betas", "walker", "direction")
COUNTERS = ("swap_attempts", "swap_accepts", "round_trips")


@pytest.fixture
def multimodal_rbm():
    """4 visible, 3 hidden, weights of std 2: most mass on a few far-apart states."""
    generator = torch.Generator().manual_seed(0)
    model = BernoulliRBM(4, 3, weight_std=2.0, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        model.visible_bias.normal_(0, 0.5, generator=generator)
        model.hidden_bias.normal_(0, 0.5, generator=generator)
    return model


def exact_tempered_marginal(model, beta: float) -> torch.Tensor:
    """p_beta(v) proportional to sum_h exp(-beta E(v, h)), by summing over every (v, h)."""
    vs, hs = all_binary(model.n_visible), all_binary(model.n_hidden)
    W, b, c = model.weight.detach(), model.visible_bias.detach(), model.hidden_bias.detach()
    energy = -(vs @ W @ hs.T) - (hs @ c)[None, :] - (vs @ b)[:, None]  # (V, H)
    return torch.softmax(torch.logsumexp(-beta * energy, dim=1), dim=0)


def frequencies(samples: torch.Tensor) -> torch.Tensor:
    # Most significant bit first, the order of all_binary.
    weights = 2 ** torch.arange(samples.shape[1] - 1, -1, -1, dtype=torch.float64)
    index = (samples.double() @ weights).long()
    return torch.bincount(index, minlength=2 ** samples.shape[1]).double() / samples.shape[0]


def total_variation_and_bound(samples: torch.Tensor, law: torch.Tensor) -> tuple[float, float]:
    """TV distance of the empirical law of ``samples`` (independent rows) from ``law``.

    The bound: for n independent draws, E[TV] <= 0.5 sum_x sqrt(p(x)(1 - p(x)) / n)
    (Jensen on each |frequency - p|), and one draw moves TV by at most 1/n, so
    McDiarmid gives P(TV > E[TV] + t) <= exp(-2 n t^2); t is set for a 1e-6
    false-alarm rate. The rows here are the final states of independent chain
    sets, so n is the number of chains (no autocorrelation to correct for).
    """
    n = samples.shape[0]
    total_variation = 0.5 * (frequencies(samples) - law).abs().sum().item()
    expected = 0.5 * (law * (1 - law) / n).sqrt().sum().item()
    return total_variation, expected + math.sqrt(math.log(1e6) / (2 * n))


def run_tempering(model, n_chains=20_000, n_steps=200, seed=1, **options):
    sampler = ParallelTempering(model, n_replicas=4, min_beta=0.1, **options)
    start = torch.zeros(n_chains, model.n_visible, dtype=model.weight.dtype)
    generator = torch.Generator().manual_seed(seed)
    state, _, _ = run_chain(sampler, sampler.init(start), n_steps, generator=generator)
    return state


# ----- invariance ---------------------------------------------------------------------
def test_cold_and_hot_replicas_match_their_exact_tempered_marginals(multimodal_rbm):
    state = run_tempering(multimodal_rbm)
    for k in (0, -1):
        law = exact_tempered_marginal(multimodal_rbm, state.betas[k].item())
        total_variation, bound = total_variation_and_bound(state.visible[k], law)
        assert total_variation < bound, (k, total_variation, bound)
        counts = frequencies(state.visible[k]) * state.visible.shape[1]
        assert chi_square_p_value(counts, law) > 1e-6
    assert torch.equal(state.cold, state.visible[0])
    assert int(state.round_trips) > 0


@pytest.mark.parametrize(
    "broken",
    [
        # Sign flipped: favours sending low-energy states to the hot end.
        lambda betas, energies, pairs: swap_log_acceptance(-betas, energies, pairs),
        # Always accept: the cold replica becomes a mixture of all temperatures.
        lambda betas, energies, pairs: energies.new_zeros(pairs.shape[0], energies.shape[1]),
    ],
    ids=["flipped-sign", "always-accept"],
)
def test_a_broken_swap_rule_fails_the_same_check(multimodal_rbm, monkeypatch, broken):
    monkeypatch.setattr(tempering, "swap_log_acceptance", broken)
    state = run_tempering(multimodal_rbm)
    law = exact_tempered_marginal(multimodal_rbm, 1.0)
    total_variation, bound = total_variation_and_bound(state.cold, law)
    assert total_variation > 2 * bound


# ----- the swap move --------------------------------------------------------------------
def test_swap_log_acceptance_matches_a_hand_computation():
    betas = torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)
    energies = torch.tensor([[-3.0, 0.0], [-1.0, 2.0], [5.0, -4.0]], dtype=torch.float64)
    pairs = torch.tensor([[0, 1], [1, 2], [0, 2]])
    # (b_i - b_j)(E_i - E_j): 0.5 * (-2), 0.5 * (-2); 0.25 * (-6), 0.25 * 6 -> 0; 0.75 * (-8), 0.75 * 4.
    expected = torch.tensor([[-1.0, -1.0], [-1.5, 0.0], [-6.0, 0.0]], dtype=torch.float64)
    assert torch.equal(swap_log_acceptance(betas, energies, pairs), expected)


def hand_state(sampler, n_chains, energies):
    """Replica k holds visible = k / (K - 1) everywhere and the given energy per replica."""
    n_replicas = sampler.betas.numel()
    state = sampler.init(torch.zeros(n_chains, 4, dtype=torch.float64))
    levels = torch.arange(n_replicas, dtype=torch.float64) / max(n_replicas - 1, 1)
    visible = levels[:, None, None].expand_as(state.visible).clone()
    energy = torch.tensor(energies, dtype=torch.float64)[:, None].repeat(1, n_chains)
    return replace(state, visible=visible, energy=energy)


def test_swap_accepts_at_the_metropolis_rate_and_moves_whole_states(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, betas=[1.0, 0.5])
    n_chains = 20_000
    state = hand_state(sampler, n_chains, [-1.0, 1.0])
    new, info = sampler.swap(state, generator=torch.Generator().manual_seed(0))
    probability = math.exp(0.5 * (-1.0 - 1.0))
    assert info["swap_probability"][0].item() == pytest.approx(probability, rel=1e-12)
    accepted = new.visible[0, :, 0] == 1.0
    rate = accepted.double().mean().item()
    assert abs(rate - probability) < 5 * math.sqrt(probability * (1 - probability) / n_chains)
    assert info["swap_acceptance"][0].item() == rate
    # Visible, energy and walker label travel together; the ladder does not move.
    assert torch.equal(new.energy[0], torch.where(accepted, 1.0, -1.0).double())
    assert torch.equal(new.walker[0], accepted.long())
    assert torch.equal(new.betas, state.betas)
    assert int(new.swap_accepts[0]) == int(accepted.sum()) and int(new.swap_attempts[0]) == n_chains


def test_stored_energies_are_the_joint_energies_of_the_stored_states(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, n_replicas=3, min_beta=0.2)
    state = sampler.init(torch.zeros(50, 4, dtype=torch.float64))
    state, _, _ = run_chain(sampler, state, 7, generator=torch.Generator().manual_seed(2))
    for k in range(3):
        joint = multimodal_rbm.energy(state.visible[k], state.hidden[k]).detach()
        assert torch.allclose(state.energy[k], joint, atol=1e-12)


# ----- counters -------------------------------------------------------------------------
def test_round_trips_and_counters_on_a_scripted_sequence(multimodal_rbm):
    # Equal energies accept every swap, so the walkers' path is deterministic:
    # slots (beta_1, beta_2, beta_3) hold these walkers after each round.
    sampler = ParallelTempering(multimodal_rbm, betas=[1.0, 0.5, 0.25])
    state = hand_state(sampler, 2, [0.0, 0.0, 0.0])
    arrangements = [[1, 0, 2], [1, 2, 0], [2, 1, 0], [2, 0, 1], [0, 2, 1], [0, 1, 2]] * 2
    # Walker 0 goes cold -> hot (round 1) -> cold (round 4): the first round trip.
    # Walker 2 starts hot, so its first trip only counts from its first cold visit.
    round_trips = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4]
    for t in range(11):
        state, info = sampler.swap(state, generator=torch.Generator().manual_seed(t))
        assert state.walker[:, 0].tolist() == arrangements[t], t
        assert torch.equal(state.walker[:, 0], state.walker[:, 1])
        assert int(state.round_trips) == 2 * round_trips[t], t  # two identical chain sets
        tried = [t % 2 == 0, t % 2 == 1]
        assert [not math.isnan(a) for a in info["swap_acceptance"].tolist()] == tried
    assert state.step == 11
    assert state.swap_attempts.tolist() == [12, 10]  # 6 even, 5 odd rounds, 2 chains
    assert torch.equal(state.swap_accepts, state.swap_attempts)
    assert state.swap_acceptance.tolist() == [1.0, 1.0]


def test_hopeless_swaps_are_counted_but_never_accepted(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, betas=[1.0, 0.5, 0.25])
    state = hand_state(sampler, 3, [-1e4, 0.0, 1e4])
    assert torch.isnan(state.swap_acceptance).all()
    for t in range(3):
        state, _ = sampler.swap(state, generator=torch.Generator().manual_seed(t))
    assert state.swap_attempts.tolist() == [6, 3] and state.swap_accepts.tolist() == [0, 0]
    assert state.walker[:, 0].tolist() == [0, 1, 2] and int(state.round_trips) == 0


def test_steps_alternate_even_and_odd_pairs(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, n_replicas=5, min_beta=0.1)
    state = sampler.init(torch.zeros(10, 4, dtype=torch.float64))
    generator = torch.Generator().manual_seed(0)
    for t in range(4):
        state, info = sampler.step(state, generator=generator)
        tried = (~torch.isnan(info["swap_acceptance"])).tolist()
        assert tried == ([True, False, True, False] if t % 2 == 0 else [False, True, False, True])
    assert state.swap_attempts.tolist() == [20, 20, 20, 20]


# ----- ladders and bad input ------------------------------------------------------------
def test_temperature_ladders():
    geometric = temperature_ladder(4, min_beta=0.125)
    assert geometric.dtype == torch.float64 and geometric[0].item() == 1.0
    assert torch.allclose(geometric, torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64))
    linear = temperature_ladder(4, min_beta=0.1, kind="linear")
    assert torch.allclose(linear, torch.tensor([1.0, 0.7, 0.4, 0.1], dtype=torch.float64))
    assert temperature_ladder(1, min_beta=0.1).tolist() == [1.0]
    assert torch.equal(check_betas(geometric), geometric)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"n_replicas": 0, "min_beta": 0.1}, "n_replicas"),
        ({"n_replicas": 2.5, "min_beta": 0.1}, "n_replicas"),
        ({"n_replicas": 3, "min_beta": 0.0}, "min_beta"),
        ({"n_replicas": 3, "min_beta": -0.5}, "min_beta"),
        ({"n_replicas": 3, "min_beta": 1.5}, "min_beta"),
        ({"n_replicas": 3, "min_beta": math.nan}, "min_beta"),
        ({"n_replicas": 3, "min_beta": 1.0}, "min_beta"),
        ({"n_replicas": 3, "min_beta": 0.1, "kind": "cubic"}, "kind"),
    ],
)
def test_bad_ladder_arguments_raise(options, name):
    with pytest.raises(ValueError, match=name):
        temperature_ladder(**options)


@pytest.mark.parametrize(
    "betas",
    [
        [0.9, 0.5],
        [1.0, 2.0],
        [1.0, 0.5, 0.5],
        [1.0, 0.5, 0.0],
        [1.0, -0.5],
        [1.0, math.nan],
        [1.0, math.inf],
        [[1.0, 0.5]],
        [],
        torch.tensor([1, 0]),
    ],
)
def test_bad_user_ladders_raise(betas, multimodal_rbm):
    with pytest.raises(ValueError, match="betas"):
        check_betas(betas)
    with pytest.raises(ValueError, match="betas"):
        ParallelTempering(multimodal_rbm, betas=betas)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"target_acceptance": 0.0}, "target_acceptance"),
        ({"target_acceptance": 1.0}, "target_acceptance"),
        ({"target_acceptance": 1.5}, "target_acceptance"),
        ({"adaptation_rate": -0.1}, "adaptation_rate"),
        ({"ladder": "cubic"}, "ladder"),
        ({"n_replicas": 0}, "n_replicas"),
        ({"min_beta": 0.0}, "min_beta"),
    ],
)
def test_bad_sampler_options_raise(options, name, multimodal_rbm):
    with pytest.raises(ValueError, match=name):
        ParallelTempering(multimodal_rbm, **options)


def test_only_bernoulli_visible_models_are_accepted():
    with pytest.raises(ValueError, match="Bernoulli visible"):
        ParallelTempering(GaussianBernoulliRBM(4, 3))
    with pytest.raises(ValueError, match="Bernoulli visible"):
        ParallelTempering(torch.nn.Linear(4, 3))


def test_bad_starting_points_raise(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, n_replicas=3)
    with pytest.raises(ValueError, match="x0"):
        sampler.init(torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0"):
        sampler.init(torch.full((5, 4), 2.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0"):
        sampler.init(torch.zeros(0, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="x0"):
        sampler.init(torch.zeros(5, 4, dtype=torch.float32))


# ----- adaptive ladder ------------------------------------------------------------------
def strong_rbm() -> BernoulliRBM:
    generator = torch.Generator().manual_seed(3)
    return BernoulliRBM(20, 10, weight_std=2.0, generator=generator, dtype=torch.float64)


def late_acceptance(adapt: bool) -> tuple[torch.Tensor, torch.Tensor]:
    sampler = ParallelTempering(
        strong_rbm(), n_replicas=3, min_beta=0.01, adapt=adapt, adaptation_rate=0.5
    )
    start = torch.zeros(200, 20, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    state, _, infos = run_chain(sampler, sampler.init(start), 300, generator=generator)
    acceptance = torch.stack([info["swap_probability"] for info in infos[-100:]])
    return acceptance.nanmean(0), state.betas


def test_adaptation_narrows_gaps_that_accept_too_rarely():
    fixed, ladder = late_acceptance(adapt=False)
    assert fixed[0] < 0.01  # the cold pair almost never swaps on the fixed ladder
    adapted, betas = late_acceptance(adapt=True)
    assert ((adapted > 0.2) & (adapted < 0.4)).all()  # both pairs near the 0.3 target
    check_betas(betas)
    log_gaps, fixed_log_gaps = -torch.diff(betas.log()), -torch.diff(ladder.log())
    assert log_gaps[0] < 0.5 * fixed_log_gaps[0]


def test_adaptation_keeps_the_ladder_valid_when_every_swap_is_accepted():
    # A zero model has constant energy: every swap is accepted and the gaps only grow.
    sampler = ParallelTempering(
        BernoulliRBM(4, 3, weight_std=0.0), n_replicas=4, adapt=True, adaptation_rate=1.0
    )
    state = sampler.init(torch.zeros(5, 4))
    state, _, _ = run_chain(sampler, state, 200, generator=torch.Generator().manual_seed(0))
    check_betas(state.betas)
    assert state.betas[-1].item() == pytest.approx(MIN_ADAPTIVE_BETA, rel=1e-9)


# ----- checkpoints and reproducibility --------------------------------------------------
def assert_same_state(a, b):
    for name in FIELDS + COUNTERS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert a.step == b.step


def test_state_dict_round_trip_resumes_bit_for_bit(multimodal_rbm):
    options = {"n_replicas": 4, "min_beta": 0.1, "adapt": True}
    start = torch.zeros(16, 4, dtype=torch.float64)
    sampler = ParallelTempering(multimodal_rbm, **options)
    generator = torch.Generator().manual_seed(5)
    straight, _, _ = run_chain(sampler, sampler.init(start), 10, generator=generator)

    generator = torch.Generator().manual_seed(5)
    half, _, _ = run_chain(sampler, sampler.init(start), 5, generator=generator)
    saved, rng = save(sampler.state_dict(half)), generator.get_state()
    fresh = ParallelTempering(multimodal_rbm, **options)
    resumed = fresh.load_state_dict(load(saved))
    assert_same_state(resumed, half)
    resumed, _, _ = run_chain(fresh, resumed, 5, generator=torch.Generator().set_state(rng))
    assert_same_state(resumed, straight)
    assert not torch.equal(straight.betas, sampler.betas)  # the ladder did move


def test_load_state_dict_rejects_incomplete_or_mismatched_values(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, n_replicas=3)
    values = sampler.state_dict(sampler.init(torch.zeros(4, 4, dtype=torch.float64)))
    with pytest.raises(ValueError, match="round_trips"):
        sampler.load_state_dict({k: v for k, v in values.items() if k != "round_trips"})
    with pytest.raises(ValueError, match="hidden"):
        sampler.load_state_dict({**values, "hidden": torch.zeros(3, 4, 5)})


def test_same_seed_same_chains_other_seed_other_chains(multimodal_rbm):
    runs = [run_tempering(multimodal_rbm, n_chains=8, n_steps=20, seed=s) for s in (4, 4, 5)]
    assert_same_state(runs[0], runs[1])
    assert not torch.equal(runs[0].visible, runs[2].visible)


def test_run_chain_collects_the_cold_replica(multimodal_rbm):
    sampler = ParallelTempering(multimodal_rbm, n_replicas=2)
    state = sampler.init(torch.zeros(3, 4, dtype=torch.float64))
    _, samples, infos = run_chain(
        sampler, state, 6, thin=2, collect=lambda s: s.cold, generator=torch.Generator()
    )
    assert samples.shape == (3, 3, 4) and len(infos) == 3


# ----- dtypes and devices ---------------------------------------------------------------
def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_runs_in_the_models_dtype_and_device(device, dtype):
    generator = torch.Generator().manual_seed(0)
    model = BernoulliRBM(6, 5, weight_std=1.0, generator=generator, dtype=dtype).to(device)
    sampler = ParallelTempering(model, n_replicas=3)
    state = sampler.init(torch.zeros(7, 6, dtype=dtype, device=device))
    chain_generator = torch.Generator(device=device).manual_seed(0)
    state, _, _ = run_chain(sampler, state, 5, generator=chain_generator)
    assert state.visible.dtype == dtype and state.energy.dtype == dtype
    assert state.visible.device.type == device and state.betas.dtype == torch.float64
    assert set(state.visible.unique().tolist()) <= {0.0, 1.0}
    joint = model.energy(state.visible[1], state.hidden[1]).detach()
    assert torch.allclose(state.energy[1], joint, atol=1e-4)
