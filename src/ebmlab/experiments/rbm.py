"""Recipe: train a Bernoulli RBM on a named dataset into a run folder, resumably."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

import ebmlab
from ebmlab._validation import check_choice, check_positive_int
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.experiments.tensorboard import TensorBoardLogger, check_tensorboard_available
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.gibbs import sample_visible
from ebmlab.training.checkpoint import load_checkpoint, load_model_state
from ebmlab.training.trainer import EXACT_PLL_MAX_VISIBLE, CDConfig, CDTrainer

DTYPES = {"float32": torch.float32, "float64": torch.float64}
BINARIZATIONS = ("threshold", "stochastic", "dynamic")
VISIBLE_UNITS = ("bernoulli", "gaussian")
# Gaussian-Bernoulli RBMs need a far smaller step than binary ones (Hinton's guide, 13.2),
# and momentum 0.9 made them diverge on Fashion-MNIST (docs/models/gaussian-rbm.md).
GAUSSIAN_DEFAULTS = {"lr": 1e-3, "final_momentum": 0.5}
MONITOR_SIZE = 1000  # examples used for per-epoch monitors: enough for a stable mean, cheap


@dataclass
class RBMExperimentConfig:
    """Everything needed to redo an RBM run (saved as the run's ``config.yaml``).

    ``visible``: ``bernoulli`` (binary units; the data are binarised) or
    ``gaussian`` (a :class:`~ebmlab.models.GaussianBernoulliRBM` on pixels
    standardised per feature with the training split's mean and standard deviation;
    ``binarization`` is then ignored). ``binarization``: ``threshold`` (pixels > 0.5),
    ``stochastic`` (one Bernoulli draw per pixel, fixed for the run) or ``dynamic``
    (redrawn every epoch).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    n_hidden: int = 64
    visible: str = "bernoulli"
    binarization: str = "dynamic"
    validation_fraction: float = 0.1
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    keep_last: int = 3
    tensorboard: bool = False
    training: CDConfig | None = None  # None: CDConfig's defaults, or GAUSSIAN_DEFAULTS for gaussian

    def __post_init__(self) -> None:
        if self.training is None:
            self.training = CDConfig(**(GAUSSIAN_DEFAULTS if self.visible == "gaussian" else {}))
        elif isinstance(self.training, dict):
            self.training = CDConfig(**self.training)
        check_positive_int("n_hidden", self.n_hidden)
        check_choice("visible", self.visible, VISIBLE_UNITS)
        check_choice("binarization", self.binarization, BINARIZATIONS)
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must lie in [0, 1); got {self.validation_fraction!r}"
            )
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_choice("device", self.device.split(":")[0], ("cpu", "cuda"))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r} but CUDA is not available on this machine")
        self.training.dynamic_binarization = (
            self.visible == "bernoulli" and self.binarization == "dynamic"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"model": "rbm", "ebmlab_version": ebmlab.__version__, **asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> RBMExperimentConfig:
        fields = {k: v for k, v in config.items() if k not in ("model", "ebmlab_version")}
        try:
            return cls(**fields)
        except TypeError as error:
            raise RunFolderError(f"config.yaml does not describe an RBM run: {error}") from error


@dataclass
class PreparedData:
    """Training data (grey levels for dynamic binarisation), fixed binary monitor sets, test data."""

    train: torch.Tensor
    monitor_train: torch.Tensor
    validation: torch.Tensor | None
    test: torch.Tensor
    image_shape: tuple[int, int]
    mean: torch.Tensor | None = None  # per-feature standardisation (Gaussian visible units)
    std: torch.Tensor | None = None

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Map model-space vectors back to pixel intensities in [0, 1] for display."""
        if self.mean is None:
            return x
        return (x * self.std + self.mean).clamp(0, 1)


def prepare_data(config: RBMExperimentConfig) -> PreparedData:
    """Load, split and binarise the data as ``config`` says, on its device and dtype."""
    from ebmlab.data import load_dataset, prepare_binary, train_validation_split

    dtype, device = DTYPES[config.dtype], torch.device(config.device)
    full = load_dataset(config.dataset, split="train", data_dir=config.data_dir)
    test = load_dataset(config.dataset, split="test", data_dir=config.data_dir)
    if config.validation_fraction > 0:
        train, validation = train_validation_split(
            full, validation_fraction=config.validation_fraction, seed=config.seed
        )
    else:
        train, validation = full, None
    # Other recipes (DBN, DBM) reuse this function with configs that have no `visible`.
    if getattr(config, "visible", "bernoulli") == "gaussian":
        return _standardised(config, train.images, validation, test.images, tuple(full.image_shape))
    generator = torch.Generator().manual_seed(config.seed + 1)

    def binary(x: torch.Tensor) -> torch.Tensor:
        # Monitors and test data need fixed binary vectors, also under dynamic binarisation.
        method = "stochastic" if config.binarization == "dynamic" else config.binarization
        return prepare_binary(x, method, generator=generator).to(device=device, dtype=dtype)

    train_binary = prepare_binary(train.images, config.binarization, generator=generator)
    # The training monitors must see the very vectors the model trains on (fixed
    # binarisations); under dynamic binarisation any fixed draw is as good as another.
    if config.binarization == "dynamic":
        monitor_train = binary(train.images[:MONITOR_SIZE])
    else:
        monitor_train = train_binary[:MONITOR_SIZE].to(device=device, dtype=dtype)
    return PreparedData(
        train=train_binary.to(device=device, dtype=dtype),
        monitor_train=monitor_train,
        validation=None if validation is None else binary(validation.images[:MONITOR_SIZE]),
        test=binary(test.images),
        image_shape=tuple(full.image_shape),
    )


def _standardised(
    config, train: torch.Tensor, validation, test: torch.Tensor, image_shape
) -> PreparedData:
    """Per-feature standardisation with the training split's statistics (constant pixels: std 1)."""
    dtype, device = DTYPES[config.dtype], torch.device(config.device)
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))

    def standardise(x: torch.Tensor) -> torch.Tensor:
        return ((x - mean) / std).to(device=device, dtype=dtype)

    return PreparedData(
        train=standardise(train),
        monitor_train=standardise(train[:MONITOR_SIZE]),
        validation=None if validation is None else standardise(validation.images[:MONITOR_SIZE]),
        test=standardise(test),
        image_shape=image_shape,
        mean=mean.to(device=device, dtype=dtype),
        std=std.to(device=device, dtype=dtype),
    )


