"""The bias-augmented plain SGD epoch equals the general update path, draw for draw."""

from __future__ import annotations

import warnings

import pytest
import torch

from ebmlab.models import BernoulliRBM, GaussianBernoulliRBM
from ebmlab.training import trainer as trainer_module
from ebmlab.training.augmented_cd import PersistentChains, augmented_cd_epoch, supports
from ebmlab.training.trainer import CDConfig, CDTrainer


def tiny_rbm(seed: int = 0, kind: type = BernoulliRBM) -> BernoulliRBM:
    generator = torch.Generator().manual_seed(seed)
    model = kind(9, 6, generator=generator, dtype=torch.float64)
    with torch.no_grad():  # non-zero biases and larger weights: every term matters
        model.weight.mul_(50.0)
        model.visible_bias.normal_(generator=generator)
        model.hidden_bias.normal_(generator=generator)
    return model


# 23 rows in batches of 5: the last minibatch is shorter than the others and the chains.
DATA = torch.bernoulli(
    torch.full((23, 9), 0.35, dtype=torch.float64), generator=torch.Generator().manual_seed(1)
)
# Standardised real values for the Gaussian-Bernoulli RBM.
REAL_DATA = torch.randn(23, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
KINDS = {"bernoulli": (BernoulliRBM, DATA), "gaussian": (GaussianBernoulliRBM, REAL_DATA)}

CASES = {
    "cd1": {"persistent": False},
    "cd3-decay": {"persistent": False, "cd_k": 3, "weight_decay": 0.05},
    "pcd1": {"persistent": True},
    "pcd2-7-chains": {"persistent": True, "cd_k": 2, "n_chains": 7},
    "pcd1-reused": {"persistent": True, "reuse_hidden_means": True},
    "pcd2-reused-3-chains-decay": {
        "persistent": True,
        "reuse_hidden_means": True,
        "cd_k": 2,
        "n_chains": 3,
        "weight_decay": 0.01,
    },
}


def _train(options: dict, *, augmented: bool, monkeypatch, kind: str, epochs: int = 3):
    config = CDConfig(epochs=epochs, batch_size=5, lr=0.2, centering=False, final_lr_fraction=0.2,
                      **{"weight_decay": 0.0} | options)  # fmt: skip
    model_class, data = KINDS[kind]
    model = tiny_rbm(kind=model_class)
    # track_loss=True takes fused_cd_update (proven equal to autograd in test_cd_fused.py);
    # the Gaussian-Bernoulli RBM, the autograd path itself.
    trainer = CDTrainer(model, config, generator=torch.Generator().manual_seed(2),
                        track_loss=not augmented)  # fmt: skip
    calls = []
    original = trainer_module.augmented_cd_epoch
    monkeypatch.setattr(trainer_module, "augmented_cd_epoch",
                        lambda *a, **k: calls.append(1) or original(*a, **k))  # fmt: skip
    for _ in range(epochs):
        trainer.train_epoch(data)
    assert len(calls) == (epochs if augmented else 0)
    return model, trainer


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_augmented_epochs_equal_the_general_path(options, kind, monkeypatch):
    (fast, fast_trainer), (reference, reference_trainer) = (
        _train(options, augmented=augmented, monkeypatch=monkeypatch, kind=kind)
        for augmented in (True, False)
    )
    for a, b in zip(fast.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # The initial parameters are far away: the test compares trained models.
    assert not torch.allclose(fast.weight, tiny_rbm(kind=KINDS[kind][0]).weight, atol=1e-3)
    objective, expected = fast_trainer.objective, reference_trainer.objective
    if expected.chains is None:
        assert objective.chains is None
    else:  # the same draws from the same means: the same chains (binary: exactly)
        torch.testing.assert_close(objective.chains, expected.chains, rtol=1e-10, atol=1e-12)
        assert objective.chains.is_contiguous()
    if expected.chain_hidden_means is None:
        assert objective.chain_hidden_means is None
    else:
        torch.testing.assert_close(objective.chain_hidden_means, expected.chain_hidden_means)
    assert torch.equal(fast_trainer.generator.get_state(), reference_trainer.generator.get_state())
    # The learning rate decayed in both: the scheduler stepped after every epoch.
    assert fast_trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
        reference_trainer.optimizer.param_groups[0]["lr"]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"momentum": 0.5},
        {"centering": True},
        {"dynamic_binarization": True},
        {"precision": "bfloat16"},
        {"tempering": 3, "persistent": True},
        {"compile": True},
        {"sparsity_target": 0.1, "sparsity_cost": 0.5},
    ],
    ids=["momentum", "centering", "binarisation", "bfloat16", "tempering", "compile", "sparsity"],
)
def test_other_settings_keep_the_per_update_path(change):
    config = CDConfig(centering=False) if "centering" not in change else CDConfig()
    config = CDConfig(**config.to_dict() | change)
    model = BernoulliRBM(9, 6, generator=torch.Generator().manual_seed(0))
    trainer = CDTrainer(model, config, generator=torch.Generator(), track_loss=False)
    with torch.no_grad():
        assert not trainer._plain_sgd_epoch(DATA.float())
    plain = CDTrainer(model, CDConfig(centering=False), generator=torch.Generator(),
                      track_loss=False)  # fmt: skip
    with torch.no_grad():
        assert plain._plain_sgd_epoch(DATA.float())


