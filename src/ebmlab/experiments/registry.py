"""The recipe registry: ``@register`` a recipe once, and train, eval, sample and report find it.

Every module of :mod:`ebmlab.experiments` is imported on the first look-up, so a
recipe file that decorates its class with ``@register`` is all a new model needs
(docs/adding-a-model.md). Code outside the package registers the same way,
after which ``ebmlab.experiments.driver.train(MyConfig(), out)`` works for it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._validation import check_positive_int
from ebmlab.experiments.config import (
    apply_renames,
    config_from_mapping,
    fill_fields_older_runs_lack,
)
from ebmlab.experiments.limits import check_memory, memory_errors
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.training.checkpoint import CheckpointError

if TYPE_CHECKING:
    from ebmlab.experiments.recipe import Recipe

# The modules of experiments/ that hold no recipe (recipe files are found by this rule).
_INFRASTRUCTURE = frozenset(
    {"config", "driver", "limits", "recipe", "registry", "report", "report_costs",
     "report_features", "report_html", "report_rows", "run_folder", "tensorboard"}
)  # fmt: skip
_RECIPES: dict[str, type[Recipe]] = {}
_DISCOVERED = False


def register(recipe_class: type[Recipe]) -> type[Recipe]:
    """Class decorator: make ``recipe_class`` known under its ``name``."""
    name = recipe_class.name
    if not name:
        raise ValueError(f"{recipe_class.__qualname__} needs a non-empty class attribute name")
    existing = _RECIPES.get(name)
    if existing is not None and existing.__qualname__ != recipe_class.__qualname__:
        raise ValueError(f"a recipe named {name!r} is registered already ({existing.__qualname__})")
    _RECIPES[name] = recipe_class
    return recipe_class


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import ebmlab.experiments as package

    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if module.name not in _INFRASTRUCTURE and not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")


def recipes() -> dict[str, type[Recipe]]:
    """Every registered recipe by name, sorted (import order must not change the CLI)."""
    _discover()
    return dict(sorted(_RECIPES.items()))


def get_recipe(name: str) -> type[Recipe]:
    """The recipe registered as ``name``; one clear error for an unknown name."""
    known = recipes()
    if name not in known:
        raise RunFolderError(f"model {name!r} is not a known recipe; known: {sorted(known)}")
    return known[name]


def recipe_for_config(config: Any) -> type[Recipe]:
    """The recipe whose ``config_class`` ``config`` is an instance of."""
    for recipe_class in recipes().values():
        if type(config) is recipe_class.config_class:
            return recipe_class
    raise TypeError(f"config must be a registered recipe's config; got {type(config).__name__}")


# ----- reading run folders ------------------------------------------------------------------------
def read_run_config(folder: RunFolder) -> tuple[type[Recipe], Any]:
    """The recipe class and validated config of a run folder (old key names mapped)."""
    settings = folder.read_config()
    recipe_class = get_recipe(str(settings["model"]))
    settings = apply_renames(settings, recipe_class.renames)
    settings = fill_fields_older_runs_lack(recipe_class.config_class, settings)
    config = config_from_mapping(
        recipe_class.config_class,
        settings,
        model=recipe_class.name,
        source=str(folder.config_path),
    )
    return recipe_class, config


def checkpoint_parts(extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(shared, local)`` state of a checkpoint's extra; a pre-driver checkpoint is both."""
    if "shared" not in extra:
        return extra, extra.get("local", extra)
    shared, local = extra["shared"], extra.get("local")
    if not isinstance(shared, dict) or not isinstance(local, dict):
        raise CheckpointError("checkpoint fields 'shared' and 'local' must be mappings")
    return shared, local


def check_finite_model(model_state: dict[str, torch.Tensor], path: Path) -> None:
    """Training stops before it saves a non-finite value, so a checkpoint holding one is bad."""
    for name, tensor in model_state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"checkpoint {path}: {name} holds NaN or infinite values")


def checked_driver_state(extra: dict[str, Any], path: Path) -> tuple[int | None, float | None]:
    """``(step, best score)`` of a checkpoint, validated; ``step`` None before the driver existed."""
    driver = extra.get("driver")
    if driver is None and "shared" not in extra:
        best = extra.get("best_score", extra.get("best"))
        return None, best if isinstance(best, int | float) else None
    if not isinstance(driver, dict):
        raise CheckpointError(
            f"checkpoint {path}: field 'driver' must be a mapping; got {driver!r}"
        )
    step, best = driver.get("step"), driver.get("best_score")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(
            f"checkpoint {path}: driver.step must be an integer >= 0; got {step!r}"
        )
    if best is not None and (isinstance(best, bool) or not isinstance(best, int | float)):
        raise CheckpointError(
            f"checkpoint {path}: driver.best_score must be a number; got {best!r}"
        )
    return step, best


def run_model_name(run_dir: str | Path) -> str:
    return str(RunFolder(run_dir).read_config()["model"])


