"""The CD/PCD training loop for RBM-like models, separate from the models themselves."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ebmlab._fields import option
from ebmlab._grad import grad_off
from ebmlab._validation import (
    check_nonempty,
    check_nonnegative_float,
    check_positive_int,
    check_probability,
)
from ebmlab.models.matmul_precision import check_precision
from ebmlab.models.rbm import BernoulliRBM
from ebmlab.samplers.tempering import ParallelTempering, temperature_ladder
from ebmlab.training.augmented_cd import PersistentChains, augmented_cd_epoch
from ebmlab.training.augmented_cd import supports as augmented_supports
from ebmlab.training.cd import ContrastiveDivergence, cd_loss, sparsity_penalty
from ebmlab.training.centering import Centering, check_offset_rate
from ebmlab.training.compiled_gibbs import CompiledGibbs
from ebmlab.training.distributed import (
    DistributedContext,
    average_gradients,
    average_tensor,
    mean_over_ranks,
    rank_generator,
    shard,
)
from ebmlab.training.fused_cd import fused_cd_update
from ebmlab.training.monitor import free_energy_gap, reconstruction_error
from ebmlab.training.optim import (
    LinearDecay,
    build_sgd,
    check_sgd_settings,
    set_momentum,
)

# The exact pseudo-likelihood costs n_visible free energies per example; below this size it is
# cheap, and it removes the stochastic version's large variance from the monitoring curves.
EXACT_PLL_MAX_VISIBLE = 128
# Rows of the training data whose means start the centering offsets: a stable mean, cheap.
OFFSET_INIT_SIZE = 10_000


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf; nothing was replaced, the last checkpoint stays good."""


