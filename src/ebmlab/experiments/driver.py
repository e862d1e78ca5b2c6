"""The one training loop every recipe runs in: new run or resume, metrics, checkpoints.

:func:`train` starts a run folder from a config; :func:`resume` continues a
stopped or killed one from its newest checkpoint to the same result (bit for
bit on CPU). Both call the recipe's hooks (:class:`~ebmlab.experiments.recipe.Recipe`)
in one loop::

    step -> metrics line -> checkpoint (config inside) -> TensorBoard

Rules every model shares, written once here:

- a metrics line is written before the checkpoint of its step, so a kill in
  between leaves an extra line that resume drops (one truncation rule: lines
  whose step counter is past the checkpoint's);
- a checkpoint is written at step 0 (a divergence rollback always has a target),
  every ``checkpoint_due()`` step, at ``stop_after`` and at the end;
- under ``torchrun`` rank 0 writes the shared files and each rank ``r > 0`` its
  own sampler state to ``checkpoints/rank-r/``.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ebmlab._validation import check_positive_int
from ebmlab.experiments.config import (
    changed_fields,
    config_from_mapping,
    config_to_mapping,
    resumable_fields,
    set_dotted,
)
from ebmlab.experiments.limits import memory_errors
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import (
    load_into,
    read_run_config,
    recipe_for_config,
)
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.training.checkpoint import CheckpointError, CheckpointManager
from ebmlab.training.distributed import DistributedContext, barrier, init_distributed


class TrainingRun:
    """What a recipe's ``step`` may ask of the driver: save, restore, log.

    Attributes
    ----------
    folder : RunFolder
    context : DistributedContext
    board : TensorBoardLogger or None
    """

    def __init__(self, recipe: Recipe, folder: RunFolder, context: DistributedContext) -> None:
        self.recipe, self.folder, self.context = recipe, folder, context
        self.board = None
        self.best_score: float | None = None
        self.saved_step: int | None = None

    @property
    def rank_checkpoints(self) -> CheckpointManager:
        """Where rank r > 0 keeps its own state."""
        return CheckpointManager(
            self.folder.checkpoints.directory / f"rank-{self.context.rank}",
            keep_last=self.folder.checkpoints.keep_last,
        )

    def save(self, *, is_best: bool = False) -> None:
        """Checkpoint the recipe's state at its current step (a collective under torchrun)."""
        recipe, step = self.recipe, self.recipe.completed_steps()
        model_state, shared, local = recipe.state()
        if self.context.is_main:
            extra = {
                "config": config_to_mapping(recipe.config, model=recipe.name),
                "driver": {"step": step, "best_score": self.best_score},
                "shared": shared,
                "local": local,
            }
            self.folder.checkpoints.save(step, model_state, extra, is_best=is_best)
            if self.board is not None:
                module = recipe.model_for_logging()
                if module is not None:
                    self.board.log_record(step, {}, module)
                for tag, images in recipe.tensorboard_images().items():
                    self.board.log_images(tag, images.cpu(), recipe.image_shape(), step)
        else:
            self.rank_checkpoints.save(step, {}, {"local": local}, is_best=False)
        self.saved_step = step
        barrier(self.context)  # no rank may roll back to a checkpoint another has not written

    def restore(self, *, fall_back: bool = False) -> int:
        """Load the newest checkpoint into the recipe; returns its step.

        With ``fall_back`` (a resume), a newest checkpoint that cannot be read
        (a kill or a full disk mid-write) is skipped with a warning for the one
        before it; a rollback during training always takes the newest.
        """
        candidates = [path for _, path in reversed(self.folder.checkpoints.numbered())]
        if not candidates:
            raise RunFolderError(
                f"{self.folder.path} has no checkpoint to resume from; start it again with --overwrite"
            )
        for index, path in enumerate(candidates):
            try:
                return self._load(path)
            except CheckpointError as error:
                if not fall_back or index == len(candidates) - 1:
                    raise
                warnings.warn(
                    f"{error}; resuming from the checkpoint before it ({candidates[index + 1].name})",
                    stacklevel=2,
                )
        raise AssertionError("unreachable")

    def _load(self, path: Path) -> int:
        local = None if self.context.is_main else self.rank_checkpoints.directory / path.name
        step, self.best_score = load_into(self.recipe, path, local_path=local)
        return step

    def log(self, record: dict[str, Any]) -> None:
        """Append a metrics line (rank 0) and its scalars to TensorBoard."""
        if not self.context.is_main:
            return
        self.folder.append_metrics(record)
        if self.board is not None and "event" not in record:
            self.board.log_record(record[self.recipe.step_unit], record)


def train(
    config: Any,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit: float | None = None,
) -> RunFolder:
    """Train the recipe that ``config`` belongs to into a new run folder ``out``.

    ``stop_after`` stops after that many steps in all, as a killed or
    time-limited job would (the last checkpoint is at that step); :func:`resume`
    continues it. ``time_limit`` (seconds) stops at the first step that ends past
    it, with a checkpoint there, so a wall-clock budget holds on a slower machine.
    """
    recipe = recipe_for_config(config)(config)
    context = _start(recipe, stop_after, time_limit)
    # Everything that can fail on the user's settings fails before the folder is touched.
    recipe.prepare()
    with memory_errors(recipe):
        recipe.build(context)
    folder = RunFolder(out, keep_last=getattr(config, "keep_last", 3))
    with folder.exclusive(enabled=context.is_main):
        if context.is_main:
            folder.create(overwrite=overwrite)
            folder.write_config(config_to_mapping(config, model=recipe.name))
        barrier(context)
        recipe.folder = folder
        run = TrainingRun(recipe, folder, context)
        _open_board(run)  # before the step-0 checkpoint, which it logs too
        run.save()
        _loop(run, progress=progress, stop_after=stop_after, time_limit=time_limit)
    return folder