def open_run(run_dir: str | Path, *, which: str = "latest") -> Recipe:
    """A run's recipe with its data prepared and its ``which`` checkpoint loaded (latest or best)."""
    from ebmlab._validation import check_choice
    from ebmlab.training.distributed import DistributedContext

    check_choice("which", which, ("latest", "best"))
    folder = RunFolder(run_dir)
    recipe_class, config = read_run_config(folder)
    path = folder.checkpoints.best if which == "best" else folder.checkpoints.latest()
    if path is None or not path.is_file():
        raise RunFolderError(f"{folder.path} has no {which} checkpoint")
    recipe = recipe_class(config)
    recipe.folder = folder
    recipe.prepare()
    with memory_errors(recipe):
        recipe.build(DistributedContext(device=recipe.device))
    load_into(recipe, path)
    return recipe


def load_into(
    recipe: Recipe, path: Path, *, local_path: Path | None = None
) -> tuple[int, float | None]:
    """Load checkpoint ``path`` into a built recipe, checking it first; ``(step, best score)``.

    ``local_path`` is this rank's own checkpoint under torchrun (its ``local`` state).
    Every check names the file and the field: model names and shapes (from the
    header, before reading), finite values, the driver's counters, the recipe's keys,
    and that the trainer's own step agrees with the driver's.
    """
    from ebmlab.training.checkpoint import checkpoint_model_keys, load_checkpoint

    recipe.adopt_model_keys(checkpoint_model_keys(path))
    model_state, extra = load_checkpoint(path, expected=recipe.state()[0])
    check_finite_model(model_state, path)
    step, best = checked_driver_state(extra, path)
    shared, local = checkpoint_parts(extra)
    if local_path is not None:
        local = load_checkpoint(local_path)[1].get("local")
    try:
        recipe.load_state(model_state, shared, local)
    except (KeyError, TypeError, IndexError, AttributeError, RuntimeError) as error:
        # Missing keys, wrong types, a generator state of the wrong size... A ValueError is
        # the recipe refusing a change (e.g. more epochs for a finished layer): it stays one.
        raise CheckpointError(f"checkpoint {path} lacks the recipe's state ({error!r})") from None
    if step is not None and recipe.completed_steps() != step:
        raise CheckpointError(
            f"checkpoint {path} says step {step} but its training state is at step "
            f"{recipe.completed_steps()}"
        )
    return recipe.completed_steps(), best


def evaluate_run(run_dir: str | Path, *, strict: bool = True, **options: Any) -> dict[str, Any]:
    """Evaluate any run folder; see each recipe's ``evaluate`` for the keys."""
    recipe = open_run(run_dir)
    with recipe.folder.recording_figures():  # JEM draws its reliability diagram there
        return evaluate_recipe(recipe, strict=strict, **options)


def evaluate_recipe(recipe: Recipe, *, strict: bool = True, **options: Any) -> dict[str, Any]:
    """``recipe.evaluate`` with the options it takes.

    Options it does not take are an error with ``strict`` (``--ood`` for an
    RBM), and are dropped without it (the report asks every model the same).
    Options left at a false value are never an error.
    """
    parameters = inspect.signature(recipe.evaluate).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    accepted = {k: v for k, v in options.items() if takes_any or k in parameters}
    refused = [k for k, v in options.items() if k not in accepted and v]
    if refused and strict:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ValueError(f"{flags} does not apply to {recipe.name!r} runs")
    return recipe.evaluate(**accepted)


def draw_samples(run_dir: str | Path, n: int, n_steps: int, seed: int, **options: Any):
    """``(samples in [0, 1], the recipe, a description of the sampler)`` for a run."""
    recipe = open_run(run_dir)
    generator = torch.Generator(device=recipe.device).manual_seed(seed)
    samples, description = recipe.sample(n, n_steps, generator=generator, **options)
    return samples, recipe, description


def sample_run(
    run_dir: str | Path,
    *,
    n: int,
    n_steps: int,
    seed: int,
    out: Path | None,
    **options: Any,
) -> Path:
    """Draw ``n`` samples from a run's model and save a figure of them; returns its path.

    Options go to the recipe's ``sample`` (e.g. ``class_`` for JEM's :math:`p(x \\mid y)`);
    one it does not take is an error.
    """
    check_positive_int("n", n)
    check_positive_int("n_steps", n_steps)
    recipe = open_run(run_dir)
    parameters = inspect.signature(recipe.sample).parameters
    for name, value in options.items():
        if value is not None and name not in parameters:
            flag = "--" + name.rstrip("_").replace("_", "-")
            raise ValueError(f"{flag} does not apply to {recipe.name!r} runs")
    options = {k: v for k, v in options.items() if k in parameters}
    label = "".join(f"-{k.rstrip('_')}{v}" for k, v in options.items() if v is not None)
    out = Path(out) if out is not None else recipe.folder.figures / f"samples{label}-{seed}.png"
    # The chains and the figure's copies: a few float64 numbers per sample entry.
    check_memory(4 * 8 * n * recipe.sample_size(), f"sampling n={n}")
    with recipe.folder.recording_figures():
        return recipe.save_samples(n, n_steps, seed=seed, out=out, **options)
