"""Recipe ``dbm``: a deep Boltzmann machine, pretrained with doubled RBMs, then trained jointly.

One step is one epoch: greedy pretraining (``training.pretraining.epochs`` per RBM,
one RBM per pair of layers), then joint training (``training.epochs``). With
``classifier_epochs > 0`` the last step also trains a classifier (see
:class:`~ebmlab.models.dbm.DBMClassifier`), kept with its test accuracies in the
final checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._fields import option, section
from ebmlab._validation import check_nonnegative_int, check_positive_float, check_positive_int
from ebmlab.experiments.rbm import MONITOR_SIZE, BinaryImageSettings, prepare_data
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.models.dbm import DBM, DBMClassifier
from ebmlab.training.checkpoint import load_model_state
from ebmlab.training.dbm import (
    PRETRAINING_DEFAULTS,
    DBMTrainer,
    DBMTrainingConfig,
    classifier_accuracy,
    fit_classifier,
)
from ebmlab.training.dbm_pretrain import GreedyPretrainer

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

# Mean field at evaluation and for the classifier's features: at least this many iterations.
EVAL_MEAN_FIELD_ITERATIONS = 30


@dataclass
class DBMExperimentConfig(BinaryImageSettings):
    """Everything needed to redo a DBM run (saved as the run's ``config.yaml``).

    ``layers``: widths of the hidden layers (the visible width comes from the data).
    ``n_train``: use only the first ``n_train`` training rows (None: all).
    ``classifier_epochs``: epochs of the head on frozen mean-field features (0: no
    classifier); ``fine_tune_epochs``: then epochs of the whole unrolled network.
    Other fields: :class:`~ebmlab.experiments.rbm.BinaryImageSettings`.
    """

    layers: list[int] = option([64, 64], "Hidden layer sizes, bottom to top, e.g. 500,1000.")
    n_train: int | None = option(None, "Use only the first N training images (none: all).")
    classifier_epochs: int = option(
        0, "Epochs of a softmax head on mean-field features at the end (0: none)."
    )
    fine_tune_epochs: int = option(0, "Then epochs fine-tuning the whole unrolled network.")
    classifier_lr: float = option(1e-3, "Classifier learning rate (Adam).")
    training: DBMTrainingConfig = section(
        DBMTrainingConfig, "Pretraining and joint training (mean field + persistent chains)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers:
            raise ValueError(f"layers must be a non-empty list of ints; got {self.layers!r}")
        self.layers = [check_positive_int("layers", n) for n in self.layers]
        if self.n_train is not None:
            check_positive_int("n_train", self.n_train)
        check_nonnegative_int("classifier_epochs", self.classifier_epochs)
        check_nonnegative_int("fine_tune_epochs", self.fine_tune_epochs)
        check_positive_float("classifier_lr", self.classifier_lr)

    @property
    def total_epochs(self) -> int:
        pretraining = self.training.pretraining.epochs * len(self.layers)
        return (pretraining if self.training.pretrain else 0) + self.training.epochs


@register
class DBMRecipe(Recipe):
    """Doubled-RBM pretraining, then joint training; a classifier at the end if asked."""

    name = "dbm"
    config_class = DBMExperimentConfig
    summary = (
        "Train a deep Boltzmann machine: doubled-RBM pretraining, then mean-field + "
        "persistent chains."
    )
    renames = {"hidden_sizes": "layers"}
    progress_keys = ("loss", "reconstruction_error")
    distributed = True  # pretraining and joint training data-parallel; the classifier alike

    @classmethod
    def complete_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        # A partial pretraining section keeps pretraining's defaults (PCD), not CDConfig's.
        training = settings.get("training")
        pretraining = training.get("pretraining") if isinstance(training, dict) else None
        if isinstance(pretraining, dict):
            for name, value in PRETRAINING_DEFAULTS.items():
                pretraining.setdefault(name, value)
        return settings

    def prepare(self) -> None:
        """The RBM recipe's data (cut to ``n_train`` rows) and the train/test labels."""
        data = self.data = prepare_data(self.config)  # the RBM recipe reads the same fields
        n = self.config.n_train  # None: every row
        data.train, data.train_labels = data.train[:n], data.train_labels[:n]
        self.labels, self.test_labels = data.train_labels, data.test_labels

    def build(self, context: DistributedContext) -> None:
        config, training = self.config, self.config.training
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.model = DBM(
            [self.data.train.shape[1], *config.layers],
            generator=self.generator,
            **config.factory_kwargs,
        )
        self.pretrainer = (
            GreedyPretrainer(
                self.model, training.pretraining, generator=self.generator, context=context
            )
            if training.pretrain
            else None
        )
        if self.pretrainer is None:
            self.model.init_visible_bias(self.data.train)
        self.trainer = DBMTrainer(self.model, training, generator=self.generator, context=context)
        self.context = context
        self.classifier: dict[str, Any] | None = None  # state and test accuracies

    def _pretraining(self) -> bool:
        return self.pretrainer is not None and not self.pretrainer.done

    def memory_estimate(self) -> int:
        # Each layer's weights, gradient and momentum, and the GEMM temporaries.
        sizes = [self.data.train.shape[1], *self.config.layers]
        weights = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
        return 4 * weights * self.config.factory_kwargs["dtype"].itemsize

    def total_steps(self) -> int:
        return self.config.total_epochs

    def completed_steps(self) -> int:
        training = self.config.training
        pretrained = 0
        if training.pretrain:
            epochs = training.pretraining.epochs
            if self._pretraining():
                pretrained = self.pretrainer.layer * epochs + self.pretrainer.trainer.epoch
            else:
                pretrained = epochs * len(self.config.layers)
        return pretrained + self.trainer.epoch

    def step(self, run: TrainingRun) -> dict[str, Any]:
        train = self.data.train
        if self.config.binarization == "dynamic":
            train = torch.bernoulli(train, generator=self.generator)
        if self._pretraining():
            return {"phase": "pretrain", **self.pretrainer.train_epoch(train)}
        record = {"phase": "joint", **self.trainer.train_epoch(train)}
        record.update(self.trainer.monitor(self.data.monitor_train, self.data.validation))
        if self.completed_steps() >= self.total_steps() and self.config.classifier_epochs > 0:
            self.classifier = self.train_classifier()
        return record

    def train_classifier(self) -> dict[str, Any]:
        """Head on frozen mean-field features, then (``fine_tune_epochs``) the whole network."""
        config = self.config
        train_inputs = (self.data.train, self.posterior(self.data.train))
        test_inputs = (self.data.test, self.posterior(self.data.test))
        n_classes = int(max(self.labels.max(), self.test_labels.max())) + 1
        classifier = DBMClassifier(self.model, n_classes)
        options = {
            "lr": config.classifier_lr,
            "batch_size": config.training.batch_size,
            "generator": torch.Generator().manual_seed(config.seed + 2),
        }
        fit_classifier(
            classifier,
            train_inputs,
            self.labels,
            epochs=config.classifier_epochs,
            fine_tune=False,
            **options,
        )
        linear = classifier_accuracy(classifier, test_inputs, self.test_labels)
        if config.fine_tune_epochs > 0:
            fit_classifier(
                classifier, train_inputs, self.labels, epochs=config.fine_tune_epochs, **options
            )
        return {
            "state": classifier.state_dict(),
            "n_classes": n_classes,
            "linear_accuracy": linear,
            "test_accuracy": classifier_accuracy(classifier, test_inputs, self.test_labels),
        }

    def posterior(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Mean-field posterior means of ``v`` (in batches of 1,000)."""
        training = self.config.training
        batches = [
            self.model.mean_field(
                batch,
                n_iterations=max(training.mean_field_iterations, EVAL_MEAN_FIELD_ITERATIONS),
                tolerance=training.mean_field_tolerance,
                damping=training.damping,
            ).means
            for batch in v.split(1000)
        ]
        return [torch.cat(layer) for layer in zip(*batches, strict=True)]

    def state(self):
        pretrainer = self.pretrainer.state_dict() if self._pretraining() else None
        shared = {
            "pretrainer": pretrainer,
            "pretraining_epochs": self.config.training.pretraining.epochs,
            "trainer": self.trainer.state_dict(),
            "classifier": self.classifier,
        }
        # Under torchrun each rank keeps its own chains and sampling stream.
        return self.model.state_dict(), shared, shared if self.context.enabled else {}

    def _check_pretraining_epochs(self, shared: dict[str, Any]) -> None:
        # Once an RBM of the stack is done, its epochs are history: more would not be trained.
        trained = shared.get("pretraining_epochs")
        pretraining = self.config.training.pretraining
        state = shared.get("pretrainer")
        moved_on = state is None or len(state.get("rbms", ())) > 1
        if self.config.training.pretrain and trained is not None and moved_on:
            if trained != pretraining.epochs:
                raise ValueError(
                    f"pretraining ran {trained} epochs per RBM and has moved past the first; "
                    f"its epochs cannot change when resuming (asked {pretraining.epochs})"
                )

    def load_state(self, model_state, shared, local) -> None:
        load_model_state(self.model, model_state, source="checkpoint")
        shared = local or shared
        self._check_pretraining_epochs(shared)
        if shared.get("pretrainer") is not None:
            self.pretrainer.load_state_dict(shared["pretrainer"])
        else:
            self.pretrainer = None  # pretraining was over (or off) at this checkpoint
        self.trainer.load_state_dict(shared["trainer"])  # restores the shared generator last
        self.classifier = shared.get("classifier")

    def model_for_logging(self) -> torch.nn.Module:
        return self.model

    def figures(self, folder: RunFolder) -> None:
        write_figures(folder, self.model, self.data.image_shape, seed=self.completed_steps())

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator):
        from ebmlab.samplers.dbm_gibbs import sample_dbm

        samples = sample_dbm(self.model, n, n_steps, generator=generator).visible_mean
        return samples, "block Gibbs sweeps"

    def evaluate(
        self,
        *,
        loglik: bool = False,
        n_chains: int = 100,
        n_betas: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Metrics of the trained DBM on its test split, as a JSON-ready dict.

        Keys: ``model``, ``layer_sizes``, ``dataset``, ``n_test``,
        ``test_reconstruction_error`` (mean-field), ``mean_field_residual``;
        ``test_accuracy`` and ``linear_accuracy`` when a classifier was trained; with
        ``loglik``: ``loglik_bound`` {value, lower, upper, stderr, n_samples} (the
        mean-field ELBO with AIS log Z) and ``log_z`` {value, lower, upper, n_chains,
        n_betas, seconds}.
        """
        check_positive_int("n_chains", n_chains)
        model, data = self.model, self.data
        n_iterations = max(self.config.training.mean_field_iterations, EVAL_MEAN_FIELD_ITERATIONS)
        test = data.test[:MONITOR_SIZE]
        with torch.no_grad():
            mean_field = model.mean_field(test, n_iterations=n_iterations)
            reconstruction = model.mean_layer([None, mean_field.means[0]], 0)
        result: dict[str, Any] = {
            "model": "dbm",
            "layer_sizes": list(model.layer_sizes),
            "dataset": self.config.dataset,
            "n_test": int(data.test.shape[0]),
            "test_reconstruction_error": float(((test - reconstruction) ** 2).mean()),
            "mean_field_residual": mean_field.residual,
        }
        if self.classifier is not None:
            result.update({k: self.classifier[k] for k in ("test_accuracy", "linear_accuracy")})
        if loglik:
            from ebmlab.estimators.ais import ais_log_partition
            from ebmlab.estimators.dbm import dbm_elbo

            log_z = ais_log_partition(
                model,
                n_chains=n_chains,
                betas=None if n_betas is None else check_positive_int("n_betas", n_betas),
                base_data=data.train,
                generator=torch.Generator(device=self.device).manual_seed(seed),
                progress=progress,
            )
            bound = dbm_elbo(model, data.test, log_z, n_iterations=n_iterations)
            result["loglik_bound"] = {
                k: getattr(bound, k) for k in ("value", "lower", "upper", "stderr", "n_samples")
            }
            result["log_z"] = log_z.summary()
        return result


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
