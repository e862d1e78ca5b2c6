"""DBM pretraining modules, the joint update, and the ``dbm`` recipe (resume, evaluate)."""

from __future__ import annotations

import shutil

import pytest
import torch

from ebmlab.experiments import driver
from ebmlab.experiments.config import config_to_mapping
from ebmlab.experiments.dbm import DBMExperimentConfig, DBMRecipe
from ebmlab.experiments.registry import evaluate_run, open_run
from ebmlab.models.dbm import DBM, DBMClassifier
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.dbm_gibbs import DBMGibbsState
from ebmlab.training.checkpoint import load_checkpoint
from ebmlab.training.dbm import DBMTrainer, DBMTrainingConfig, classifier_accuracy
from ebmlab.training.dbm_pretrain import GreedyPretrainer, TiedCopiesRBM, compose_dbm, layer_copies
from ebmlab.training.trainer import CDConfig
from tests.helpers.enumeration import all_binary
from tests.models.test_dbm import make_dbm


def random_tied(visible_copies, hidden_copies, seed=0):
    generator = torch.Generator().manual_seed(seed)
    rbm = TiedCopiesRBM(
        4, 3, visible_copies=visible_copies, hidden_copies=hidden_copies, dtype=torch.float64
    )
    with torch.no_grad():
        for p in rbm.parameters():
            p.normal_(0, 1, generator=generator)
    return rbm


@pytest.mark.parametrize(("visible_copies", "hidden_copies"), [(2, 1), (1, 2), (1, 1)])
def test_tied_copies_rbm_is_the_rbm_with_repeated_layers(visible_copies, hidden_copies):
    tied = random_tied(visible_copies, hidden_copies)
    W, b, c = tied.weight.detach(), tied.visible_bias.detach(), tied.hidden_bias.detach()
    rbm = BernoulliRBM(4 * visible_copies, 3 * hidden_copies, dtype=torch.float64)
    with torch.no_grad():
        rbm.weight.copy_(W.repeat(visible_copies, hidden_copies))
        rbm.visible_bias.copy_(b.repeat(visible_copies))
        rbm.hidden_bias.copy_(c.repeat(hidden_copies))
    v = all_binary(4 * visible_copies)
    h = all_binary(3 * hidden_copies)
    assert torch.allclose(tied.free_energy(v), rbm.free_energy(v))
    assert torch.allclose(tied.mean_h(v), rbm.mean_h(v))
    assert torch.allclose(tied.mean_v(h), rbm.mean_v(h))
    pairs_v, pairs_h = v.repeat_interleave(len(h), 0), h.repeat(len(v), 1)
    assert torch.allclose(tied.energy(pairs_v, pairs_h), rbm.energy(pairs_v, pairs_h))
    # The next layer's data: p(h | v) with the copies of v all equal to v.
    assert torch.allclose(
        tied.up_means(all_binary(4)), torch.sigmoid(c + visible_copies * all_binary(4) @ W)
    )


def test_layer_copies_follow_the_paper():
    assert [layer_copies(3, k) for k in range(2)] == [(2, 1), (1, 2)]
    assert [layer_copies(4, k) for k in range(3)] == [(2, 1), (1, 1), (1, 2)]
    assert layer_copies(2, 0) == (1, 1)


def test_compose_dbm_keeps_doubled_weights_and_halves_intermediate_ones():
    sizes = [4, 3, 3, 2]
    rbms = []
    for k in range(3):
        rbm = TiedCopiesRBM(
            sizes[k],
            sizes[k + 1],
            visible_copies=layer_copies(4, k)[0],
            hidden_copies=layer_copies(4, k)[1],
            dtype=torch.float64,
        )
        with torch.no_grad():
            for p in rbm.parameters():
                p.normal_(0, 1, generator=torch.Generator().manual_seed(k))
        rbms.append(rbm)
    model = compose_dbm(DBM(sizes, dtype=torch.float64), rbms)
    assert torch.equal(model.weights[0], rbms[0].weight)
    assert torch.equal(model.weights[1], rbms[1].weight / 2)
    assert torch.equal(model.weights[2], rbms[2].weight)
    assert torch.equal(model.biases[0], rbms[0].visible_bias)
    assert torch.allclose(model.biases[1], (rbms[0].hidden_bias + rbms[1].visible_bias) / 2)
    assert torch.equal(model.biases[3], rbms[2].hidden_bias)


