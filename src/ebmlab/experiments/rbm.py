"""Recipe ``rbm``: a Bernoulli or Gaussian-Bernoulli RBM trained by CD-k or PCD-k."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ebmlab._fields import option, section
from ebmlab._validation import (
    check_choice,
    check_device,
    check_nonnegative_int,
    check_positive_int,
)
from ebmlab.experiments.recipe import Recipe
from ebmlab.experiments.registry import register
from ebmlab.experiments.run_folder import RunFolder
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.gibbs import sample_visible
from ebmlab.training.checkpoint import load_model_state
from ebmlab.training.trainer import EXACT_PLL_MAX_VISIBLE, CDConfig, CDTrainer

if TYPE_CHECKING:
    from ebmlab.experiments.driver import TrainingRun
    from ebmlab.training.distributed import DistributedContext

DTYPES = {"float32": torch.float32, "float64": torch.float64}
BINARIZATIONS = ("threshold", "stochastic", "dynamic")
VISIBLE_UNITS = ("bernoulli", "gaussian")
# Gaussian-Bernoulli RBMs need a far smaller step than binary ones (Hinton's guide, 13.2),
# and momentum 0.9 made them diverge on Fashion-MNIST (docs/models/gaussian-rbm.md). They
# keep the schedule they were measured with: momentum 0.5, a constant rate, no centering.
GAUSSIAN_DEFAULTS = {
    "lr": 1e-3,
    "momentum": 0.5,
    "final_momentum": 0.5,
    "final_lr_fraction": 1.0,
    "centering": False,
}
MONITOR_SIZE = 1000  # examples used for per-epoch monitors: enough for a stable mean, cheap


@dataclass
class BinaryImageSettings:
    """The data, device and run settings shared by the binary-image recipes (rbm, dbn, dbm).

    ``binarization``: ``threshold`` (pixels > 0.5), ``stochastic`` (one Bernoulli draw
    per pixel, fixed for the run) or ``dynamic`` (redrawn every epoch).
    :func:`prepare_data` reads these fields.
    """

    dataset: str = option("digits", "Dataset name (`ebmlab data list`).")
    data_dir: str | None = option(None, "Folder holding the dataset's files.")
    binarization: str = option("dynamic", "threshold, stochastic (fixed) or dynamic (per epoch).")
    validation_fraction: float = option(0.1, "Share of training data held out for monitoring.")
    seed: int = option(0, "Random seed: the run is reproducible from it.")
    device: str = option("cpu", "cpu or cuda.")
    dtype: str = option("float32", "float32 or float64.")
    keep_last: int = option(3, "Numbered checkpoints to keep.")
    tensorboard: bool = option(
        False, "Also log scalars, histograms and samples to RUN_DIR/tensorboard."
    )

    def __post_init__(self) -> None:
        check_choice("binarization", self.binarization, BINARIZATIONS)
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must lie in [0, 1); got {self.validation_fraction!r}"
            )
        check_choice("dtype", self.dtype, tuple(DTYPES))
        check_device(self.device)

    @property
    def factory_kwargs(self) -> dict[str, Any]:
        """``dtype`` and ``device`` for models and ``Tensor.to``."""
        return {"dtype": DTYPES[self.dtype], "device": self.device}


@dataclass
class RBMExperimentConfig(BinaryImageSettings):
    """Everything needed to redo an RBM run (saved as the run's ``config.yaml``).

    ``visible``: ``bernoulli`` (binary units; the data are binarised) or
    ``gaussian`` (a :class:`~ebmlab.models.GaussianBernoulliRBM` on pixels
    standardised per feature with the training split's mean and standard deviation;
    ``binarization`` is then ignored). ``training=None`` takes :class:`CDConfig`'s
    defaults, or ``GAUSSIAN_DEFAULTS`` on top of them for Gaussian visible units.
    Other fields: :class:`BinaryImageSettings`.
    """

    n_hidden: int = option(64, "Number of hidden units.")
    visible: str = option(
        "bernoulli",
        "bernoulli (binarised data) or gaussian (standardised pixels; lr 1e-3 and final "
        "momentum 0.5 unless given).",
    )
    loglik_every: int = option(
        0,
        "Every N epochs, log a cheap AIS estimate of the validation log-likelihood "
        "(0: never; Bernoulli units only).",
        resumable=True,
    )
    loglik_chains: int = option(16, "AIS chains of the estimate logged while training.")
    loglik_betas: int = option(1000, "AIS temperatures of the estimate logged while training.")
    training: CDConfig | None = section(CDConfig, "CD/PCD training.", default_none=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.training is None:
            self.training = CDConfig(**(GAUSSIAN_DEFAULTS if self.visible == "gaussian" else {}))
        check_positive_int("n_hidden", self.n_hidden)
        check_choice("visible", self.visible, VISIBLE_UNITS)
        check_nonnegative_int("loglik_every", self.loglik_every)
        check_positive_int("loglik_chains", self.loglik_chains)
        if self.loglik_betas < 4:
            raise ValueError(f"loglik_betas must be at least 4; got {self.loglik_betas!r}")
        if self.loglik_every and self.visible != "bernoulli":
            raise ValueError("loglik_every needs visible='bernoulli' (AIS is for binary units)")
        self.training.dynamic_binarization = (
            self.visible == "bernoulli" and self.binarization == "dynamic"
        )


@dataclass
class PreparedData:
    """Training data (grey levels for dynamic binarisation), fixed binary monitor sets, test data.

    ``train_labels`` and ``test_labels`` are the labels of ``train`` and ``test`` (on the device).
    """

    train: torch.Tensor
    monitor_train: torch.Tensor
    validation: torch.Tensor | None
    test: torch.Tensor
    image_shape: tuple[int, int]
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor | None = None  # per-feature standardisation (Gaussian visible units)
    std: torch.Tensor | None = None

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Map model-space vectors back to pixel intensities in [0, 1] for display."""
        if self.mean is None:
            return x
        return (x * self.std + self.mean).clamp(0, 1)


def prepare_data(config: BinaryImageSettings) -> PreparedData:
    """Load, split and binarise the data as ``config`` says, on its device and dtype."""
    from ebmlab.data import load_dataset, prepare_binary, train_validation_split

    place = config.factory_kwargs
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
        return _standardised(config, train, validation, test)
    generator = torch.Generator().manual_seed(config.seed + 1)

    def binary(x: torch.Tensor) -> torch.Tensor:
        # Monitors and test data need fixed binary vectors, also under dynamic binarisation.
        method = "stochastic" if config.binarization == "dynamic" else config.binarization
        return prepare_binary(x, method, generator=generator).to(**place)

    train_binary = prepare_binary(train.images, config.binarization, generator=generator)
    # The training monitors must see the very vectors the model trains on (fixed
    # binarisations); under dynamic binarisation any fixed draw is as good as another.
    if config.binarization == "dynamic":
        monitor_train = binary(train.images[:MONITOR_SIZE])
    else:
        monitor_train = train_binary[:MONITOR_SIZE].to(**place)
    return PreparedData(
        train=train_binary.to(**place),
        monitor_train=monitor_train,
        validation=None if validation is None else binary(validation.images[:MONITOR_SIZE]),
        test=binary(test.images),
        image_shape=full.image_shape,
        train_labels=train.labels.to(config.device),
        test_labels=test.labels.to(config.device),
    )


def _standardised(config: BinaryImageSettings, train, validation, test) -> PreparedData:
    """Per-feature standardisation with the training split's statistics (constant pixels: std 1)."""
    place = config.factory_kwargs
    mean, std = train.images.mean(0), train.images.std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))

    def standardise(x: torch.Tensor) -> torch.Tensor:
        return ((x - mean) / std).to(**place)

    return PreparedData(
        train=standardise(train.images),
        monitor_train=standardise(train.images[:MONITOR_SIZE]),
        validation=None if validation is None else standardise(validation.images[:MONITOR_SIZE]),
        test=standardise(test.images),
        image_shape=train.image_shape,
        train_labels=train.labels.to(config.device),
        test_labels=test.labels.to(config.device),
        mean=mean.to(**place),
        std=std.to(**place),
    )


