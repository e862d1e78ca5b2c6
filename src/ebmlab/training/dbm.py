r"""Training deep Boltzmann machines: greedy pretraining, then joint mean-field / PCD training.

Pretraining (Salakhutdinov & Hinton 2009, section 3.1) trains one RBM per pair of
layers with :class:`~ebmlab.training.trainer.CDTrainer`. The bottom RBM sees two tied
copies of the visible layer (its hidden units get :math:`2 W^\top v`, the down-pass
uses :math:`W h`), the top RBM has two tied copies of its hidden layer (its visible
units get :math:`2 W h`), intermediate RBMs are ordinary. Composed into a DBM, each
intermediate layer receives input from both neighbours instead of twice from one, so
the doubled RBMs' weights are used as they are, intermediate RBMs' weights are halved,
and a hidden layer's bias is the mean of the biases the two RBMs that share it learnt.

Joint training minimises the surrogate loss

.. math:: \mathcal L = \tfrac1B \sum_b E(v_b, \operatorname{sg}[\mu_b])
          - \tfrac1M \sum_m E(\operatorname{sg}[x^{(m)}]),

:math:`\mu` the mean-field posterior of the data and :math:`x^{(m)}` persistent block
Gibbs chains: its negative gradient is :math:`\langle x_l x_{l+1}^\top\rangle_{\rm data}
- \langle x_l x_{l+1}^\top\rangle_{\rm model}`, the gradient of the variational bound.

References
----------
Salakhutdinov, R. & Hinton, G. (2009). Deep Boltzmann machines. AISTATS, sections 3.1-3.2.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._validation import (
    check_matrix,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_unit_interval,
)
from ebmlab.models.dbm import DBM
from ebmlab.models.rbm import sample_bernoulli
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.dbm_gibbs import DBMBlockGibbs, DBMGibbsState
from ebmlab.training.optim import LinearDecay, build_sgd, set_momentum
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError


# ----- pretraining modules --------------------------------------------------------------------
class TiedCopiesRBM(nn.Module):
    r"""An RBM whose visible and hidden layers are ``visible_copies`` / ``hidden_copies``
    tied copies of one layer: the doubled modules of DBM pretraining.

    The trainer sees the copies side by side (``n_visible * visible_copies`` columns);
    data must be repeated with :meth:`repeat_visible`. With copies
    :math:`v^{(c)}, h^{(d)}`: :math:`p(h^{(d)} \mid v) = \sigma(b_h + W^\top \sum_c v^{(c)})`,
    :math:`p(v^{(c)} \mid h) = \sigma(b_v + W \sum_d h^{(d)})`, and
    :math:`F(v) = -b_v^\top \sum_c v^{(c)} - k_h \mathbf 1^\top
    \operatorname{softplus}(b_h + W^\top \sum_c v^{(c)})`: an exact RBM with tied
    weights, so CD on it is CD on the doubled model.
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int,
        *,
        visible_copies: int = 1,
        hidden_copies: int = 1,
        generator: torch.Generator | None = None,
        dtype=None,
        device=None,
    ) -> None:
        super().__init__()
        self.n_visible, self.n_hidden = n_visible, n_hidden
        self.visible_copies = check_positive_int("visible_copies", visible_copies)
        self.hidden_copies = check_positive_int("hidden_copies", hidden_copies)
        dtype = dtype or torch.get_default_dtype()
        weight = torch.randn(n_visible, n_hidden, generator=generator, dtype=dtype) * 0.01
        self.weight = nn.Parameter(weight.to(device))
        self.visible_bias = nn.Parameter(torch.zeros(n_visible, dtype=dtype, device=device))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden, dtype=dtype, device=device))

    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        """Raise a clear error unless ``v`` is a finite (batch, copies * n_visible) tensor in [0, 1]."""
        check_matrix(name, v, n_columns=self.n_visible * self.visible_copies)
        return check_unit_interval(name, v, model="pretraining RBM")

    def repeat_visible(self, v: torch.Tensor) -> torch.Tensor:
        return v.repeat(1, self.visible_copies)

    def _sum_copies(self, x: torch.Tensor, n: int, copies: int) -> torch.Tensor:
        return x.reshape(x.shape[0], copies, n).sum(1)

    def hidden_preactivation(self, v: torch.Tensor) -> torch.Tensor:
        s = self._sum_copies(v, self.n_visible, self.visible_copies)
        return torch.addmm(self.hidden_bias, s, self.weight)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Joint energy of all copies, :math:`-s_v^\\top W s_h - b_v^\\top s_v - b_h^\\top s_h`
        with :math:`s` the sums over copies (what :func:`~ebmlab.training.cd.cd_loss` uses)."""
        s_v = self._sum_copies(v, self.n_visible, self.visible_copies)
        s_h = self._sum_copies(h, self.n_hidden, self.hidden_copies)
        return (
            -((s_v @ self.weight) * s_h).sum(-1) - s_v @ self.visible_bias - s_h @ self.hidden_bias
        )

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        s = self._sum_copies(v, self.n_visible, self.visible_copies)
        softplus = F.softplus(torch.addmm(self.hidden_bias, s, self.weight)).sum(-1)
        return -s @ self.visible_bias - self.hidden_copies * softplus

    def mean_h(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.hidden_preactivation(v)).repeat(1, self.hidden_copies)

    def sample_h(self, v: torch.Tensor, *, generator=None) -> torch.Tensor:
        return sample_bernoulli(self.mean_h(v), generator=generator)

    def mean_v(self, h: torch.Tensor) -> torch.Tensor:
        s = self._sum_copies(h, self.n_hidden, self.hidden_copies)
        return torch.sigmoid(torch.addmm(self.visible_bias, s, self.weight.t())).repeat(
            1, self.visible_copies
        )

    def sample_v(self, h: torch.Tensor, *, generator=None) -> torch.Tensor:
        return sample_bernoulli(self.mean_v(h), generator=generator)

    def sample_v_from_mean(self, mean: torch.Tensor, *, generator=None) -> torch.Tensor:
        return sample_bernoulli(mean, generator=generator)

    @torch.no_grad()
    def up_means(self, v: torch.Tensor) -> torch.Tensor:
        """:math:`p(h \\mid v)` for one (uncopied) visible vector per row: the next RBM's data."""
        return torch.sigmoid(self.hidden_preactivation(self.repeat_visible(v)))


