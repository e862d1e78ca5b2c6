r"""JEM training (Grathwohl et al. 2020, Algorithm 1) with divergence rollback.

:func:`jem_loss` is the objective; this module also holds its configuration,
the learning-rate schedule, the seeded minibatch stream and the replay-buffer
factory. One training iteration and the rollback are
:class:`~ebmlab.training.jem_trainer.JEMTrainer`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ebmlab._fields import option
from ebmlab._validation import (
    check_choice,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.models.jem import energy_from_logits
from ebmlab.samplers.langevin import Langevin
from ebmlab.samplers.precision import SAMPLING_DTYPES, autocast_energy
from ebmlab.samplers.replay_buffer import ClassGaussianInit, ReplayBuffer, UniformInit
from ebmlab.training.distributed import DistributedContext

BUFFER_INITS = ("uniform", "class-gaussian", "class-gaussian-diagonal")
# Seeds of the sampler stream: rank r and rollback k use seed + r * RANK + k * ROLLBACK, so
# no two (rank, rollback) pairs share a stream for any realistic world size or rollback count.
RANK_SEED_STRIDE = 1_000_003
ROLLBACK_SEED_STRIDE = 7_919


# The relative schedule's defaults (see JEMConfig.schedule_points).
WARMUP_FRACTION, WARMUP_CAP = 0.1, 1000
DECAY_FRACTIONS = (0.8, 0.9)


@dataclass
class JEMConfig:
    """Hyperparameters of JEM training; the defaults are the paper's (official code).

    ``p_x_weight = 0`` and ``p_x_given_y_weight = 0`` train the plain classifier
    with the same code (no sampling, no buffer). ``buffer_init`` is ``uniform``
    (U(-1, 1), JEM) or ``class-gaussian`` / ``class-gaussian-diagonal`` (JEM++'s
    informative initialisation, fitted to the training data). ``clamp`` keeps
    samples in [-1, 1] (JEM++). ``sampling_dtype="bfloat16"`` runs the SGLD
    steps' forward and input-gradient passes in bfloat16: faster on CPUs with
    AMX and GPUs with bfloat16 tensor cores, possibly slower elsewhere; the
    training update stays float32. ``divergence_threshold`` bounds |loss| and
    the mean |energy|; beyond it (or on NaN/inf) training rolls back.
    """

    iterations: int = option(1000, "Training iterations.", resumable=True)
    batch_size: int = option(64, "Minibatch size (the global batch under torchrun).")
    lr: float = option(
        1e-3, "Adam learning rate (the paper's 1e-4 needs its 150k iterations; docs/models/jem.md)."
    )
    warmup_iterations: int | None = option(
        None, "Linear learning-rate warm-up (none: 10% of --iterations, at most 1,000)."
    )
    decay_iterations: list[int] | None = option(
        None,
        "Iterations at which the lr is multiplied by --decay-rate, e.g. 160000,180000 "
        "(none: at 80% and 90% of --iterations).",
    )
    decay_rate: float = option(0.3, "Step-decay factor.")
    p_x_weight: float = option(1.0, "Weight of the generative term (0: the plain classifier).")
    p_x_given_y_weight: float = option(0.0, "Weight of the optional log p(x|y) term.")
    n_steps: int = option(5, "SGLD steps per iteration (JEM++'s 5; the paper's 20).")
    step_size: float = option(1.0, "SGLD step size.")
    noise_scale: float = option(0.01, "SGLD noise scale.")
    buffer_size: int = option(10000, "Replay buffer size.")
    reinit_prob: float = option(0.05, "Probability of restarting a chain from noise.")
    buffer_init: str = option(
        "class-gaussian",
        "uniform (the paper), class-gaussian (JEM++: per-class Gaussians fitted to the data) "
        "or class-gaussian-diagonal.",
    )
    class_conditional: bool = option(False, "Buffer split per class.")
    clamp: bool = option(True, "Clamp samples to [-1, 1] (JEM++; the paper does not).")
    sampling_dtype: str = option(
        "float32",
        "float32 or bfloat16: precision of the SGLD passes (bfloat16: faster on CPUs with AMX "
        "and recent GPUs).",
    )
    l2_weight: float = option(
        0.1,
        "L2 penalty on the energies of data and negatives (0.1: without it a 3,000-iteration "
        "digits run diverged; docs/models/jem.md).",
    )
    data_noise: float = option(0.03, "Standard deviation of the noise added to data.")
    sam_rho: float = option(
        0.0,
        "Sharpness-aware minimisation radius (SADA-JEM; e.g. 0.05): the gradient is taken at "
        "the worst point within rho of the parameters, at twice the loss's cost; 0: off.",
    )
    divergence_threshold: float = option(1e4, "|loss| or |energy| above this counts as divergence.")
    max_rollbacks: int = option(5, "Rollbacks to the last good checkpoint before giving up.")
    rollback_lr_factor: float = option(1.0, "Multiply the lr by this at each rollback.")
    checkpoint_every: int = option(100, "Iterations between checkpoints.")
    log_every: int = option(10, "Iterations between metrics lines.")
    adaptive_steps: bool = option(
        False,
        "After each metrics window, one SGLD step more (up to max_steps) when the energy gap "
        "E(data) - E(negatives) is below -gap_tolerance, one fewer (not below n_steps) when "
        "it is above -gap_tolerance/4.",
    )
    max_steps: int = option(40, "Most SGLD steps per iteration with adaptive_steps.")
    gap_tolerance: float = option(0.2, "Energy gap that counts as the sampler falling behind.")

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "n_steps", "buffer_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("checkpoint_every", "log_every"):
            check_positive_int(name, getattr(self, name))
        if self.warmup_iterations is not None:
            check_nonnegative_int("warmup_iterations", self.warmup_iterations)
        check_nonnegative_int("max_rollbacks", self.max_rollbacks)
        if self.decay_iterations is not None:
            self.decay_iterations = [
                check_positive_int("decay_iterations[i]", v) for v in self.decay_iterations
            ]
        check_probability("decay_rate", self.decay_rate, open_interval=True)
        for name in ("lr", "step_size", "divergence_threshold"):
            check_positive_float(name, getattr(self, name))
        for name in ("p_x_weight", "p_x_given_y_weight", "noise_scale", "l2_weight"):
            check_nonnegative_float(name, getattr(self, name))
        check_nonnegative_float("data_noise", self.data_noise)
        check_nonnegative_float("sam_rho", self.sam_rho)
        check_probability("reinit_prob", self.reinit_prob)
        check_choice("buffer_init", self.buffer_init, BUFFER_INITS)
        check_choice("sampling_dtype", self.sampling_dtype, SAMPLING_DTYPES)
        check_positive_float("gap_tolerance", self.gap_tolerance)
        if check_positive_int("max_steps", self.max_steps) < self.n_steps:
            raise ValueError(
                f"max_steps must be at least n_steps ({self.n_steps}); got {self.max_steps}"
            )
        factor = check_positive_float("rollback_lr_factor", self.rollback_lr_factor)
        if factor > 1:
            raise ValueError(f"rollback_lr_factor must lie in (0, 1]; got {factor!r}")

    @property
    def schedule_points(self) -> tuple[int, tuple[int, ...]]:
        """``(warm-up iterations, decay milestones)``, relative to ``iterations`` unless given.

        The paper's schedule (1,000 warm-up iterations, decays at epochs 160 and 180 of
        about 200) is written for ~150,000 iterations; as fractions it fits any length, so
        a 400-iteration run leaves its warm-up after 40 and decays at 320 and 360. Given
        explicitly (``--warmup-iterations 1000 --decay-iterations 160000,180000``) they are
        taken as they are.
        """
        warmup = self.warmup_iterations
        if warmup is None:
            warmup = min(WARMUP_CAP, round(WARMUP_FRACTION * self.iterations))
        decay = self.decay_iterations
        if decay is None:
            decay = [max(1, round(f * self.iterations)) for f in DECAY_FRACTIONS]
        return warmup, tuple(decay)

    @property
    def uses_sampling(self) -> bool:
        """Whether any generative term needs SGLD negatives (and a buffer)."""
        return self.p_x_weight > 0 or self.p_x_given_y_weight > 0


@dataclass(frozen=True)
class WarmupStepDecay:
    """Learning-rate multiplier: linear warm-up to 1, then times ``decay_rate`` at each milestone.

    ``schedule(t) = min(1, (t + 1) / warmup) * decay_rate ** #{m : t >= m}``.
    """

    warmup_iterations: int
    decay_iterations: tuple[int, ...]
    decay_rate: float

    def __call__(self, t: int) -> float:
        factor = self.decay_rate ** sum(t >= m for m in self.decay_iterations)
        if t < self.warmup_iterations:
            factor *= (t + 1) / self.warmup_iterations
        return factor


class DivergenceError(FloatingPointError):
    """Training diverged (non-finite or exploding loss/energies); the message says what and how."""


@dataclass(frozen=True)
class JEMLoss:
    """The loss to back-propagate and its detached parts (for logging and divergence checks)."""

    loss: torch.Tensor
    classification: torch.Tensor
    generative: torch.Tensor
    generative_y: torch.Tensor
    penalty: torch.Tensor
    energy_data: torch.Tensor
    energy_negative: torch.Tensor
    accuracy: torch.Tensor


def jem_loss(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    x_negative: torch.Tensor | None = None,
    x_negative_y: torch.Tensor | None = None,
    y_negative: torch.Tensor | None = None,
    p_x_weight: float = 1.0,
    p_x_given_y_weight: float = 0.0,
    l2_weight: float = 0.0,
) -> JEMLoss:
    r"""JEM's objective on one batch: cross-entropy plus the contrastive generative terms.

    Parameters
    ----------
    logits_fn : callable
        ``x -> f(x)`` (the :class:`~ebmlab.models.jem.JEM` or its DDP wrapper).
    x, y : Tensor
        A data batch and its labels.
    x_negative : Tensor, optional
        SGLD samples for the :math:`\log p(x)` term (detached here).
    x_negative_y, y_negative : Tensor, optional
        Class-conditional samples and their classes for the :math:`\log p(x|y)` term.
    p_x_weight, p_x_given_y_weight, l2_weight : float
        Weights of the two generative terms and of the L2 energy penalty.

    Notes
    -----
    .. math:: L = \mathrm{CE}(f(x), y)
              + \lambda_x \big[\overline{E(x)} - \overline{E(\hat x)}\big]
              + \lambda_{x|y} \big[\overline{E(x, y)} - \overline{E(\hat x_y, \hat y)}\big]
              + \alpha \big[\overline{E(x)^2} + \overline{E(\hat x)^2}\big]

    with :math:`E(x) = -\mathrm{LSE}_y f(x)[y]`. Since
    :math:`\nabla_\theta \log p(x) = -\nabla_\theta E(x) + \mathbb E_{p}[\nabla_\theta E]`,
    the bracket's gradient is minus the log-likelihood gradient with the model
    expectation replaced by the negatives' mean. All inputs go through one
    forward pass (no normalisation layers, so batching them together is exact).

    References
    ----------
    Grathwohl, W. et al. (2020). ICLR, Algorithm 1 and eq. 3.
    """
    parts = [x] + [t.detach() for t in (x_negative, x_negative_y) if t is not None]
    logits = logits_fn(torch.cat(parts) if len(parts) > 1 else x)
    sizes = [len(t) for t in parts]
    chunks = iter(logits.split(sizes))
    logits_data = next(chunks)
    classification = F.cross_entropy(logits_data, y)
    loss, zero = classification, logits.new_zeros(())
    generative, generative_y, penalty = zero, zero, zero
    energy_data, energy_negative = energy_from_logits(logits_data), zero
    if x_negative is not None:
        energies = energy_from_logits(next(chunks))
        generative = energy_data.mean() - energies.mean()
        penalty = penalty + energy_data.pow(2).mean() + energies.pow(2).mean()
        loss = loss + p_x_weight * generative
        energy_negative = energies.mean()
    if x_negative_y is not None:
        energies_y = energy_from_logits(next(chunks), y if y_negative is None else y_negative)
        energies_data_y = energy_from_logits(logits_data, y)
        generative_y = energies_data_y.mean() - energies_y.mean()
        penalty = penalty + energies_data_y.pow(2).mean() + energies_y.pow(2).mean()
        loss = loss + p_x_given_y_weight * generative_y
    if l2_weight > 0:
        loss = loss + l2_weight * penalty
    accuracy = (logits_data.argmax(1) == y).float().mean()
    return JEMLoss(
        loss=loss,
        classification=classification.detach(),
        generative=generative.detach(),
        generative_y=generative_y.detach(),
        penalty=penalty.detach(),
        energy_data=energy_data.detach().mean(),
        energy_negative=energy_negative.detach(),
        accuracy=accuracy,
    )


def divergence_reason(parts: JEMLoss, loss: torch.Tensor, threshold: float) -> str | None:
    """Why this step's values look diverged (non-finite or beyond ``threshold``), or None."""
    values = {
        "loss": float(loss.detach()),
        "mean data energy": float(parts.energy_data),
        "mean negative energy": float(parts.energy_negative),
    }
    for name, value in values.items():
        if not math.isfinite(value):
            return f"{name} is {value}"
        if abs(value) > threshold:
            return f"|{name}| = {abs(value):.4g} exceeds divergence_threshold={threshold:g}"
    return None


