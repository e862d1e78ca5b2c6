"""The recipe protocol: one model's lifecycle as hooks that one driver calls.

A recipe is a class with a ``name``, a typed ``config_class`` and hooks. The
driver (:mod:`ebmlab.experiments.driver`) owns everything the models share:
the run folder, new run or resume, ``stop_after``, metrics, checkpoints with
the config inside, TensorBoard and ``torchrun``. A recipe only says how to
prepare its data, build its objects, take one step, and what to evaluate,
sample and draw. Registering it with :func:`register` gives it
``ebmlab train NAME``, ``eval``, ``sample`` and ``report``.

Lifecycle, in the order the driver calls it::

    recipe = Recipe(config)            # a validated config
    recipe.prepare()                   # data (may fail before any folder exists)
    recipe.build(context)              # model, trainer, generators from config.seed
    while recipe.completed_steps() < recipe.total_steps():
        record = recipe.step(run)      # one epoch or iteration; None: nothing to log
    recipe.figures(folder)

and, to read a finished run, ``prepare``, ``build``, ``load_state`` from the
newest checkpoint, then ``evaluate`` or ``sample``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.experiments.run_folder import RunFolder
    from ebmlab.training.distributed import DistributedContext


class Recipe:
    """Base class of every recipe; every hook but :meth:`step` has a sensible default.

    Class attributes
    ----------------
    name : str
        The registry key, the ``model`` key of ``config.yaml``, the CLI subcommand.
    config_class : type
        A dataclass of :func:`~ebmlab.experiments.config.option` fields.
    summary : str
        One line for ``ebmlab train --help``.
    step_unit : str
        What one step is, and the metrics key that counts steps: ``"epoch"`` or ``"iteration"``.
    renames : dict
        Old dotted config keys -> new ones, so old run folders still load.
    distributed : bool
        Whether the recipe trains under ``torchrun`` (each rank with its own data shard
        and chains); the driver refuses ``torchrun`` for the others.
    progress_keys : tuple of str
        Record keys shown beside the progress bar.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    summary: ClassVar[str] = ""
    step_unit: ClassVar[str] = "epoch"
    renames: ClassVar[dict[str, str]] = {}
    distributed: ClassVar[bool] = False
    progress_keys: ClassVar[tuple[str, ...]] = ()
    #: The run folder, once the driver trains into one or ``open_run`` reads one.
    folder: RunFolder | None = None

    def __init__(self, config: Any) -> None:
        self.config = config

    # ----- configs --------------------------------------------------------------------------------
    @classmethod
    def complete_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Defaults that depend on other settings (e.g. a Gaussian RBM's smaller lr); none here."""
        return settings

    @classmethod
    def config_from(
        cls, settings: Mapping[str, Any] | None = None, *, source: str | None = None
    ) -> Any:
        """A validated config from a settings mapping (old key names mapped, defaults filled)."""
        from ebmlab.experiments.config import apply_renames, config_from_mapping

        settings = apply_renames(dict(settings or {}), cls.renames)
        settings = cls.complete_settings(settings)
        return config_from_mapping(cls.config_class, settings, model=cls.name, source=source)

    @classmethod
    def config_from_file(
        cls, path: str | Path | None, overrides: Mapping[str, Any] | None = None
    ) -> Any:
        """The config of a YAML file (e.g. a run's config.yaml), ``overrides`` (dotted keys) on top."""
        from ebmlab.experiments.config import apply_renames, read_yaml, set_dotted

        settings = apply_renames(read_yaml(path), cls.renames) if path is not None else {}
        for dotted, value in (overrides or {}).items():
            set_dotted(settings, dotted, value)
        return cls.config_from(settings, source=None if path is None else f"config file {path}")

    # ----- training ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the data. Runs before the run folder is made, so a missing dataset fails early."""

    def build(self, context: DistributedContext) -> None:
        """Make the model, trainer and generators from ``config.seed`` (on ``context.device``)."""
        raise NotImplementedError(f"recipe {self.name!r} does not define build()")

    def total_steps(self) -> int:
        """Steps of a whole run (epochs or iterations)."""
        raise NotImplementedError(f"recipe {self.name!r} does not define total_steps()")

    def completed_steps(self) -> int:
        """Steps done so far; restored with the checkpoint."""
        raise NotImplementedError(f"recipe {self.name!r} does not define completed_steps()")

    def step(self, run: TrainingRun) -> dict[str, Any] | None:
        """Advance by one step; return the metrics record to log (or None to log nothing).

        ``run`` gives :meth:`~ebmlab.experiments.driver.TrainingRun.save`,
        ``restore`` and ``log`` for recipes that roll back on divergence.
        """
        raise NotImplementedError(f"recipe {self.name!r} does not define step()")

    def checkpoint_due(self) -> bool:
        """Whether to checkpoint after this step (the driver always does at the end)."""
        every = getattr(self.config, "checkpoint_every", 1)
        return self.completed_steps() % every == 0

    def score(self, record: dict[str, Any]) -> float | None:
        """A number to keep the best checkpoint by (higher is better); None: keep no best."""
        return None

    def adopt_model_keys(self, keys: list[str]) -> None:
        """Shape the built model for a checkpoint holding parameters ``keys`` (default: nothing).

        Called before loading, so a model whose parameters change during training (a
        DBN untied by up-down fine-tuning) can grow them; the checkpoint is then checked
        against the model's own state as usual.
        """

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        """``(model state, shared state, this rank's state)`` for a checkpoint.

        The shared state (counters, optimiser) is the same on every rank; the
        local state (generators, persistent chains, buffer shard) is per rank.
        """
        raise NotImplementedError(f"recipe {self.name!r} does not define state()")

    def load_state(
        self, model_state: dict[str, torch.Tensor], shared: dict[str, Any], local: dict[str, Any]
    ) -> None:
        """Inverse of :meth:`state`."""
        raise NotImplementedError(f"recipe {self.name!r} does not define load_state()")

    def memory_estimate(self) -> int | None:
        """Bytes that :meth:`build` and training will need, checked before building (None: unknown)."""
        return None

    def sample_size(self) -> int:
        """Numbers in one sample (the pixels of an image), to bound ``sample --n``."""
        try:
            shape = self.image_shape()
        except ValueError:
            return 2
        return math.prod(shape)

    def model_for_logging(self) -> torch.nn.Module | None:
        """The module whose parameters TensorBoard histograms (None: none)."""
        return None

    def tensorboard_images(self) -> dict[str, torch.Tensor]:
        """Image grids (rows in [0, 1] at :meth:`image_shape`) to log at each checkpoint.

        By default 64 samples after 100 sampler steps, seeded by the step; none for
        a recipe whose samples are not images.
        """
        try:
            self.image_shape()
        except ValueError:
            return {}
        generator = torch.Generator(device=self.device).manual_seed(self.completed_steps())
        return {"samples": self.sample(64, 100, generator=generator)[0]}

    def figures(self, folder: RunFolder) -> None:
        """Write ``figures/`` at the end of training."""

    # ----- reading a finished run -------------------------------------------------------------
    def evaluate(self, **options: Any) -> dict[str, Any]:
        """JSON-ready metrics of the trained model; each recipe documents its keys."""
        raise ValueError(f"evaluation of {self.name!r} runs is not supported")

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator, **options: Any):
        """``(samples in [0, 1] as rows, a description of the sampler)`` from the trained model."""
        raise ValueError(f"sampling from {self.name!r} runs is not supported")

    def image_shape(self) -> tuple[int, ...]:
        """The (height, width) or (channels, height, width) of sample rows (``self.data.image_shape``)."""
        shape = getattr(getattr(self, "data", None), "image_shape", None)
        if shape is None:
            raise ValueError(f"{self.name!r} runs have no image shape")
        return tuple(shape)

    def save_samples(self, n: int, n_steps: int, *, seed: int, out: Path, **options: Any) -> Path:
        """Draw samples and write a figure of them; returns its path (an image grid by default)."""
        from ebmlab.viz.images import save_image_grid

        generator = torch.Generator(device=self.device).manual_seed(seed)
        samples, description = self.sample(n, n_steps, generator=generator, **options)
        title = f"{n} {self.name.upper()} samples, {n_steps} {description}"
        return save_image_grid(samples.cpu(), self.image_shape(), out, title=title)

    @property
    def device(self) -> str:
        return str(getattr(self.config, "device", "cpu"))
