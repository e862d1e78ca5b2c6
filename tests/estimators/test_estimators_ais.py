"""AIS against exact log Z on tiny, strongly coupled RBMs."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlab.estimators import (
    AnnealingPath,
    LogZEstimate,
    ais_log_partition,
    annealing_path,
    check_betas,
    default_betas,
    exact_log_partition,
)
from ebmlab.estimators.ais import log_mean_exp_interval, weight_ess
from ebmlab.estimators.evaluate import open_interval_warnings
from ebmlab.estimators.rbm_path import RBMAnnealingPath
from ebmlab.models.rbm import BernoulliRBM


def make_rbm(n_visible: int, n_hidden: int, seed: int, dtype=torch.float32) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(n_visible, n_hidden, weight_std=1.0, generator=generator, dtype=dtype)
    with torch.no_grad():
        model.visible_bias.normal_(0.0, 1.0, generator=generator)
        model.hidden_bias.normal_(0.0, 1.0, generator=generator)
    return model


def run_ais(model, seed, **kwargs) -> LogZEstimate:
    kwargs.setdefault("n_chains", 100)
    return ais_log_partition(
        model, generator=torch.Generator().manual_seed(seed), progress=False, **kwargs
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_exact_log_z(seed):
    model = make_rbm(20, 12, seed)
    exact = exact_log_partition(model)
    estimate = run_ais(model, seed, betas=3000)
    # The 3-sigma interval of an unbiased estimate of Z with 100 chains; a wrong base
    # normaliser or weight update shifts log Z by whole nats (e.g. 12 log 2).
    assert estimate.log_z_lower <= exact <= estimate.log_z_upper, (estimate, exact)
    assert estimate.log_z_upper - estimate.log_z_lower < 0.2


def test_interval_contains_exact_log_z_with_base_rate_model():
    model = make_rbm(20, 12, seed=4)
    generator = torch.Generator().manual_seed(0)
    data = (
        torch.rand(300, 20, generator=generator) < torch.sigmoid(model.visible_bias.detach())
    ).float()
    estimate = run_ais(model, 4, betas=3000, base_data=data)
    assert estimate.log_z_lower <= exact_log_partition(model) <= estimate.log_z_upper


def test_orientation_with_more_hidden_than_visible():
    model = make_rbm(10, 16, seed=5, dtype=torch.float64)
    estimate = run_ais(model, 5, betas=3000)
    assert estimate.log_z_lower <= exact_log_partition(model) <= estimate.log_z_upper


def test_error_shrinks_with_more_temperatures():
    errors = {}
    for n_betas in (10, 2000):
        errors[n_betas] = (
            sum(
                abs(
                    run_ais(make_rbm(20, 12, seed), seed, betas=n_betas).log_z
                    - exact_log_partition(make_rbm(20, 12, seed))
                )
                for seed in range(4)
            )
            / 4
        )
    # Measured: about 0.2 nats with 10 temperatures, under 0.01 with 2000; a factor 5 leaves room.
    assert errors[2000] < errors[10] / 5, errors


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 8))
def test_default_schedule_interval_contains_exact(seed):
    model = make_rbm(24, 15, seed)
    estimate = run_ais(model, seed, betas=None, n_chains=200)
    assert estimate.n_betas == 14501
    assert estimate.log_z_lower <= exact_log_partition(model) <= estimate.log_z_upper


def test_same_seed_same_estimate_bitwise():
    model = make_rbm(20, 12, seed=0)
    first, second = run_ais(model, 11, betas=300), run_ais(model, 11, betas=300)
    assert torch.equal(first.log_weights, second.log_weights)
    assert first.log_z == second.log_z
    assert run_ais(model, 12, betas=300).log_z != first.log_z


def test_result_fields():
    estimate = run_ais(make_rbm(8, 5, seed=0), 0, betas=50, n_chains=7)
    assert (estimate.n_chains, estimate.n_betas) == (7, 50)
    assert estimate.log_weights.shape == (7,) and estimate.log_weights.dtype == torch.float64
    assert estimate.seconds > 0
    assert "log_weights" not in repr(estimate) and "log_weights" not in estimate.to_dict()
    with pytest.raises(AttributeError):
        estimate.log_z = 0.0  # frozen


def test_log_mean_exp_interval_matches_direct_computation():
    log_weights = torch.tensor([-1.0, 0.5, 0.2, -0.3, 1.1], dtype=torch.float64)
    weights = log_weights.exp()
    mean, sigma = weights.mean(), weights.std() / math.sqrt(5)
    log_mean, lower, upper = log_mean_exp_interval(
        log_weights + 800.0
    )  # exp(800) overflows float64
    assert log_mean - 800.0 == pytest.approx(mean.log().item(), rel=1e-12)
    assert upper - 800.0 == pytest.approx((mean + 3 * sigma).log().item(), rel=1e-12)
    assert lower - 800.0 == pytest.approx((mean - 3 * sigma).log().item(), rel=1e-12)
    # Widely spread weights: Z - 3 sigma <= 0 gives a lower bound of -inf.
    _, lower, upper = log_mean_exp_interval(torch.tensor([0.0, 10.0, -5.0], dtype=torch.float64))
    assert lower == -math.inf and math.isfinite(upper)
    assert log_mean_exp_interval(torch.zeros(1, dtype=torch.float64))[1:] == (-math.inf, math.inf)


def test_default_betas_follow_salakhutdinov_murray():
    betas = default_betas()
    assert betas.numel() == 14501 and betas[0] == 0 and betas[-1] == 1
    steps = betas.diff()
    assert (steps > 0).all()
    assert steps[0].item() == pytest.approx(1e-3) and steps[600].item() == pytest.approx(1e-4)
    assert steps[-1].item() == pytest.approx(1e-5)
    short = default_betas(1000)
    assert short.numel() == 1000 and short[0] == 0 and short[-1] == 1 and (short.diff() > 0).all()
    assert (short > 0.9).sum() > (short < 0.5).sum()  # densest near 1, as the full schedule


@pytest.mark.parametrize(
    ("betas", "error", "message"),
    [
        (1, ValueError, "betas must be at least 2"),
        (
            torch.tensor([0.1, 0.5, 1.0]),
            ValueError,
            "betas must start at 0 and end at 1; got first=0.1",
        ),
        (torch.tensor([0.0, 0.5, 0.9]), ValueError, "betas must start at 0 and end at 1"),
        (
            torch.tensor([0.0, 0.6, 0.5, 1.0]),
            ValueError,
            r"non-decreasing; got betas\[1\]=0.6 > betas\[2\]=0.5",
        ),
        (torch.zeros(2, 2), ValueError, "betas must be a 1-D tensor"),
        (torch.tensor([0.0, float("nan"), 1.0]), ValueError, "betas contains NaN"),
        ([0.0, 1.0], TypeError, "betas must be None, an int or a 1-D torch.Tensor; got list"),
    ],
)
def test_bad_betas(betas, error, message):
    with pytest.raises(error, match=message):
        ais_log_partition(make_rbm(4, 3, seed=0), betas=betas, progress=False)


def test_bad_arguments():
    model = make_rbm(4, 3, seed=0)
    with pytest.raises(ValueError, match="n_chains must be a positive integer; got 0"):
        ais_log_partition(model, n_chains=0, betas=5, progress=False)
    with pytest.raises(ValueError, match="base_data must have 4 columns"):
        ais_log_partition(model, betas=5, base_data=torch.zeros(3, 5), progress=False)
    with pytest.raises(ValueError, match=r"base_data must lie in \[0, 1\]"):
        ais_log_partition(model, betas=5, base_data=torch.full((3, 4), -1.0), progress=False)
    with pytest.raises(TypeError, match="no annealing path is registered for str"):
        ais_log_partition("not a model", betas=5, progress=False)
    assert check_betas(torch.tensor([0.0, 0.0, 1.0])).dtype == torch.float64  # repeats are allowed


def test_fused_rbm_step_equals_the_generic_step():
    model = make_rbm(9, 7, seed=3, dtype=torch.float64)
    path = annealing_path(model)
    assert isinstance(path, RBMAnnealingPath)
    states, weights = [], []
    for advance in (path.advance, lambda *a, **k: AnnealingPath.advance(path, *a, **k)):
        generator = torch.Generator().manual_seed(0)
        state = path.sample_base(6, generator=generator)
        log_weights = torch.zeros(6, dtype=torch.float64)
        for beta_prev, beta in [(0.0, 0.3), (0.3, 0.31), (0.31, 1.0)]:
            state = advance(state, beta_prev, beta, log_weights, generator=generator)
        states.append(state.visible.clone())
        weights.append(log_weights)
    assert torch.equal(states[0], states[1])
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-12, atol=1e-12)


class IndependentBits:
    """p(x) proportional to exp(theta . x): Z = prod_i (1 + e^theta_i), exact samples."""

    def __init__(self, theta: torch.Tensor) -> None:
        self.theta = theta


class IndependentBitsPath(AnnealingPath):
    """A plug-in path using the generic advance: f_beta(x) = exp(beta theta . x)."""

    def __init__(self, model: IndependentBits) -> None:
        self.theta = model.theta
        self.log_base_partition = model.theta.numel() * math.log(2.0)

    def sample_base(self, n_chains, *, generator=None):
        return (torch.rand(n_chains, self.theta.numel(), generator=generator) < 0.5).double()

    def log_unnormalized(self, state, beta):
        return beta * state @ self.theta

    def transition(self, state, beta, *, generator=None):
        return (
            torch.rand(state.shape, generator=generator, dtype=state.dtype)
            < torch.sigmoid(beta * self.theta)
        ).double()


def test_a_registered_path_plugs_into_ais():
    annealing_path.register(IndependentBits)(
        lambda model, *, base_data=None: IndependentBitsPath(model)
    )
    theta = torch.linspace(-3.0, 3.0, 8, dtype=torch.float64)
    estimate = ais_log_partition(
        IndependentBits(theta),
        n_chains=200,
        betas=200,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    exact = torch.nn.functional.softplus(theta).sum().item()
    assert estimate.log_z_lower <= exact <= estimate.log_z_upper


def test_weight_ess_is_kishs_formula_and_overflow_safe():
    weights = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert weight_ess(weights.log()) == pytest.approx(16 / 10, rel=1e-12)  # (1+3)^2 / (1+9)
    assert weight_ess(weights.log() + 5000.0) == pytest.approx(1.6, rel=1e-12)
    assert weight_ess(torch.zeros(40)) == pytest.approx(40.0)  # equal weights: every chain
    assert weight_ess(torch.tensor([0.0, -800.0, -800.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="log_weights must hold"):
        weight_ess(torch.zeros(0))


def test_summary_reports_ess_and_whether_the_interval_closes():
    model = make_rbm(20, 12, seed=0)
    good = run_ais(model, 0, betas=3000)
    summary = good.summary()
    assert summary["interval_closed"] is True and good.interval_closed
    assert 50 < summary["weight_ess"] <= 100  # a near-exact run: most chains count
    assert summary["weight_ess"] == weight_ess(good.log_weights)
    assert (summary["value"], summary["lower"], summary["upper"]) == (
        good.log_z,
        good.log_z_lower,
        good.log_z_upper,
    )
    # Two temperatures on strong weights: one chain carries the estimate, the interval opens.
    strong = make_rbm(20, 12, seed=0)
    with torch.no_grad():
        strong.weight.mul_(4.0)
    bad = run_ais(strong, 0, betas=2, n_chains=20)
    assert bad.summary()["interval_closed"] is False and bad.log_z_lower == -math.inf
    assert bad.weight_ess < 2.0


def test_open_intervals_are_warned_about_with_the_ess():
    closed = {"value": -90.0, "lower": -90.5, "upper": -89.6}
    result = {
        "test_loglik": {"value": -90.0, "lower": -91.0, "upper": math.inf},
        "loglik_bound": closed,
        "log_z": {"lower": -math.inf, "upper": 10.0, "weight_ess": 1.04, "n_chains": 100},
        "cheap": {"lower": None, "upper": None},  # monitoring estimates without an interval
    }
    (line,) = open_interval_warnings(result)
    assert line.startswith("warning: the interval of test_loglik is open [-91, inf]")
    assert "ESS is 1.0 of 100 chains" in line
    assert open_interval_warnings({"test_loglik": closed, "log_z": {"lower": 1.0}}) == []
