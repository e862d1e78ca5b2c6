"""Recipe: train JEM (or, with ``p_x_weight = 0``, the plain classifier) into a run folder.

``run_jem(JEMExperimentConfig(dataset="fashion-mnist"), out)`` writes
``config.yaml``, ``metrics.jsonl`` (window means every ``log_every``
iterations, plus ``event: rollback`` records), ``checkpoints/`` and
``figures/``. Under ``torchrun`` every process runs the same call; rank 0
writes the shared files and each rank ``r > 0`` its sampler state to
``checkpoints/rank-r/`` (its buffer shard and generator), so a data-parallel
run resumes and rolls back exactly like a single process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import ebmlab
from ebmlab._validation import check_choice, check_positive_int
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.experiments.tensorboard import TensorBoardLogger, check_tensorboard_available
from ebmlab.models.jem import BACKBONES, JEM, build_classifier
from ebmlab.samplers.replay_buffer import ReplayBuffer
from ebmlab.training.checkpoint import (
    CheckpointManager,
    atomic_write_bytes,
    load_checkpoint,
    load_model_state,
)
from ebmlab.training.distributed import DistributedContext, barrier, init_distributed, wrap_model
from ebmlab.training.jem import JEMConfig, MinibatchStream
from ebmlab.training.jem_trainer import JEMTrainer

CURVE_KEYS = (
    "loss",
    "classification_loss",
    "generative_loss",
    "energy_data",
    "energy_negative",
    "train_accuracy",
)


@dataclass
class JEMExperimentConfig:
    """Everything needed to redo a JEM run (saved as the run's ``config.yaml``).

    ``n_train`` keeps the first ``n_train`` training examples (None: all);
    ``width`` is the small CNN's, ``depth``/``widen_factor`` the WRN's and
    ``hidden_sizes`` the MLP's.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    backbone: str = "small-cnn"
    width: int = 16
    depth: int = 28
    widen_factor: int = 10
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    n_train: int | None = None
    seed: int = 0
    device: str = "cpu"
    keep_last: int = 2
    tensorboard: bool = False
    training: JEMConfig = field(default_factory=JEMConfig)

    def __post_init__(self) -> None:
        if isinstance(self.training, dict):
            self.training = JEMConfig(**self.training)
        check_choice("backbone", self.backbone, BACKBONES)
        for name in ("width", "depth", "widen_factor", "keep_last"):
            check_positive_int(name, getattr(self, name))
        self.hidden_sizes = [check_positive_int("hidden_sizes[i]", w) for w in self.hidden_sizes]
        if self.n_train is not None:
            check_positive_int("n_train", self.n_train)
        check_choice("device", self.device.split(":")[0], ("cpu", "cuda"))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r} but CUDA is not available on this machine")

    def to_dict(self) -> dict[str, Any]:
        return {"model": "jem", "ebmlab_version": ebmlab.__version__, **asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> JEMExperimentConfig:
        fields = {k: v for k, v in config.items() if k not in ("model", "ebmlab_version")}
        try:
            return cls(**fields)
        except TypeError as error:
            raise RunFolderError(f"config.yaml does not describe a JEM run: {error}") from error


@dataclass
class JEMData:
    """Training and test data scaled to [-1, 1] (rows ``(N, H*W)``), labels and shapes."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    image_shape: tuple[int, int]
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
    generator = torch.Generator().manual_seed(config.seed)
    classifier = build_classifier(
        config.backbone,
        image_shape=data.image_shape,
        n_classes=data.n_classes,
        width=config.width,
        depth=config.depth,
        widen_factor=config.widen_factor,
        hidden_sizes=config.hidden_sizes,
        generator=generator,
    )
    return JEM(classifier, data.n_classes).to(config.device)


@dataclass
class _Session:
    run: RunFolder
    config: JEMExperimentConfig
    data: JEMData
    model: JEM
    trainer: JEMTrainer
    stream: MinibatchStream
    context: DistributedContext
    board: TensorBoardLogger | None = None

    @property
    def rank_checkpoints(self) -> CheckpointManager:
        """Where rank r > 0 keeps its sampler state."""
        return CheckpointManager(
            self.run.checkpoints.directory / f"rank-{self.context.rank}",
            keep_last=self.config.keep_last,
        )

    def save(self) -> None:
        trainer, local = self.trainer, self.trainer.local_state()
        if self.context.is_main:
            extra = {"trainer": trainer.shared_state(), "local": local}
            self.run.checkpoints.save(
                trainer.iteration, self.model.state_dict(), extra, is_best=False
            )
            if self.board is not None:  # histograms and buffer images at checkpoint pace
                self.board.log_record(trainer.iteration, {}, self.model)
                if trainer.buffer is not None:
                    self.board.log_images(
                        "replay_buffer",
                        buffer_preview(trainer.buffer),
                        self.data.image_shape,
                        trainer.iteration,
                    )
        else:
            self.rank_checkpoints.save(trainer.iteration, {}, {"local": local}, is_best=False)
        barrier(self.context)  # no rank may roll back to a checkpoint another has not written

    def restore(self, *, counters: bool = False) -> None:
        latest = self.run.checkpoints.latest()
        if latest is None:
            raise RunFolderError(f"{self.run.path} has no checkpoint to restore")
        model_state, extra = load_checkpoint(latest)
        load_model_state(self.model, model_state, source=str(latest))
        local = extra["local"]
        if not self.context.is_main:
            _, rank_extra = load_checkpoint(self.rank_checkpoints.directory / latest.name)
            local = rank_extra["local"]
        self.trainer.load_state(extra["trainer"], local, counters=counters)

    def log(self, record: dict[str, Any]) -> None:
        if self.context.is_main:
            self.run.append_metrics(record)
            if self.board is not None and "event" not in record:
                self.board.log_record(record["iteration"], record)

    def train(self, *, progress: bool, stop_after: int | None = None) -> None:
        if self.config.tensorboard and self.context.is_main:
            self.board = TensorBoardLogger(
                self.run.path / "tensorboard", resumed_after=self.trainer.iteration
            )
        try:
            self.trainer.fit(
                self.stream,
                save=self.save,
                restore=self.restore,
                log=self.log,
                stop_after=stop_after,
                progress=progress and self.context.is_main,
            )
        finally:
            if self.board is not None:
                self.board.close()


def _session(run: RunFolder, config: JEMExperimentConfig) -> _Session:
    context = init_distributed(config.device)
    device = context.device
    if device != config.device:
        config.device = device  # cuda -> cuda:LOCAL_RANK under torchrun (not saved to the config)
    data = prepare_data(config)
    model = build_model(config, data)
    trainer = JEMTrainer(
        model,
        config.training,
        seed=config.seed,
        context=context,
        forward=wrap_model(model, context),
        sample_shape=(data.x_train.shape[1],),
        fit_data=(data.x_train, data.y_train),
        device=device,
    )
    stream = MinibatchStream(
        data.x_train,
        data.y_train,
        batch_size=config.training.batch_size,
        noise=config.training.data_noise,
        seed=config.seed,
        context=context,
    )
    return _Session(run, config, data, model, trainer, stream, context)


def run_jem(
    config: JEMExperimentConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    fault_hook: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> RunFolder:
    """Train JEM from scratch into the run folder ``out``; returns the folder.

    ``stop_after`` ends training after that many iterations as if the process
    had been stopped there (the last checkpoint is at that iteration); a later
    :func:`resume_jem` continues to ``n_iterations``. ``fault_hook(iteration,
    loss) -> loss`` may corrupt the loss to exercise divergence handling.
    """
    if config.tensorboard:  # fail before the run folder is made, not hours into training
        check_tensorboard_available()
    run = RunFolder(out, keep_last=config.keep_last)
    context = init_distributed(config.device)
    if context.is_main:
        run.create(overwrite=overwrite)
        run.write_config(config.to_dict())
    barrier(context)
    session = _session(run, config)
    session.trainer.fault_hook = fault_hook
    session.train(progress=progress, stop_after=stop_after)
    if context.is_main and stop_after is None:
        write_training_figures(session)
    barrier(context)
    return run


def resume_jem(
    out: str | Path,
    *,
    n_iterations: int | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> RunFolder:
    """Continue a stopped or killed JEM run from its newest checkpoint, to the same result.

    ``n_iterations`` extends (or shortens) the run; it is written back to ``config.yaml``.
    """
    run = RunFolder(out)
    config = JEMExperimentConfig.from_dict(run.read_config())
    if n_iterations is not None:
        config.training.n_iterations = check_positive_int("n_iterations", n_iterations)
    run.checkpoints.keep_last = config.keep_last
    session = _session(run, config)
    if session.context.is_main:
        run.write_config(config.to_dict())
    session.restore(counters=True)
    if session.context.is_main:
        truncate_metrics(run, session.trainer.iteration)
    barrier(session.context)
    session.train(progress=progress, stop_after=stop_after)
    if session.context.is_main and stop_after is None:
        write_training_figures(session)
    barrier(session.context)
    return run


def truncate_metrics(run: RunFolder, iteration: int) -> None:
    """Drop the records written after the checkpoint at ``iteration`` (a killed run's tail)."""
    records = run.read_metrics()
    keep = 0
    for i, record in enumerate(records):
        if record.get("iteration", 0) <= iteration:
            keep = i + 1
    text = "".join(json.dumps(r) + "\n" for r in records[:keep])
    atomic_write_bytes(run.metrics_path, text.encode())


def write_training_figures(session: _Session) -> None:
    """Training curves and a grid of the replay buffer's current samples."""
    from ebmlab.viz.curves import save_training_curves
    from ebmlab.viz.images import save_image_grid

    # save_training_curves plots against "epoch"; JEM counts iterations instead.
    records = [
        {**r, "epoch": r["iteration"]} for r in session.run.read_metrics() if "event" not in r
    ]
    if records:
        save_training_curves(
            records, session.run.figures / "training_curves.png", keys=list(CURVE_KEYS)
        )
    buffer = session.trainer.buffer
    if buffer is not None:
        save_image_grid(
            buffer_preview(buffer),
            session.data.image_shape,
            session.run.figures / "buffer.png",
            title="replay buffer (64 slots spread over it)",
        )


def buffer_preview(buffer: ReplayBuffer, n: int = 64) -> torch.Tensor:
    """``n`` slots spread evenly over ``buffer``, in [0, 1] for an image grid.

    Evenly spread rather than the first ``n``: a class-conditional buffer
    stores its classes in contiguous blocks, and every block should show.
    """
    slots = torch.linspace(0, len(buffer.buffer) - 1, min(n, len(buffer.buffer))).long()
    return (buffer.buffer[slots].cpu() + 1) / 2


def load_jem(
    run_dir: str | Path,
) -> tuple[JEMExperimentConfig, JEM, JEMData, dict[str, Any] | None]:
    """Config, trained model, data and the rank-0 replay-buffer state of a run folder."""
    run = RunFolder(run_dir)
    config = JEMExperimentConfig.from_dict(run.read_config())
    path = run.checkpoints.latest()
    if path is None:
        raise RunFolderError(f"{run.path} has no checkpoint")
    data = prepare_data(config)
    model = build_model(config, data)
    model_state, extra = load_checkpoint(path)
    load_model_state(model, model_state, source=str(path))
    model.eval()
    return config, model, data, extra["local"]["buffer"]


def sample_jem(
    run_dir: str | Path,
    *,
    n: int = 64,
    n_steps: int = 100,
    class_: int | None = None,
    start: str = "buffer",
    seed: int = 0,
    out: str | Path | None = None,
) -> Path:
    """Run ``n_steps`` of SGLD (the run's step size, noise and clamping) and save an image grid.

    Chains start from the run's replay buffer (``start="buffer"``; the class's
    block when the buffer is class-conditional) or from U(-1, 1) noise
    (``start="noise"``). With ``class_`` they follow :math:`E(x, y)`, else :math:`E(x)`.
    """
    from ebmlab.experiments.jem_eval import draw_samples
    from ebmlab.viz.images import save_image_grid

    check_positive_int("n", n)
    check_positive_int("n_steps", n_steps)
    config, model, data, buffer_state = load_jem(run_dir)
    if class_ is not None and not (isinstance(class_, int) and 0 <= class_ < data.n_classes):
        raise ValueError(f"class_ must be an int in [0, {data.n_classes - 1}]; got {class_!r}")
    samples = draw_samples(
        model, config, buffer_state, n=n, n_steps=n_steps, class_=class_, start=start, seed=seed
    )
    label = "" if class_ is None else f"-class{class_}"
    out = (
        Path(out) if out is not None else RunFolder(run_dir).figures / f"samples{label}-{seed}.png"
    )
    title = f"{n} samples, {n_steps} SGLD steps from {start}" + (
        "" if class_ is None else f", class {class_}"
    )
    return save_image_grid((samples.cpu() + 1) / 2, data.image_shape, out, title=title)
