"""Recipe: pretrain a DBN greedily, fine-tune it as a classifier, into a resumable run folder."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import ebmlab
from ebmlab._validation import check_choice, check_positive_int, check_probability
from ebmlab.experiments.rbm import (
    BINARIZATIONS,
    DTYPES,
    MONITOR_SIZE,
    PreparedData,
    RBMExperimentConfig,
    prepare_data,
)
from ebmlab.experiments.run_folder import RunFolder, RunFolderError
from ebmlab.models.dbn import DBN, PROPAGATIONS
from ebmlab.training.checkpoint import load_checkpoint, load_model_state
from ebmlab.training.finetune import (
    DBNClassifier,
    FinetuneConfig,
    FinetuneTrainer,
    classifier_accuracy,
    labelled_subset,
)
from ebmlab.training.greedy import GreedyTrainer, check_layer_configs
from ebmlab.training.trainer import CDConfig

CURVE_KEYS = [
    "loss",
    "reconstruction_error",
    "pseudo_loglik",
    "free_energy_gap",
    "finetune_loss",
    "validation_accuracy",
]


@dataclass
class DBNExperimentConfig:
    """Everything needed to redo a DBN run (saved as the run's ``config.yaml``).

    ``layers`` are the hidden layer sizes (the visible size comes from the data);
    ``training`` is one :class:`CDConfig` shared by every RBM or a list with one per
    RBM; ``binarization`` applies to the pixels (as in the RBM recipe), ``propagation``
    to the data of the upper RBMs (see :class:`~ebmlab.training.greedy.GreedyTrainer`).
    ``n_labelled`` limits the labelled examples used for fine-tuning (``None``: the
    whole training split; pretraining always sees every training image), and
    ``finetune.epochs = 0`` skips fine-tuning.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    layers: list[int] = field(default_factory=lambda: [64, 64])
    binarization: str = "dynamic"
    propagation: str = "mean"
    init_from_below: bool = False
    validation_fraction: float = 0.1
    n_labelled: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    keep_last: int = 3
    training: CDConfig | list[CDConfig] = field(default_factory=CDConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def __post_init__(self) -> None:
        if isinstance(self.training, dict):
            self.training = CDConfig(**self.training)
        elif isinstance(self.training, list):
            self.training = [CDConfig(**c) if isinstance(c, dict) else c for c in self.training]
        if isinstance(self.finetune, dict):
            self.finetune = FinetuneConfig(**self.finetune)
        if isinstance(self.layers, int | str) or not self.layers:
            raise ValueError(
                f"layers must be a non-empty list of hidden sizes; got {self.layers!r}"
            )
        self.layers = [check_positive_int("layers[i]", size) for size in self.layers]
        check_layer_configs(self.training, len(self.layers))
        check_choice("binarization", self.binarization, BINARIZATIONS)
        check_choice("propagation", self.propagation, PROPAGATIONS)
        check_probability("validation_fraction", self.validation_fraction)
        if self.n_labelled is not None:
            check_positive_int("n_labelled", self.n_labelled)
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_choice("device", self.device.split(":")[0], ("cpu", "cuda"))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r} but CUDA is not available on this machine")

    def layer_configs(self) -> list[CDConfig]:
        """One CDConfig per RBM (copies); the bottom one binarises dynamically if asked."""
        configs = [copy.deepcopy(c) for c in check_layer_configs(self.training, len(self.layers))]
        configs[0].dynamic_binarization = self.binarization == "dynamic"
        return configs

    def rbm_config(self) -> RBMExperimentConfig:
        """The bottom RBM's recipe config: reused to load and binarise the data."""
        return RBMExperimentConfig(
            dataset=self.dataset,
            data_dir=self.data_dir,
            n_hidden=self.layers[0],
            binarization=self.binarization,
            validation_fraction=self.validation_fraction,
            seed=self.seed,
            device=self.device,
            dtype=self.dtype,
            training=self.layer_configs()[0],
        )

    def to_dict(self) -> dict[str, Any]:
        return {"model": "dbn", "ebmlab_version": ebmlab.__version__, **asdict(self)}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> DBNExperimentConfig:
        fields = {k: v for k, v in config.items() if k not in ("model", "ebmlab_version")}
        try:
            return cls(**fields)
        except TypeError as error:
            raise RunFolderError(f"config.yaml does not describe a DBN run: {error}") from error


@dataclass
class LabelledData:
    """Grey-level images and labels for fine-tuning (mean-field inputs) and testing."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    n_classes: int


def prepare_labelled(config: DBNExperimentConfig) -> LabelledData:
    """The ``n_labelled`` class-balanced training examples (seeded) and the whole test split."""
    from ebmlab.data import load_dataset

    dtype, device = DTYPES[config.dtype], torch.device(config.device)
    train = load_dataset(config.dataset, split="train", data_dir=config.data_dir)
    test = load_dataset(config.dataset, split="test", data_dir=config.data_dir)
    index = labelled_subset(train.labels, config.n_labelled, seed=config.seed)
    return LabelledData(
        train_images=train.images[index].to(device=device, dtype=dtype),
        train_labels=train.labels[index].to(device),
        test_images=test.images.to(device=device, dtype=dtype),
        test_labels=test.labels.to(device),
        n_classes=train.n_classes,
    )


class _Session:
    """The objects of one run: the DBN, its greedy trainer and (later) the fine-tuner."""

    def __init__(self, config: DBNExperimentConfig, n_visible: int) -> None:
        self.config = config
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.dbn = DBN(
            [n_visible, *config.layers],
            generator=self.generator,
            dtype=DTYPES[config.dtype],
            device=config.device,
        )
        self.greedy = GreedyTrainer(
            self.dbn,
            config.layer_configs(),
            propagation=config.propagation,
            generator=self.generator,
            init_from_below=config.init_from_below,
        )
        self.finetuner: FinetuneTrainer | None = None
        self.step = 0

    def start_finetuning(self, n_classes: int) -> FinetuneTrainer:
        generator = torch.Generator(device=self.config.device).manual_seed(self.config.seed + 2)
        classifier = DBNClassifier.from_dbn(self.dbn, n_classes, generator=generator)
        self.finetuner = FinetuneTrainer(classifier, self.config.finetune, generator=generator)
        return self.finetuner

    def extra(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "greedy": self.greedy.state_dict(),
            "finetune": None if self.finetuner is None else self.finetuner.state_dict(),
        }

    def load(self, path: Path, n_classes: int) -> None:
        model_state, extra = load_checkpoint(path)
        load_model_state(self.dbn, model_state, source=str(path))
        self.greedy.load_state_dict(extra["greedy"])
        self.step = int(extra["step"])
        if extra.get("finetune") is not None:
            self.start_finetuning(n_classes).load_state_dict(extra["finetune"])


def run_dbn(
    config: DBNExperimentConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> RunFolder:
    """Pretrain (and fine-tune) a DBN from scratch into the run folder ``out``.

    ``stop_after`` stops after that many epochs in all (pretraining epochs of every
    layer, then fine-tuning epochs), as a killed or time-limited job would;
    :func:`resume_dbn` continues it to the same result.
    """
    run = RunFolder(out, keep_last=config.keep_last).create(overwrite=overwrite)
    run.write_config(config.to_dict())
    data = prepare_data(config.rbm_config())
    labelled = prepare_labelled(config)
    session = _Session(config, data.train.shape[1])
    _train(run, session, data, labelled, progress=progress, stop_after=stop_after)
    return run


def resume_dbn(
    out: str | Path, *, progress: bool = True, stop_after: int | None = None
) -> RunFolder:
    """Continue a killed DBN run from its newest checkpoint (layer, epoch, optimiser, RNG)."""
    run = RunFolder(out)
    config = DBNExperimentConfig.from_dict(run.read_config())
    run.checkpoints.keep_last = config.keep_last
    latest = run.checkpoints.latest()
    if latest is None:
        raise RunFolderError(
            f"{run.path} has no checkpoint to resume from; start it again with --overwrite"
        )
    data = prepare_data(config.rbm_config())
    labelled = prepare_labelled(config)
    session = _Session(config, data.train.shape[1])
    session.load(latest, labelled.n_classes)
    run.truncate_metrics(last_epoch=session.step)
    _train(run, session, data, labelled, progress=progress, stop_after=stop_after)
    return run


def _save(run: RunFolder, session: _Session, record: dict[str, Any]) -> None:
    session.step += 1
    record["epoch"] = session.step
    run.checkpoints.save(session.step, session.dbn.state_dict(), session.extra(), is_best=False)
    run.append_metrics(record)


def _train(
    run: RunFolder,
    session: _Session,
    data: PreparedData,
    labelled: LabelledData,
    *,
    progress: bool,
    stop_after: int | None,
) -> None:
    from tqdm.auto import tqdm

    greedy, finetune_config = session.greedy, session.config.finetune
    total = sum(c.epochs for c in greedy.configs) + finetune_config.epochs
    bar = tqdm(total=total, initial=session.step, desc="training DBN", disable=not progress)

    def stopped() -> bool:
        return stop_after is not None and session.step >= stop_after

    while not greedy.done:
        if stopped():
            return
        record = greedy.train_epoch(data.train)
        record.update(greedy.monitor(data.monitor_train, data.validation), phase="pretrain")
        _save(run, session, record)
        bar.update()
    if finetune_config.epochs > 0:
        from ebmlab.data import train_validation_split

        finetuner = session.finetuner or session.start_finetuning(labelled.n_classes)
        (images, labels), validation = train_validation_split(
            (labelled.train_images, labelled.train_labels),
            validation_fraction=finetune_config.validation_fraction,
            seed=session.config.seed,
        )
        while not finetuner.done:
            if stopped():
                return
            record = finetuner.train_epoch(images, labels, validation)
            _save(run, session, {**record, "phase": "finetune"})
            bar.update()
        finetuner.restore_best()
    bar.close()
    write_figures(run, session.dbn, data.image_shape, seed=session.step)


def write_figures(run: RunFolder, dbn: DBN, image_shape: tuple[int, int], *, seed: int = 0) -> None:
    """Samples (1,000 sweeps in the top RBM, then a down-pass), first-layer filters, curves."""
    from ebmlab.viz.curves import save_training_curves
    from ebmlab.viz.images import save_filters, save_image_grid

    generator = torch.Generator(device=dbn.top.weight.device).manual_seed(seed)
    samples = dbn.sample(64, 1000, generator=generator)
    title = "DBN samples (1,000 Gibbs sweeps at the top, one down-pass)"
    save_image_grid(samples, image_shape, run.figures / "samples.png", title=title)
    save_filters(dbn.rbms[0].weight, image_shape, run.figures / "filters.png")
    records = run.read_metrics()
    keys = [k for k in CURVE_KEYS if any(k in r for r in records)]
    save_training_curves(records, run.figures / "training_curves.png", keys=keys)


def load_dbn(
    run_dir: str | Path,
) -> tuple[DBNExperimentConfig, DBN, DBNClassifier | None]:
    """The config, the DBN and the fine-tuned classifier (best so far; None before fine-tuning)."""
    run = RunFolder(run_dir)
    config = DBNExperimentConfig.from_dict(run.read_config())
    path = run.checkpoints.latest()
    if path is None:
        raise RunFolderError(f"{run.path} has no checkpoint")
    model_state, extra = load_checkpoint(path)
    dbn = DBN(
        [model_state["rbms.0.weight"].shape[0], *config.layers],
        dtype=DTYPES[config.dtype],
        device=config.device,
    )
    load_model_state(dbn, model_state, source=str(path))
    classifier = None
    if extra.get("finetune") is not None:
        best_state = extra["finetune"]["best_state"]
        n_classes = best_state["head.weight"].shape[0]
        classifier = DBNClassifier(dbn.layer_sizes, n_classes, dtype=DTYPES[config.dtype])
        classifier.load_state_dict(best_state)
        classifier.to(config.device).eval()
    return config, dbn, classifier


@torch.no_grad()
def _layer_metrics(dbn: DBN, data: PreparedData, generator: torch.Generator) -> list[dict]:
    from ebmlab.training.greedy import propagate
    from ebmlab.training.monitor import free_energy_gap, reconstruction_error

    results = []
    for layer, rbm in enumerate(dbn.rbms):

        def up(x: torch.Tensor, layer: int = layer) -> torch.Tensor:
            seeded = torch.Generator(device=x.device).manual_seed(layer)
            return propagate(dbn, x, layer, propagation="sample", generator=seeded)

        test, train = up(data.test), up(data.monitor_train)
        results.append(
            {
                "layer": layer,
                "n_visible": rbm.n_visible,
                "n_hidden": rbm.n_hidden,
                "test_reconstruction_error": reconstruction_error(rbm, test, generator=generator),
                "free_energy_gap": free_energy_gap(rbm, train, test[:MONITOR_SIZE]),
            }
        )
    return results


def evaluate_dbn(
    run_dir: str | Path,
    *,
    loglik: bool = False,
    n_samples: int = 10,
    n_chains: int = 100,
    n_betas: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Test accuracy after fine-tuning, per-layer metrics and (``loglik``) the likelihood bound.

    The bound (:func:`~ebmlab.estimators.dbn_bound.dbn_log_likelihood_bound`) uses
    ``n_samples`` samples of Q per test image and AIS (``n_chains``, ``n_betas``) for
    the top RBM's log Z; ``loglik_bound`` holds ``value``, ``lower`` and ``upper``.
    """
    config, dbn, classifier = load_dbn(run_dir)
    data = prepare_data(config.rbm_config())
    generator = torch.Generator(device=config.device).manual_seed(seed)
    result: dict[str, Any] = {
        "model": "dbn",
        "layer_sizes": list(dbn.layer_sizes),
        "dataset": config.dataset,
        "n_test": int(data.test.shape[0]),
        "layers": _layer_metrics(dbn, data, generator),
    }
    if classifier is not None:
        labelled = prepare_labelled(config)
        result["test_accuracy"] = classifier_accuracy(
            classifier, labelled.test_images, labelled.test_labels
        )
    if loglik:
        from ebmlab.estimators.dbn_bound import dbn_log_likelihood_bound

        bound = dbn_log_likelihood_bound(
            dbn,
            data.test,
            n_samples=n_samples,
            n_chains=n_chains,
            n_betas=n_betas,
            base_data=data.train,
            generator=generator,
            progress=progress,
        )
        result["loglik_bound"] = bound.to_dict()
    return result
