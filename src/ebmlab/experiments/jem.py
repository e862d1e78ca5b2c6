"""Recipe ``jem``: JEM (or, with ``p_x_weight = 0``, the plain classifier), one step per iteration.

``metrics.jsonl`` holds window means every ``log_every`` iterations and an
``event: rollback`` record per rollback: on divergence the run reloads its
newest checkpoint, reseeds the sampler stream and scales the lr (see
:meth:`~ebmlab.training.jem_trainer.JEMTrainer.roll_back`). Under ``torchrun``
each rank keeps its own buffer shard and generator (the driver writes them to
``checkpoints/rank-r/``). The evaluation is :mod:`ebmlab.experiments.jem_eval`; sampling
is :mod:`ebmlab.training.jem_sampling`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ebmlab._fields import option, section
from ebmlab._validation import (
    check_choice,
    check_device,
    check_nonnegative_int,
    check_positive_int,
)
from ebmlab.data.ood import SYNTHETIC_OOD
from ebmlab.experiments import jem_eval
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.models.jem import BACKBONES, JEM, build_classifier
from ebmlab.samplers.replay_buffer import ReplayBuffer
from ebmlab.training.checkpoint import load_model_state
from ebmlab.training.distributed import wrap_model
from ebmlab.training.jem import DivergenceError, JEMConfig, MinibatchStream
from ebmlab.training.jem_sampling import draw_samples
from ebmlab.training.jem_trainer import JEMTrainer

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

CURVE_KEYS = (
    "loss",
    "classification_loss",
    "generative_loss",
    "energy_data",
    "energy_negative",
    "energy_gap",
    "buffer_fid",
    "train_accuracy",
)


@dataclass
class JEMExperimentConfig:
    """Everything needed to redo a JEM run (saved as the run's ``config.yaml``)."""

    dataset: str = option("digits", "Dataset name (`ebmlab data list`).")
    data_dir: str | None = option(None, "Folder holding the dataset's files.")
    backbone: str = option("small-cnn", "small-cnn, wrn (WideResNet, no normalisation) or mlp.")
    width: int = option(16, "Width of the small CNN.")
    depth: int = option(28, "WideResNet depth.")
    widen_factor: int = option(10, "WideResNet widening factor.")
    hidden_sizes: list[int] = option([256, 256], "MLP hidden sizes.")
    n_train: int | None = option(None, "Use only the first N training images (none: all).")
    seed: int = option(0, "Random seed: the run is reproducible from it.")
    device: str = option("cpu", "cpu or cuda.")
    keep_last: int = option(2, "Numbered checkpoints to keep.")
    tensorboard: bool = option(
        False, "Also log scalars, histograms and replay-buffer images to RUN_DIR/tensorboard."
    )
    fid_every: int = option(
        0,
        "Every N iterations (a multiple of --log-every), log the FID of 500 replay-buffer "
        "samples against 500 test images in the dataset's shipped feature space (0: never).",
        resumable=True,
    )
    training: JEMConfig = section(JEMConfig, "JEM training.")

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        check_nonnegative_int("fid_every", self.fid_every)
        if self.fid_every and self.fid_every % self.training.log_every:
            raise ValueError(
                f"fid_every must be a multiple of log_every ({self.training.log_every}): "
                f"it is logged with a metrics line; got {self.fid_every}"
            )
        for name in ("width", "depth", "widen_factor", "keep_last"):
            check_positive_int(name, getattr(self, name))
        self.hidden_sizes = [check_positive_int("hidden_sizes[i]", w) for w in self.hidden_sizes]
        if self.n_train is not None:
            check_positive_int("n_train", self.n_train)
        check_device(self.device)


@dataclass
class JEMData:
    """Training and test data scaled to [-1, 1] (rows ``(N, H*W)``), labels and shapes."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    image_shape: tuple[int, ...]  # (height, width) or (channels, height, width)
    n_classes: int


def prepare_data(config: JEMExperimentConfig) -> JEMData:
    """Load ``config.dataset`` (train and test), keep ``n_train`` rows, scale to [-1, 1]."""
    from ebmlab.data import load_dataset, scale

    train = load_dataset(config.dataset, split="train", data_dir=config.data_dir)
    test = load_dataset(config.dataset, split="test", data_dir=config.data_dir)
    if train.image_shape == (1, 2):
        raise ValueError(f"dataset must be an image dataset for JEM; got {config.dataset!r}")
    if config.n_train is not None:
        train = train.subset(torch.arange(min(config.n_train, len(train))))
    device = torch.device(config.device)
    return JEMData(
        x_train=scale(train.images, to="symmetric").to(device),
        y_train=train.labels.to(device),
        x_test=scale(test.images, to="symmetric").to(device),
        y_test=test.labels.to(device),
        image_shape=tuple(train.image_shape),
        n_classes=max(train.n_classes, test.n_classes),
    )


def build_model(config: JEMExperimentConfig, data: JEMData) -> JEM:
    """The JEM around ``config.backbone``, initialised from ``config.seed``."""
    # Colour data carry (channels, height, width); grey data (height, width).
    in_channels = data.image_shape[0] if len(data.image_shape) == 3 else 1
    classifier = build_classifier(
        config.backbone,
        image_shape=tuple(data.image_shape[-2:]),
        in_channels=in_channels,
        n_classes=data.n_classes,
        width=config.width,
        depth=config.depth,
        widen_factor=config.widen_factor,
        hidden_sizes=config.hidden_sizes,
        generator=torch.Generator().manual_seed(config.seed),
    )
    return JEM(classifier, data.n_classes).to(config.device)


def buffer_preview(buffer: ReplayBuffer, n: int = 64) -> torch.Tensor:
    """``n`` slots spread evenly over ``buffer``, in [0, 1] for an image grid.

    Evenly spread rather than the first ``n``: a class-conditional buffer
    stores its classes in contiguous blocks, and every block should show.
    """
    slots = torch.linspace(0, len(buffer.buffer) - 1, min(n, len(buffer.buffer))).long()
    return (buffer.buffer[slots].cpu() + 1) / 2


@register
class JEMRecipe(Recipe):
    """JEM trained by SGLD negatives from a replay buffer, one step per iteration, with rollback."""

    name = "jem"
    config_class = JEMExperimentConfig
    summary = (
        "Train JEM: a classifier whose logits also define an energy, with SGLD negatives "
        "(Algorithm 1); under torchrun with DistributedDataParallel."
    )
    step_unit = "iteration"
    renames = {"training.n_iterations": "training.iterations"}
    distributed = True
    progress_keys = ("loss", "train_accuracy")
    # Test hook: (iteration, loss) -> loss, applied before the divergence check of every update.
    fault_hook: ClassVar[Callable[[int, torch.Tensor], torch.Tensor] | None] = None

    def prepare(self) -> None:
        self.data = prepare_data(self.config)

    def build(self, context: DistributedContext) -> None:
        config, data = self.config, self.data
        self.model = build_model(config, data)
        self.trainer = JEMTrainer(
            self.model,
            config.training,
            seed=config.seed,
            context=context,
            forward=wrap_model(self.model, context),
            sample_shape=(data.x_train.shape[1],),
            fit_data=(data.x_train, data.y_train),
            device=context.device,
        )
        self.trainer.fault_hook = type(self).fault_hook
        self.buffer_fid = None
        if config.fid_every and self.trainer.buffer is not None:
            from ebmlab.experiments.jem_monitor import BufferFID

            self.buffer_fid = BufferFID(config.dataset, data.x_test)
        self.stream = MinibatchStream(
            data.x_train,
            data.y_train,
            batch_size=config.training.batch_size,
            noise=config.training.data_noise,
            seed=config.seed,
            context=context,
        )
        self._rolled_back = False

    def total_steps(self) -> int:
        return self.config.training.iterations

    def completed_steps(self) -> int:
        return self.trainer.iteration

    def step(self, run: TrainingRun) -> dict[str, Any] | None:
        self._rolled_back = False
        try:
            record = self.trainer.iterate(self.stream)
        except DivergenceError as error:
            run.log(self.trainer.roll_back(error, run.restore))
            run.save()  # the new seed and counters: a resume after this point continues the same
            self._rolled_back = True
            return None
        return None if record is None else self._with_sampler_metrics(record)

    def _with_sampler_metrics(self, record: dict[str, Any]) -> dict[str, Any]:
        """The energy gap, and every ``fid_every`` iterations the buffer FID (jem_monitor)."""
        from ebmlab.experiments.jem_monitor import energy_gap

        gap = energy_gap(record)
        if gap is not None:
            record["energy_gap"] = gap
        if self.buffer_fid is not None and self.trainer.iteration % self.config.fid_every == 0:
            record["buffer_fid"] = self.buffer_fid(self.trainer.buffer)
        return record

    def checkpoint_due(self) -> bool:
        every = self.config.training.checkpoint_every
        return not self._rolled_back and self.trainer.iteration % every == 0

    def state(self):
        return self.model.state_dict(), self.trainer.shared_state(), self.trainer.local_state()

    def load_state(self, model_state, shared, local) -> None:
        load_model_state(self.model, model_state, source="checkpoint")
        # A pre-driver checkpoint kept the trainer's shared state under "trainer".
        self.trainer.load_state(shared.get("trainer", shared), local)

    def model_for_logging(self) -> torch.nn.Module:
        return self.model

    def tensorboard_images(self) -> dict[str, torch.Tensor]:
        buffer = self.trainer.buffer
        return {} if buffer is None else {"replay_buffer": buffer_preview(buffer)}

    def figures(self, folder: RunFolder) -> None:
        """Training curves and a grid of the replay buffer's current samples."""
        from ebmlab.viz.curves import save_training_curves
        from ebmlab.viz.images import save_image_grid

        # save_training_curves plots against "epoch"; JEM counts iterations instead.
        records = [
            {**r, "epoch": r["iteration"]} for r in folder.read_metrics() if "event" not in r
        ]
        keys = [k for k in CURVE_KEYS if any(k in r for r in records)]
        if records:
            save_training_curves(records, folder.figures / "training_curves.png", keys=keys)
        if self.trainer.buffer is not None:
            save_image_grid(
                buffer_preview(self.trainer.buffer),
                self.data.image_shape,
                folder.figures / "buffer.png",
                title="replay buffer (64 slots spread over it)",
            )

    # ----- reading a finished run -------------------------------------------------------------
    def evaluate(
        self,
        *,
        ood: Sequence[str] = SYNTHETIC_OOD,
        n_test: int | None = None,
        n_bins: int = 15,
        sample_steps: int = 100,
        n_samples: int = 64,
        refine_steps: int = 0,
        refine_step_size: float | None = None,
        seed: int = 0,
        figures: str | Path | None = None,
    ) -> dict[str, Any]:
        """Test accuracy, ECE and OOD AUROCs; optionally refined accuracy and figures.

        The options are :func:`~ebmlab.experiments.jem_eval.evaluate_model`'s;
        ``figures`` is a folder for the reliability diagram and sample grids
        (default: the run's ``figures/`` when the run was opened from a folder).
        """
        if figures is None and self.folder is not None:
            figures = self.folder.figures
        self.model.eval()
        return jem_eval.evaluate_model(
            self.model,
            self.config,
            self.data,
            self._buffer(),
            ood=[ood] if isinstance(ood, str) else list(ood),
            n_test=n_test,
            n_bins=n_bins,
            sample_steps=sample_steps,
            n_samples=n_samples,
            refine_steps=refine_steps,
            refine_step_size=refine_step_size,
            seed=seed,
            figures=None if figures is None else Path(figures),
        )

    def sample(
        self,
        n: int,
        n_steps: int,
        *,
        generator: torch.Generator,
        class_: int | None = None,
        start: str = "buffer",
    ) -> tuple[torch.Tensor, str]:
        """SGLD chains (the run's step size, noise and clamping) on :math:`E(x)` or :math:`E(x, y)`.

        They start from the replay buffer (``start="buffer"``; the class's block when
        it is class-conditional) or from U(-1, 1) noise (``start="noise"``); with
        ``class_`` they follow :math:`p(x \\mid y=class_)`.
        """
        n_classes = self.data.n_classes
        if class_ is not None and not (
            isinstance(class_, int) and not isinstance(class_, bool) and 0 <= class_ < n_classes
        ):
            raise ValueError(f"class_ must be an int in [0, {n_classes - 1}]; got {class_!r}")
        self.model.eval()
        samples = draw_samples(
            self.model,
            self.config.training,
            self._buffer(),
            n=n,
            n_steps=n_steps,
            n_features=self.data.x_train.shape[1],
            generator=generator,
            class_=class_,
            start=start,
        )
        return (samples + 1) / 2, f"SGLD steps from {start}"

    def save_samples(
        self,
        n: int,
        n_steps: int,
        *,
        seed: int,
        out: Path,
        class_: int | None = None,
        start: str = "buffer",
    ) -> Path:
        from ebmlab.viz.images import save_image_grid

        generator = torch.Generator(device=self.device).manual_seed(seed)
        samples, _ = self.sample(n, n_steps, generator=generator, class_=class_, start=start)
        title = f"{n} samples, {n_steps} SGLD steps from {start}"
        title += "" if class_ is None else f", class {class_}"
        return save_image_grid(samples.cpu(), self.image_shape(), out, title=title)

    def _buffer(self) -> torch.Tensor | None:
        return None if self.trainer.buffer is None else self.trainer.buffer.buffer
