"""The model-quality report: one table over run folders, like the lecture's closing slide.

For each run: its class (hybrid, discriminative, generative:
:func:`~ebmlab.experiments.report_rows.model_class`) and settings, test accuracy
(of the model's own classifier, or, for a generative model without one, of a
linear probe on its frozen features: :mod:`ebmlab.experiments.report_probe`,
marked as a probe), Inception Score and FID of its samples in a named
feature space (:mod:`ebmlab.experiments.report_features`), the test
log-likelihood (with ``loglik``; exact, AIS or a bound, as the model allows),
and its sample grid, training curves and reliability diagram. Every number
carries a note on what it measures: number of samples, sampler steps and start,
feature network.

:func:`write_report` first opens every run and times its sampler and feature
network, printing one line per run with the work ahead and its cost
(:mod:`ebmlab.experiments.report_costs`), then does the work under progress bars,
and writes ``report.html`` (one self-contained page), ``report.md``,
``report.csv`` and ``figures/``.
"""

from __future__ import annotations

import csv
import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ebmlab._validation import check_positive_int
from ebmlab.experiments import report_costs as costs
from ebmlab.experiments.registry import evaluate_recipe, open_run
from ebmlab.experiments.report_costs import default_steps, sample_options
from ebmlab.experiments.report_features import FeatureSpaces, sample_quality
from ebmlab.experiments.report_probe import linear_probe, probe_work
from ebmlab.experiments.report_rows import (
    GROUPS,
    accuracy_cell,
    architecture,
    key_settings,
    loglik_cell,
    model_class,
)

CURVE_FIGURES = ("training_curves.png", "log_likelihood.png")  # the first a run has
GRID_SIZE = 64  # samples shown in a grid


@dataclass
class ReportRow:
    """One run's cells; every number has a note saying what it measures."""

    run: str
    name: str
    group: str
    model_class: str
    model: str
    test_accuracy: float | None = None
    accuracy_note: str = ""
    accuracy_kind: str = ""  # "linear probe" where the accuracy is a probe's, not a classifier's
    inception_score: float | None = None
    inception_score_std: float | None = None
    is_note: str = ""
    fid: float | None = None
    fid_note: str = ""
    classes_assigned: int | None = None  # of the feature net's classes, over the samples
    effective_classes: float | None = None
    test_loglik: float | None = None
    loglik_lower: float | None = None
    loglik_upper: float | None = None
    loglik_kind: str = ""
    loglik_note: str = ""
    feature_net: str = ""
    comparability: str = ""
    key_settings: str = ""
    settings: str = ""
    sampling: str = ""
    samples_figure: str = ""
    curves_figure: str = ""
    reliability_figure: str = ""
    evaluation_seconds: float | None = None
    seconds: float | None = None  # after the evaluation: AIS, sampling, scores
    estimated_seconds: float | None = None


COLUMNS = tuple(f.name for f in dataclasses.fields(ReportRow))  # report.csv


def _image_shape(recipe: Any) -> tuple[int, ...] | None:
    try:
        return recipe.image_shape()
    except ValueError:
        return None


@dataclass
class RunPlan:
    """An opened and evaluated run, the settings of its samples and the priced work ahead."""

    index: int
    run_dir: Path
    recipe: Any
    n_steps: int
    result: dict[str, Any]
    evaluation_seconds: float
    timing: costs.SamplerTiming | None = None
    work: list[costs.Work] = field(default_factory=list)

    @property
    def name(self) -> str:  # runs may share a folder name
        return f"{self.index:02d}-{self.run_dir.name}"

    def estimate_line(self) -> str:
        head = f"{self.recipe.name} {self.name}: evaluated in {costs.duration(self.evaluation_seconds)}"
        return costs.estimate_line(head + "; to do", self.work)


def _evaluate(recipe: Any, settings: dict[str, Any], figures: Path, *, loglik: bool) -> dict:
    """The recipe's evaluation with the report's options, as a JSON-ready dict.

    JEM draws no extra sample grids (``sample_steps=0``: the report draws its own)
    and no OOD sets, and writes its reliability diagram into the report's ``figures``.
    """
    options = {key: settings[key] for key in ("n_chains", "n_betas", "seed", "progress")}
    options.update(loglik=loglik, sample_steps=0, ood=(), figures=figures)
    return evaluate_recipe(recipe, strict=False, **options)


def _takes_loglik(recipe: Any) -> bool:
    import inspect

    return "loglik" in inspect.signature(recipe.evaluate).parameters


