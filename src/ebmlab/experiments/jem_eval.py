"""The evaluation maths of a JEM: accuracy, calibration, OOD detection, refinement and samples.

Functions of a model and its training settings (never of a run folder): the
recipe (:mod:`ebmlab.experiments.jem`) opens the run and calls them.
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

from ebmlab._validation import (
    check_choice,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
)
from ebmlab.models.jem import JEM
from ebmlab.samplers.base import run_chain
from ebmlab.training.jem import JEMConfig, jem_sampler

SYNTHETIC_OOD = ("noise", "constant", "flip")
OOD_SCORES = ("log_px", "max_py", "grad_norm")
SAMPLE_STARTS = ("buffer", "noise")


def ood_scores(model: JEM, x: torch.Tensor, *, batch_size: int = 500) -> dict[str, torch.Tensor]:
    r"""Per-input OOD scores, higher meaning "more in-distribution".

    Notes
    -----
    ``log_px`` :math:`= \mathrm{LSE}_y f(x)[y] = \log p(x) + \log Z`;
    ``max_py`` :math:`= \max_y p(y|x)`; ``grad_norm``
    :math:`= -\lVert \nabla_x \log p(x) \rVert_2` (JEM's "approximate mass":
    typical inputs sit where the density is flat).

    References
    ----------
    Grathwohl, W. et al. (2020). ICLR, section 5.3 and Table 3.
    """
    check_positive_int("batch_size", batch_size)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in OOD_SCORES}
    for chunk in x.split(batch_size):
        with torch.enable_grad():
            chunk = chunk.detach().requires_grad_(True)
            logits = model.logits(chunk)
            log_px = torch.logsumexp(logits, dim=1)
            (grad,) = torch.autograd.grad(log_px.sum(), chunk)
        out["log_px"].append(log_px.detach())
        out["max_py"].append(torch.softmax(logits.detach(), dim=1).max(dim=1).values)
        out["grad_norm"].append(-grad.flatten(1).norm(dim=1))
    return {name: torch.cat(values).cpu() for name, values in out.items()}


def ood_inputs(
    name: str,
    x_test: torch.Tensor,
    image_shape: tuple[int, int],
    *,
    data_dir: str | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """OOD inputs in [-1, 1] with the test set's shape, as many as ``x_test`` has rows (or fewer).

    ``noise``: U(-1, 1) pixels; ``constant``: one U(-1, 1) value per image;
    ``flip``: the test images upside down; any other name: that dataset's test
    split, which must have the same image shape, or, written ``NAME:resized``
    (e.g. ``digits:resized`` against Fashion-MNIST), is resized to it
    (bilinear, antialiased). ``generator`` (CPU) seeds the synthetic sets.
    """
    n, device = len(x_test), x_test.device
    if name == "noise":
        return (torch.rand(x_test.shape, generator=generator) * 2 - 1).to(device)
    if name == "constant":
        values = torch.rand((n, 1), generator=generator) * 2 - 1
        return values.expand(-1, x_test.shape[1]).clone().to(device)
    if name == "flip":
        return x_test.reshape(n, *image_shape).flip(1).reshape(n, -1)
    from ebmlab.data import load_dataset, scale

    dataset, _, suffix = name.partition(":")
    if suffix not in ("", "resized"):
        raise ValueError(f"ood set {name!r}: the only suffix is ':resized'; got {suffix!r}")
    other = load_dataset(dataset, split="test", data_dir=data_dir)
    images, shape = other.images[:n], tuple(other.image_shape)
    if shape != tuple(image_shape):
        if not suffix:
            raise ValueError(
                f"ood dataset {dataset!r} has images of shape {shape} but the model was "
                f"trained on {tuple(image_shape)}; write {dataset}:resized to resize them, or "
                f"choose a dataset with the same shape or one of {', '.join(SYNTHETIC_OOD)}"
            )
        images = resize_images(images, shape, tuple(image_shape))
    return scale(images, to="symmetric").to(device)


def resize_images(
    images: torch.Tensor, shape: tuple[int, int], new_shape: tuple[int, int]
) -> torch.Tensor:
    """Flattened grey images in [0, 1] of ``shape`` resized to ``new_shape`` (bilinear, antialiased)."""
    grid = images.reshape(len(images), 1, *shape).float()
    resized = torch.nn.functional.interpolate(
        grid, size=new_shape, mode="bilinear", antialias=True, align_corners=False
    )
    return resized.clamp(0, 1).reshape(len(images), -1)


def draw_samples(
    model: JEM,
    config: JEMConfig,
    buffer: torch.Tensor | None,
    *,
    n: int,
    n_steps: int,
    n_features: int,
    generator: torch.Generator,
    class_: int | None = None,
    start: str = "buffer",
) -> torch.Tensor:
    """``n`` chains of ``n_steps`` SGLD steps on :math:`E(x)` or :math:`E(x, y=class_)`, in [-1, 1].

    Chains start from random slots of the replay ``buffer`` (the class's block
    of a class-conditional one), or from U(-1, 1) when ``start="noise"`` or the
    run has no buffer (a classifier trained with ``p_x_weight = 0``). The step
    size, noise and clamping are ``config``'s; ``generator`` lives on the model's device.
    """
    check_choice("start", start, SAMPLE_STARTS)
    check_nonnegative_int("n_steps", n_steps)
    device = generator.device
    if start == "buffer" and buffer is not None:
        per_class = len(buffer) // model.n_classes if config.class_conditional else len(buffer)
        slots = torch.randint(per_class, (n,), generator=generator, device=device)
        if class_ is not None and config.class_conditional:
            slots = slots + class_ * per_class
        x0 = buffer[slots.to(buffer.device)].to(device)
    else:
        x0 = torch.rand((n, n_features), generator=generator, device=device) * 2 - 1
    y = None if class_ is None else torch.full((n,), class_, dtype=torch.long, device=device)
    sampler = jem_sampler(model, config, y)
    state, _, _ = run_chain(sampler, sampler.init(x0), n_steps, generator=generator)
    return state.x.detach()


def refined_logits(
    model: JEM,
    x: torch.Tensor,
    config: JEMConfig,
    *,
    n_steps: int,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Logits of inputs first moved ``n_steps`` SGLD steps toward higher :math:`\log p(x)`.

    The chains use ``config``'s step size, noise scale, clamping and sampling
    precision (:func:`~ebmlab.training.jem.jem_sampler`), as in training.

    Notes
    -----
    Each input starts a chain :math:`x_0 = x`,
    :math:`x_{t+1} = x_t - \alpha \nabla_x E(x_t) + \sigma \epsilon_t` with
    :math:`E(x) = -\mathrm{LSE}_y f(x)[y]`, and is classified as
    :math:`\arg\max_y f(x_K)[y]`: the "JEM-K" refinement, which pulls inputs
    off the data manifold (noise, perturbations) back toward regions the model
    assigns high density before classifying them.

    References
    ----------
    Grathwohl, W. et al. (2020). ICLR, section 5.4.
    """
    check_nonnegative_int("n_steps", n_steps)
    check_positive_int("batch_size", batch_size)
    sampler = jem_sampler(model, config)
    out = []
    for chunk in x.split(batch_size):
        state, _, _ = run_chain(sampler, sampler.init(chunk), n_steps, generator=generator)
        with torch.no_grad():
            out.append(model.logits(state.x.detach()))
    return torch.cat(out)


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
        shape (``NAME:resized`` resizes another shape); see :func:`ood_inputs`.
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
