"""The report's linear probe: accuracy of logistic regression on a generative model's features.

Known answers first (a hand-built RBM whose hidden means are the class, and one
whose features are constant), then trained models on digits, where a working
probe clears 0.8 and shuffled labels or features unrelated to the images stay
near chance (0.1).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ebmlab.experiments.dbm import DBMExperimentConfig, DBMRecipe
from ebmlab.experiments.dbn import DBNExperimentConfig
from ebmlab.experiments.driver import train
from ebmlab.experiments.rbm import RBMExperimentConfig
from ebmlab.experiments.registry import open_run
from ebmlab.experiments.report import ReportRow, _accuracy, needs_probe
from ebmlab.experiments.report_probe import (
    _fixed_binary,
    fit_probe,
    linear_probe,
    probe_work,
)
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.training.finetune import FinetuneConfig
from ebmlab.training.trainer import CDConfig

PATTERNS = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])


def split(labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise-free images of two classes: the class's pattern, as many as ``labels``."""
    y = torch.tensor(labels)
    return PATTERNS[y], y


def tiny_rbm_recipe(weight_scale: float, *, binarization: str = "threshold") -> SimpleNamespace:
    """A recipe with a hand-built RBM: hidden unit k is on for class k when ``weight_scale`` > 0.

    Training is 60 % class 0, test 30 %: a probe on constant features predicts
    class 0 for every test image and scores exactly 0.3.
    """
    rbm = BernoulliRBM(4, 2)
    with torch.no_grad():
        rbm.weight.copy_(weight_scale * (2 * PATTERNS.t() - 1))  # +s on the class's pixels
        rbm.hidden_bias.fill_(-weight_scale)
    train_images, train_labels = split([0] * 60 + [1] * 40)
    test_images, test_labels = split([0] * 3 + [1] * 7)
    data = SimpleNamespace(
        train=train_images, train_labels=train_labels, test=test_images, test_labels=test_labels
    )
    config = RBMExperimentConfig(binarization=binarization)
    return SimpleNamespace(name="rbm", model=rbm, data=data, config=config)


def test_hidden_means_that_carry_the_class_give_a_perfect_probe():
    probe = linear_probe(tiny_rbm_recipe(4.0))
    assert probe.accuracy == 1.0
    assert (probe.n_train, probe.n_test, probe.n_features) == (100, 10, 2)
    assert probe.note == (
        "linear probe: logistic regression on frozen hidden means p(h=1|v) (2 features) "
        "fitted on 100 train images, test split (10 images)"
    )


def test_constant_features_give_the_majority_class_of_training():
    # Zero weights and biases: every hidden mean is 0.5, whatever the image.
    probe = linear_probe(tiny_rbm_recipe(0.0))
    assert probe.accuracy == pytest.approx(0.3)


def test_at_most_max_train_images_are_fitted():
    probe = linear_probe(tiny_rbm_recipe(4.0), max_train=10)
    assert probe.n_train == 10 and "fitted on 10 train images" in probe.note


def test_dynamically_binarised_training_images_are_drawn_once_as_binary_vectors():
    recipe = tiny_rbm_recipe(4.0, binarization="dynamic")
    grey = torch.full((50, 4), 0.3)
    binary = _fixed_binary(recipe, grey, seed=0)
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert binary.mean().item() == pytest.approx(0.3, abs=0.1)
    assert torch.equal(_fixed_binary(recipe, grey, seed=0), binary)  # seeded
    fixed = tiny_rbm_recipe(4.0)  # threshold binarisation: already the model's input
    assert _fixed_binary(fixed, grey, seed=0) is grey


def test_runs_without_features_or_labels_get_no_probe_and_say_why():
    for name in ("bm", "ebm2d", "jem"):
        probe = linear_probe(SimpleNamespace(name=name, config=SimpleNamespace()))
        assert probe.accuracy is None
        assert probe.note == f"no linear probe: a {name} run has no hidden-unit features"
    unlabelled = tiny_rbm_recipe(4.0)
    unlabelled.data.train_labels = None
    probe = linear_probe(unlabelled)
    assert probe.accuracy is None and "no labelled train and test splits" in probe.note
    one_class = tiny_rbm_recipe(4.0)
    one_class.data.train_labels = torch.zeros(100, dtype=torch.int64)
    assert "fewer than two classes" in linear_probe(one_class).note
    assert probe_work(SimpleNamespace(name="bm", config=SimpleNamespace())) is None


