"""Dispatch from a run folder's ``model`` key to the recipe that understands it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from ebmlab._validation import check_positive_int
from ebmlab.experiments.run_folder import RunFolder, RunFolderError


def run_model_name(run_dir: str | Path) -> str:
    return str(RunFolder(run_dir).read_config()["model"])


def evaluate_run(run_dir: str | Path, *, strict: bool = True, **options: Any) -> dict[str, Any]:
    """Evaluate any run folder; see each model's ``evaluate_*`` for the keys.

    With ``strict``, asking for ``loglik``, ``ood`` or ``refine_steps`` from a model that cannot give
    them is an error; otherwise (the report) such options are simply not passed.
    """
    model = run_model_name(run_dir)
    if model == "rbm":
        from ebmlab.experiments.rbm import evaluate_rbm as evaluate
    elif model == "dbn":
        from ebmlab.experiments.dbn import evaluate_dbn as evaluate
    elif model == "dbm":
        from ebmlab.experiments.dbm import evaluate_dbm as evaluate
    elif model == "bm":
        from ebmlab.experiments.bm import evaluate_bm as evaluate
    elif model == "jem":
        from ebmlab.experiments.jem_eval import evaluate_jem as evaluate
    else:
        raise RunFolderError(f"evaluation of {model!r} runs is not supported")
    # Models differ in what they can estimate (a tiny BM is always exact): pass what applies.
    accepted = inspect.signature(evaluate).parameters
    specific = ("loglik", "ood", "refine_steps", "refine_step_size")
    asked = [name for name in specific if options.get(name) and name not in accepted]
    if asked and strict:
        flags = ", ".join("--" + name.replace("_", "-") for name in asked)
        raise ValueError(f"{flags} does not apply to {model!r} runs")
    return evaluate(run_dir, **{k: v for k, v in options.items() if k in accepted})


def draw_samples(run_dir: str | Path, model_name: str, n: int, n_steps: int, seed: int):
    """(samples in pixel space, the run's config, a description of the sampler) for a run."""
    if model_name == "rbm":
        from ebmlab.experiments.rbm import load_rbm, prepare_data
        from ebmlab.samplers.gibbs import sample_visible

        config, model = load_rbm(run_dir)
        generator = torch.Generator(device=config.device).manual_seed(seed)
        samples = sample_visible(model, n, n_steps, generator=generator)
        if config.visible == "gaussian":  # back from standardised units to pixels
            samples = prepare_data(config).to_pixels(samples)
        return samples, config, "Gibbs sweeps"
    if model_name == "dbn":
        from ebmlab.experiments.dbn import load_dbn

        config, dbn, _ = load_dbn(run_dir)
        generator = torch.Generator(device=config.device).manual_seed(seed)
        return dbn.sample(n, n_steps, generator=generator), config, "Gibbs sweeps in the top RBM"
    if model_name == "dbm":
        from ebmlab.experiments.dbm import load_dbm
        from ebmlab.samplers.dbm_gibbs import sample_dbm

        config, dbm = load_dbm(run_dir)
        generator = torch.Generator(device=config.device).manual_seed(seed)
        return (
            sample_dbm(dbm, n, n_steps, generator=generator).visible_mean,
            config,
            "block Gibbs sweeps",
        )
    if model_name == "jem":
        from ebmlab.experiments.jem import load_jem
        from ebmlab.experiments.jem_eval import draw_samples as draw_jem_samples

        config, model, _, buffer_state = load_jem(run_dir)
        samples = draw_jem_samples(model, config, buffer_state, n=n, n_steps=n_steps, seed=seed)
        return (samples + 1) / 2, config, "SGLD steps from the replay buffer"  # [-1, 1] -> pixels
    if model_name == "bm":
        from ebmlab.experiments.bm import load_bm

        config, bm = load_bm(run_dir)
        generator = torch.Generator().manual_seed(seed)
        return bm.sample(n, n_steps, generator=generator), config, "Gibbs sweeps"
    raise RunFolderError(f"sampling from {model_name!r} runs is not supported")


def sample_run(
    run_dir: str | Path,
    *,
    n: int,
    n_steps: int,
    seed: int,
    out: Path | None,
    class_: int | None = None,
) -> Path:
    r"""Draw ``n`` samples from a run's model and save an image grid; returns the PNG path.

    ``class_`` (JEM only) samples :math:`p(x \mid y)` through :math:`E(x, y)`.
    """
    from ebmlab.viz.images import save_image_grid

    check_positive_int("n", n)
    check_positive_int("n_steps", n_steps)
    model_name = run_model_name(run_dir)
    if model_name == "jem":
        from ebmlab.experiments.jem import sample_jem

        return sample_jem(run_dir, n=n, n_steps=n_steps, class_=class_, seed=seed, out=out)
    if class_ is not None:
        raise ValueError(f"class_ applies to JEM runs only; {run_dir} is a {model_name!r} run")
    out = Path(out) if out is not None else RunFolder(run_dir).figures / f"samples-{seed}.png"
    samples, config, steps = draw_samples(run_dir, model_name, n, n_steps, seed)
    title = f"{n} {model_name.upper()} samples, {n_steps} {steps}"
    return save_image_grid(samples, image_shape_of(config), out, title=title)


def image_shape_of(config: Any) -> tuple[int, int]:
    """The image shape of a run's data (bars-and-stripes runs choose their own size)."""
    from ebmlab.data import dataset_info

    image_size = getattr(config, "image_size", None)
    if image_size is not None:
        return (image_size, image_size)
    return tuple(dataset_info(config.dataset, data_dir=config.data_dir)["shape"])
