"""What ``ebmlab report`` and ``ebmlab eval`` will cost, measured before they start, and their bars.

A report of three runs that prints nothing for half an hour is indistinguishable
from a hung one. So before the long steps (sampling, feature extraction for
IS/FID, AIS) each run is timed on a few sampler steps of a few chains and one
batch of the feature network, and one line per run says what will be done and
about how long it takes. The work itself runs in batches under tqdm bars.

The estimates scale linearly with the number of chains and steps: for small
models, whose cost per step is mostly fixed overhead, they err on the long side.
"""

from __future__ import annotations

import inspect
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import check_nonnegative_int, check_positive_int

SAMPLE_BATCH = 64  # chains sampled together by the report (one tick of its bar), and probed
# Sampler steps when none are given: chains that start in a replay buffer or among kept
# posterior draws need few; Gibbs chains from noise need many (and their sweeps are cheap).
STEPS_FROM_BUFFER = 100
STEPS_FROM_NOISE = 1000
_STARTS_IN_BUFFER = ("jem", "ebm2d", "sgld-mixture")
PROBE_STEPS = 2  # extra steps of the second probe; the difference is the cost of a step
# What jem_eval draws for its figures when eval asks for them: n_samples chains and
# this many per class (jem_eval._eval_figures), each of sample_steps SGLD steps.
JEM_CHAINS_PER_CLASS = 10