def needs_probe(recipe: Any, result: dict[str, Any]) -> bool:
    """Whether a run's accuracy cell is for a linear probe: a generative model with no classifier.

    A DBM whose own softmax head was trained on frozen features keeps that probe's accuracy.
    """
    generative = model_class(recipe.name, recipe.config).group == "generative"
    return generative and accuracy_cell(recipe.name, recipe.config, result)[0] is None


def _features_work(plan: RunPlan, settings: dict, spaces: FeatureSpaces, priced: set) -> None:
    config = plan.recipe.config
    dataset, data_dir = getattr(config, "dataset", ""), getattr(config, "data_dir", None)
    features = spaces.net_for(dataset) if _image_shape(plan.recipe) is not None else None
    if features is None:
        return
    real = spaces.real_images(dataset, data_dir)
    if features.seconds_per_image is None:
        features.seconds_per_image = costs.time_feature_net(features.net, real)
    count = settings["n_samples"] + (0 if (dataset, data_dir) in priced else len(real))
    priced.add((dataset, data_dir))
    label = f"IS/FID features of {count} images ({features.name})"
    plan.work.append(costs.Work(label, count * features.seconds_per_image))


def plan_run(
    index: int,
    run_dir: str | Path,
    settings: dict[str, Any],
    spaces: FeatureSpaces,
    priced: set[tuple[str, str | None]],
) -> RunPlan:
    """Open and evaluate a run (without AIS), time its sampler and price the long steps.

    The test-set evaluation is done here, so its time is measured, not guessed;
    what is left (a generative model's linear probe, sampling, IS/FID features,
    AIS) is priced from one batch of the model's features and one gradient of the
    probe's fit, a sampler probe and one batch of the feature network. ``priced`` holds the datasets whose
    test-set features an earlier plan already counted (they are computed once).
    """
    recipe = open_run(run_dir)
    n_steps = settings["n_steps"] or default_steps(recipe.name)
    folder = settings["out"] / "figures" / f"{index:02d}-{Path(run_dir).name}"
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = _evaluate(recipe, settings, folder, loglik=False)
    plan = RunPlan(index, Path(run_dir), recipe, n_steps, result, time.perf_counter() - start)
    if settings["probe"] and needs_probe(recipe, result):
        work = probe_work(recipe, seed=settings["seed"])
        plan.work += [work] if work is not None else []
    chains = min(settings["n_samples"], costs.SAMPLE_BATCH)
    plan.timing = costs.time_sampler(
        recipe, chains=chains, seed=settings["seed"], **sample_options(recipe)
    )
    if plan.timing is None:
        return plan
    chains = costs.sampling_chains(settings["n_samples"], n_steps, plan.timing.description)
    plan.work.append(chains.priced(plan.timing))
    _features_work(plan, settings, spaces, priced)
    if settings["loglik"] and _takes_loglik(recipe):
        chains = costs.loglik_chains(
            recipe, n_chains=settings["n_chains"], n_betas=settings["n_betas"]
        )
        plan.work += [c.priced(plan.timing) for c in chains]
        # Evaluating again with AIS repeats the test-set metrics: their time is known.
        plan.work.append(costs.Work("test-set metrics again", plan.evaluation_seconds))
    return plan


def _with_loglik(plan: RunPlan, settings: dict, folder: Path) -> str | None:
    """Re-evaluate with AIS where the recipe takes ``loglik``; the reason if it refused."""
    if not (settings["loglik"] and _takes_loglik(plan.recipe)):
        return None
    try:
        plan.result = _evaluate(plan.recipe, settings, folder, loglik=True)
    except ValueError as error:  # e.g. AIS for a Gaussian RBM: the other cells stay
        return str(error)
    return None


def _accuracy(row: ReportRow, recipe: Any, result: dict, settings: dict) -> None:
    """The run's own accuracy, or a linear probe's for a generative model without a classifier."""
    row.test_accuracy, row.accuracy_note = accuracy_cell(recipe.name, recipe.config, result)
    if needs_probe(recipe, result):
        if settings["probe"]:
            probe = linear_probe(recipe, seed=settings["seed"])
            if probe.accuracy is None:  # keep the reason there is no classifier, add the probe's
                row.accuracy_note = f"{row.accuracy_note}; {probe.note}"
            else:
                row.test_accuracy, row.accuracy_note = probe.accuracy, probe.note
        else:
            row.accuracy_note += "; no linear probe fitted (probe off)"
    if row.test_accuracy is not None and row.accuracy_note.startswith("linear probe"):
        row.accuracy_kind = "linear probe"  # the report's or, for a DBM, its own softmax head


