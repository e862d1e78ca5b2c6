"""Recipe: pretrain and train a deep Boltzmann machine into a run folder, resumably.

A run has two phases, counted by one ``epoch`` number in ``metrics.jsonl`` and the
checkpoints: greedy pretraining (``training.pretraining.epochs`` per RBM, one RBM per
pair of layers) and joint training (``training.epochs``). With ``classifier_epochs > 0``
a classifier is trained at the end (see :class:`~ebmlab.models.dbm.DBMClassifier`) and
saved as ``classifier.safetensors``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import ebmlab
from ebmlab._validation import (
    check_choice,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.experiments.rbm import BINARIZATIONS, DTYPES, MONITOR_SIZE, PreparedData, prepare_data
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.models.dbm import DBM, DBMClassifier
from ebmlab.training.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from ebmlab.training.dbm import DBMTrainer, DBMTrainingConfig, classifier_accuracy, fit_classifier
from ebmlab.training.dbm_pretrain import GreedyPretrainer

CLASSIFIER_FILE = "classifier.safetensors"


@dataclass
class DBMExperimentConfig:
    """Everything needed to redo a DBM run (saved as the run's ``config.yaml``).

    ``hidden_sizes``: widths of the hidden layers (the visible width comes from the
    data). ``n_train``: use only the first ``n_train`` training rows (None: all).
    ``classifier_epochs``: epochs of the head on frozen mean-field features (0: no
    classifier); ``fine_tune_epochs``: then epochs of the whole unrolled network.
    Other fields as in :class:`~ebmlab.experiments.rbm.RBMExperimentConfig`.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    binarization: str = "dynamic"
    validation_fraction: float = 0.1
    n_train: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    keep_last: int = 3
    classifier_epochs: int = 0
    fine_tune_epochs: int = 0
    classifier_lr: float = 1e-3
    training: DBMTrainingConfig = field(default_factory=DBMTrainingConfig)

    def __post_init__(self) -> None:
        if isinstance(self.training, dict):
            self.training = DBMTrainingConfig(**self.training)
        if not isinstance(self.hidden_sizes, list | tuple) or not self.hidden_sizes:
            raise ValueError(
                f"hidden_sizes must be a non-empty list of ints; got {self.hidden_sizes!r}"
            )
        self.hidden_sizes = [check_positive_int("hidden_sizes", n) for n in self.hidden_sizes]
        check_choice("binarization", self.binarization, BINARIZATIONS)
        check_probability("validation_fraction", self.validation_fraction)
        if self.n_train is not None:
            check_positive_int("n_train", self.n_train)
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_choice("device", self.device.split(":")[0], ("cpu", "cuda"))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r} but CUDA is not available on this machine")
        check_nonnegative_int("classifier_epochs", self.classifier_epochs)
        check_nonnegative_int("fine_tune_epochs", self.fine_tune_epochs)
        check_positive_float("classifier_lr", self.classifier_lr)

    def to_dict(self) -> dict[str, Any]:
        return {"model": "dbm", "ebmlab_version": ebmlab.__version__, **asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> DBMExperimentConfig:
        fields = {k: v for k, v in config.items() if k not in ("model", "ebmlab_version")}
        try:
            return cls(**fields)
        except TypeError as error:
            raise RunFolderError(f"config.yaml does not describe a DBM run: {error}") from error

    @property
    def total_epochs(self) -> int:
        pretraining = self.training.pretraining.epochs * len(self.hidden_sizes)
        return (pretraining if self.training.pretrain else 0) + self.training.epochs


def load_data(config: DBMExperimentConfig) -> tuple[PreparedData, torch.Tensor, torch.Tensor]:
    """The RBM recipe's data (cut to ``n_train`` rows) and the train/test labels."""
    from ebmlab.data import load_dataset, train_validation_split

    data = prepare_data(config)  # the RBM recipe reads the same fields
    full = load_dataset(config.dataset, split="train", data_dir=config.data_dir)
    labels = full.labels
    if config.validation_fraction > 0:
        labels = train_validation_split(
            full, validation_fraction=config.validation_fraction, seed=config.seed
        )[0].labels
    if config.n_train is not None:
        data.train, labels = data.train[: config.n_train], labels[: config.n_train]
    test_labels = load_dataset(config.dataset, split="test", data_dir=config.data_dir).labels
    device = torch.device(config.device)
    return data, labels.to(device), test_labels.to(device)


def build_model(config: DBMExperimentConfig, n_visible: int, generator: torch.Generator) -> DBM:
    return DBM(
        [n_visible, *config.hidden_sizes],
        generator=generator,
        dtype=DTYPES[config.dtype],
        device=config.device,
    )


@dataclass
class _Session:
    run: RunFolder
    config: DBMExperimentConfig
    model: DBM
    pretrainer: GreedyPretrainer | None
    trainer: DBMTrainer
    generator: torch.Generator
    epoch: int = 0


def _new_session(run: RunFolder, config: DBMExperimentConfig, n_visible: int) -> _Session:
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    model = build_model(config, n_visible, generator)
    pretrainer = (
        GreedyPretrainer(model, config.training.pretraining, generator=generator)
        if config.training.pretrain
        else None
    )
    trainer = DBMTrainer(model, config.training, generator=generator)
    return _Session(run, config, model, pretrainer, trainer, generator)


def run_dbm(
    config: DBMExperimentConfig, out: str | Path, *, overwrite: bool = False, progress: bool = True
) -> RunFolder:
    """Train a DBM from scratch into the run folder ``out``; returns the folder."""
    run = RunFolder(out, keep_last=config.keep_last).create(overwrite=overwrite)
    run.write_config(config.to_dict())
    data, labels, test_labels = load_data(config)
    session = _new_session(run, config, data.train.shape[1])
    if session.pretrainer is None:
        session.model.init_visible_bias(data.train)
    _train(session, data, progress=progress)
    _train_classifier(session, data, labels, test_labels)
    return run


def resume_dbm(out: str | Path, *, progress: bool = True) -> RunFolder:
    """Continue a killed DBM run from its newest checkpoint, to the same result."""
    run = RunFolder(out)
    config = DBMExperimentConfig.from_dict(run.read_config())
    run.checkpoints.keep_last = config.keep_last
    latest = run.checkpoints.latest()
    if latest is None:
        raise RunFolderError(
            f"{run.path} has no checkpoint to resume from; start it again with --overwrite"
        )
    data, labels, test_labels = load_data(config)
    session = _new_session(run, config, data.train.shape[1])
    model_state, extra = load_checkpoint(latest)
    load_model_state(session.model, model_state, source=str(latest))
    if extra.get("pretrainer") is not None:
        session.pretrainer.load_state_dict(extra["pretrainer"])
    else:
        session.pretrainer = None  # pretraining was over (or off) at this checkpoint
    session.trainer.load_state_dict(extra["trainer"])  # restores the shared generator last
    session.epoch = int(extra["epoch"])
    run.truncate_metrics(last_epoch=session.epoch)
    _train(session, data, progress=progress)
    if not (run.path / CLASSIFIER_FILE).is_file():
        _train_classifier(session, data, labels, test_labels)
    return run


def _epoch_data(session: _Session, train: torch.Tensor) -> torch.Tensor:
    if session.config.binarization == "dynamic":
        return torch.bernoulli(train, generator=session.generator)
    return train


def _train(session: _Session, data: PreparedData, *, progress: bool) -> None:
    from tqdm.auto import tqdm

    config, pretrainer, trainer = session.config, session.pretrainer, session.trainer
    bar = tqdm(
        total=config.total_epochs, initial=session.epoch, desc="training DBM", disable=not progress
    )
    while session.epoch < config.total_epochs:
        if pretrainer is not None and not pretrainer.done:
            record = {
                "phase": "pretrain",
                **pretrainer.train_epoch(_epoch_data(session, data.train)),
            }
        else:
            record = {"phase": "joint", **trainer.train_epoch(_epoch_data(session, data.train))}
            record.update(trainer.monitor(data.monitor_train, data.validation))
        session.epoch += 1
        record["epoch"] = session.epoch
        extra = {
            "epoch": session.epoch,
            "pretrainer": None
            if pretrainer is None or pretrainer.done
            else pretrainer.state_dict(),
            "trainer": trainer.state_dict(),
        }
        session.run.checkpoints.save(
            session.epoch, session.model.state_dict(), extra, is_best=False
        )
        session.run.append_metrics(record)
        bar.update(1)
    bar.close()
    write_figures(session.run, session.model, data.image_shape, seed=session.epoch)


def _posterior(model: DBM, v: torch.Tensor, config: DBMExperimentConfig) -> list[torch.Tensor]:
    training = config.training
    batches = [
        model.mean_field(
            batch,
            n_iterations=max(training.mean_field_iterations, 30),
            tolerance=training.mean_field_tolerance,
            damping=training.damping,
        ).means
        for batch in v.split(1000)
    ]
    return [torch.cat(layer) for layer in zip(*batches, strict=True)]


def _train_classifier(session: _Session, data: PreparedData, labels, test_labels) -> None:
    config = session.config
    if config.classifier_epochs == 0:
        return
    model, generator = session.model, torch.Generator().manual_seed(config.seed + 2)
    train_inputs = (data.train, _posterior(model, data.train, config))
    test_inputs = (data.test, _posterior(model, data.test, config))
    n_classes = int(max(labels.max(), test_labels.max())) + 1
    classifier = DBMClassifier(model, n_classes)
    options = {
        "lr": config.classifier_lr,
        "batch_size": config.training.batch_size,
        "generator": generator,
    }
    fit_classifier(
        classifier,
        train_inputs,
        labels,
        epochs=config.classifier_epochs,
        fine_tune=False,
        **options,
    )
    scores = {"linear_accuracy": classifier_accuracy(classifier, test_inputs, test_labels)}
    if config.fine_tune_epochs > 0:
        fit_classifier(classifier, train_inputs, labels, epochs=config.fine_tune_epochs, **options)
    scores["test_accuracy"] = classifier_accuracy(classifier, test_inputs, test_labels)
    save_checkpoint(
        session.run.path / CLASSIFIER_FILE,
        classifier.state_dict(),
        {"n_classes": n_classes, **scores},
    )


def write_figures(
    run: RunFolder, model: DBM, image_shape: tuple[int, int], *, seed: int = 0
) -> None:
    """Samples (1,000 block Gibbs sweeps from noise), first-layer filters and curves."""
    from ebmlab.samplers.dbm_gibbs import sample_dbm
    from ebmlab.viz.curves import save_training_curves
    from ebmlab.viz.images import save_filters, save_image_grid

    generator = torch.Generator(device=model.biases[0].device).manual_seed(seed)
    samples = sample_dbm(model, 64, 1000, generator=generator).visible_mean
    title = "DBM samples (1,000 block Gibbs sweeps)"
    save_image_grid(samples, image_shape, run.figures / "samples.png", title=title)
    save_filters(model.weights[0], image_shape, run.figures / "filters.png")
    records = [r for r in run.read_metrics() if r.get("phase") == "joint"]
    save_training_curves(records, run.figures / "training_curves.png")


def load_dbm(run_dir: str | Path) -> tuple[DBMExperimentConfig, DBM]:
    """Load the trained DBM (newest checkpoint) from a run folder."""
    run = RunFolder(run_dir)
    config = DBMExperimentConfig.from_dict(run.read_config())
    path = run.checkpoints.latest()
    if path is None:
        raise RunFolderError(f"{run.path} has no checkpoint")
    model_state, _ = load_checkpoint(path)
    model = build_model(
        config, model_state["weights.0"].shape[0], torch.Generator(device=config.device)
    )
    load_model_state(model, model_state, source=str(path))
    return config, model


def evaluate_dbm(
    run_dir: str | Path,
    *,
    loglik: bool = False,
    n_chains: int = 100,
    n_betas: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Metrics of a trained DBM on its test split, as a JSON-ready dict.

    Keys: ``model``, ``layer_sizes``, ``dataset``, ``n_test``,
    ``test_reconstruction_error`` (mean-field), ``mean_field_residual``;
    ``test_accuracy`` and ``linear_accuracy`` when a classifier was trained; with
    ``loglik``: ``loglik_bound`` {value, lower, upper, stderr, n_samples} (the mean-field
    ELBO with AIS log Z) and ``log_z`` {value, lower, upper, n_chains, n_betas, seconds}.
    """
    from ebmlab.estimators.ais import ais_log_partition
    from ebmlab.estimators.dbm import dbm_elbo

    check_positive_int("n_chains", n_chains)
    config, model = load_dbm(run_dir)
    data, _, test_labels = load_data(config)
    training = config.training
    with torch.no_grad():
        mean_field = model.mean_field(
            data.test[:MONITOR_SIZE], n_iterations=max(training.mean_field_iterations, 30)
        )
        reconstruction = model.mean_layer([None, mean_field.means[0]], 0)
    result: dict[str, Any] = {
        "model": "dbm",
        "layer_sizes": list(model.layer_sizes),
        "dataset": config.dataset,
        "n_test": int(data.test.shape[0]),
        "test_reconstruction_error": float(
            ((data.test[:MONITOR_SIZE] - reconstruction) ** 2).mean()
        ),
        "mean_field_residual": mean_field.residual,
    }
    classifier_path = RunFolder(run_dir).path / CLASSIFIER_FILE
    if classifier_path.is_file():
        _, extra = load_checkpoint(classifier_path)
        result.update({k: extra[k] for k in ("test_accuracy", "linear_accuracy")})
    if loglik:
        generator = torch.Generator(device=config.device).manual_seed(seed)
        betas = None if n_betas is None else check_positive_int("n_betas", n_betas)
        log_z = ais_log_partition(
            model,
            n_chains=n_chains,
            betas=betas,
            base_data=data.train,
            generator=generator,
            progress=progress,
        )
        bound = dbm_elbo(
            model, data.test, log_z, n_iterations=max(training.mean_field_iterations, 30)
        )
        result["loglik_bound"] = {
            k: getattr(bound, k) for k in ("value", "lower", "upper", "stderr", "n_samples")
        }
        result["log_z"] = {
            "value": log_z.log_z,
            "lower": log_z.log_z_lower,
            "upper": log_z.log_z_upper,
            "n_chains": log_z.n_chains,
            "n_betas": log_z.n_betas,
            "seconds": log_z.seconds,
        }
    return result