def resume(
    out: str | Path,
    *,
    changes: Mapping[str, Any] | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    time_limit: float | None = None,
) -> RunFolder:
    """Continue the run in ``out`` from its newest checkpoint, to the same result.

    ``changes`` may set the fields a recipe marks resumable (e.g. ``{"epochs": 40}``
    extends a finished run); they are written back to ``config.yaml``.
    ``stop_after`` and ``time_limit`` as in :func:`train`.
    """
    folder = RunFolder(out)
    recipe_class, config = read_run_config(folder)
    if changes:
        config = _with_changes(recipe_class, config, changes, folder)
    recipe = recipe_class(config)
    context = _start(recipe, stop_after, time_limit)
    folder.checkpoints.keep_last = getattr(config, "keep_last", 3)
    if folder.checkpoints.latest() is None:
        raise RunFolderError(
            f"{folder.path} has no checkpoint to resume from; start it again with --overwrite"
        )
    recipe.folder = folder
    recipe.prepare()
    with memory_errors(recipe):
        recipe.build(context)
    with folder.exclusive(enabled=context.is_main):
        if context.is_main:
            for stale in folder.remove_stale_temp_files():
                warnings.warn(f"removed {stale}, left by a process killed mid-write", stacklevel=2)
        barrier(context)
        run = TrainingRun(recipe, folder, context)
        step = run.restore(fall_back=True)
        run.saved_step = step
        if context.is_main:
            if changes:
                folder.write_config(config_to_mapping(config, model=recipe.name))
            folder.truncate_metrics(key=recipe.step_unit, last=step)
        barrier(context)
        _open_board(run)
        _loop(run, progress=progress, stop_after=stop_after, time_limit=time_limit)
    return folder


def _open_board(run: TrainingRun) -> None:
    if getattr(run.recipe.config, "tensorboard", False) and run.context.is_main:
        from ebmlab.experiments.tensorboard import TensorBoardLogger

        # A resumed run drops what a killed one logged past its checkpoint.
        run.board = TensorBoardLogger(
            run.folder.path / "tensorboard", resumed_after=run.recipe.completed_steps()
        )


def _with_changes(recipe_class, config, changes: Mapping[str, Any], folder: RunFolder) -> Any:
    mapping = dataclasses.asdict(config)
    for dotted, value in changes.items():
        set_dotted(mapping, dotted, value)
    new = config_from_mapping(recipe_class.config_class, mapping, model=recipe_class.name)
    allowed = resumable_fields(recipe_class.config_class)
    refused = sorted(changed_fields(config, new) - allowed)
    if refused:
        raise ValueError(
            f"--resume continues {folder.path} exactly as its config.yaml says; it may change "
            f"only {sorted(allowed) or 'nothing'}, not {refused} (start a new run with "
            f"--config {folder.config_path} and your changes)"
        )
    return new


def _start(
    recipe: Recipe, stop_after: int | None, time_limit: float | None = None
) -> DistributedContext:
    if stop_after is not None:
        check_positive_int("stop_after", stop_after)
    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if getattr(recipe.config, "tensorboard", False):  # fail before any folder is made
        from ebmlab.experiments.tensorboard import check_tensorboard_available

        check_tensorboard_available()
    context = init_distributed(recipe.device)
    if context.enabled and not recipe.distributed:
        raise ValueError(f"{recipe.name!r} runs cannot train under torchrun")
    if context.enabled and time_limit is not None:  # ranks would stop at different steps
        raise ValueError("time_limit cannot be used under torchrun; use stop_after")
    if context.device != recipe.device:
        recipe.config.device = context.device  # cuda -> cuda:LOCAL_RANK under torchrun
    return context


def _loop(
    run: TrainingRun, *, progress: bool, stop_after: int | None, time_limit: float | None = None
) -> None:
    from tqdm.auto import tqdm

    started, out_of_time = time.monotonic(), False
    recipe, context = run.recipe, run.context
    end = recipe.total_steps() if stop_after is None else min(stop_after, recipe.total_steps())
    bar = tqdm(
        total=recipe.total_steps(),
        initial=recipe.completed_steps(),
        desc=f"training {recipe.name}",
        disable=not (progress and context.is_main),
    )
    try:
        while recipe.completed_steps() < end:
            record = recipe.step(run)
            bar.n = recipe.completed_steps()
            if record is not None:
                _log_step(run, record, bar)
            elif recipe.checkpoint_due():
                run.save()
            if time_limit is not None and time.monotonic() - started >= time_limit:
                out_of_time = True
                break  # the save below checkpoints this step: resume continues from it
        if run.saved_step != recipe.completed_steps():
            run.save()
        finished = recipe.completed_steps() >= recipe.total_steps()
        if (finished or out_of_time) and context.is_main:  # a cut run gets its figures too
            with run.folder.recording_figures():
                recipe.figures(run.folder)
    finally:
        bar.close()
        if run.board is not None:
            run.board.close()
    barrier(context)


def _log_step(run: TrainingRun, record: dict[str, Any], bar) -> None:
    recipe = run.recipe
    record = {recipe.step_unit: recipe.completed_steps(), **record}
    score = recipe.score(record)
    is_best = score is not None and (run.best_score is None or score > run.best_score)
    if is_best:
        run.best_score = score
    run.log(record)  # first: a kill before the checkpoint leaves a line that resume drops
    if recipe.checkpoint_due() or is_best:
        run.save(is_best=is_best)
    shown = {
        k: f"{record[k]:.4g}" for k in recipe.progress_keys if isinstance(record.get(k), float)
    }
    if shown:
        bar.set_postfix(shown)
    bar.refresh()