def test_fit_probe_separates_informative_features_and_not_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1200)
    informative = np.eye(10)[labels] + 0.3 * rng.standard_normal((1200, 10))
    accuracy, iterations = fit_probe(
        informative[:1000], labels[:1000], informative[1000:], labels[1000:]
    )
    assert accuracy > 0.95 and iterations > 0
    noise = rng.standard_normal((1200, 50))  # drawn without looking at the labels
    accuracy, _ = fit_probe(noise[:1000], labels[:1000], noise[1000:], labels[1000:])
    assert accuracy < 0.2


TRAINED = {
    "rbm": RBMExperimentConfig(n_hidden=64, training=CDConfig(epochs=5)),
    "gaussian-rbm": RBMExperimentConfig(n_hidden=64, visible="gaussian"),
    "dbn": DBNExperimentConfig(
        layers=[64, 64], training=CDConfig(epochs=3), finetune=FinetuneConfig(epochs=0)
    ),
    "dbm": DBMRecipe.config_from({"layers": [64, 64], "training": {"epochs": 2, "pretraining": {"epochs": 2}}}),
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits runs, trained once (an RBM, a Gaussian RBM, a DBN and a DBM, a few seconds each)."""
    root, opened = tmp_path_factory.mktemp("probe"), {}

    def get(name: str):
        if name not in opened:
            config = TRAINED[name]
            if name == "gaussian-rbm":
                config.training.epochs = 3
            train(config, root / name, progress=False)
            opened[name] = open_run(root / name)
        return opened[name]

    return get


@pytest.mark.parametrize("name", list(TRAINED))
def test_probe_of_a_trained_model_on_digits_is_far_above_chance(trained, name):
    recipe = trained(name)
    probe = linear_probe(recipe)
    assert probe.accuracy > 0.8, probe  # chance is 0.1; pixels alone give about 0.95
    assert probe.n_test == len(recipe.data.test) == 359
    assert probe.n_train == len(recipe.data.train) and probe.n_features == 64
    assert "linear probe: logistic regression on frozen" in probe.note


def test_shuffled_labels_give_a_probe_near_chance(trained):
    recipe = trained("rbm")
    labels = recipe.data.train_labels
    permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))
    recipe.data.train_labels = labels[permutation]
    try:
        probe = linear_probe(recipe)
    finally:
        recipe.data.train_labels = labels
    assert probe.accuracy < 0.2


def test_probe_work_is_measured_and_names_the_images(trained):
    work = probe_work(trained("rbm"))
    assert work.label == "linear probe on 1294 train + 359 test images (64 features)"
    assert 0 < work.seconds < 30


def row() -> ReportRow:
    return ReportRow("run", "00-run", "generative", "RBM", "4-2")


def test_report_gives_generative_rows_the_probe_marked_as_one():
    recipe, result = tiny_rbm_recipe(4.0), {"n_test": 10}
    assert needs_probe(recipe, result)
    cell = row()
    _accuracy(cell, recipe, result, {"probe": True, "seed": 0})
    assert cell.test_accuracy == 1.0 and cell.accuracy_kind == "linear probe"
    assert cell.accuracy_note.startswith("linear probe: logistic regression")
    off = row()
    _accuracy(off, recipe, result, {"probe": False, "seed": 0})
    assert off.test_accuracy is None and off.accuracy_kind == ""
    assert off.accuracy_note == "no classifier in this run; no linear probe fitted (probe off)"
    bm = row()
    _accuracy(
        bm, SimpleNamespace(name="bm", config=SimpleNamespace()), {}, {"probe": True, "seed": 0}
    )
    assert bm.test_accuracy is None
    assert bm.accuracy_note == (
        "no classifier in this run; no linear probe: a bm run has no hidden-unit features"
    )


def test_a_dbm_with_its_own_softmax_head_keeps_its_accuracy():
    config = DBMExperimentConfig(classifier_epochs=3)
    recipe = SimpleNamespace(name="dbm", config=config)  # no data: a probe would find none
    result = {"linear_accuracy": 0.5, "test_accuracy": 0.5, "n_test": 10}
    assert not needs_probe(recipe, result)
    cell = row()
    _accuracy(cell, recipe, result, {"probe": True, "seed": 0})
    assert cell.test_accuracy == 0.5 and cell.accuracy_kind == "linear probe"
    assert "softmax head on frozen mean-field features" in cell.accuracy_note