class MinibatchStream:
    """Training minibatches as a pure function of (iteration, rollbacks): resumable without state.

    Epoch ``e`` visits the rows in the order ``randperm(N)`` drawn from a
    generator seeded by ``(seed, rollbacks, e)`` (last incomplete batch dropped);
    the Gaussian input noise of a batch is seeded by ``(seed, rollbacks, iteration)``.
    Under data parallelism every rank draws the same global batch and keeps its
    ``rank``-th slice, so N processes see exactly the batch one process would.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        noise: float,
        seed: int,
        context: DistributedContext | None = None,
    ) -> None:
        self.context = context or DistributedContext(device=str(x.device))
        self.batch_size = check_positive_int("batch_size", batch_size)
        if batch_size % self.context.world_size or batch_size > len(x):
            raise ValueError(
                f"batch_size must be at most the {len(x)} training examples and divisible by the "
                f"{self.context.world_size} processes; got {batch_size}"
            )
        self.x, self.y, self.noise, self.seed = x, y, noise, seed
        self.per_epoch = len(x) // batch_size
        self._cached: tuple[tuple[int, int], torch.Tensor] | None = None

    def _order(self, epoch: int, rollbacks: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != (epoch, rollbacks):
            seed = self.seed * 1_000_003 + rollbacks * 7919 + epoch
            generator = torch.Generator().manual_seed(seed)
            self._cached = ((epoch, rollbacks), torch.randperm(len(self.x), generator=generator))
        return self._cached[1]

    def batch(self, iteration: int, rollbacks: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of global batch ``iteration``: noisy inputs and labels."""
        epoch, k = divmod(iteration, self.per_epoch)
        rows = self._order(epoch, rollbacks)[k * self.batch_size : (k + 1) * self.batch_size]
        x = self.x[rows.to(self.x.device)]
        if self.noise > 0:
            generator = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + rollbacks * 7919) ^ (iteration * 2_654_435_761 % 2**31)
            )
            x = x + self.noise * torch.randn(x.shape, generator=generator).to(x)
        local = self.batch_size // self.context.world_size
        part = slice(self.context.rank * local, (self.context.rank + 1) * local)
        return x[part], self.y[rows.to(self.y.device)][part]