def build_model(
    config: RBMExperimentConfig, n_visible: int, generator: torch.Generator
) -> BernoulliRBM | GaussianBernoulliRBM:
    model_class = GaussianBernoulliRBM if config.visible == "gaussian" else BernoulliRBM
    return model_class(n_visible, config.n_hidden, generator=generator, **config.factory_kwargs)


@register
class RBMRecipe(Recipe):
    """An RBM trained by CD-k or PCD-k, one step per epoch, the best checkpoint by score."""

    name = "rbm"
    config_class = RBMExperimentConfig
    summary = "Train a Bernoulli or Gaussian-Bernoulli RBM by CD-k or PCD-k."
    progress_keys = ("pseudo_loglik", "reconstruction_error")
    distributed = True

    @classmethod
    def complete_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        # Gaussian units get their own defaults for what the settings leave out.
        if settings.get("visible") == "gaussian":
            training = settings.setdefault("training", {})
            for name, value in GAUSSIAN_DEFAULTS.items():
                training.setdefault(name, value)
        return settings

    def prepare(self) -> None:
        self.data = prepare_data(self.config)

    def build(self, context: DistributedContext) -> None:
        self.generator = torch.Generator(device=self.config.device).manual_seed(self.config.seed)
        self.model = build_model(self.config, self.data.train.shape[1], self.generator)
        self.model.init_visible_bias(self.data.train)
        self.context = context
        self.trainer = CDTrainer(
            self.model, self.config.training, generator=self.generator, context=context
        )

    def memory_estimate(self) -> int:
        # Weights, their gradient and momentum, and the GEMM temporaries of a minibatch.
        itemsize = DTYPES[self.config.dtype].itemsize
        weights = self.data.train.shape[1] * self.config.n_hidden
        return 4 * weights * itemsize

    def total_steps(self) -> int:
        return self.config.training.epochs

    def completed_steps(self) -> int:
        return self.trainer.epoch

    def step(self, run: TrainingRun) -> dict[str, Any]:
        record = self.trainer.train_epoch(self.data.train, progress=False)
        record.update(self.trainer.monitor(self.data.monitor_train, self.data.validation))
        every = self.config.loglik_every
        if every and self.trainer.epoch % every == 0:
            record.update(self._quick_log_likelihood())
        return record

    def _quick_log_likelihood(self) -> dict[str, Any]:
        """The cheap AIS estimate on held-out data, its interval and what it is."""
        from ebmlab.estimators import quick_log_likelihood

        held_out = self.data.validation
        name = "validation_loglik_ais" if held_out is not None else "train_loglik_ais"
        # Its own generator: monitoring never changes the training trajectory.
        generator = torch.Generator(device=self.config.device).manual_seed(self.trainer.epoch)
        estimate = quick_log_likelihood(
            self.model,
            self.data.monitor_train if held_out is None else held_out,
            train_data=self.data.train,
            n_chains=self.config.loglik_chains,
            n_betas=self.config.loglik_betas,
            generator=generator,
        )
        return {
            name: estimate["value"],
            f"{name}_lower": estimate["lower"],
            f"{name}_upper": estimate["upper"],
            f"{name}_method": estimate["method"],
        }

    def score(self, record: dict[str, Any]) -> float:
        # Gaussian visible units have no pseudo-likelihood: rank them by reconstruction.
        return record.get("pseudo_loglik", -record["reconstruction_error"])

    def state(self):
        shared = {"trainer": self.trainer.state_dict()}
        # Under torchrun each rank keeps its own chains and sampling stream.
        return self.model.state_dict(), shared, shared if self.context.enabled else {}

    def load_state(self, model_state, shared, local) -> None:
        load_model_state(self.model, model_state, source="checkpoint")
        self.trainer.load_state_dict((local or shared)["trainer"])

    def model_for_logging(self) -> torch.nn.Module:
        return self.model

    def figures(self, folder: RunFolder) -> None:
        write_figures(folder, self.model, self.data, seed=self.trainer.epoch)

    def sample(self, n: int, n_steps: int, *, generator: torch.Generator):
        samples = sample_visible(self.model, n, n_steps, generator=generator)
        return self.data.to_pixels(samples), "Gibbs sweeps"

    def evaluate(
        self,
        *,
        loglik: bool = False,
        n_chains: int = 100,
        n_betas: int | None = None,
        seed: int = 0,
        progress: bool = True,
        compiled_ais: bool = False,
    ) -> dict[str, Any]:
        """Metrics on the test split (and, with ``loglik``, AIS + RAISE likelihoods;
        ``compiled_ais`` runs that AIS through its compiled path).

        Returns a JSON-ready dict; the keys are documented in docs/cli.md.
        """
        from ebmlab.estimators.pseudo_likelihood import pseudo_log_likelihood
        from ebmlab.training.monitor import free_energy_gap, reconstruction_error

        model, config, data = self.model, self.config, self.data
        if loglik and config.visible != "bernoulli":
            raise ValueError(
                "--loglik (AIS and reverse AIS) is implemented for Bernoulli RBMs only"
            )
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
                "free_energy_gap": free_energy_gap(
                    model, data.monitor_train, data.test[:MONITOR_SIZE]
                ),
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
                    compiled=compiled_ais,
                )
            )
        return result


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
