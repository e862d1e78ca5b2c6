"""Training Boltzmann machines: exact gradient, parameter recovery, mean field, structure."""

from __future__ import annotations

import pytest
import torch

from ebmlab.estimators.exact_bm import bm_log_likelihood, bm_log_marginals, bm_model_moments
from ebmlab.models.bm import BoltzmannMachine, binary_states
from ebmlab.training.bm import BMTrainer, bm_loss, mean_field_hidden


def random_bm(
    n_visible: int, n_hidden: int, *, scale: float = 0.7, seed: int = 0
) -> BoltzmannMachine:
    generator = torch.Generator().manual_seed(seed)
    model = BoltzmannMachine(
        n_visible, n_hidden, weight_std=scale, generator=generator, dtype=torch.float64
    )
    with torch.no_grad():
        model.visible_bias.copy_(
            0.5 * torch.randn(n_visible, generator=generator, dtype=torch.float64)
        )
        model.hidden_bias.copy_(
            0.5 * torch.randn(n_hidden, generator=generator, dtype=torch.float64)
        )
    return model


def exact_samples(model: BoltzmannMachine, n: int, *, seed: int) -> torch.Tensor:
    """Independent draws from the enumerated p(x)."""
    p = bm_log_marginals(model).exp()
    index = torch.multinomial(p, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return binary_states(model.n_visible, dtype=torch.float64)[index]


def differentiable_log_likelihood(model: BoltzmannMachine, data: torch.Tensor) -> torch.Tensor:
    z = binary_states(model.n_units, dtype=torch.float64)
    log_z = torch.logsumexp(-model.energy(z[:, : model.n_visible], z[:, model.n_visible :]), 0)
    return -model.free_energy(data).mean() - log_z


def test_exact_surrogate_gradient_is_minus_the_log_likelihood_gradient():
    model = random_bm(4, 3)
    data = exact_samples(random_bm(4, 0, seed=5), 40, seed=1)
    trainer = BMTrainer(model)
    loss = bm_loss(model, trainer.data_moments(data)[0], trainer.model_moments())
    surrogate = torch.autograd.grad(loss, list(model.parameters()))
    direct = torch.autograd.grad(
        -differentiable_log_likelihood(model, data), list(model.parameters())
    )
    for got, expected in zip(surrogate, direct, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_fully_visible_bm_recovers_the_parameters_of_a_known_model():
    # 20,000 exact samples of a known 10-unit BM; the exact gradient (2^10 states) makes the
    # fit deterministic. The MLE's sampling error per coupling is about 1/sqrt(20,000 * var)
    # ~ 0.02-0.05, far below the spread of the true couplings (0.5), so corr > 0.95 is a
    # margin of several standard errors, while a factor-of-2 slip in the gradient would
    # still correlate but not converge within the step budget (log-likelihood check below).
    truth = random_bm(10, 0, scale=0.5, seed=2)
    data = exact_samples(truth, 20_000, seed=3)
    model = BoltzmannMachine(10, 0, weight_std=0.0, dtype=torch.float64)
    trainer = BMTrainer(model, lr=0.2, momentum=0.9)
    for _ in range(300):
        trainer.step(data)
    upper = torch.triu_indices(10, 10, 1).unbind()
    couplings = torch.stack([truth.weight_vv[upper], model.weight_vv[upper]]).detach()
    biases = torch.stack([truth.visible_bias, model.visible_bias]).detach()
    assert torch.corrcoef(couplings)[0, 1] > 0.95
    assert torch.corrcoef(biases)[0, 1] > 0.95
    # The fit is at least as likely as the truth on its own training data (it is the MLE).
    assert bm_log_likelihood(model, data) >= bm_log_likelihood(truth, data) - 1e-4


def test_mean_field_fixed_point_satisfies_its_equations():
    model = random_bm(6, 5, scale=1.0)
    x = binary_states(6, dtype=torch.float64)[::3]
    tol = 1e-9
    result = mean_field_hidden(model, x, damping=0.5, tol=tol, max_iter=500)
    mu = result.mean
    field = model.hidden_bias + x @ model.weight_vh + 2 * mu @ model.weight_hh
    assert result.converged and result.n_iter < 500
    assert float((torch.sigmoid(field) - mu).abs().max().detach()) < tol


def test_mean_field_is_exact_without_hidden_couplings():
    model = random_bm(4, 3)
    model.weight_hh = torch.zeros(3, 3, dtype=torch.float64)
    x = binary_states(4, dtype=torch.float64)
    exact = torch.softmax(model.joint_log_weights(x), 1) @ binary_states(3, dtype=torch.float64)
    result = mean_field_hidden(model, x, tol=1e-12)
    torch.testing.assert_close(result.mean, exact, rtol=0, atol=1e-10)


def test_mean_field_reports_non_convergence():
    result = mean_field_hidden(
        random_bm(4, 6, scale=3.0), torch.ones(2, 4, dtype=torch.float64), max_iter=1
    )
    assert result.n_iter == 1 and not result.converged and result.residual > 1e-6


def test_symmetry_and_zero_diagonal_survive_training_with_momentum_and_decay():
    model = random_bm(6, 4)
    data = exact_samples(random_bm(6, 0, seed=9), 64, seed=0)
    trainer = BMTrainer(
        model,
        lr=0.1,
        momentum=0.9,
        weight_decay=0.01,
        data_term="mean_field",
        model_term="pcd",
    )
    generator = torch.Generator().manual_seed(0)
    before = model.weight_hh.detach().clone()
    for _ in range(3):
        trainer.train_epoch(data, batch_size=16, generator=generator)
    assert not torch.equal(before, model.weight_hh)
    for name in ("weight_vv", "weight_hh"):
        w = getattr(model, name)
        assert torch.equal(w, w.t()) and torch.all(w.diagonal() == 0), name
        free = model.parametrizations[name].original
        assert torch.equal(free, free.t()) and torch.all(free.diagonal() == 0), name


def test_pcd_and_mean_field_training_improves_the_exact_likelihood():
    truth = random_bm(6, 0, scale=1.0, seed=4)
    data = exact_samples(truth, 2000, seed=5)
    model = BoltzmannMachine(
        6, 2, weight_std=0.1, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    model.init_visible_bias(data)
    start = bm_log_likelihood(model, data)
    trainer = BMTrainer(model, lr=0.1, data_term="mean_field", model_term="pcd", n_chains=200)
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        trainer.train_epoch(data, batch_size=100, generator=generator)
    # The true model's exact log-likelihood is (nearly) the ceiling; 200 updates of PCD with a
    # mean-field data term close most of the gap from the independent-units start (0.94 of it
    # with this seed), while a wrong sign or factor in either term leaves it open or widens it.
    gain, possible = bm_log_likelihood(model, data) - start, bm_log_likelihood(truth, data) - start
    assert gain > 0.75 * possible


def test_trainer_state_round_trips_the_persistent_chains():
    model = random_bm(4, 2)
    trainer = BMTrainer(model, model_term="pcd", n_chains=8, momentum=0.9)
    trainer.step(torch.ones(3, 4, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    other = BMTrainer(model, model_term="pcd", n_chains=8, momentum=0.9)
    other.load_state_dict(trainer.state_dict())
    assert torch.equal(other.chains.visible, trainer.chains.visible)
    moments = bm_model_moments(model)
    assert moments.second_moment.shape == (6, 6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data_term": "sampled"}, "data_term must be one of"),
        ({"model_term": "cd"}, "model_term must be one of"),
        ({"lr": 0.0}, "lr must be"),
        ({"gibbs_steps": 0}, "gibbs_steps must be"),
        ({"mean_field_damping": 1.0}, "damping must be < 1"),
        ({"scan": "reverse"}, "scan must be one of"),
    ],
)
def test_bad_trainer_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BMTrainer(random_bm(3, 1), **kwargs)


def test_exact_terms_are_refused_for_large_models():
    with pytest.raises(ValueError, match="use model_term='pcd'"):
        BMTrainer(BoltzmannMachine(30, 0))
    with pytest.raises(ValueError, match="use data_term='mean_field'"):
        BMTrainer(BoltzmannMachine(3, 21), model_term="pcd")