@pytest.mark.parametrize(
    "model",
    [
        GaussianBernoulliRBM(4, 3, sigma=2.0),
        GaussianBernoulliRBM(4, 3, learn_sigma=True),
    ],
    ids=["sigma-2", "learnt-sigma"],
)
def test_gaussian_units_other_than_unit_variance_keep_the_autograd_path(model):
    assert supports(GaussianBernoulliRBM(4, 3))
    assert not supports(model)
    trainer = CDTrainer(model, CDConfig(centering=False), generator=torch.Generator(),
                        track_loss=False)  # fmt: skip
    assert not trainer._plain_sgd_epoch(REAL_DATA.float()[:, :4])


def test_a_tracked_loss_or_a_progress_bar_keeps_the_per_update_path(monkeypatch):
    monkeypatch.setattr(trainer_module, "augmented_cd_epoch", None)  # would fail if called
    model = tiny_rbm()
    tracked = CDTrainer(model, CDConfig(centering=False), generator=torch.Generator())
    assert "loss" in tracked.train_epoch(DATA)
    untracked = CDTrainer(model, CDConfig(centering=False), generator=torch.Generator(),
                          track_loss=False)  # fmt: skip
    assert "loss" not in untracked.train_epoch(DATA, progress=True)


def test_one_cd1_update_is_the_formula():
    # One minibatch, one sweep, no randomness that matters: hidden means 0 or 1 exactly
    # would hide the sampling, so compare against the sweep redrawn by hand instead.
    model = tiny_rbm(3)
    data = DATA[:5]
    weight, visible_bias, hidden_bias = (p.detach().clone() for p in model.parameters())
    generator = torch.Generator().manual_seed(4)
    augmented_cd_epoch(model, data, batch_size=5, lr=0.3, k=1, chains=None, generator=generator,
                       weight_decay=0.1)  # fmt: skip
    replay = torch.Generator().manual_seed(4)
    h_data = torch.sigmoid(data @ weight + hidden_bias)
    hidden = (torch.rand(h_data.shape, generator=replay, dtype=torch.float64) < h_data).double()
    v_mean = torch.sigmoid(hidden @ weight.T + visible_bias)
    v_model = (torch.rand(v_mean.shape, generator=replay, dtype=torch.float64) < v_mean).double()
    h_model = torch.sigmoid(v_model @ weight + hidden_bias)
    expected = (1 - 0.3 * 0.1) * weight + 0.3 * (data.T @ h_data - v_model.T @ h_model) / 5
    torch.testing.assert_close(model.weight.detach(), expected)
    torch.testing.assert_close(
        model.hidden_bias.detach(), hidden_bias + 0.3 * (h_data.mean(0) - h_model.mean(0))
    )
    torch.testing.assert_close(
        model.visible_bias.detach(), visible_bias + 0.3 * (data.mean(0) - v_model.mean(0))
    )


def test_reused_means_are_returned_and_fresh_chains_start_from_the_first_batch():
    model = tiny_rbm(5)
    start = PersistentChains(None, None, n_chains=7, reuse_hidden_means=True)
    chains = augmented_cd_epoch(model, DATA[:5], batch_size=5, lr=0.0, k=1, chains=start,
                                generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert chains.visible.shape == (7, 9) and chains.hidden_means.shape == (7, 6)
    # lr 0: the parameters stay, and the returned means are p(h = 1 | returned chains).
    torch.testing.assert_close(chains.hidden_means, model.mean_h(chains.visible).detach())
    recomputed = augmented_cd_epoch(
        model, DATA[:5], batch_size=5, lr=0.0, k=1,
        chains=PersistentChains(chains.visible, None, n_chains=7),
        generator=torch.Generator(),
    )  # fmt: skip
    assert recomputed.hidden_means is None and recomputed.visible.shape == (7, 9)


def test_learning_rate_groups_that_differ_keep_the_per_update_path():
    trainer = CDTrainer(BernoulliRBM(9, 6), CDConfig(centering=False), generator=torch.Generator(),
                        track_loss=False)  # fmt: skip
    assert trainer._plain_sgd_epoch(DATA.float())
    trainer.optimizer.param_groups[1]["lr"] *= 0.5  # the biases' group
    assert not trainer._plain_sgd_epoch(DATA.float())


def test_data_of_another_dtype_than_the_model_keeps_the_per_update_path():
    # The Gaussian-Bernoulli RBM accepts float32 data for a float64 model (type promotion).
    model = tiny_rbm(kind=GaussianBernoulliRBM)
    trainer = CDTrainer(model, CDConfig(centering=False, epochs=1, batch_size=5),
                        generator=torch.Generator().manual_seed(0), track_loss=False)  # fmt: skip
    assert not trainer._plain_sgd_epoch(REAL_DATA.float())
    trainer.train_epoch(REAL_DATA.float())  # trains, through autograd
    assert torch.isfinite(model.weight).all()


def test_a_sigma_loaded_after_construction_is_seen_at_the_next_epoch():
    model = tiny_rbm(kind=GaussianBernoulliRBM)
    trainer = CDTrainer(model, CDConfig(centering=False), generator=torch.Generator(),
                        track_loss=False)  # fmt: skip
    assert trainer._plain_sgd_epoch(REAL_DATA)
    state = model.state_dict() | {"log_sigma": torch.full((9,), 0.7, dtype=torch.float64)}
    model.load_state_dict(state)
    assert not trainer._plain_sgd_epoch(REAL_DATA)


def test_an_augmented_epoch_tells_the_scheduler_that_the_optimizer_stepped():
    # Else torch warns that lr_scheduler.step() came before optimizer.step().
    trainer = CDTrainer(tiny_rbm(), CDConfig(centering=False, batch_size=5),
                        generator=torch.Generator().manual_seed(0), track_loss=False)  # fmt: skip
    assert trainer._plain_sgd_epoch(DATA)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.train_epoch(DATA)
        trainer.train_epoch(DATA)