def _classify(row: ReportRow, recipe: Any, result: dict, settings: dict, refused: str | None):
    _accuracy(row, recipe, result, settings)
    cell = loglik_cell(recipe.name, result, asked=settings["loglik"])
    row.test_loglik, row.loglik_lower, row.loglik_upper = cell.value, cell.lower, cell.upper
    row.loglik_kind = cell.kind
    row.loglik_note = cell.note if refused is None else f"not estimated: {refused}"


def _copy_curves(recipe: Any, folder: Path) -> Path | None:
    for name in CURVE_FIGURES:
        source = recipe.folder.figures / name
        if source.is_file():
            return Path(shutil.copyfile(source, folder / "training_curves.png"))
    return None


def _score(
    row: ReportRow, samples: torch.Tensor, plan: RunPlan, settings: dict, spaces: FeatureSpaces
):
    config = plan.recipe.config
    dataset, data_dir = getattr(config, "dataset", ""), getattr(config, "data_dir", None)
    features = spaces.net_for(dataset)
    if features is None:
        row.is_note = row.fid_note = f"no feature network for dataset {dataset!r}"
        return
    progress = settings["progress"]
    real = spaces.real_statistics(dataset, data_dir, features, progress=progress)
    quality = sample_quality(
        samples, real, features, sampling=row.sampling, progress=progress, desc=plan.name
    )
    row.inception_score, row.inception_score_std = quality.inception_score, quality.std
    row.fid, row.is_note, row.fid_note = quality.fid, quality.is_note, quality.fid_note
    row.classes_assigned, row.effective_classes = (
        quality.classes_assigned,
        quality.effective_classes,
    )
    row.feature_net, row.comparability = features.name, features.comparability


def _samples(plan: RunPlan, row: ReportRow, settings: dict, folder: Path, spaces: FeatureSpaces):
    """Draw the samples, save their figure and score them; fills the row's sample cells."""
    from ebmlab.viz.images import save_image_grid

    recipe, n, seed = plan.recipe, settings["n_samples"], settings["seed"]
    shape, path = _image_shape(recipe), folder / "samples.png"
    if shape is None:  # 2-D points: the recipe's own figure of samples over its density
        recipe.save_samples(n, plan.n_steps, seed=seed, out=path)
        row.sampling = f"{n} samples x {plan.n_steps} {plan.timing.description}"
        row.is_note = row.fid_note = "samples are not images"
        return path
    generator = torch.Generator(device=recipe.device).manual_seed(seed)
    samples, description = costs.sample_in_batches(
        recipe, n, plan.n_steps, generator=generator, progress=settings["progress"],
        desc=f"{plan.name} sampling", **sample_options(recipe),
    )  # fmt: skip
    row.sampling = f"{n} samples x {plan.n_steps} {description}"
    title = f"{row.model_class}: {min(n, GRID_SIZE)} of {row.sampling}"
    save_image_grid(samples[:GRID_SIZE], shape, path, title=title)
    _score(row, samples, plan, settings, spaces)
    return path


