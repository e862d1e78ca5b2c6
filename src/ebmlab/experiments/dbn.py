"""Recipe ``dbn``: a deep belief network pretrained greedily, then fine-tuned.

One step is one epoch: the pretraining epochs of every RBM, bottom first, then the
generative up-down epochs (``updown.epochs``, none by default), then the discriminative
fine-tuning epochs (which may stop early, see ``finetune.patience``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._fields import option, section
from ebmlab._validation import check_choice, check_positive_int
from ebmlab.experiments.rbm import MONITOR_SIZE, BinaryImageSettings, PreparedData, prepare_data
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.models.dbn import DBN, PROPAGATIONS
from ebmlab.training.checkpoint import load_model_state
from ebmlab.training.finetune import (
    DBNClassifier,
    FinetuneConfig,
    FinetuneTrainer,
    classifier_accuracy,
    labelled_subset,
)
from ebmlab.training.greedy import GreedyTrainer, check_layer_configs
from ebmlab.training.trainer import CDConfig
from ebmlab.training.updown import UpDownConfig, UpDownTrainer

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

CURVE_KEYS = [
    "loss",
    "reconstruction_error",
    "pseudo_loglik",
    "free_energy_gap",
    "finetune_loss",
    "validation_accuracy",
]


@dataclass
class DBNExperimentConfig(BinaryImageSettings):
    """Everything needed to redo a DBN run (saved as the run's ``config.yaml``).

    ``training`` is one :class:`CDConfig` shared by every RBM or (from YAML or the
    API) a list with one per RBM; a command-line option sets it in every item.
    ``binarization`` applies to the pixels (as in the RBM recipe), ``propagation``
    to the data of the upper RBMs (see :class:`~ebmlab.training.greedy.GreedyTrainer`).
    ``n_labelled`` limits the labelled examples of fine-tuning (pretraining always
    sees every training image); ``finetune.epochs = 0`` skips fine-tuning.
    Other fields: :class:`~ebmlab.experiments.rbm.BinaryImageSettings`.
    """

    layers: list[int] = option([64, 64], "Hidden layer sizes, bottom to top, e.g. 500,500,2000.")
    propagation: str = option("mean", "Upper layers train on mean or sampled activations.")
    init_from_below: bool = option(False, "Start each RBM at the transpose of the one below.")
    n_labelled: int | None = option(None, "Labelled examples used for fine-tuning (none: all).")
    training: CDConfig | list[CDConfig] = section(
        CDConfig, "Greedy CD/PCD pretraining (epochs per RBM; one config or one per RBM)."
    )
    updown: UpDownConfig = section(
        UpDownConfig,
        "Generative fine-tuning by the up-down algorithm, after pretraining (2+ layers).",
        prefix="updown-",
    )
    finetune: FinetuneConfig = section(
        FinetuneConfig, "Discriminative fine-tuning of the up-pass.", prefix="finetune-"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.layers:
            raise ValueError(
                f"layers must be a non-empty list of hidden sizes; got {self.layers!r}"
            )
        self.layers = [check_positive_int("layers[i]", size) for size in self.layers]
        check_layer_configs(self.training, len(self.layers))
        check_choice("propagation", self.propagation, PROPAGATIONS)
        if isinstance(self.updown, dict):
            self.updown = UpDownConfig(**self.updown)
        if self.updown.epochs and len(self.layers) < 2:
            raise ValueError(
                f"updown.epochs needs 2 or more hidden layers; got layers={self.layers!r}"
            )
        if self.n_labelled is not None:
            check_positive_int("n_labelled", self.n_labelled)

    def layer_configs(self) -> list[CDConfig]:
        """One CDConfig per RBM (copies); the bottom one binarises dynamically if asked."""
        configs = [copy.deepcopy(c) for c in check_layer_configs(self.training, len(self.layers))]
        configs[0].dynamic_binarization = self.binarization == "dynamic"
        return configs


@dataclass
class LabelledData:
    """Grey-level images and labels: fine-tuning split (mean-field inputs) and test split."""

    train: tuple[torch.Tensor, torch.Tensor]
    validation: tuple[torch.Tensor, torch.Tensor]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    n_classes: int


def prepare_labelled(config: DBNExperimentConfig) -> LabelledData:
    """``n_labelled`` class-balanced training examples (seeded, then split) and the test split."""
    from ebmlab.data import load_dataset, train_validation_split

    train = load_dataset(config.dataset, split="train", data_dir=config.data_dir)
    test = load_dataset(config.dataset, split="test", data_dir=config.data_dir)
    index = labelled_subset(train.labels, config.n_labelled, seed=config.seed)
    images = train.images[index].to(**config.factory_kwargs)
    fit, validation = train_validation_split(
        (images, train.labels[index].to(config.device)),
        validation_fraction=config.finetune.validation_fraction,
        seed=config.seed,
    )
    return LabelledData(
        train=fit,
        validation=validation,
        test_images=test.images.to(**config.factory_kwargs),
        test_labels=test.labels.to(config.device),
        n_classes=train.n_classes,
    )


@register
class DBNRecipe(Recipe):
    """Greedy layer-wise CD/PCD, then backpropagation through the up-pass with early stopping."""

    name = "dbn"
    config_class = DBNExperimentConfig
    summary = "Train a deep belief network greedily, layer by layer, then optionally fine-tune it."
    progress_keys = ("pseudo_loglik", "validation_accuracy")
    distributed = True  # the layers train data-parallel; fine-tuning runs on every rank alike

    def prepare(self) -> None:
        self.data = prepare_data(self.config)  # the RBM recipe reads the same fields
        self.labelled = prepare_labelled(self.config)

    def build(self, context: DistributedContext) -> None:
        config = self.config
        self.generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self.dbn = DBN(
            [self.data.train.shape[1], *config.layers],
            generator=self.generator,
            **config.factory_kwargs,
        )
        self.greedy = GreedyTrainer(
            self.dbn,
            config.layer_configs(),
            propagation=config.propagation,
            generator=self.generator,
            init_from_below=config.init_from_below,
            context=context,
        )
        self.context = context
        self.updown: UpDownTrainer | None = None
        self.finetuner: FinetuneTrainer | None = None

    def _start_updown(self) -> UpDownTrainer:
        # Every rank runs the same seeded updates on the whole data, as fine-tuning does.
        generator = torch.Generator(device=self.config.device).manual_seed(self.config.seed + 3)
        self.updown = UpDownTrainer(self.dbn, self.config.updown, generator=generator)
        return self.updown

    def _start_finetuning(self) -> FinetuneTrainer:
        config = self.config
        generator = torch.Generator(device=config.device).manual_seed(config.seed + 2)
        classifier = DBNClassifier.from_dbn(self.dbn, self.labelled.n_classes, generator=generator)
        self.finetuner = FinetuneTrainer(classifier, config.finetune, generator=generator)
        return self.finetuner

    def memory_estimate(self) -> int:
        # Each layer's weights, gradient and momentum, and the GEMM temporaries.
        sizes = [self.data.train.shape[1], *self.config.layers]
        weights = sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))
        return 4 * weights * self.config.factory_kwargs["dtype"].itemsize

    def total_steps(self) -> int:
        config = self.config
        return (
            sum(c.epochs for c in self.greedy.configs)
            + config.updown.epochs
            + config.finetune.epochs
        )

    def completed_steps(self) -> int:
        greedy = self.greedy
        done = sum(c.epochs for c in greedy.configs[: greedy.layer]) + greedy.trainer.epoch
        if self.updown is not None:
            done += self.updown.epoch
        elif self.finetuner is not None:  # no up-down phase, or one from before it existed
            done += self.config.updown.epochs
        if self.finetuner is not None:
            # Early stopping ends fine-tuning: its remaining epochs count as done.
            finetuner = self.finetuner
            done += self.config.finetune.epochs if finetuner.done else finetuner.epoch
        return done

    def step(self, run: TrainingRun) -> dict[str, Any]:
        if not self.greedy.done:
            record = self.greedy.train_epoch(self.data.train)
            record.update(self.greedy.monitor(self.data.monitor_train, self.data.validation))
            return {**record, "phase": "pretrain"}
        if self.config.updown.epochs and self.finetuner is None:
            updown = self.updown or self._start_updown()
            if not updown.done:
                dynamic = self.config.binarization == "dynamic"
                record = updown.train_epoch(self.data.train, binarize=dynamic)
                return {**record, "phase": "updown"}
        finetuner = self.finetuner or self._start_finetuning()
        record = finetuner.train_epoch(*self.labelled.train, self.labelled.validation)
        return {**record, "phase": "finetune"}

    def state(self):
        finetune = None if self.finetuner is None else self.finetuner.state_dict()
        updown = None if self.updown is None else self.updown.state_dict()
        shared = {"greedy": self.greedy.state_dict(), "updown": updown, "finetune": finetune}
        # Under torchrun each rank keeps its own chains and sampling stream.
        return self.dbn.state_dict(), shared, shared if self.context.enabled else {}

    def adopt_model_keys(self, keys: list[str]) -> None:
        if any(name.startswith("recognition.") for name in keys):
            self.dbn.untie()  # up-down has run: the checkpoint holds the untied up-pass

    def load_state(self, model_state, shared, local) -> None:
        self.adopt_model_keys(list(model_state))
        load_model_state(self.dbn, model_state, source="checkpoint")
        shared = local or shared
        self.greedy.load_state_dict(shared["greedy"])
        self.updown = self.finetuner = None
        if shared.get("updown") is not None:
            if not self.greedy.done:
                raise ValueError(
                    "up-down fine-tuning of this DBN has started: its pretraining epochs cannot grow"
                )
            self._start_updown().load_state_dict(shared["updown"])
        if shared.get("finetune") is not None:
            if not self.greedy.done:
                raise ValueError(
                    "fine-tuning of this DBN has started: its pretraining epochs cannot grow"
                )
            self._start_finetuning().load_state_dict(shared["finetune"])

    def classifier(self) -> DBNClassifier | None:
        """The fine-tuned classifier at its best validation accuracy (None before fine-tuning)."""
        if self.finetuner is None:
            return None
        classifier = copy.deepcopy(self.finetuner.model)
        classifier.load_state_dict(self.finetuner.best_state)
        return classifier.eval()

    def model_for_logging(self) -> torch.nn.Module:
        return self.dbn

    def figures(self, folder: RunFolder) -> None:
        write_figures(folder, self.dbn, self.data.image_shape, seed=self.completed_steps())

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator):
        return self.dbn.sample(n, n_steps, generator=generator), "Gibbs sweeps at the top"

    def evaluate(
        self,
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
        data, generator = self.data, torch.Generator(device=self.device).manual_seed(seed)
        result: dict[str, Any] = {
            "model": "dbn",
            "layer_sizes": list(self.dbn.layer_sizes),
            "dataset": self.config.dataset,
            "n_test": int(data.test.shape[0]),
            "layers": layer_metrics(self.dbn, data, generator),
        }
        classifier = self.classifier()
        if classifier is not None:
            result["test_accuracy"] = classifier_accuracy(
                classifier, self.labelled.test_images, self.labelled.test_labels
            )
        if loglik:
            from ebmlab.estimators.dbn_bound import dbn_log_likelihood_bound

            bound = dbn_log_likelihood_bound(
                self.dbn,
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


@torch.no_grad()
def layer_metrics(dbn: DBN, data: PreparedData, generator: torch.Generator) -> list[dict]:
    """Each RBM's test reconstruction error and free-energy gap on (seeded) up-pass samples."""
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
