"""Greedy layer-wise training and discriminative fine-tuning of DBNs."""

from __future__ import annotations

import copy

import pytest
import torch

from ebmlab.data import bars_and_stripes
from ebmlab.estimators.dbn_bound import dbn_exact_log_likelihood, dbn_log_likelihood_bound
from ebmlab.models.dbn import DBN
from ebmlab.training.checkpoint import encode_checkpoint
from ebmlab.training.finetune import (
    DBNClassifier,
    FinetuneConfig,
    FinetuneTrainer,
    finetune,
    labelled_subset,
)
from ebmlab.training.greedy import GreedyTrainer, propagate, train_greedy
from ebmlab.training.trainer import CDConfig


def bars_data() -> torch.Tensor:
    """The 14 3x3 bars-and-stripes patterns, 20 copies each (float64)."""
    return bars_and_stripes(3).double().repeat(20, 1)


# ----- greedy training ---------------------------------------------------------------------
def test_greedy_training_visits_layers_in_order_with_their_configs():
    data = bars_data()
    dbn = DBN([9, 5, 4], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen = []
    configs = [CDConfig(epochs=2, batch_size=20), CDConfig(epochs=3, batch_size=20)]
    before = copy.deepcopy(dbn.state_dict())
    train_greedy(
        dbn,
        data,
        configs,
        generator=torch.Generator().manual_seed(0),
        on_epoch=lambda layer, epoch, record: seen.append((layer, epoch)),
    )
    assert seen == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    assert all(not torch.equal(before[k], v) for k, v in dbn.state_dict().items())


def test_greedy_rejects_wrong_data_and_configs():
    dbn = DBN([9, 5, 4], generator=torch.Generator().manual_seed(0))
    generator = torch.Generator()
    with pytest.raises(ValueError, match="9 columns"):
        train_greedy(dbn, torch.rand(10, 8), CDConfig(epochs=1), generator=generator)
    with pytest.raises(ValueError, match="one per RBM"):
        train_greedy(dbn, torch.rand(10, 9), [CDConfig(epochs=1)], generator=generator)
    with pytest.raises(ValueError, match="propagation"):
        GreedyTrainer(dbn, CDConfig(), propagation="mode", generator=generator)


def test_upper_layer_trains_on_the_propagated_data():
    data = bars_data()
    dbn = DBN([9, 5, 4], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    trainer = GreedyTrainer(
        dbn, CDConfig(epochs=1), propagation="sample", generator=torch.Generator().manual_seed(0)
    )
    trainer.train_epoch(data)
    trainer.train_epoch(data)  # moves to layer 1 and draws its propagation seed
    seeded = torch.Generator().manual_seed(trainer.propagation_seed)
    expected = propagate(dbn, data, 1, propagation="sample", generator=seeded)
    assert set(expected.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(trainer.layer_data(data), expected)
    assert trainer.done


def test_greedy_second_layer_raises_the_bound_on_tiny_data():
    # The second RBM starts at the first one's transpose, so the DBN starts as the RBM and
    # its bound equals the RBM's exact log-likelihood; training the second RBM on fresh
    # samples of Q(h1|v) every epoch must then raise the bound (Hinton et al. 2006, sec. 4).
    data = bars_data()
    # A seeded initialisation: the global RNG would make the result depend on test order.
    dbn = DBN([9, 6, 9], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rbm_log_likelihood = {}

    def after_epoch(layer, epoch, record):
        if layer == 0 and epoch == 60:
            one_layer = DBN([9, 6], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
            one_layer.rbms[0].load_state_dict(dbn.rbms[0].state_dict())
            rbm_log_likelihood["value"] = dbn_exact_log_likelihood(one_layer, data).mean().item()

    # Defaults: no momentum, the rate falling to zero; a large rate makes 60 epochs enough.
    configs = [
        CDConfig(epochs=60, batch_size=20, lr=0.5, cd_k=5),
        CDConfig(epochs=60, batch_size=20, lr=0.5, cd_k=5, dynamic_binarization=True),
    ]
    train_greedy(
        dbn,
        data,
        configs,
        generator=torch.Generator().manual_seed(0),
        init_from_below=True,
        on_epoch=after_epoch,
    )
    bound = dbn_log_likelihood_bound(dbn, data, exact=True).value
    # Everything is exact (enumeration) and seeded, so the margin is not a statistical
    # tolerance: over initialisation seeds 1-5 the gain measured 0.10 to 0.48 nats.
    assert bound > rbm_log_likelihood["value"] + 0.05
    assert bound <= dbn_exact_log_likelihood(dbn, data).mean().item()


def test_greedy_trainer_resumes_bitwise_after_any_epoch():
    data = bars_data()
    # final_lr_fraction > 0: at the default 0 each layer's last epoch runs at rate 0, and a
    # resume after epoch 1 or 3 would compare a stretch that cannot change its layer. The
    # persistent layer's lr 1: at 0.1 its weights stay so small after one epoch that the
    # samples hardly depend on the chains, and a resume that lost them still passed.
    configs = [
        CDConfig(epochs=2, batch_size=20, lr=1.0, persistent=True, final_lr_fraction=0.5),
        CDConfig(epochs=2, batch_size=20, final_lr_fraction=0.5),
    ]

    def fresh():
        generator = torch.Generator().manual_seed(5)
        dbn = DBN([9, 5, 4], dtype=torch.float64, generator=generator)
        return dbn, GreedyTrainer(dbn, configs, propagation="sample", generator=generator)

    reference, trainer = fresh()
    while not trainer.done:
        trainer.train_epoch(data)
    for stop in (1, 2, 3):
        dbn, trainer = fresh()
        for _ in range(stop):
            trainer.train_epoch(data)
        state = copy.deepcopy((dbn.state_dict(), trainer.state_dict()))
        encode_checkpoint(state[0], {"greedy": state[1]})  # the state must be storable
        resumed, trainer = fresh()
        resumed.load_state_dict(state[0])
        trainer.load_state_dict(state[1])
        while not trainer.done:
            trainer.train_epoch(data)
        for key, value in reference.state_dict().items():
            assert torch.equal(resumed.state_dict()[key], value), (stop, key)
        # The epoch right after the stop learned: the layer it trains moved.
        layer = stop // 2  # two epochs per layer
        for key, value in state[0].items():
            if key.startswith(f"rbms.{layer}."):
                assert not torch.equal(resumed.state_dict()[key], value), (stop, key)


# ----- fine-tuning ---------------------------------------------------------------------------
def test_classifier_is_initialised_exactly_from_the_dbn():
    generator = torch.Generator().manual_seed(0)
    dbn = DBN([9, 5, 4], weight_std=0.5, generator=generator)
    with torch.no_grad():
        for rbm in dbn.rbms:
            rbm.hidden_bias.normal_(generator=generator)
    classifier = DBNClassifier.from_dbn(dbn, 3, generator=generator)
    for linear, rbm in zip(classifier.hidden, dbn.rbms, strict=True):
        assert torch.equal(linear.weight, rbm.weight.t())
        assert torch.equal(linear.bias, rbm.hidden_bias)
    x = torch.rand(6, 9, generator=generator)
    assert torch.allclose(classifier.features(x), dbn.transform(x), atol=1e-6)
    assert classifier(x).shape == (6, 3)


def test_random_baseline_has_the_same_architecture_and_is_seeded():
    a = DBNClassifier([9, 5, 4], 3, generator=torch.Generator().manual_seed(1))
    b = DBNClassifier([9, 5, 4], 3, generator=torch.Generator().manual_seed(1))
    pretrained = DBNClassifier.from_dbn(
        DBN([9, 5, 4], generator=torch.Generator().manual_seed(0)), 3
    )
    shapes = [p.shape for p in pretrained.parameters()]
    assert [p.shape for p in a.parameters()] == shapes
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    bound = 9**-0.5
    assert a.hidden[0].weight.abs().max() <= bound


def test_finetuning_learns_a_separable_problem_and_stops_early():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(400, 9, generator=generator)
    labels = (images[:, :3].sum(1) > 1.5).long()
    model = DBNClassifier([9, 8], 2, generator=generator)
    config = FinetuneConfig(epochs=200, lr=0.05, batch_size=20, patience=3)
    trainer = finetune(model, images, labels, config, seed=0)
    # 40 validation rows: 0.85 is well above chance (0.5, standard error 0.08).
    assert trainer.best_accuracy >= 0.85
    assert trainer.epoch < 200 and trainer.epoch - trainer.best_epoch == 3
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trainer.best_state.items())


def test_finetune_trainer_state_round_trips():
    generator = torch.Generator().manual_seed(0)
    images, labels = (
        torch.rand(50, 9, generator=generator),
        torch.randint(2, (50,), generator=generator),
    )
    validation = (images[:10], labels[:10])

    def fresh():
        model = DBNClassifier([9, 4], 2, generator=torch.Generator().manual_seed(1))
        return FinetuneTrainer(
            model,
            FinetuneConfig(epochs=4, batch_size=8),
            generator=torch.Generator().manual_seed(2),
        )

    reference = fresh()
    for _ in range(4):
        reference.train_epoch(images, labels, validation)
    trainer = fresh()
    for _ in range(2):
        trainer.train_epoch(images, labels, validation)
    state = copy.deepcopy(trainer.state_dict())
    encode_checkpoint({}, {"finetune": state})
    resumed = fresh()
    resumed.load_state_dict(state)
    for _ in range(2):
        resumed.train_epoch(images, labels, validation)
    for p, q in zip(resumed.model.parameters(), reference.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_labelled_subset_is_balanced_seeded_and_sorted():
    labels = torch.arange(10).repeat_interleave(30)[
        torch.randperm(300, generator=torch.Generator().manual_seed(0))
    ]
    index = labelled_subset(labels, 50, seed=3)
    assert torch.equal(index, labelled_subset(labels, 50, seed=3))
    assert torch.equal(index, index.sort().values) and index.unique().numel() == 50
    assert torch.equal(torch.bincount(labels[index], minlength=10), torch.full((10,), 5))
    assert torch.equal(labelled_subset(labels, None, seed=3), torch.arange(300))
    with pytest.raises(ValueError, match="n_labelled"):
        labelled_subset(labels, 0, seed=0)


def test_finetune_rejects_mismatched_labels_and_bad_config():
    with pytest.raises(ValueError, match="labels must have shape"):
        finetune(
            DBNClassifier([4, 3], 2),
            torch.rand(5, 4),
            torch.zeros(4, dtype=torch.long),
            FinetuneConfig(),
        )
    with pytest.raises(ValueError, match="optimizer"):
        FinetuneConfig(optimizer="rmsprop")


def test_start_layer_keeps_the_layers_below_fixed():
    data = bars_data()
    dbn = DBN([9, 5, 4], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bottom = copy.deepcopy(dbn.rbms[0].state_dict())
    seen = []
    train_greedy(
        dbn,
        data,
        CDConfig(epochs=2),
        generator=torch.Generator().manual_seed(1),
        start_layer=1,
        on_epoch=lambda layer, epoch, record: seen.append(layer),
    )
    assert seen == [1, 1]
    assert all(torch.equal(dbn.rbms[0].state_dict()[k], v) for k, v in bottom.items())
    with pytest.raises(ValueError, match="start_layer"):
        GreedyTrainer(dbn, CDConfig(), generator=torch.Generator(), start_layer=2)
