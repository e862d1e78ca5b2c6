"""The evaluation of a JEM run: accuracy, calibration, OOD AUROCs, refined accuracy and figures.

Functions of a model and its training settings (never of a run folder): the
recipe (:mod:`ebmlab.experiments.jem`) opens the run and calls them. The maths
they combine lives below: OOD scores in :mod:`ebmlab.metrics.ood`, OOD inputs in
:mod:`ebmlab.data.ood`, SGLD refinement and samples in :mod:`ebmlab.training.jem_sampling`.
:func:`evaluate_model` returns a JSON-ready dict with ``test_accuracy``, ``ece``
and ``ood.NAME.SCORE.auroc`` and may write ``reliability.png``,
``eval-samples.png`` and ``eval-samples-by-class.png``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ebmlab._validation import check_nonnegative_int, check_positive_float, check_positive_int
from ebmlab.data.ood import ood_inputs
from ebmlab.metrics.ood import OOD_SCORES, ood_scores
from ebmlab.models.jem import JEM
from ebmlab.training.jem import JEMConfig
from ebmlab.training.jem_sampling import draw_samples, refined_logits


def refined_accuracy(
    model: JEM, x: torch.Tensor, y: torch.Tensor, config: JEMConfig, n_steps: int, *, seed: int
) -> dict[str, Any]:
    """``refine_steps``, ``refine_step_size`` and ``refined_test_accuracy`` of :func:`refined_logits`.

    The chains get their own generator on the model's device, so asking for
    refinement changes no other random draw of an evaluation.
    """
    from ebmlab.metrics.classification import accuracy

    chains = torch.Generator(device=x.device).manual_seed(seed)
    refined = refined_logits(model, x, config, n_steps=n_steps, generator=chains)
    return {
        "refine_steps": n_steps,
        "refine_step_size": config.step_size,
        "refined_test_accuracy": accuracy(refined.cpu(), y.cpu()),
    }


def evaluate_model(
    model: JEM,
    config: Any,
    data: Any,
    buffer: torch.Tensor | None,
    *,
    ood: Sequence[str],
    n_test: int | None,
    n_bins: int,
    sample_steps: int,
    n_samples: int,
    refine_steps: int,
    refine_step_size: float | None,
    seed: int,
    figures: Path | None,
) -> dict[str, Any]:
    """Test accuracy, ECE, OOD AUROCs, refined accuracy and figures of a trained JEM.

    Parameters
    ----------
    model, buffer : JEM, Tensor or None
        The trained model and its replay buffer's slots (None without one).
    config, data
        The run's experiment config (its ``training`` gives the sampler settings) and
        prepared data (``x_test``, ``y_test``, ``image_shape``, ``n_classes``).
    ood : sequence of str
        OOD sets: ``noise``, ``constant``, ``flip`` or dataset names of the same image
        shape (``NAME:resized`` resizes another shape); see :func:`~ebmlab.data.ood.ood_inputs`.
    n_test : int, optional
        Evaluate on the first ``n_test`` test examples (None: all).
    n_bins : int
        Confidence bins of the ECE.
    sample_steps, n_samples : int
        SGLD steps and chains of the sample grids (``sample_steps=0``: no grids).
    refine_steps : int
        With ``refine_steps > 0``, also ``refined_test_accuracy``: test inputs are moved
        that many SGLD steps before they are classified (:func:`refined_logits`).
    refine_step_size : float, optional
        Step size of the refinement chains instead of the run's: near data a JEM's
        energy can be much steeper than where its training chains run.
    seed : int
        Seeds the synthetic OOD sets, the sample chains and the refinement.
    figures : Path, optional
        Folder for ``reliability.png``, ``eval-samples.png`` and
        ``eval-samples-by-class.png`` (None: no figures).
    """
    from ebmlab.metrics.classification import accuracy, expected_calibration_error, ood_auroc

    check_positive_int("n_bins", n_bins)
    check_nonnegative_int("sample_steps", sample_steps)
    check_positive_int("n_samples", n_samples)
    check_nonnegative_int("refine_steps", refine_steps)
    if refine_step_size is not None:
        check_positive_float("refine_step_size", refine_step_size)
    if n_test is not None:
        check_positive_int("n_test", n_test)
    x_test, y_test = data.x_test, data.y_test
    if n_test is not None:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    with torch.no_grad():
        logits = torch.cat([model.logits(chunk) for chunk in x_test.split(500)]).cpu()
    probs = torch.softmax(logits.double(), dim=1).numpy()
    calibration = expected_calibration_error(probs, y_test.cpu(), n_bins=n_bins)
    result: dict[str, Any] = {
        "model": "jem",
        "dataset": config.dataset,
        "backbone": config.backbone,
        "p_x_weight": config.training.p_x_weight,
        "n_test": len(x_test),
        "test_accuracy": accuracy(logits, y_test.cpu()),
        "ece": calibration.ece,
        "ood": {},
    }
    if refine_steps > 0:
        sampling = config.training
        if refine_step_size is not None:
            sampling = dataclasses.replace(sampling, step_size=refine_step_size)
        result.update(refined_accuracy(model, x_test, y_test, sampling, refine_steps, seed=seed))
    generator = torch.Generator().manual_seed(seed)
    scores_in = ood_scores(model, x_test)
    for name in ood:
        x_out = ood_inputs(
            name, x_test, data.image_shape, data_dir=config.data_dir, generator=generator
        )
        scores_out = ood_scores(model, x_out)
        result["ood"][name] = {
            score: {"auroc": ood_auroc(scores_in[score], scores_out[score])} for score in OOD_SCORES
        }
    if figures is not None:
        paths = _eval_figures(
            Path(figures), model, config, data, buffer, calibration, sample_steps, n_samples, seed
        )
        result["figures"] = {name: str(path) for name, path in paths.items()}
    return result


def _eval_figures(
    folder: Path, model, config, data, buffer, calibration, sample_steps, n_samples, seed
) -> dict[str, Path]:
    """Reliability diagram; unconditional and per-class sample grids (``sample_steps > 0``)."""
    from ebmlab.viz.images import save_image_grid
    from ebmlab.viz.reliability import save_reliability_diagram

    kind = "JEM" if config.training.p_x_weight > 0 else "classifier"
    paths = {
        "reliability": save_reliability_diagram(
            calibration, folder / "reliability.png", title=f"{kind} on {config.dataset}"
        )
    }
    if sample_steps == 0:
        return paths
    device = data.x_test.device

    def samples(n: int, seed: int, class_: int | None = None) -> torch.Tensor:
        generator = torch.Generator(device=device).manual_seed(seed)
        x = draw_samples(model, config.training, buffer, n=n, n_steps=sample_steps,
                         n_features=data.x_test.shape[1], generator=generator, class_=class_)  # fmt: skip
        return (x.cpu() + 1) / 2

    paths["samples"] = save_image_grid(
        samples(n_samples, seed),
        data.image_shape,
        folder / "eval-samples.png",
        title=f"samples: {sample_steps} SGLD steps",
    )
    per_class = 10
    rows = [samples(per_class, seed + c, c) for c in range(data.n_classes)]
    paths["samples_by_class"] = save_image_grid(
        torch.cat(rows),
        data.image_shape,
        folder / "eval-samples-by-class.png",
        n_columns=per_class,
        title="class-conditional samples (one row per class)",
    )
    return paths