@dataclass
class CDConfig:
    """Hyperparameters of CD-k / PCD-k training.

    The defaults were chosen by measurement (benchmarks/RESULTS.md, "Choosing the RBM
    defaults"): the centered gradient, no momentum and a learning rate falling linearly
    to zero (Tieleman 2008). Momentum 0.9 on a fixed learning rate, the guide's classic
    recipe, multiplies the step by ten and wrecks the persistent chains' mixing.

    Attributes
    ----------
    epochs, batch_size, lr
        Passes over the data, minibatch size, learning rate (per-example mean gradient).
    cd_k, persistent, n_chains
        Gibbs steps per update; PCD when ``persistent``; number of persistent chains
        (default: ``batch_size``).
    reuse_hidden_means
        PCD only: the first sweep of an update starts from the hidden means computed for
        the previous update's statistic, under the previous parameters, as scikit-learn's
        BernoulliRBM does: one matrix product fewer per update (six to five for PCD-1).
    momentum, final_momentum, momentum_switch_epoch, dampened_momentum
        ``momentum`` for the first epochs, then ``final_momentum`` (Hinton's guide,
        section 9, uses 0.5 then 0.9; the defaults use none); dampened, the velocity
        averages the gradients and the step stays ``lr``.
    weight_decay
        L2 penalty on weights only.
    final_lr_fraction
        The learning rate falls linearly to this fraction of ``lr`` by the last epoch
        (default 0: to zero, so the last epochs average out the sampling noise).
    sparsity_target, sparsity_cost
        Optional target mean activation of hidden units and its penalty weight.
    dynamic_binarization
        Redraw binary data from the grey levels every epoch.
    centering, offset_rate
        Train in centered coordinates (:mod:`ebmlab.training.centering`), the offsets
        following the data means at this moving-average rate.
    compile
        Gibbs sweeps of a Bernoulli RBM as one compiled step with counter-based draws
        (:mod:`ebmlab.training.compiled_gibbs`).
    precision
        ``"bfloat16"`` runs a Bernoulli RBM's products (Gibbs sweeps, the CD statistic)
        with bfloat16 operands (:mod:`ebmlab.models.matmul_precision`).
    tempering, tempering_min_beta, tempering_ladder, tempering_target_acceptance
        Parallel tempering (:class:`~ebmlab.samplers.tempering.ParallelTempering`) with
        this many replicas for PCD's negative phase; the ladder's spacing, its smallest
        inverse temperature, and an optional swap acceptance rate it adapts towards.
    """

    epochs: int = option(10, "Passes over the training data.", resumable=True)
    batch_size: int = option(100, "Minibatch size.")
    lr: float = option(0.1, "Learning rate.")
    cd_k: int = option(1, "Gibbs steps per update (the k of CD-k).")
    persistent: bool = option(False, "Persistent chains (PCD-k) instead of restarting at the data.")
    n_chains: int | None = option(None, "Persistent chains (none: batch size).")
    reuse_hidden_means: bool = option(
        False,
        "PCD: start each update's sweep from the hidden means of the previous update's "
        "statistic (scikit-learn's PCD: one matrix product fewer, a half-step lag).",
    )
    momentum: float = option(0.0, "Initial momentum.")
    final_momentum: float = option(0.0, "Momentum after momentum_switch_epoch.")
    momentum_switch_epoch: int = option(5, "Epoch at which momentum switches.")
    dampened_momentum: bool = option(
        False,
        "Momentum averages the gradients (buf = m buf + (1 - m) g), so the step stays lr "
        "instead of growing to lr / (1 - m).",
    )
    weight_decay: float = option(1e-4, "L2 penalty on the weights.")
    final_lr_fraction: float = option(0.0, "The learning rate decays linearly to this fraction.")
    sparsity_target: float | None = option(
        None, "Target mean hidden activation (none: no penalty)."
    )
    sparsity_cost: float = option(0.0, "Weight of the sparsity penalty.")
    dynamic_binarization: bool = option(
        False, "Redraw binary data every epoch (set by the recipes from binarization).", cli=False
    )
    centering: bool = option(
        True,
        "Centered gradient: offsets at the data means of v and p(h|v) (Melchior et al.).",
        before=False,
    )
    offset_rate: float = option(0.01, "Moving-average rate of the centering offsets, in (0, 1].")
    tempering: int = option(
        1, "Parallel-tempering replicas for the negative phase (1: none; needs persistent)."
    )
    tempering_min_beta: float = option(0.1, "Smallest inverse temperature of the ladder.")
    tempering_ladder: str = option("geometric", "Ladder spacing: geometric or linear.")
    tempering_target_acceptance: float | None = option(
        0.3, "Adapt the ladder towards this swap acceptance rate (none: a fixed ladder)."
    )
    compile: bool = option(
        False,
        "Run a Bernoulli RBM's Gibbs sweeps as one torch.compile step with counter-based "
        "random draws (compiles for some seconds first; either precision, no tempering).",
    )
    precision: str = option(
        "float32",
        "Operands of the Bernoulli RBM's matrix products: float32, or bfloat16 (weights stay "
        "float32; faster only on CPUs with AMX or AVX512-BF16).",
    )

    def __post_init__(self) -> None:
        check_sgd_settings(self)
        check_positive_int("cd_k", self.cd_k)
        if self.n_chains is not None:
            check_positive_int("n_chains", self.n_chains)
        if self.sparsity_target is not None:
            check_probability("sparsity_target", self.sparsity_target, open_interval=True)
        check_nonnegative_float("sparsity_cost", self.sparsity_cost)
        check_offset_rate(self.offset_rate)
        check_precision(self.precision)
        if self.reuse_hidden_means and (not self.persistent or self.tempering > 1):
            raise ValueError(
                "reuse_hidden_means needs persistent=True and tempering=1; got "
                f"persistent={self.persistent}, tempering={self.tempering}"
            )
        if self.compile and self.tempering > 1:
            raise ValueError(
                f"compile=True runs sweeps without tempering; got tempering={self.tempering}"
            )
        check_positive_int("tempering", self.tempering)
        if self.tempering > 1:
            if not self.persistent:
                raise ValueError("tempering > 1 needs persistent=True (PCD with tempered chains)")
            # Builds the ladder once: its own errors name the bad setting.
            temperature_ladder(
                self.tempering, min_beta=self.tempering_min_beta, kind=self.tempering_ladder
            )
            if self.tempering_target_acceptance is not None:
                check_probability(
                    "tempering_target_acceptance",
                    self.tempering_target_acceptance,
                    open_interval=True,
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EpochCallback = Callable[[int, dict[str, Any]], None]


def build_tempering(model: nn.Module, config: CDConfig) -> ParallelTempering | None:
    """The parallel-tempering sampler ``config`` asks for, or None (``tempering == 1``)."""
    if config.tempering == 1:
        return None
    target = config.tempering_target_acceptance
    return ParallelTempering(
        model,
        n_replicas=config.tempering,
        min_beta=config.tempering_min_beta,
        ladder=config.tempering_ladder,
        adapt=target is not None,
        target_acceptance=0.3 if target is None else target,
    )


def _compiled_gibbs(model: nn.Module, config: CDConfig) -> CompiledGibbs | None:
    """The compiled sweeps ``config.compile`` asks for (Bernoulli RBMs only), or None."""
    if not config.compile:
        return None
    if type(model) is not BernoulliRBM:
        raise ValueError(f"compile=True needs a BernoulliRBM; got {type(model).__name__}")
    return CompiledGibbs(model)


def _set_precision(model: nn.Module, precision: str) -> None:
    """Give ``model`` the product precision the config asks for (float32 suits every model)."""
    set_precision = getattr(model, "set_precision", None)
    if set_precision is not None:
        set_precision(precision)
    elif precision != "float32":
        raise ValueError(
            f"precision={precision!r} needs a BernoulliRBM; {type(model).__name__} trains in "
            "float32"
        )


class CDTrainer:
    """Trains a layered model (BernoulliRBM, GaussianBernoulliRBM, a DBN layer) by CD-k or PCD-k.

    Parameters
    ----------
    model : nn.Module
        Exposes ``free_energy``, ``mean_h``, ``sample_h``, ``mean_v``, ``sample_v``.
    config : CDConfig
        Hyperparameters.
    generator : torch.Generator
        The single source of training randomness (minibatch order, Gibbs chains,
        dynamic binarisation); saved in checkpoints so a resumed run continues exactly.
    context : DistributedContext, optional
        Under ``torchrun``: each rank trains on its share of every global minibatch
        with its own chains and sampling stream, and the gradients are averaged
        over ranks before each step, so the ranks' parameters stay identical and
        follow the one-process update for the same global batch.
    track_loss : bool
        Compute the CD surrogate's value at every update for the epoch's ``"loss"``
        record. False skips it (the epoch's record then has no loss; non-finite
        parameters still stop training at the epoch's end), which lets a plain SGD step
        take the leaner :func:`~ebmlab.training.fused_cd.plain_sgd_step`: what the
        scikit-learn adapter's ``fit`` does, where small models pay per operation.

    Notes
    -----
    Each update minimises :func:`~ebmlab.training.cd.cd_loss` (plus the optional
    sparsity penalty) with SGD; see that function for why its gradient is the CD update.
    """

    def __init__(
        self,
        model: nn.Module,
        config: CDConfig,
        *,
        generator: torch.Generator,
        context: DistributedContext | None = None,
        track_loss: bool = True,
    ) -> None:
        self.model = model
        self.config = config
        self.track_loss = track_loss
        self.generator = generator
        _set_precision(model, config.precision)
        # Under torchrun: same minibatch order everywhere (generator), own chains (sampling).
        self.context = context or DistributedContext(device=str(generator.device))
        self.sampling_generator = rank_generator(generator, self.context)
        self.objective = ContrastiveDivergence(
            model,
            k=config.cd_k,
            persistent=config.persistent,
            n_chains=config.n_chains,
            tempering=build_tempering(model, config),
            compiled_gibbs=_compiled_gibbs(model, config),
            reuse_hidden_means=config.reuse_hidden_means,
        )
        self.centering = Centering(model, rate=config.offset_rate) if config.centering else None
        # Centering folds the weight decay into the centered update itself.
        weight_decay = 0.0 if self.centering else config.weight_decay
        self.optimizer = build_sgd(
            model,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=weight_decay,
            dampened=config.dampened_momentum,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, LinearDecay(config.epochs, config.final_lr_fraction)
        )
        self.epoch = 0  # number of completed epochs
        # The analytic CD update holds for the plain Bernoulli RBM's energy only; across
        # ranks the gradients must exist as tensors to be averaged.
        plain_energy = (
            not (config.sparsity_target is not None and config.sparsity_cost > 0)
            and not self.context.enabled
        )
        self._fused = plain_energy and type(model) is BernoulliRBM
        self._plain_energy = plain_energy  # also what the augmented epochs need

    # ----- one update / one epoch ----------------------------------------------------
    def update(self, v_data: torch.Tensor) -> float | None:
        """One CD/PCD parameter update on a minibatch; returns the surrogate loss (None
        when the loss is not tracked)."""
        loss = self._update(v_data)
        return None if loss is None else float(loss)

    def _update(self, v_data: torch.Tensor) -> torch.Tensor | None:
        with grad_off():
            h_data = self.model.mean_h(v_data)
        v_model, h_model = self.objective.negatives(
            v_data, h_data, generator=self.sampling_generator
        )
        if self._fused:
            # The same update without autograd, .grad or the optimizer's wrapper (small
            # models spend most of their time there); tests/training/test_cd_fused.py
            # proves it equal to the path below.
            offsets = self._offsets(v_data, h_data)
            loss = fused_cd_update(
                self.model,
                self.optimizer,
                v_data,
                h_data,
                v_model,
                h_model,
                weight_decay=self.config.weight_decay,
                visible_offset=offsets[0],
                hidden_offset=offsets[1],
                compute_loss=self.track_loss,
            )
            self._move_offsets(v_data, h_data)
            return loss
        loss = cd_loss(self.model, v_data, h_data, v_model, h_model)
        if self.config.sparsity_target is not None and self.config.sparsity_cost > 0:
            loss = loss + sparsity_penalty(
                self.model,
                v_data,
                target=self.config.sparsity_target,
                cost=self.config.sparsity_cost,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.model, self.context)
        self._center(v_data, h_data)
        self.optimizer.step()
        self._move_offsets(v_data, h_data)
        return loss.detach() if self.track_loss else None

    def _offsets(
        self, v_data: torch.Tensor, h_data: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The centering offsets (mu, lambda), set from this batch if never set; (None, None) if off."""
        if self.centering is None:
            return None, None
        if self.centering.hidden_offset is None:  # update() called without train_epoch
            self.centering.initialise(
                average_tensor(v_data.mean(0, keepdim=True), self.context),
                average_tensor(h_data.mean(0, keepdim=True), self.context),
            )
        return self.centering.visible_offset, self.centering.hidden_offset

    def _center(self, v_data: torch.Tensor, h_data: torch.Tensor) -> None:
        """Turn the plain gradients into the centered update's (no-op without centering)."""
        if self._offsets(v_data, h_data)[1] is not None:
            self.centering.center_gradients(weight_decay=self.config.weight_decay)

    def _move_offsets(self, v_data: torch.Tensor, h_data: torch.Tensor) -> None:
        if self.centering is not None:
            # Every rank moves its offsets by the global minibatch's means: they stay equal.
            self.centering.update_offsets(
                average_tensor(v_data.mean(0), self.context),
                average_tensor(h_data.mean(0), self.context),
            )

    def train_epoch(self, data: torch.Tensor, *, progress: bool = False) -> dict[str, float]:
        """One pass over ``data`` in a random order; returns the epoch's loss and seconds."""
        check_nonempty("data", data)
        self.model.check_visible(data, "data")
        config = self.config
        if self.centering is not None and self.centering.hidden_offset is None:
            with torch.no_grad():  # every rank holds the whole data: the same offsets
                subset = data[:OFFSET_INIT_SIZE]
                self.centering.initialise(subset, self.model.mean_h(subset))
        set_momentum(
            self.optimizer,
            config.momentum if self.epoch < config.momentum_switch_epoch else config.final_momentum,
            dampened=config.dampened_momentum,
        )
        start = time.perf_counter()
        order = torch.randperm(
            data.shape[0], generator=self.generator, device=self.generator.device
        )
        # The augmented epoch shuffles its own augmented copy: no minibatch views then.
        augmented = not progress and self._plain_sgd_epoch(data)
        batches = () if augmented else self._minibatches(data, order)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False)
        counters = self._tempering_counters()
        # Summed on the device and read once: no host synchronisation per update. A
        # non-finite loss still stops the epoch's end before any checkpoint is written.
        total, count = torch.zeros((), dtype=data.dtype, device=data.device), 0
        with torch.set_grad_enabled(not self._fused):
            if augmented:
                self._augmented_epoch(data[order])
                count = data.shape[0]
            for v in batches:
                if config.dynamic_binarization:
                    v = torch.bernoulli(v, generator=self.sampling_generator)
                loss = self._update(v)
                if loss is not None:
                    total.add_(loss, alpha=v.shape[0])
                count += v.shape[0]
        loss = float(total) / count
        if self.track_loss and not math.isfinite(loss):
            raise NonFiniteError(
                f"the CD loss became {loss} in epoch {self.epoch + 1}; lower --lr "
                "(the last checkpoint is still good)"
            )
        self._check_parameters()
        self.scheduler.step()
        self.epoch += 1
        record = {"epoch_seconds": time.perf_counter() - start}
        if self.track_loss:
            record["loss"] = mean_over_ranks({"loss": loss}, self.context)["loss"]
        return record | self._tempering_metrics(counters)

    def _plain_sgd_epoch(self, data: torch.Tensor) -> bool:
        """Whether this epoch's every update is a plain SGD step that
        :func:`~ebmlab.training.augmented_cd.augmented_cd_epoch` performs (no loss tracked,
        no momentum, centering, tempering, compiled sweeps, binarisation or bfloat16)."""
        groups = self.optimizer.param_groups
        return (
            self._plain_energy
            and augmented_supports(self.model)  # every epoch: sigma may have been loaded since
            and data.dtype == self.model.weight.dtype  # the buffers take the model's dtype
            and not self.track_loss
            and self.centering is None
            and not self.config.dynamic_binarization
            and self.objective.tempering is None
            and self.objective.compiled_gibbs is None
            and not any(group["momentum"] for group in groups)
            and len({group["lr"] for group in groups}) == 1
            and getattr(self.model, "precision", "float32") == "float32"
        )

    def _augmented_epoch(self, shuffled: torch.Tensor) -> None:
        """The epoch on bias-augmented matrices: the same updates and draws, fewer operations."""
        objective = self.objective
        chains = None
        if objective.persistent:
            chains = PersistentChains(
                objective.chains,
                objective.chain_hidden_means,
                objective.n_chains,
                objective.reuse_hidden_means,
            )
        chains = augmented_cd_epoch(
            self.model,
            shuffled,
            batch_size=self.config.batch_size,
            lr=self.optimizer.param_groups[0]["lr"],
            k=objective.k,
            chains=chains,
            generator=self.sampling_generator,
            weight_decay=self.config.weight_decay,
        )
        if chains is not None:
            objective.chains, objective.chain_hidden_means = chains.visible, chains.hidden_means
        self.optimizer._opt_called = True  # what optimizer.step() tells the LR scheduler

    def _minibatches(self, data: torch.Tensor, order: torch.Tensor):
        """This rank's minibatches in ``order``: views of one shuffled copy on a single process."""
        if self.context.enabled:
            return [
                data[shard(index, self.context)] for index in order.split(self.config.batch_size)
            ]
        # One gather per epoch instead of one per minibatch: the same rows, fewer calls.
        return data[order].split(self.config.batch_size)

    def _tempering_counters(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        state = self.objective.tempering_state
        if state is None:
            return None
        return state.swap_attempts.clone(), state.swap_accepts.clone(), int(state.round_trips)

    def _tempering_metrics(self, before) -> dict[str, Any]:
        """This epoch's swap acceptance per neighbour pair, its minimum, the round trips, the ladder."""
        state = self.objective.tempering_state
        if state is None:
            return {}
        attempts, accepts, trips = (0, 0, 0) if before is None else before
        attempts = (state.swap_attempts - attempts).clamp(min=1)
        acceptance = ((state.swap_accepts - accepts) / attempts).tolist()
        return {
            "tempering_swap_acceptance": acceptance,
            "tempering_swap_acceptance_min": min(acceptance, default=float("nan")),
            "tempering_round_trips": int(state.round_trips) - trips,
            "tempering_min_beta": float(state.betas[-1]),
        }

    def _check_parameters(self) -> None:
        for name, parameter in self.model.named_parameters():
            if not torch.isfinite(parameter).all():
                raise NonFiniteError(
                    f"parameter {name} became non-finite in epoch {self.epoch + 1}; lower --lr "
                    "(the last checkpoint is still good)"
                )

    # ----- monitoring ------------------------------------------------------------------
    @torch.no_grad()
    def monitor(
        self, train_subset: torch.Tensor, validation: torch.Tensor | None
    ) -> dict[str, float]:
        """Reconstruction error, pseudo-log-likelihood and free-energy gap.

        Uses its own generator seeded by the epoch, so monitoring never changes
        the training trajectory.
        """
        from ebmlab.estimators.pseudo_likelihood import pseudo_log_likelihood

        generator = torch.Generator(device=train_subset.device).manual_seed(7919 * (self.epoch + 1))
        held_out = validation if validation is not None else train_subset
        metrics = {
            "reconstruction_error": reconstruction_error(self.model, held_out, generator=generator)
        }
        if getattr(self.model, "binary_visible", True):  # the pseudo-likelihood flips bits
            exact = held_out.shape[1] <= EXACT_PLL_MAX_VISIBLE
            pll = pseudo_log_likelihood(self.model, held_out, exact=exact, generator=generator)
            metrics["pseudo_loglik"] = float(pll.mean())
        if validation is not None:
            metrics["free_energy_gap"] = free_energy_gap(self.model, train_subset, validation)
        return metrics

    # ----- checkpoint state --------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "objective": self.objective.state_dict(),
            "centering": {} if self.centering is None else self.centering.state_dict(),
            "generator": self.generator.get_state(),
            "sampling_generator": self.sampling_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.objective.load_state_dict(state["objective"])
        if self.centering is not None:
            self.centering.load_state_dict(state.get("centering", {}))
        self.generator.set_state(state["generator"])
        if "sampling_generator" in state:  # older checkpoints: one generator for both
            self.sampling_generator.set_state(state["sampling_generator"])