def test_joint_update_is_the_moment_difference():
    model = make_dbm([5, 4, 3], seed=1, weight_std=0.5)
    before = [w.detach().clone() for w in model.weights]
    config = DBMTrainingConfig(
        lr=0.1,
        momentum=0.0,
        final_momentum=0.0,
        weight_decay=0.0,
        n_chains=7,
        gibbs_steps=2,
        mean_field_iterations=50,
    )
    trainer = DBMTrainer(model, config, generator=torch.Generator().manual_seed(0))
    v = all_binary(5)[::2]
    means = model.mean_field(v, n_iterations=50, tolerance=config.mean_field_tolerance).means
    trainer.chains = DBMGibbsState([torch.zeros(7, n, dtype=torch.float64) for n in (5, 4, 3)])
    trainer.update(v)
    chains = trainer.chains.layers  # the states the model term used
    data = [v, *means]
    for k in range(2):
        positive = data[k].T @ data[k + 1] / v.shape[0]
        negative = chains[k].T @ chains[k + 1] / 7
        assert torch.allclose(model.weights[k] - before[k], 0.1 * (positive - negative))


def test_max_norm_bounds_incoming_weight_norms():
    model = make_dbm([5, 4, 3], seed=2, weight_std=3.0)
    config = DBMTrainingConfig(max_norm=0.5, n_chains=4, gibbs_steps=1)
    trainer = DBMTrainer(model, config, generator=torch.Generator().manual_seed(0))
    trainer.update(all_binary(5)[:8])
    for weight in model.weights:
        assert (weight.norm(dim=0) <= 0.5 + 1e-9).all()


def test_classifier_reproduces_mean_field_at_its_fixed_point():
    model = make_dbm([5, 4, 3], seed=4, weight_std=0.5)
    v = all_binary(5)
    means = model.mean_field(v, n_iterations=200, tolerance=1e-10).means
    classifier = DBMClassifier(model, 3)
    assert torch.allclose(classifier.features(v, means), means[-1], atol=1e-8)
    assert classifier(v, means).shape == (32, 3)


# ----- the recipe --------------------------------------------------------------------------------
def tiny_config(**changes) -> DBMExperimentConfig:
    training = DBMTrainingConfig(
        epochs=3,
        batch_size=50,
        n_chains=20,
        gibbs_steps=1,
        mean_field_iterations=5,
        # test_resume_is_bitwise_equal resumes into an RBM's last epoch (after epochs 1 and
        # 3): at CDConfig's default final_lr_fraction=0 that epoch runs at rate 0 and the test
        # could not fail; at lr 0.1 one epoch leaves the weights so small that the samples
        # hardly depend on the chains, and a resume that lost them still passed.
        pretraining=CDConfig(
            epochs=2,
            batch_size=50,
            lr=0.5,
            final_lr_fraction=0.5,
            persistent=True,
            centering=False,
        ),
    )
    options = dict(
        dataset="digits",
        layers=[6, 5],
        n_train=150,
        keep_last=20,
        training=training,
        classifier_epochs=2,
        fine_tune_epochs=1,
    )
    options.update(changes)
    return DBMExperimentConfig(**options)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dbm") / "reference"
    driver.train(tiny_config(), out, progress=False)
    return out


def final_checkpoint(run):
    return load_checkpoint(run / "checkpoints" / "step-00000007.safetensors")


def stack_weights(run, step: int) -> list[torch.Tensor]:
    """The weight matrices of the stack at ``step``: the pretrained RBMs' while pretraining,
    then the DBM's (two RBMs compose into the DBM with their weights unchanged)."""
    model, extra = load_checkpoint(run / "checkpoints" / f"step-{step:08d}.safetensors")
    pretrainer = extra["shared"]["pretrainer"]
    if pretrainer is not None:
        return [rbm["weight"] for rbm in pretrainer["rbms"]]
    return [model["weights.0"], model["weights.1"]]