def to_stderr(line: str) -> None:
    """Default ``echo``: estimates and timings go to stderr, so stdout stays a table or JSON."""
    print(line, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``0.4 s``, ``40 s``, ``3.2 min``, ``1.5 h``: what a person reads at a glance."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Work:
    """One long step of a run: what it is and about how many seconds it takes."""

    label: str
    seconds: float


def estimate_line(name: str, work: list[Work]) -> str:
    """``name: A (about 4 s) + B (about 1 s) = about 5 s``."""
    parts = " + ".join(f"{w.label} (about {duration(w.seconds)})" for w in work)
    total = sum(w.seconds for w in work)
    return f"{name}: {parts} = about {duration(total)}" if work else f"{name}: no long steps"


@dataclass(frozen=True)
class SamplerTiming:
    """A recipe's sampler cost: per call, per step and per chain-step, and its steps' name.

    A step of ``c`` chains costs ``step_fixed + c * step_per_chain`` seconds: on a
    CPU a small model's step is mostly fixed cost, a large model's mostly per chain.
    """

    overhead: float  # seconds per call, whatever its length (drawing starts, conversions)
    step_fixed: float
    step_per_chain: float
    description: str

    def seconds(self, n_chains: int, n_steps: int, *, n_calls: int = 1) -> float:
        """Seconds for ``n_chains`` chains in all, split over ``n_calls`` calls, of ``n_steps`` steps."""
        per_step = n_calls * self.step_fixed + n_chains * self.step_per_chain
        return n_calls * self.overhead + n_steps * per_step


def _timed(call: Callable[[], Any], *, repeats: int = 3) -> tuple[float, Any]:
    """The fastest of ``repeats`` calls: one call slowed by another process on a shared
    machine would otherwise inflate the whole estimate (once seen 30-fold)."""
    best, value = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = call()
        best = min(best, time.perf_counter() - start)
    return best, value


def time_sampler(
    recipe: Any, *, chains: int = SAMPLE_BATCH, seed: int = 0, **options: Any
) -> SamplerTiming | None:
    """Time ``recipe.sample`` on 2 and on ``chains`` chains (None if the recipe cannot sample).

    After a warm-up call (first calls allocate), each size runs one step and
    ``1 + PROBE_STEPS`` steps: the difference is the cost of a step, the rest the
    fixed cost of a call. The two sizes split a step's cost into a fixed part and
    a part per chain. Seeded apart from the report's own sampling.
    """
    check_positive_int("chains", chains)
    generator = torch.Generator(device=recipe.device).manual_seed(seed + 7919)

    def step_cost(n: int) -> tuple[float, float, str]:
        one, _ = _timed(lambda: recipe.sample(n, 1, generator=generator, **options))
        more, (_, description) = _timed(
            lambda: recipe.sample(n, 1 + PROBE_STEPS, generator=generator, **options)
        )
        per_step = max(more - one, 0.0) / PROBE_STEPS
        if per_step == 0.0:  # timer noise on a very fast sampler: charge it all to the steps
            per_step = more / (1 + PROBE_STEPS)
        return per_step, max(one - per_step, 0.0), description

    small = min(2, chains)
    try:
        recipe.sample(small, 1, generator=generator, **options)
    except ValueError:  # the recipe does not sample (its default sample hook)
        return None
    small_step, _, _ = step_cost(small)
    big_step, overhead, description = step_cost(chains)
    if chains == small:
        return SamplerTiming(overhead, 0.0, big_step / chains, description)
    per_chain = max(big_step - small_step, 0.0) / (chains - small)
    fixed = max(big_step - chains * per_chain, 0.0)
    return SamplerTiming(overhead, fixed, per_chain, description)


def time_feature_net(net: Any, images: torch.Tensor, *, batch_size: int = 64) -> float:
    """Seconds per image of ``net.features`` plus ``net.logits``, from one batch of ``images``."""
    batch = images[:batch_size].float()
    with torch.no_grad():
        net.features(batch[:2])  # warm-up: first calls allocate
        seconds, _ = _timed(lambda: (net.features(batch), net.logits(batch)))
    return seconds / batch.shape[0]


def default_steps(recipe_name: str) -> int:
    """Sampler steps of a recipe's report samples when ``n_steps`` is not given."""
    return STEPS_FROM_BUFFER if recipe_name in _STARTS_IN_BUFFER else STEPS_FROM_NOISE


def sample_options(recipe: Any) -> dict[str, Any]:
    """Options of ``recipe.sample``: a JEM classifier has no replay buffer, so it starts from noise."""
    training = getattr(recipe.config, "training", None)
    if recipe.name == "jem" and not getattr(training, "uses_sampling", True):
        return {"start": "noise"}
    return {}


def sample_in_batches(
    recipe: Any,
    n: int,
    n_steps: int,
    *,
    generator: torch.Generator,
    progress: bool,
    desc: str,
    batch_size: int = SAMPLE_BATCH,
    **options: Any,
) -> tuple[torch.Tensor, str]:
    """``recipe.sample`` in batches of independent chains, under a tqdm bar over samples.

    The chains of one call never interact, so ``n`` chains drawn as batches of
    ``batch_size`` are a sample of the same distribution as one call of ``n``.
    """
    from tqdm.auto import tqdm

    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    parts, description = [], ""
    with tqdm(total=n, desc=desc, unit="sample", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            samples, description = recipe.sample(size, n_steps, generator=generator, **options)
            parts.append(samples.detach().cpu())
            bar.update(size)
    return torch.cat(parts), description


@dataclass(frozen=True)
class Chains:
    """Sampler work before it is priced: ``n_chains`` chains of ``n_steps`` steps in ``n_calls`` calls."""

    label: str
    n_chains: int
    n_steps: int
    n_calls: int = 1

    def priced(self, timing: SamplerTiming) -> Work:
        return Work(self.label, timing.seconds(self.n_chains, self.n_steps, n_calls=self.n_calls))


def sampling_chains(n: int, n_steps: int, description: str) -> Chains:
    """The report's sampling: ``n`` chains of ``n_steps`` steps, in :data:`SAMPLE_BATCH` batches."""
    calls = -(-n // SAMPLE_BATCH)
    return Chains(f"{n} samples x {n_steps} {description}", n, n_steps, calls)


def _betas(n_betas: int | None) -> int:
    from ebmlab.estimators.annealing import default_betas

    return len(default_betas()) if n_betas is None else n_betas


def loglik_chains(recipe: Any, *, n_chains: int, n_betas: int | None) -> list[Chains]:
    """AIS (one sampler sweep of every chain per temperature) and an RBM's reverse-AIS check.

    The reverse-AIS numbers are :func:`~ebmlab.estimators.evaluate.evaluate_log_likelihood`'s
    defaults, which the RBM recipe's evaluation uses.
    """
    from ebmlab.estimators.evaluate import evaluate_log_likelihood
    from ebmlab.estimators.reverse_ais import DEFAULT_RAISE_BETAS

    betas = _betas(n_betas)
    work = [Chains(f"AIS {n_chains} chains x {betas:,} temperatures", n_chains, betas)]
    test = getattr(getattr(recipe, "data", None), "test", None)
    if recipe.name == "rbm" and isinstance(test, torch.Tensor):
        defaults = inspect.signature(evaluate_log_likelihood).parameters
        per_point = defaults["raise_chains"].default
        points = min(defaults["raise_max_samples"].default or len(test), len(test))
        label = (
            f"reverse AIS {per_point} x {points} test images x {DEFAULT_RAISE_BETAS:,} temperatures"
        )
        work.append(Chains(label, per_point * points, DEFAULT_RAISE_BETAS))
    return work


def _jem_chains(recipe: Any, parameters: Any, options: dict[str, Any]) -> list[Chains]:
    data, work = recipe.data, []
    # OOD scores need a gradient of log p(x) per input: about one SGLD step per image, for
    # the test set and each OOD set of its size (metrics.ood.ood_scores).
    ood = options.get("ood", parameters["ood"].default)
    n_sets = 1 if isinstance(ood, str) else len(ood)
    n_test = len(data.x_test)
    sets = "1 OOD set" if n_sets == 1 else f"{n_sets} OOD sets"
    label = f"OOD scores of {n_test} test images and {sets} of as many"
    work.append(Chains(label, n_test * (1 + n_sets), 1))
    steps = options.get("refine_steps", 0)
    if steps:
        work.append(Chains(f"refining {n_test} test images x {steps} SGLD steps", n_test, steps))
    steps = options.get("sample_steps", parameters["sample_steps"].default)
    chains = options.get("n_samples", parameters["n_samples"].default)
    chains += JEM_CHAINS_PER_CLASS * data.n_classes
    if steps:
        calls = 1 + data.n_classes
        work.append(Chains(f"sample grids {chains} x {steps} SGLD steps", chains, steps, calls))
    return work


def evaluation_chains(recipe: Any, options: dict[str, Any]) -> list[Chains]:
    """The sampler work of ``recipe.evaluate(**options)``: AIS, and JEM's refinement and grids."""
    parameters = inspect.signature(recipe.evaluate).parameters
    work = []
    if options.get("loglik") and "loglik" in parameters:
        n_chains = options.get("n_chains", parameters["n_chains"].default)
        work += loglik_chains(recipe, n_chains=n_chains, n_betas=options.get("n_betas"))
    if recipe.name == "jem" and "sample_steps" in parameters:
        work += _jem_chains(recipe, parameters, options)
    return work


def evaluate_with_estimate(
    run_dir: Any,
    *,
    progress: bool = True,
    echo: Callable[[str], None] = to_stderr,
    sample_quality: int = 0,
    quality_steps: int | None = None,
    inception_weights: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`~ebmlab.experiments.registry.evaluate_run`, first saying what its long steps cost.

    ``progress`` reaches the recipes whose evaluation has bars (AIS); an option
    the recipe does not take is an error, as in ``evaluate_run``. With
    ``sample_quality=N`` the result also holds the IS and FID of N fresh samples of
    ``quality_steps`` sampler steps (default: the report's, 100 from a replay
    buffer, 1,000 Gibbs sweeps from noise) in the dataset's feature space, or in
    Inception-v3's with ``inception_weights``
    (:func:`~ebmlab.experiments.report_features.fresh_sample_quality`).
    """
    from ebmlab.experiments.registry import evaluate_recipe, open_run

    check_nonnegative_int("sample_quality", sample_quality)
    if quality_steps is not None:
        check_positive_int("quality_steps", quality_steps)
    recipe = open_run(run_dir)
    name = recipe.folder.path.name
    chains = evaluation_chains(recipe, options)
    start_from = sample_options(recipe)  # a JEM without a buffer samples from noise
    if sample_quality:
        quality_steps = quality_steps or default_steps(recipe.name)
        chains.append(sampling_chains(sample_quality, quality_steps, "sampler steps"))
    timing = time_sampler(recipe, **start_from) if chains else None
    if timing is not None:
        echo(estimate_line(f"{recipe.name} {name}", [c.priced(timing) for c in chains]))
    if "progress" in inspect.signature(recipe.evaluate).parameters:
        options["progress"] = progress
    start = time.perf_counter()
    with recipe.folder.recording_figures():  # JEM draws its reliability diagram there
        result = evaluate_recipe(recipe, strict=True, **options)
    if sample_quality:
        from ebmlab.experiments.report_features import FeatureSpaces, fresh_sample_quality

        result.update(
            fresh_sample_quality(
                recipe, sample_quality, quality_steps, seed=options.get("seed", 0),
                progress=progress, spaces=FeatureSpaces(inception_weights), **start_from,
            )
        )  # fmt: skip
    if timing is not None:
        echo(f"{name}: evaluated in {duration(time.perf_counter() - start)}")
    return result
