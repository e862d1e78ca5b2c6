"""The JEM recipe end to end on a tiny run: evaluation keys, OOD sets, samples, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ebmlab.data.ood import ood_inputs, resize_images
from ebmlab.experiments.driver import train
from ebmlab.experiments.jem import JEMExperimentConfig
from ebmlab.experiments.registry import evaluate_run, open_run, sample_run
from ebmlab.experiments.run_folder import RunFolderError
from ebmlab.metrics.classification import accuracy
from ebmlab.metrics.ood import OOD_SCORES, ood_scores
from ebmlab.models.jem import JEM
from ebmlab.training.jem import JEMConfig
from ebmlab.training.jem_sampling import refined_logits


def tiny(p_x_weight: float, **training) -> JEMExperimentConfig:
    options = dict(iterations=4, batch_size=8, buffer_size=40, n_steps=2, warmup_iterations=1,
                   checkpoint_every=2, log_every=2, p_x_weight=p_x_weight, lr=1e-3)  # fmt: skip
    options.update(training)
    return JEMExperimentConfig(dataset="digits", backbone="small-cnn", width=4, n_train=64,
                               training=JEMConfig(**options))  # fmt: skip


@pytest.fixture(scope="module")
def jem_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("jem") / "run"
    train(tiny(1.0, class_conditional=True), out, progress=False)
    return out


@pytest.fixture(scope="module")
def recipe(jem_run):
    return open_run(jem_run)


def test_evaluation_keys_and_figures(jem_run):
    ood = ("noise", "constant", "flip", "digits")
    result = evaluate_run(jem_run, ood=ood, n_test=50, sample_steps=2, figures=jem_run / "figures")
    recipe = open_run(jem_run)
    x, y = recipe.data.x_test[:50], recipe.data.y_test[:50]
    with torch.no_grad():
        probs = torch.softmax(recipe.model.logits(x).double(), dim=1)
    assert result["test_accuracy"] == pytest.approx(accuracy(probs, y))
    # ECE is a weighted mean of |accuracy - confidence| per bin: at least the overall gap.
    gap = abs(result["test_accuracy"] - probs.max(dim=1).values.mean().item())
    assert result["ece"] >= gap - 1e-12
    assert set(result["ood"]) == set(ood)
    for name in result["ood"]:
        assert set(result["ood"][name]) == set(OOD_SCORES)
    # The digits test split against itself: no score can tell them apart.
    assert all(v["auroc"] == 0.5 for v in result["ood"]["digits"].values())
    assert set(result["figures"]) == {"reliability", "samples", "samples_by_class"}
    for path in result["figures"].values():
        assert path.endswith(".png") and (jem_run / "figures" / path.split("/")[-1]).is_file()


def smooth_jem(seed: int) -> JEM:
    torch.manual_seed(seed)
    classifier = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)
    ).double()
    return JEM(classifier, n_classes=3)


def test_refinement_without_steps_is_plain_classification():
    model = smooth_jem(0)
    x = torch.rand(30, 6, dtype=torch.float64) * 2 - 1
    plain = model.logits(x).detach()
    refined = refined_logits(model, x, JEMConfig(), n_steps=0, batch_size=7)
    torch.testing.assert_close(refined, plain, rtol=0, atol=1e-12)  # batching changes rounding


def test_noiseless_refinement_raises_log_px_of_every_input():
    # With sigma = 0 and a small step the chain is gradient ascent on LSE_y f(x)[y]
    # (a smooth network), so every input ends at higher unnormalised log p(x).
    model = smooth_jem(1)
    x = torch.rand(40, 6, dtype=torch.float64) * 2 - 1
    before = torch.logsumexp(model.logits(x), dim=1).detach()
    refined = refined_logits(model, x, JEMConfig(step_size=1e-2, noise_scale=0.0), n_steps=5)
    after = torch.logsumexp(refined, dim=1)
    assert (after > before).all()
    # ...and one step moves it by about step * ||grad||^2 (first-order Taylor).
    x_grad = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(torch.logsumexp(model.logits(x_grad), dim=1).sum(), x_grad)
    tiny_step = JEMConfig(step_size=1e-4, noise_scale=0.0)
    one = torch.logsumexp(refined_logits(model, x, tiny_step, n_steps=1), 1)
    torch.testing.assert_close(one - before, 1e-4 * grad.pow(2).sum(1), rtol=1e-2, atol=1e-9)


def test_evaluation_reports_refined_accuracy_only_when_asked(recipe):
    ood = ("noise", "constant")
    plain = recipe.evaluate(ood=ood, n_test=40)
    assert "refined_test_accuracy" not in plain
    # A run opened from its folder writes the evaluation figures there.
    assert Path(plain["figures"]["reliability"]).parent == recipe.folder.figures
    refined = recipe.evaluate(ood=ood, n_test=40, refine_steps=3)
    assert refined["refine_steps"] == 3
    assert refined["refine_step_size"] == 1.0  # the run's SGLD step unless told otherwise
    small = recipe.evaluate(ood=(), n_test=40, refine_steps=3, refine_step_size=1e-3)
    assert small["refine_step_size"] == 1e-3
    for steps in (0, 1):  # refused even where it would be unused
        with pytest.raises(ValueError, match="refine_step_size"):
            recipe.evaluate(ood=(), n_test=4, refine_steps=steps, refine_step_size=0.0)
    # Refinement draws from its own generator: the OOD sets (and scores) are unchanged.
    assert refined["ood"] == plain["ood"]
    # Same seed, same refined accuracy; the chains are really stochastic (another seed differs
    # in the refined logits).
    x, training = recipe.data.x_test[:40], recipe.config.training
    again = refined_logits(recipe.model, x, training, n_steps=3,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert (again.argmax(1) == recipe.data.y_test[:40]).float().mean().item() == pytest.approx(
        refined["refined_test_accuracy"]
    )
    other = refined_logits(recipe.model, x, training, n_steps=3,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert not torch.equal(again, other)
    with pytest.raises(ValueError, match="refine_steps"):
        recipe.evaluate(ood=(), n_test=4, refine_steps=-1)


def test_ood_dataset_with_another_shape_is_refused_unless_resized(recipe):
    data = recipe.data
    with pytest.raises(ValueError, match=r"has images of shape \(4, 4\) but the model"):
        ood_inputs("bars-and-stripes", data.x_test, data.image_shape)
    with pytest.raises(ValueError, match="the only suffix is ':resized'"):
        ood_inputs("bars-and-stripes:cropped", data.x_test, data.image_shape)
    resized = ood_inputs("bars-and-stripes:resized", data.x_test, data.image_shape)
    assert resized.shape[1] == data.x_test.shape[1] and resized.abs().max() <= 1
    result = recipe.evaluate(ood=("bars-and-stripes:resized",), n_test=20)
    assert set(result["ood"]["bars-and-stripes:resized"]) == set(OOD_SCORES)


def test_resizing_keeps_stripes_and_brightness():
    # Bilinear interpolation is separable: a 4x4 image of horizontal stripes stays constant
    # along each row at 8x8, rows keep their order of brightness, and a constant image stays
    # exactly constant.
    stripes = torch.tensor([1.0, 0.0, 1.0, 0.0]).repeat_interleave(4).reshape(1, 16)
    big = resize_images(stripes, (4, 4), (8, 8)).reshape(8, 8)
    assert torch.allclose(big, big[:, :1].expand(8, 8))
    assert big[0, 0] > big[2, 0] and big[4, 0] > big[6, 0]
    torch.testing.assert_close(big.mean(), torch.tensor(0.5), atol=0.05, rtol=0)
    flat = resize_images(torch.full((2, 16), 0.3), (4, 4), (28, 28))
    torch.testing.assert_close(flat, torch.full((2, 784), 0.3))


def test_synthetic_ood_sets_and_scores(recipe):
    model, data = recipe.model, recipe.data
    x = data.x_test[:5]
    flipped = ood_inputs("flip", x, data.image_shape)
    assert torch.equal(flipped.reshape(5, 8, 8), x.reshape(5, 8, 8).flip(1))
    constant = ood_inputs("constant", x, data.image_shape, generator=torch.Generator())
    assert (constant == constant[:, :1]).all() and constant.abs().max() <= 1
    scores = ood_scores(model, x, batch_size=2)
    torch.testing.assert_close(scores["log_px"], torch.logsumexp(model.logits(x), 1).detach())
    assert (scores["grad_norm"] <= 0).all() and (scores["max_py"] <= 1).all()


def test_samples_conditional_and_unconditional(jem_run, recipe):
    path = sample_run(jem_run, n=4, n_steps=2, seed=0, out=None, class_=3)
    assert path.is_file() and path.name == "samples-class3-0.png"
    assert sample_run(jem_run, n=4, n_steps=1, seed=0, out=None, start="noise").is_file()
    with pytest.raises(ValueError, match=r"class_ must be an int in \[0, 9\]"):
        sample_run(jem_run, n=4, n_steps=1, seed=0, out=None, class_=10)
    with pytest.raises(ValueError, match="start must be one of buffer, noise"):
        sample_run(jem_run, n=4, n_steps=1, seed=0, out=None, start="data")
    # Zero steps return the chains' starts: slots of class 3's block of the buffer.
    samples, _ = recipe.sample(6, 0, generator=torch.Generator().manual_seed(0), class_=3)
    buffer = recipe.trainer.buffer.buffer
    block = (buffer[3 * 4 : 4 * 4] + 1) / 2  # 40 slots, 10 classes
    assert all((block == s).all(dim=1).any() for s in samples)


def test_classifier_baseline_runs_and_evaluates(tmp_path):
    train(tiny(0.0), tmp_path / "clf", progress=False)
    recipe = open_run(tmp_path / "clf")
    assert recipe.trainer.buffer is None
    result = recipe.evaluate(ood=("noise",), n_test=20, sample_steps=1, figures=tmp_path / "f")
    assert result["p_x_weight"] == 0.0 and "log_px" in result["ood"]["noise"]
    assert (tmp_path / "f" / "eval-samples-by-class.png").is_file()


def test_run_folder_errors(tmp_path):
    with pytest.raises(RunFolderError, match="not an ebmlab run folder"):
        open_run(tmp_path)
    with pytest.raises(ValueError, match="n_train must be a positive integer"):
        JEMExperimentConfig(n_train=0)