def report_row(plan: RunPlan, settings: dict[str, Any], spaces: FeatureSpaces) -> ReportRow:
    """Finish one planned run: AIS if asked, samples, scores, figures under ``figures/NAME``."""
    start = time.perf_counter()
    recipe, out = plan.recipe, settings["out"]
    folder = out / "figures" / plan.name
    refused = _with_loglik(plan, settings, folder)
    kind = model_class(recipe.name, recipe.config)
    row = ReportRow(str(plan.run_dir), plan.name, kind.group, kind.label, architecture(plan.result))
    _classify(row, recipe, plan.result, settings, refused)
    figures = {"reliability": folder / "reliability.png", "curves": _copy_curves(recipe, folder)}
    if plan.timing is not None:
        figures["samples"] = _samples(plan, row, settings, folder, spaces)
    else:
        row.sampling = row.is_note = row.fid_note = "the model does not sample"
    for key, path in figures.items():
        if path is not None and path.is_file():
            setattr(row, f"{key}_figure", path.relative_to(out).as_posix())
    row.key_settings = key_settings(recipe.name, recipe.config)
    done, total = recipe.completed_steps(), recipe.total_steps()
    if done < total:  # a run stopped early (killed, --stop-after, a table's time limit)
        row.key_settings += f", UNFINISHED: trained {done} of {total} {recipe.step_unit}s"
    features = f"features {row.feature_net}" if row.feature_net else ""
    row.settings = "; ".join(p for p in (row.key_settings, row.sampling, features) if p)
    row.evaluation_seconds = plan.evaluation_seconds
    row.seconds = time.perf_counter() - start
    row.estimated_seconds = sum(w.seconds for w in plan.work)
    return row


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _write_markdown(rows: list[ReportRow], path: Path) -> None:
    lines = [
        "| class | model | architecture | accuracy | IS | FID | test log-likelihood (nats) | settings |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in grouped(rows):
        loglik = _cell(r.test_loglik) + (f" ({r.loglik_kind})" if r.loglik_kind else "")
        accuracy = _cell(r.test_accuracy) + (f" ({r.accuracy_kind})" if r.accuracy_kind else "")
        lines.append(
            f"| {r.group} | {r.model_class} | {r.model} | {accuracy} "
            f"| {_cell(r.inception_score)} | {_cell(r.fid)} | {loglik} | {r.settings} |"
        )
    grids = "\n".join(f"![{r.name}]({r.samples_figure})" for r in rows if r.samples_figure)
    text = "# Model-quality report\n\n" + "\n".join(lines) + "\n\n" + grids + "\n"
    path.write_text(text, encoding="utf-8")


def grouped(rows: list[ReportRow]) -> list[ReportRow]:
    """Rows in the order of :data:`GROUPS` (hybrid first), in the given order within a group."""
    order = list(GROUPS)
    return sorted(rows, key=lambda r: order.index(r.group) if r.group in order else len(order))


def write_report(
    run_dirs: list[str | Path],
    out: str | Path,
    *,
    n_samples: int = 256,
    n_steps: int | None = None,
    loglik: bool = False,
    n_chains: int = 100,
    n_betas: int | None = None,
    seed: int = 0,
    inception_weights: str | Path | None = None,
    probe: bool = True,
    progress: bool = True,
    echo: Callable[[str], None] = costs.to_stderr,
) -> Path:
    """Write ``report.html``, ``report.md``, ``report.csv`` and ``figures/`` into ``out``.

    Parameters
    ----------
    run_dirs : list of paths
        Run folders written by ``ebmlab train``.
    n_samples : int
        Samples per model for its grid, IS and FID (independent chains).
    n_steps : int, optional
        Sampler steps per sample; None: :func:`default_steps` (100 for chains that start
        in a replay buffer, 1,000 Gibbs sweeps from noise).
    loglik, n_chains, n_betas
        Also estimate test log-likelihoods by AIS with these chains and temperatures.
    seed : int
        Seeds the samplers and estimators.
    inception_weights : path, optional
        Inception-v3 weights for IS and FID instead of the shipped networks.
    probe : bool
        Give a generative model without a classifier the test accuracy of a linear
        probe on its frozen features (:func:`~ebmlab.experiments.report_probe.linear_probe`),
        marked as one; False leaves its accuracy empty.
    progress : bool
        tqdm bars for sampling, feature extraction and AIS.
    echo : callable
        Receives the estimate line of each run before the work starts, then the times.

    Returns
    -------
    Path
        ``out/report.md``.
    """
    check_positive_int("n_samples", n_samples)
    if n_steps is not None:
        check_positive_int("n_steps", n_steps)
    check_positive_int("n_chains", n_chains)
    if not run_dirs:
        raise ValueError("run_dirs must name at least one run folder")
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    settings = dict(n_samples=n_samples, n_steps=n_steps, loglik=loglik, n_chains=n_chains,
                    n_betas=n_betas, seed=seed, probe=probe, progress=progress,
                    out=out)  # fmt: skip
    spaces, priced = FeatureSpaces(inception_weights), set()
    echo(f"report: evaluating {len(run_dirs)} runs and timing their samplers")
    plans = []
    for index, run_dir in enumerate(run_dirs):
        plans.append(plan_run(index, run_dir, settings, spaces, priced))
        echo(plans[-1].estimate_line())
    total = sum(w.seconds for p in plans for w in p.work)
    echo(
        f"report: about {costs.duration(total)} of sampling, features, probes and estimators to go"
    )
    rows = []
    for plan in plans:
        rows.append(report_row(plan, settings, spaces))
        echo(f"{plan.name}: done in {costs.duration(rows[-1].seconds)}")
    with (out / "report.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(vars(r) for r in rows)
    _write_markdown(rows, out / "report.md")
    from ebmlab.experiments.report_html import write_html

    write_html(grouped(rows), out, settings=settings, spaces=spaces)
    return out / "report.md"
