r"""Greedy pretraining of deep Boltzmann machines with doubled RBMs.

Pretraining (Salakhutdinov & Hinton 2009, section 3.1) trains one RBM per pair of
layers with :class:`~ebmlab.training.trainer.CDTrainer`. The bottom RBM sees two tied
copies of the visible layer (its hidden units get :math:`2 W^\top v`, the down-pass
uses :math:`W h`), the top RBM has two tied copies of its hidden layer (its visible
units get :math:`2 W h`), intermediate RBMs are ordinary. Composed into a DBM, each
intermediate layer receives input from both neighbours instead of twice from one, so
the doubled RBMs' weights are used as they are, intermediate RBMs' weights are halved,
and a hidden layer's bias is the mean of the biases the two RBMs that share it learnt.

References
----------
Salakhutdinov, R. & Hinton, G. (2009). Deep Boltzmann machines. AISTATS, section 3.1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._validation import (
    check_matrix,
    check_positive_int,
    check_unit_interval,
)
from ebmlab.models.dbm import DBM
from ebmlab.models.rbm import sample_bernoulli
from ebmlab.training.distributed import DistributedContext
from ebmlab.training.trainer import CDConfig, CDTrainer


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

    def __init__(
        self,
        model: DBM,
        config: CDConfig,
        *,
        generator: torch.Generator,
        context: DistributedContext | None = None,
    ) -> None:
        if config.centering:
            # The doubled RBMs tie copies of one layer: their centered update is not built.
            raise ValueError(
                "config.centering=True is not supported for DBM pretraining (tied-copy RBMs); "
                "pass CDConfig(centering=False, ...) as PRETRAINING_DEFAULTS does"
            )
        self.model, self.generator, self.context = model, generator, context
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
        self.trainer = CDTrainer(rbm, self.config, generator=self.generator, context=self.context)

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
