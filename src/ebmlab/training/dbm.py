r"""Joint training of deep Boltzmann machines: mean field for the data, persistent chains for the model.

Greedy pretraining with doubled RBMs is in :mod:`ebmlab.training.dbm_pretrain`.
Joint training minimises the surrogate loss

.. math:: \mathcal L = \tfrac1B \sum_b E(v_b, \operatorname{sg}[\mu_b])
          - \tfrac1M \sum_m E(\operatorname{sg}[x^{(m)}]),

:math:`\mu` the mean-field posterior of the data and :math:`x^{(m)}` persistent block
Gibbs chains: its negative gradient is :math:`\langle x_l x_{l+1}^\top\rangle_{\rm data}
- \langle x_l x_{l+1}^\top\rangle_{\rm model}`, the gradient of the variational bound.

References
----------
Salakhutdinov, R. & Hinton, G. (2009). Deep Boltzmann machines. AISTATS, section 3.2.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._fields import option, section
from ebmlab._validation import (
    check_positive_float,
    check_positive_int,
)
from ebmlab.models.dbm import DBM
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.dbm_gibbs import DBMBlockGibbs, DBMGibbsState
from ebmlab.training.centering import check_offset_rate
from ebmlab.training.dbm_centering import DBMCentering
from ebmlab.training.distributed import (
    DistributedContext,
    average_gradients,
    average_tensor,
    mean_over_ranks,
    rank_generator,
    shard,
)
from ebmlab.training.optim import LinearDecay, build_sgd, check_sgd_settings, set_momentum
from ebmlab.training.trainer import OFFSET_INIT_SIZE, CDConfig, NonFiniteError

# Pretraining's own defaults where they differ from CDConfig's: persistent chains.
# The doubled RBMs keep the schedule DBM pretraining was measured with (momentum 0.5 then
# 0.9, a constant rate); centering is not defined for their tied copies.
PRETRAINING_DEFAULTS = {
    "epochs": 10,
    "lr": 0.05,
    "persistent": True,
    "cd_k": 1,
    "momentum": 0.5,
    "final_momentum": 0.9,
    "final_lr_fraction": 1.0,
    "centering": False,
}


@dataclass
class DBMTrainingConfig:
    """Hyperparameters of DBM training (defaults after Salakhutdinov & Hinton 2009).

    Attributes
    ----------
    epochs, batch_size, lr, final_lr_fraction
        Joint training passes, minibatch size, learning rate and its linear decay.
    momentum, final_momentum, momentum_switch_epoch
        SGD momentum 0.5, then 0.9.
    weight_decay, max_norm
        L2 penalty on the weights; optional bound on the L2 norm of each unit's
        incoming weight vector (a column of ``weights[l]``), applied after every update.
    n_chains, gibbs_steps
        Persistent chains of the model term and block Gibbs sweeps per update.
    mean_field_iterations, mean_field_tolerance, damping
        Mean-field settings for the data term.
    centering, offset_rate
        Train in centered coordinates (:mod:`ebmlab.training.dbm_centering`): offsets at
        moving averages of the data mean and of the mean-field means of each layer.
    pretrain, pretraining
        Greedy pretraining on or off, and its CD settings (``epochs`` per RBM).
    """

    epochs: int = option(20, "Epochs of joint training.", resumable=True)
    batch_size: int = option(100, "Minibatch size.")
    lr: float = option(0.005, "Joint-training learning rate.")
    final_lr_fraction: float = option(0.1, "The learning rate decays linearly to this fraction.")
    momentum: float = option(0.5, "Initial momentum.")
    final_momentum: float = option(0.9, "Momentum after momentum_switch_epoch.")
    momentum_switch_epoch: int = option(5, "Epoch at which momentum switches.")
    weight_decay: float = option(2e-4, "L2 penalty on the weights.")
    max_norm: float | None = option(
        None, "Maximum L2 norm of each unit's incoming weights (none: no bound)."
    )
    n_chains: int = option(100, "Persistent chains for the model term.")
    gibbs_steps: int = option(5, "Block Gibbs sweeps of the chains per update.")
    mean_field_iterations: int = option(10, "Mean-field iterations for the data term.")
    mean_field_tolerance: float = option(1e-5, "Mean-field stopping tolerance.")
    damping: float = option(0.0, "Mean-field damping in [0, 1).")
    centering: bool = option(
        False,
        "Centered gradient: per-layer offsets at the data and mean-field means (Melchior et al.).",
        before=False,
    )
    offset_rate: float = option(0.01, "Moving-average rate of the centering offsets, in (0, 1].")
    pretrain: bool = option(True, "Greedy pretraining with doubled RBMs first.")
    pretraining: CDConfig = section(
        lambda: CDConfig(**PRETRAINING_DEFAULTS),
        "CD settings of each pretrained RBM (epochs per RBM).",
        prefix="pretrain-",
    )

    def __post_init__(self) -> None:
        if isinstance(self.pretraining, dict):
            self.pretraining = CDConfig(**self.pretraining)
        check_sgd_settings(self)
        if self.max_norm is not None:
            check_positive_float("max_norm", self.max_norm)
        check_positive_int("n_chains", self.n_chains)
        check_positive_int("gibbs_steps", self.gibbs_steps)
        check_positive_int("mean_field_iterations", self.mean_field_iterations)
        check_positive_float("mean_field_tolerance", self.mean_field_tolerance)
        if not 0 <= self.damping < 1:
            raise ValueError(f"damping must lie in [0, 1); got {self.damping!r}")
        check_offset_rate(self.offset_rate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DBMTrainer:
    """Joint DBM training: mean-field data term, persistent block Gibbs model term, SGD.

    Parameters
    ----------
    model : DBM
    config : DBMTrainingConfig
    generator : torch.Generator
        All training randomness (minibatch order, chains, binarisation); checkpointed.
    """

    def __init__(
        self,
        model: DBM,
        config: DBMTrainingConfig,
        *,
        generator: torch.Generator,
        context: DistributedContext | None = None,
    ) -> None:
        self.model, self.config, self.generator = model, config, generator
        # Under torchrun: same minibatch order everywhere, own chains, averaged gradients.
        self.context = context or DistributedContext(device=str(generator.device))
        self.sampling_generator = rank_generator(generator, self.context)
        self.sampler = DBMBlockGibbs(model)
        self.chains: DBMGibbsState | None = None
        self.centering = DBMCentering(model, rate=config.offset_rate) if config.centering else None
        # Centering folds the weight decay into the centered update itself.
        weight_decay = 0.0 if self.centering else config.weight_decay
        self.optimizer = build_sgd(
            model, lr=config.lr, momentum=config.momentum, weight_decay=weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, LinearDecay(config.epochs, config.final_lr_fraction)
        )
        self.epoch = 0

    def mean_field(self, v: torch.Tensor):
        config = self.config
        return self.model.mean_field(
            v,
            n_iterations=config.mean_field_iterations,
            tolerance=config.mean_field_tolerance,
            damping=config.damping,
        )

    def init_chains(self, data: torch.Tensor) -> None:
        """Start the persistent chains at random training rows (bottom-up hidden means)."""
        rows = torch.randint(
            data.shape[0],
            (self.config.n_chains,),
            generator=self.sampling_generator,
            device=self.sampling_generator.device,
        )
        self.chains = self.sampler.init(data[rows.to(data.device)])

    def update(self, v: torch.Tensor) -> float:
        """One parameter update on a binary minibatch; returns the surrogate loss."""
        if self.chains is None:
            self.init_chains(v)
        means = self.mean_field(v).means
        self.chains, _, _ = run_chain(
            self.sampler, self.chains, self.config.gibbs_steps, generator=self.sampling_generator
        )
        loss = self.model.energy([v, *means]).mean() - self.model.energy(self.chains.layers).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.model, self.context)
        layer_means = None
        if self.centering is not None:
            # Every rank moves its offsets by the global minibatch's means: they stay equal.
            layer_means = [average_tensor(x.mean(0), self.context) for x in [v, *means]]
            if self.centering.offsets is None:  # update() called without train_epoch
                self.centering.initialise([m.unsqueeze(0) for m in layer_means])
            self.centering.center_gradients(weight_decay=self.config.weight_decay)
        self.optimizer.step()
        if layer_means is not None:
            self.centering.update_offsets([m.unsqueeze(0) for m in layer_means])
        if self.config.max_norm is not None:
            self._apply_max_norm(self.config.max_norm)
        return float(loss.detach())

    @torch.no_grad()
    def _apply_max_norm(self, max_norm: float) -> None:
        for weight in self.model.weights:
            norms = weight.norm(dim=0, keepdim=True)
            weight.mul_(torch.clamp(max_norm / norms.clamp_min(1e-12), max=1.0))

    def train_epoch(self, data: torch.Tensor) -> dict[str, float]:
        """One pass over binary ``data`` in a random order."""
        config = self.config
        if self.centering is not None and self.centering.offsets is None:
            subset = data[:OFFSET_INIT_SIZE]  # every rank holds the whole data: same offsets
            self.centering.initialise([subset, *self.mean_field(subset).means])
        set_momentum(
            self.optimizer,
            config.momentum if self.epoch < config.momentum_switch_epoch else config.final_momentum,
        )
        start, total, count = time.perf_counter(), 0.0, 0
        order = torch.randperm(
            data.shape[0], generator=self.generator, device=self.generator.device
        )
        for index in order.split(config.batch_size):
            v = data[shard(index, self.context).to(data.device)]
            loss = self.update(v)
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"the DBM loss became {loss} in epoch {self.epoch + 1}; lower --lr "
                    "(the last checkpoint is still good)"
                )
            total, count = total + loss * v.shape[0], count + v.shape[0]
        for name, parameter in self.model.named_parameters():
            if not torch.isfinite(parameter).all():
                raise NonFiniteError(
                    f"parameter {name} became non-finite in epoch {self.epoch + 1}"
                )
        self.scheduler.step()
        self.epoch += 1
        loss = mean_over_ranks({"loss": total / count}, self.context)["loss"]
        return {"loss": loss, "epoch_seconds": time.perf_counter() - start}

    @torch.no_grad()
    def monitor(
        self, train_subset: torch.Tensor, validation: torch.Tensor | None
    ) -> dict[str, float]:
        """Mean-field reconstruction error, residual, and the train/validation bound gap.

        The gap ``mean bound(train) - mean bound(validation)`` does not depend on
        :math:`\\log Z` and grows when the model overfits (like the RBM's free-energy gap).
        """
        from ebmlab.estimators.dbm import variational_bound

        held_out = validation if validation is not None else train_subset
        result = self.mean_field(held_out)
        reconstruction = self.model.mean_layer([None, result.means[0]], 0)
        metrics = {
            "reconstruction_error": float(((held_out - reconstruction) ** 2).mean()),
            "mean_field_iterations": result.n_iterations,
            "mean_field_residual": result.residual,
        }
        if validation is not None:
            train_bound = variational_bound(
                self.model, train_subset, self.mean_field(train_subset).means
            )
            valid_bound = variational_bound(self.model, validation, result.means)
            metrics["bound_gap"] = float(train_bound.mean() - valid_bound.mean())
        return metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "chains": None if self.chains is None else list(self.chains.layers),
            "centering": {} if self.centering is None else self.centering.state_dict(),
            "generator": self.generator.get_state(),
            "sampling_generator": self.sampling_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        device = self.model.biases[0].device
        chains = state["chains"]
        self.chains = None if chains is None else DBMGibbsState([c.to(device) for c in chains])
        if self.centering is not None:  # older checkpoints have none: offsets start afresh
            self.centering.load_state_dict(state.get("centering", {}))
        self.generator.set_state(state["generator"])
        if "sampling_generator" in state:  # older checkpoints: one generator for both
            self.sampling_generator.set_state(state["sampling_generator"])


# ----- classification -------------------------------------------------------------------------
def fit_classifier(
    classifier: nn.Module,
    inputs: tuple[torch.Tensor, list[torch.Tensor]],
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 100,
    fine_tune: bool = True,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Train a :class:`~ebmlab.models.dbm.DBMClassifier` by Adam on the cross-entropy.

    Parameters
    ----------
    classifier : DBMClassifier
    inputs : (v, posterior)
        Visible data and its mean-field posterior means (one tensor per hidden layer),
        computed once with the DBM.
    labels : torch.Tensor
        int64 class indices.
    fine_tune : bool
        False trains the head only (logistic regression on mean-field features).

    Returns
    -------
    list of float
        Mean training loss of each epoch.
    """
    check_positive_int("epochs", epochs)
    check_positive_float("lr", lr)
    check_positive_int("batch_size", batch_size)
    v, posterior = inputs
    if labels.shape != (v.shape[0],):
        raise ValueError(f"labels must have shape ({v.shape[0]},); got {tuple(labels.shape)}")
    parameters = classifier.parameters() if fine_tune else classifier.head.parameters()
    optimizer = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(v.shape[0], generator=generator)
        total = 0.0
        for index in order.split(batch_size):
            index = index.to(v.device)
            logits = classifier(v[index], [q[index] for q in posterior])
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * index.numel()
        losses.append(total / v.shape[0])
    return losses


@torch.no_grad()
def classifier_accuracy(
    classifier: nn.Module, inputs: tuple[torch.Tensor, list[torch.Tensor]], labels: torch.Tensor
) -> float:
    """Share of rows whose largest logit is the label."""
    v, posterior = inputs
    return float((classifier(v, posterior).argmax(-1) == labels).double().mean())