def build_model(
    config: RBMExperimentConfig, n_visible: int, generator: torch.Generator
) -> BernoulliRBM | GaussianBernoulliRBM:
    model_class = GaussianBernoulliRBM if config.visible == "gaussian" else BernoulliRBM
    return model_class(
        n_visible,
        config.n_hidden,
        generator=generator,
        dtype=DTYPES[config.dtype],
        device=config.device,
    )


def run_rbm(
    config: RBMExperimentConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> RunFolder:
    """Train an RBM from scratch into the run folder ``out``; returns the folder."""
    data = prepare_data(config)  # a missing dataset fails before any folder is made
    if config.tensorboard:  # fail before the run folder is made, not after an epoch
        check_tensorboard_available()
    run = RunFolder(out, keep_last=config.keep_last).create(overwrite=overwrite)
    run.write_config(config.to_dict())
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    model = build_model(config, data.train.shape[1], generator)
    model.init_visible_bias(data.train)
    trainer = CDTrainer(model, config.training, generator=generator)
    _train(run, trainer, data, progress=progress, tensorboard=config.tensorboard)
    return run


def resume_rbm(out: str | Path, *, progress: bool = True) -> RunFolder:
    """Continue a killed RBM run from its newest checkpoint, to the same result."""
    run = RunFolder(out)
    config = RBMExperimentConfig.from_dict(run.read_config())
    run.checkpoints.keep_last = config.keep_last
    data = prepare_data(config)
    generator = torch.Generator(device=config.device)
    model = build_model(config, data.train.shape[1], generator)
    trainer = CDTrainer(model, config.training, generator=generator)
    latest = run.checkpoints.latest()
    if latest is None:
        raise RunFolderError(
            f"{run.path} has no checkpoint to resume from; start it again with --overwrite"
        )
    model_state, extra = load_checkpoint(latest)
    load_model_state(model, model_state, source=str(latest))
    trainer.load_state_dict(extra["trainer"])
    run.truncate_metrics(last_epoch=trainer.epoch)
    _train(
        run,
        trainer,
        data,
        progress=progress,
        tensorboard=config.tensorboard,
        best_score=extra.get("best_score"),
    )
    return run


def _train(
    run: RunFolder,
    trainer: CDTrainer,
    data: PreparedData,
    *,
    progress: bool,
    tensorboard: bool = False,
    best_score: float | None = None,
) -> None:
    from tqdm.auto import tqdm

    epochs = range(trainer.epoch, trainer.config.epochs)
    bar = tqdm(
        epochs,
        desc="training RBM",
        disable=not progress,
        initial=trainer.epoch,
        total=trainer.config.epochs,
    )
    board = None
    if tensorboard:
        board = TensorBoardLogger(run.path / "tensorboard", resumed_after=trainer.epoch)
    for _ in bar:
        record = trainer.train_epoch(data.train, progress=False)
        record.update(trainer.monitor(data.monitor_train, data.validation))
        record["epoch"] = trainer.epoch
        # Gaussian visible units have no pseudo-likelihood: rank them by reconstruction.
        score = record.get("pseudo_loglik", -record["reconstruction_error"])
        is_best = best_score is None or score > best_score
        best_score = score if is_best else best_score
        # Metrics first: a kill between the two leaves an extra line that resume truncates,
        # never a checkpoint whose epoch has no metrics.
        run.append_metrics(record)
        run.checkpoints.save(
            trainer.epoch,
            trainer.model.state_dict(),
            {"trainer": trainer.state_dict(), "best_score": best_score, "epoch": trainer.epoch},
            is_best=is_best,
        )
        bar.set_postfix(score=f"{score:.3f}", recon=f"{record['reconstruction_error']:.4f}")
        if board is not None:
            board.log_record(trainer.epoch, record, trainer.model)
    samples = write_figures(run, trainer.model, data, seed=trainer.epoch)
    if board is not None:
        board.log_images("samples", samples, data.image_shape, trainer.epoch)
        board.close()


def write_figures(
    run: RunFolder, model: BernoulliRBM | GaussianBernoulliRBM, data: PreparedData, *, seed: int = 0
) -> torch.Tensor:
    """Samples (1,000 Gibbs sweeps from noise), filters and training curves; returns the samples."""
    from ebmlab.viz.curves import save_training_curves
    from ebmlab.viz.images import save_filters, save_image_grid

    generator = torch.Generator(device=model.weight.device).manual_seed(seed)
    samples = data.to_pixels(sample_visible(model, 64, 1000, generator=generator))
    title = "RBM samples (1,000 Gibbs sweeps)"
    save_image_grid(samples, data.image_shape, run.figures / "samples.png", title=title)
    save_filters(model.weight, data.image_shape, run.figures / "filters.png")
    save_training_curves(run.read_metrics(), run.figures / "training_curves.png")
    return samples


def load_rbm(
    run_dir: str | Path, *, which: str = "latest"
) -> tuple[RBMExperimentConfig, BernoulliRBM]:
    """Load a trained RBM from a run folder (``which``: ``latest`` or ``best``)."""
    run = RunFolder(run_dir)
    config = RBMExperimentConfig.from_dict(run.read_config())
    path = run.checkpoints.best if which == "best" else run.checkpoints.latest()
    if path is None or not path.is_file():
        raise RunFolderError(f"{run.path} has no {which} checkpoint")
    model_state, _ = load_checkpoint(path)
    n_visible = model_state["weight"].shape[0]
    model = build_model(config, n_visible, torch.Generator(device=config.device))
    load_model_state(model, model_state, source=str(path))
    return config, model


def evaluate_rbm(
    run_dir: str | Path,
    *,
    loglik: bool = False,
    n_chains: int = 100,
    n_betas: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of a trained RBM on its test split (and, with ``loglik``, AIS + RAISE likelihoods).

    Returns a JSON-ready dict; the keys are documented in docs/cli.md.
    """
    from ebmlab.estimators.pseudo_likelihood import pseudo_log_likelihood
    from ebmlab.training.monitor import free_energy_gap, reconstruction_error

    config, model = load_rbm(run_dir)
    if loglik and config.visible != "bernoulli":
        raise ValueError("--loglik (AIS and reverse AIS) is implemented for Bernoulli RBMs only")
    data = prepare_data(config)
    generator = torch.Generator(device=config.device).manual_seed(seed)

    with torch.no_grad():
        result: dict[str, Any] = {
            "model": "rbm",
            "visible": config.visible,
            "n_visible": model.n_visible,
            "n_hidden": model.n_hidden,
            "dataset": config.dataset,
            "n_test": int(data.test.shape[0]),
            "test_reconstruction_error": reconstruction_error(
                model, data.test, generator=generator
            ),
            "free_energy_gap": free_energy_gap(model, data.monitor_train, data.test[:MONITOR_SIZE]),
        }
        if config.visible == "bernoulli":
            # All n_visible bit flips when cheap; scikit-learn's one-bit estimate otherwise.
            exact = model.n_visible <= EXACT_PLL_MAX_VISIBLE
            pll = pseudo_log_likelihood(model, data.test, exact=exact, generator=generator)
            result["test_pseudo_loglik"] = float(pll.mean())
    if loglik:
        from ebmlab.estimators import evaluate_log_likelihood

        result.update(
            evaluate_log_likelihood(
                model,
                data.test,
                train_data=data.train,
                n_chains=n_chains,
                n_betas=n_betas,
                generator=generator,
                progress=progress,
            )
        )
    return result