def layer_copies(n_layers: int, layer: int) -> tuple[int, int]:
    """(visible_copies, hidden_copies) of the RBM between layers ``layer`` and ``layer + 1``."""
    if n_layers == 2:
        return 1, 1  # a one-hidden-layer DBM is an RBM
    return (2 if layer == 0 else 1), (2 if layer == n_layers - 2 else 1)


@torch.no_grad()
def compose_dbm(model: DBM, rbms: list[TiedCopiesRBM]) -> DBM:
    """Write pretrained RBMs (one per pair of layers) into ``model``; see the module notes."""
    if len(rbms) != model.n_layers - 1:
        raise ValueError(f"need {model.n_layers - 1} RBMs for this DBM; got {len(rbms)}")
    for k, rbm in enumerate(rbms):
        doubled = rbm.visible_copies > 1 or rbm.hidden_copies > 1 or model.n_layers == 2
        model.weights[k].copy_(rbm.weight if doubled else rbm.weight / 2)
    model.biases[0].copy_(rbms[0].visible_bias)
    model.biases[-1].copy_(rbms[-1].hidden_bias)
    for k in range(1, model.n_layers - 1):
        model.biases[k].copy_((rbms[k - 1].hidden_bias + rbms[k].visible_bias) / 2)
    return model


class GreedyPretrainer:
    """Trains the RBMs of :func:`compose_dbm` one after another, each with its own CDTrainer.

    Parameters
    ----------
    model : DBM
        Receives the composed weights when the last RBM is done.
    config : CDConfig
        Hyperparameters of every RBM (``epochs`` per RBM). Its ``dynamic_binarization``
        is ignored: :meth:`train_epoch` takes the binarised data of each epoch.
    generator : torch.Generator
        Shared with the joint trainer; saved in checkpoints.
    """

    def __init__(self, model: DBM, config: CDConfig, *, generator: torch.Generator) -> None:
        self.model, self.generator = model, generator
        self.config = dataclasses.replace(config, dynamic_binarization=False)
        self.rbms: list[TiedCopiesRBM] = []
        self.trainer: CDTrainer | None = None
        self._start_layer()

    @property
    def layer(self) -> int:
        return len(self.rbms) - 1

    @property
    def done(self) -> bool:
        return self.layer == self.model.n_layers - 2 and self.trainer.epoch >= self.config.epochs

    def _start_layer(self) -> None:
        k, sizes = len(self.rbms), self.model.layer_sizes
        visible_copies, hidden_copies = layer_copies(self.model.n_layers, k)
        reference = self.model.biases[0]
        rbm = TiedCopiesRBM(
            sizes[k],
            sizes[k + 1],
            visible_copies=visible_copies,
            hidden_copies=hidden_copies,
            generator=self.generator,
            dtype=reference.dtype,
            device=reference.device,
        )
        self.rbms.append(rbm)
        self.trainer = CDTrainer(rbm, self.config, generator=self.generator)

    @torch.no_grad()
    def layer_data(self, v: torch.Tensor) -> torch.Tensor:
        """The current RBM's data: ``v`` passed up through the finished RBMs."""
        for rbm in self.rbms[:-1]:
            v = rbm.up_means(v)
        return v

    def train_epoch(self, v: torch.Tensor) -> dict[str, float]:
        """One epoch of the current RBM on binary data ``v``; moves on when its epochs are done."""
        if self.done:
            raise RuntimeError("pretraining is finished")
        rbm = self.rbms[-1]
        if self.layer == 0 and self.trainer.epoch == 0:
            rbm.visible_bias.data.copy_(_logit_means(v))
        record = self.trainer.train_epoch(rbm.repeat_visible(self.layer_data(v)))
        record = {"pretrain_layer": self.layer, "pretrain_epoch": self.trainer.epoch, **record}
        if self.trainer.epoch >= self.config.epochs:
            if self.layer < self.model.n_layers - 2:
                self._start_layer()
            else:
                compose_dbm(self.model, self.rbms)
        return record

    def state_dict(self) -> dict[str, Any]:
        return {
            "rbms": [rbm.state_dict() for rbm in self.rbms],
            "trainer": self.trainer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        while len(self.rbms) < len(state["rbms"]):
            self._start_layer()
        for rbm, rbm_state in zip(self.rbms, state["rbms"], strict=True):
            rbm.load_state_dict(rbm_state)
        self.trainer.load_state_dict(state["trainer"])


def _logit_means(v: torch.Tensor, smoothing: float = 1e-2) -> torch.Tensor:
    p = v.mean(0).clamp(smoothing, 1 - smoothing)
    return torch.log(p) - torch.log1p(-p)


# ----- joint training -----------------------------------------------------------------------
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
    pretrain, pretraining
        Greedy pretraining on or off, and its CD settings (``epochs`` per RBM).
    """

    epochs: int = 20
    batch_size: int = 100
    lr: float = 0.005
    final_lr_fraction: float = 0.1
    momentum: float = 0.5
    final_momentum: float = 0.9
    momentum_switch_epoch: int = 5
    weight_decay: float = 2e-4
    max_norm: float | None = None
    n_chains: int = 100
    gibbs_steps: int = 5
    mean_field_iterations: int = 10
    mean_field_tolerance: float = 1e-5
    damping: float = 0.0
    pretrain: bool = True
    pretraining: CDConfig = field(
        default_factory=lambda: CDConfig(epochs=10, lr=0.05, persistent=True, cd_k=1)
    )

    def __post_init__(self) -> None:
        if isinstance(self.pretraining, dict):
            self.pretraining = CDConfig(**self.pretraining)
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_probability("final_lr_fraction", self.final_lr_fraction)
        check_probability("momentum", self.momentum)
        check_probability("final_momentum", self.final_momentum)
        check_nonnegative_int("momentum_switch_epoch", self.momentum_switch_epoch)
        check_nonnegative_float("weight_decay", self.weight_decay)
        if self.max_norm is not None:
            check_positive_float("max_norm", self.max_norm)
        check_positive_int("n_chains", self.n_chains)
        check_positive_int("gibbs_steps", self.gibbs_steps)
        check_positive_int("mean_field_iterations", self.mean_field_iterations)
        check_positive_float("mean_field_tolerance", self.mean_field_tolerance)
        if not 0 <= self.damping < 1:
            raise ValueError(f"damping must lie in [0, 1); got {self.damping!r}")

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
        self, model: DBM, config: DBMTrainingConfig, *, generator: torch.Generator
    ) -> None:
        self.model, self.config, self.generator = model, config, generator
        self.sampler = DBMBlockGibbs(model)
        self.chains: DBMGibbsState | None = None
        self.optimizer = build_sgd(
            model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
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
            generator=self.generator,
            device=self.generator.device,
        )
        self.chains = self.sampler.init(data[rows.to(data.device)])

    def update(self, v: torch.Tensor) -> float:
        """One parameter update on a binary minibatch; returns the surrogate loss."""
        if self.chains is None:
            self.init_chains(v)
        means = self.mean_field(v).means
        self.chains, _, _ = run_chain(
            self.sampler, self.chains, self.config.gibbs_steps, generator=self.generator
        )
        loss = self.model.energy([v, *means]).mean() - self.model.energy(self.chains.layers).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
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
        set_momentum(
            self.optimizer,
            config.momentum if self.epoch < config.momentum_switch_epoch else config.final_momentum,
        )
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(
            data.shape[0], generator=self.generator, device=self.generator.device
        )
        for index in order.split(config.batch_size):
            v = data[index.to(data.device)]
            loss = self.update(v)
            if not math.isfinite(loss):
                raise NonFiniteError(
                    f"the DBM loss became {loss} in epoch {self.epoch + 1}; lower --lr "
                    "(the last checkpoint is still good)"
                )
            total += loss * v.shape[0]
        for name, parameter in self.model.named_parameters():
            if not torch.isfinite(parameter).all():
                raise NonFiniteError(
                    f"parameter {name} became non-finite in epoch {self.epoch + 1}"
                )
        self.scheduler.step()
        self.epoch += 1
        return {"loss": total / data.shape[0], "epoch_seconds": time.perf_counter() - start}

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
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        device = self.model.biases[0].device
        chains = state["chains"]
        self.chains = None if chains is None else DBMGibbsState([c.to(device) for c in chains])
        self.generator.set_state(state["generator"])


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