def jem_sampler(model: Any, config: JEMConfig, y: torch.Tensor | None = None) -> Langevin:
    """The SGLD sampler ``config`` describes, on :math:`E(x)` or, given ``y``, :math:`E(x, y)`.

    Step size, noise scale, clamping to [-1, 1] and the precision of the passes
    all come from ``config``, so training, evaluation and sampling agree.
    """
    return Langevin(
        autocast_energy(lambda x: model.energy(x, y), config.sampling_dtype),
        step_size=config.step_size,
        noise_scale=config.noise_scale,
        clamp=(-1.0, 1.0) if config.clamp else None,
    )


def build_buffer(
    config: JEMConfig,
    *,
    sample_shape: tuple[int, ...],
    n_classes: int,
    size: int,
    fit_data: tuple[torch.Tensor, torch.Tensor] | None,
    generator: torch.Generator,
) -> ReplayBuffer:
    """The replay buffer ``config`` describes, with ``size`` slots (one rank's shard)."""
    if config.buffer_init == "uniform":
        device = generator.device
        init: Any = UniformInit(sample_shape, low=-1.0, high=1.0, device=device)
    else:
        if fit_data is None:
            raise ValueError(f"buffer_init={config.buffer_init!r} needs training data to fit")
        diagonal = config.buffer_init.endswith("diagonal")
        init = ClassGaussianInit.fit(*fit_data, n_classes, diagonal=diagonal)
    per_class = n_classes if config.class_conditional else None
    return ReplayBuffer(
        size, init, reinit_prob=config.reinit_prob, n_classes=per_class, generator=generator
    )
