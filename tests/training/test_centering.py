"""Centered RBMs: exact conversion to plain RBMs, the centered gradient, the offsets."""

from __future__ import annotations

import copy

import pytest
import torch

from ebmlab.estimators.exact import exact_log_likelihood, exact_log_partition
from ebmlab.models import BernoulliRBM, GaussianBernoulliRBM
from ebmlab.models.enumeration import enumerate_binary
from ebmlab.training.cd import cd_loss
from ebmlab.training.centering import CenteredRBM, Centering
from ebmlab.training.trainer import CDConfig, CDTrainer

F64 = torch.float64


def tiny_rbm(n_visible: int = 5, n_hidden: int = 3, seed: int = 0) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = BernoulliRBM(n_visible, n_hidden, weight_std=1.0, generator=generator, dtype=F64)
    with torch.no_grad():
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
    return model


def tiny_gaussian_rbm(seed: int = 0) -> GaussianBernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = GaussianBernoulliRBM(4, 3, sigma=0.7, weight_std=0.5, generator=generator, dtype=F64)
    with torch.no_grad():
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
        model.log_sigma.uniform_(-0.5, 0.5, generator=generator)
    return model


def offsets(model, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mu = torch.rand(model.n_visible, generator=generator, dtype=F64)
    lam = torch.rand(model.n_hidden, generator=generator, dtype=F64)
    return mu, lam


def centered_log_partition(centered: CenteredRBM) -> float:
    """log Z of the centered energy by enumerating every (v, h)."""
    n_visible, n_hidden = centered.weight.shape
    states = enumerate_binary(n_visible + n_hidden, dtype=F64)
    v, h = states[:, :n_visible], states[:, n_visible:]
    return float(torch.logsumexp(-centered.energy(v, h), 0))


def test_centered_form_has_the_same_distribution_and_the_stated_log_z_shift():
    model = tiny_rbm()
    mu, lam = offsets(model)
    centered = CenteredRBM.from_plain(model, visible_offset=mu, hidden_offset=lam)
    log_z_plain = exact_log_partition(model)
    log_z_centered = centered_log_partition(centered)
    assert log_z_centered - log_z_plain == pytest.approx(centered.log_z_shift(), abs=1e-10)
    assert abs(centered.log_z_shift()) > 0.1  # the offsets really shift log Z

    # log p(v) for every v, from the centered energy, equals the plain model's.
    v_all = enumerate_binary(model.n_visible, dtype=F64)
    h_all = enumerate_binary(model.n_hidden, dtype=F64)
    pairs_v = v_all.repeat_interleave(h_all.shape[0], 0)
    pairs_h = h_all.repeat(v_all.shape[0], 1)
    neg_energy = -centered.energy(pairs_v, pairs_h).reshape(v_all.shape[0], h_all.shape[0])
    log_p_centered = torch.logsumexp(neg_energy, 1) - log_z_centered
    log_p_plain = -model.free_energy(v_all) - log_z_plain
    torch.testing.assert_close(log_p_centered, log_p_plain, rtol=0, atol=1e-10)


def test_round_trip_recovers_the_plain_parameters():
    model = tiny_rbm()
    mu, lam = offsets(model)
    plain = CenteredRBM.from_plain(model, visible_offset=mu, hidden_offset=lam).to_plain()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(getattr(plain, name), parameter, rtol=0, atol=1e-12)
    assert exact_log_likelihood(plain, v := enumerate_binary(5, dtype=F64)) == pytest.approx(
        exact_log_likelihood(model, v), abs=1e-10
    )


def test_gaussian_centered_energy_differs_from_the_plain_one_by_the_stated_constant():
    model = tiny_gaussian_rbm()
    lam = offsets(model)[1]
    centered = CenteredRBM.from_plain(model, hidden_offset=lam)
    generator = torch.Generator().manual_seed(3)
    v = torch.randn(50, 4, generator=generator, dtype=F64) * 2
    h = torch.bernoulli(torch.full((50, 3), 0.5, dtype=F64), generator=generator)
    # A constant energy difference k means the same distribution and log Z_c = log Z - k.
    difference = centered.energy(v, h) - model.energy(v, h)
    torch.testing.assert_close(
        difference, torch.full_like(difference, -centered.log_z_shift()), rtol=0, atol=1e-10
    )
    plain = centered.to_plain()
    for name in ("weight", "visible_bias", "hidden_bias", "log_sigma"):
        torch.testing.assert_close(getattr(plain, name), getattr(model, name), atol=1e-12, rtol=0)


def contrastive_batches(model, seed: int = 4):
    generator = torch.Generator().manual_seed(seed)
    if isinstance(model, GaussianBernoulliRBM):
        v_data = torch.randn(9, model.n_visible, generator=generator, dtype=F64)
        v_model = torch.randn(6, model.n_visible, generator=generator, dtype=F64)
    else:
        v_data = torch.bernoulli(
            torch.full((9, model.n_visible), 0.3, dtype=F64), generator=generator
        )
        v_model = torch.bernoulli(
            torch.full((6, model.n_visible), 0.6, dtype=F64), generator=generator
        )
    return v_data, model.mean_h(v_data).detach(), v_model, model.mean_h(v_model).detach()


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_centered_gradient_is_a_sgd_step_in_centered_coordinates(kind, weight_decay):
    """Plain params - lr * (transformed grads) == to_plain(centered params - lr * centered grads)."""
    model = tiny_rbm() if kind == "bernoulli" else tiny_gaussian_rbm()
    mu, lam = offsets(model)
    mu = mu if kind == "bernoulli" else None
    batches = contrastive_batches(model)
    lr = 0.3

    # The centered side: autograd of the centered CD surrogate in centered coordinates.
    centered = CenteredRBM.from_plain(model, visible_offset=mu, hidden_offset=lam)
    params = {
        n: getattr(centered, n).clone().requires_grad_()
        for n in ("weight", "visible_bias", "hidden_bias")
    }
    moved = CenteredRBM(**{**centered.__dict__, **params})
    v_data, h_data, v_model, h_model = batches
    surrogate = moved.energy(v_data, h_data).mean() - moved.energy(v_model, h_model).mean()
    surrogate = surrogate + 0.5 * weight_decay * (params["weight"] ** 2).sum()
    surrogate.backward()
    with torch.no_grad():
        stepped = CenteredRBM(
            **{**centered.__dict__, **{n: p - lr * p.grad for n, p in params.items()}}
        )
    expected = stepped.to_plain()

    # The plain side: plain CD gradients, centered by Centering, one plain SGD step.
    cd_loss(model, *batches).backward()
    centering = Centering(model)
    centering.visible_offset = torch.zeros(model.n_visible, dtype=F64) if mu is None else mu
    centering.hidden_offset = lam
    centering.center_gradients(weight_decay=weight_decay)
    with torch.no_grad():
        for name in ("weight", "visible_bias", "hidden_bias"):
            parameter = getattr(model, name)
            torch.testing.assert_close(
                parameter - lr * parameter.grad, getattr(expected, name), rtol=0, atol=1e-12
            )


def test_centered_weight_gradient_is_the_covariance_of_centered_statistics():
    model = tiny_rbm()
    mu, lam = offsets(model)
    v_data, h_data, v_model, h_model = contrastive_batches(model)
    cd_loss(model, v_data, h_data, v_model, h_model).backward()
    centering = Centering(model)
    centering.visible_offset, centering.hidden_offset = mu, lam
    centering.center_gradients()

    def statistic(v, h):
        return (v - mu).t() @ (h - lam) / v.shape[0]

    expected = statistic(v_model, h_model) - statistic(v_data, h_data)
    torch.testing.assert_close(model.weight.grad, expected, rtol=0, atol=1e-12)


def test_offsets_follow_moving_averages_of_the_batch_means():
    model = tiny_rbm()
    centering = Centering(model, rate=0.25)
    generator = torch.Generator().manual_seed(5)
    v = torch.bernoulli(torch.full((20, 5), 0.3, dtype=F64), generator=generator)
    centering.initialise(v, model.mean_h(v))
    torch.testing.assert_close(centering.visible_offset, v.mean(0))
    mu, lam = centering.visible_offset.clone(), centering.hidden_offset.clone()
    for _ in range(3):
        batch = torch.bernoulli(torch.full((7, 5), 0.8, dtype=F64), generator=generator)
        h = model.mean_h(batch)
        centering.update_offsets(batch.mean(0), h.mean(0))
        mu, lam = 0.75 * mu + 0.25 * batch.mean(0), 0.75 * lam + 0.25 * h.mean(0)
    torch.testing.assert_close(centering.visible_offset, mu, rtol=0, atol=1e-12)
    torch.testing.assert_close(centering.hidden_offset, lam, rtol=0, atol=1e-12)


def digits_like_data(n: int = 60, seed: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.bernoulli(torch.full((3, 8), 0.5, dtype=F64), generator=generator)
    rows = prototypes[torch.randint(3, (n,), generator=generator)]
    flips = torch.bernoulli(torch.full_like(rows, 0.1), generator=generator)
    return (rows + flips) % 2


class PlainSubclass(BernoulliRBM):
    """Same energy; being a subclass sends CDTrainer down its autograd path."""


@pytest.mark.parametrize("persistent", [False, True])
def test_trainer_centering_fused_and_autograd_paths_agree(persistent):
    data = digits_like_data()
    config = CDConfig(
        epochs=3, batch_size=10, lr=0.1, persistent=persistent, centering=True, offset_rate=0.1
    )
    results = []
    for model_class in (BernoulliRBM, PlainSubclass):
        model = model_class(8, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
        trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(1))
        assert trainer._fused == (model_class is BernoulliRBM)
        for _ in range(3):
            trainer.train_epoch(data)
        results.append((model, trainer.centering.hidden_offset))
    for (a, offset_a), (b, offset_b) in zip(results[:1], results[1:], strict=True):
        for name, parameter in a.named_parameters():
            torch.testing.assert_close(getattr(b, name), parameter, rtol=0, atol=1e-10)
        torch.testing.assert_close(offset_a, offset_b, rtol=0, atol=1e-12)


def test_centered_training_learns_as_well_as_plain_training():
    """Both raise the exact likelihood well above the start; centering loses nothing."""
    data = 1 - digits_like_data(n=200)  # mostly-on pixels: far from the origin
    start = BernoulliRBM(8, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    initial = exact_log_likelihood(start, data)
    scores = {}
    for centering in (False, True):
        model = copy.deepcopy(start)
        config = CDConfig(epochs=30, batch_size=20, lr=0.1, centering=centering, offset_rate=0.1)
        trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(1))
        for _ in range(config.epochs):
            trainer.train_epoch(data)
        scores[centering] = exact_log_likelihood(model, data)
    assert scores[False] > initial + 0.5 and scores[True] > initial + 0.5, (initial, scores)
    assert scores[True] > scores[False] - 0.05, scores


def test_resume_with_centering_continues_bit_for_bit():
    data = digits_like_data()
    config = CDConfig(epochs=4, batch_size=10, lr=0.1, persistent=True, centering=True)

    def fresh():
        model = BernoulliRBM(8, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
        return model, CDTrainer(model, config, generator=torch.Generator().manual_seed(1))

    model, trainer = fresh()
    for _ in range(4):
        trainer.train_epoch(data)
    reference = copy.deepcopy(model.state_dict())

    model, trainer = fresh()
    for _ in range(2):
        trainer.train_epoch(data)
    saved_model, saved_state = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(trainer.state_dict()),
    )
    model, trainer = fresh()
    model.load_state_dict(saved_model)
    trainer.load_state_dict(saved_state)
    for _ in range(2):
        trainer.train_epoch(data)
    for name, value in model.state_dict().items():
        assert torch.equal(value, reference[name]), name


@pytest.mark.parametrize("rate", [0, 1.5, -0.1, float("nan"), True])
def test_bad_offset_rate_is_one_clear_error(rate):
    with pytest.raises(ValueError, match="offset_rate"):
        CDConfig(centering=True, offset_rate=rate)


def test_learnt_sigma_and_foreign_models_are_refused():
    with pytest.raises(ValueError, match="learn_sigma"):
        Centering(GaussianBernoulliRBM(4, 3, learn_sigma=True))
    with pytest.raises(ValueError, match="BernoulliRBM or GaussianBernoulliRBM"):
        Centering(torch.nn.Linear(3, 4))


def test_bad_offsets_are_refused():
    model = tiny_rbm()
    with pytest.raises(ValueError, match=r"hidden_offset must have shape \(3,\)"):
        CenteredRBM.from_plain(model, hidden_offset=torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="visible_offset must be finite"):
        CenteredRBM.from_plain(
            model,
            hidden_offset=torch.zeros(3, dtype=F64),
            visible_offset=torch.full((5,), float("nan"), dtype=F64),
        )
    with pytest.raises(ValueError, match="hidden side only"):
        CenteredRBM.from_plain(
            tiny_gaussian_rbm(),
            hidden_offset=torch.zeros(3, dtype=F64),
            visible_offset=torch.ones(4, dtype=F64),
        )
    centering = Centering(model)
    with pytest.raises(ValueError, match="hidden_offset must have shape"):
        centering.load_state_dict(
            {"visible_offset": torch.zeros(5), "hidden_offset": torch.zeros(2)}
        )