@pytest.mark.slow
@pytest.mark.parametrize("resume_after", [1, 3, 5])
def test_resume_is_bitwise_equal(reference_run, tmp_path, resume_after):
    # epochs 1-4 pretrain two RBMs (2 each), 5-7 are joint training, the classifier after 7
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    for path in (run / "checkpoints").glob("step-*.safetensors"):
        if int(path.stem.split("-")[1]) > resume_after:
            path.unlink()
    driver.resume(run, progress=False)
    (expected, expected_extra), (resumed, resumed_extra) = map(
        final_checkpoint, (reference_run, run)
    )
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    classifiers = [extra["shared"]["classifier"] for extra in (expected_extra, resumed_extra)]
    assert classifiers[0]["test_accuracy"] == classifiers[1]["test_accuracy"]
    assert all(
        torch.equal(v, classifiers[1]["state"][k]) for k, v in classifiers[0]["state"].items()
    )
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 7
    # The first resumed epoch learned (it moved the weights it trains), so the
    # comparison above could fail.
    before = stack_weights(reference_run, resume_after)
    after = stack_weights(reference_run, resume_after + 1)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=False))


@pytest.mark.slow
def test_evaluate_reports_bound_log_z_and_accuracy(reference_run):
    result = evaluate_run(reference_run, loglik=True, n_chains=10, n_betas=50, progress=False)
    bound, log_z = result["loglik_bound"], result["log_z"]
    assert bound["lower"] <= bound["value"] <= bound["upper"] < 0
    assert log_z["lower"] <= log_z["value"] <= log_z["upper"] and log_z["n_betas"] == 50
    assert result["layer_sizes"] == [64, 6, 5]
    # The classifier kept in the checkpoint scores what evaluate reports (tiny training
    # leaves its accuracy near chance, so check the bookkeeping rather than the value).
    recipe = open_run(reference_run)
    kept = recipe.classifier
    classifier = DBMClassifier(recipe.model, kept["n_classes"])
    classifier.load_state_dict(kept["state"])
    inputs = (recipe.data.test, recipe.posterior(recipe.data.test))
    assert classifier_accuracy(classifier, inputs, recipe.test_labels) == result["test_accuracy"]
    assert result["linear_accuracy"] == kept["linear_accuracy"]
    assert (reference_run / "figures" / "samples.png").is_file()


def test_config_errors():
    with pytest.raises(ValueError, match="layers"):
        DBMExperimentConfig(layers=[])
    with pytest.raises(ValueError, match="n_train"):
        DBMExperimentConfig(n_train=0)
    with pytest.raises(ValueError, match="lr"):
        DBMTrainingConfig(lr=-1.0)
    with pytest.raises(ValueError, match="damping"):
        DBMTrainingConfig(damping=1.0)
    config = tiny_config()
    assert DBMRecipe.config_from(config_to_mapping(config, model="dbm")) == config
    assert config.total_epochs == 7
    with pytest.raises(ValueError, match="centering=True is not supported for DBM pretraining"):
        GreedyPretrainer(
            make_dbm([3, 2, 2]), CDConfig(), generator=torch.Generator().manual_seed(0)
        )


def test_old_keys_and_partial_pretraining_settings():
    config = DBMRecipe.config_from(
        {"hidden_sizes": [7, 3], "training": {"pretraining": {"epochs": 1}}}
    )
    assert config.layers == [7, 3]
    # A partial pretraining section keeps pretraining's own default (PCD), not CDConfig's.
    assert config.training.pretraining.persistent and config.training.pretraining.epochs == 1


def test_resume_without_checkpoint_fails(tmp_path):
    from ebmlab.experiments.run_folder import RunFolder, RunFolderError

    run = RunFolder(tmp_path / "empty").create()
    run.write_config(config_to_mapping(tiny_config(), model="dbm"))
    with pytest.raises(RunFolderError, match="no checkpoint"):
        driver.resume(run.path, progress=False)
