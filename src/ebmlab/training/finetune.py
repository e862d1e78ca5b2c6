"""Discriminative fine-tuning of a DBN: its up-pass as a sigmoid MLP, trained by backpropagation."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ebmlab._fields import option
from ebmlab._validation import (
    check_choice,
    check_matrix,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.models.dbn import DBN, check_layer_sizes

OPTIMIZERS = ("adam", "sgd")


@dataclass
class FinetuneConfig:
    """Hyperparameters of discriminative fine-tuning.

    Attributes
    ----------
    epochs, batch_size, lr
        Maximum passes over the labelled data, minibatch size, learning rate.
    optimizer, momentum, weight_decay
        ``adam`` or ``sgd`` (with ``momentum``); L2 penalty on all parameters.
    validation_fraction
        Part of the labelled examples held out (seeded split) for early stopping.
    patience
        Stop after this many epochs without a better validation accuracy (0: never stop early).
    """

    epochs: int = option(
        20, "Maximum epochs of discriminative fine-tuning (0: none).", resumable=True
    )
    batch_size: int = option(100, "Fine-tuning minibatch size.")
    lr: float = option(1e-3, "Fine-tuning learning rate.")
    optimizer: str = option("adam", "adam or sgd.")
    momentum: float = option(0.9, "SGD momentum (with optimizer sgd).")
    weight_decay: float = option(0.0, "L2 penalty on all parameters.")
    validation_fraction: float = option(
        0.1, "Share of the labelled examples held out for early stopping."
    )
    patience: int = option(
        5,
        "Stop after this many epochs without a better validation accuracy (0: never).",
        flag="patience",
    )

    def __post_init__(self) -> None:
        check_nonnegative_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_probability("momentum", self.momentum)
        check_nonnegative_float("weight_decay", self.weight_decay)
        check_probability("validation_fraction", self.validation_fraction, open_interval=True)
        check_nonnegative_int("patience", self.patience)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DBNClassifier(nn.Module):
    r"""Sigmoid MLP ``layer_sizes[0] -> ... -> layer_sizes[-1] -> n_classes`` (softmax head).

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths, input first (the DBN's ``layer_sizes``).
    n_classes : int
        Outputs of the linear head (logits; the softmax is in the loss).
    generator, dtype, device
        Random initialisation: PyTorch's ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` drawn
        from ``generator`` (reproducible), the baseline against pretraining.

    Notes
    -----
    Hidden layer ``l`` computes :math:`\sigma(W_l^\top x + b^h_l)`, exactly the DBN's
    mean-field up-pass when initialised by :meth:`from_dbn`.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        n_classes: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.n_classes = check_positive_int("n_classes", n_classes)
        widths = [*self.layer_sizes, n_classes]
        kwargs = {"dtype": dtype, "device": device}
        self.hidden = nn.ModuleList(
            nn.Linear(a, b, **kwargs) for a, b in zip(widths[:-2], widths[1:-1], strict=True)
        )
        self.head = nn.Linear(widths[-2], n_classes, **kwargs)
        self._reset_parameters(generator)

    @torch.no_grad()
    def _reset_parameters(self, generator: torch.Generator | None) -> None:
        for layer in [*self.hidden, self.head]:
            bound = layer.in_features**-0.5
            for p in (layer.weight, layer.bias):
                p.copy_((torch.rand(p.shape, generator=generator, dtype=p.dtype) * 2 - 1) * bound)

    @classmethod
    @torch.no_grad()
    def from_dbn(
        cls, dbn: DBN, n_classes: int, *, generator: torch.Generator | None = None
    ) -> DBNClassifier:
        """The DBN's up-pass (weights and hidden biases copied) plus a randomly initialised head."""
        reference = dbn.rbms[0].weight
        model = cls(
            dbn.layer_sizes,
            n_classes,
            generator=generator,
            dtype=reference.dtype,
            device=reference.device,
        )
        for index, (linear, rbm) in enumerate(zip(model.hidden, dbn.rbms, strict=True)):
            untied = dbn.recognition is not None and index < dbn.n_layers - 1
            source = dbn.recognition[index] if untied else None
            linear.weight.copy_((source.weight if untied else rbm.weight).t())
            linear.bias.copy_(source.bias if untied else rbm.hidden_bias)
        return model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Top hidden layer's activations."""
        for linear in self.hidden:
            x = torch.sigmoid(linear(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes)."""
        return self.head(self.features(x))


def build_optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


@torch.no_grad()
def classifier_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 5000
) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    correct = sum(
        int((model(x).argmax(1) == y).sum())
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True)
    )
    return correct / max(images.shape[0], 1)


class FinetuneTrainer:
    """Backpropagation with early stopping on a held-out part; resumable after any epoch.

    Parameters
    ----------
    model : DBNClassifier
    config : FinetuneConfig
    generator : torch.Generator
        Minibatch order; saved in :meth:`state_dict`.

    Notes
    -----
    The best model (highest validation accuracy, earliest on ties) is kept in
    :attr:`best_state`; :meth:`restore_best` loads it when training ends.
    """

    def __init__(
        self, model: nn.Module, config: FinetuneConfig, *, generator: torch.Generator
    ) -> None:
        self.model = model
        self.config = config
        self.generator = generator
        self.optimizer = build_optimizer(model, config)
        self.epoch = 0
        self.best_accuracy = -math.inf
        self.best_epoch = 0
        self.best_state = copy.deepcopy(model.state_dict())

    @property
    def done(self) -> bool:
        patience = self.config.patience
        stalled = patience > 0 and self.epoch - self.best_epoch >= patience
        return self.epoch >= self.config.epochs or stalled

    def train_epoch(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        validation: tuple[torch.Tensor, torch.Tensor],
    ) -> dict[str, float]:
        """One epoch of cross-entropy minimisation; returns loss, accuracies and seconds."""
        start = time.perf_counter()
        self.model.train()
        order = torch.randperm(
            images.shape[0], generator=self.generator, device=self.generator.device
        )
        total = 0.0
        for index in order.split(self.config.batch_size):
            loss = F.cross_entropy(self.model(images[index]), labels[index])
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the fine-tuning loss became {float(loss)} in epoch {self.epoch + 1}; lower lr"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * index.numel()
        self.model.eval()
        self.epoch += 1
        accuracy = classifier_accuracy(self.model, *validation)
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, self.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        return {
            "finetune_loss": total / images.shape[0],
            "validation_accuracy": accuracy,
            "epoch_seconds": time.perf_counter() - start,
        }

    def restore_best(self) -> nn.Module:
        self.model.load_state_dict(self.best_state)
        return self.model

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_accuracy": self.best_accuracy,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_accuracy = float(state["best_accuracy"])
        self.best_epoch = int(state["best_epoch"])
        self.best_state = {k: v.clone() for k, v in state["best_state"].items()}
        self.generator.set_state(state["generator"])


def labelled_subset(labels: torch.Tensor, n_labelled: int | None, *, seed: int) -> torch.Tensor:
    """Indices of ``n_labelled`` examples, classes as balanced as possible (seeded), sorted.

    A random order is re-sorted by each example's rank within its class, so the first
    ``n`` rows take classes in turn. ``None`` (or ``n >= len(labels)``) keeps every row.
    """
    n_rows = labels.shape[0]
    if n_labelled is None or n_labelled >= n_rows:
        return torch.arange(n_rows)
    check_positive_int("n_labelled", n_labelled)
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    shuffled = labels.cpu()[order]
    rank = torch.zeros(n_rows, dtype=torch.int64)
    for c in shuffled.unique():
        members = shuffled == c
        rank[members] = torch.arange(int(members.sum()))
    by_rank = order[torch.argsort(rank, stable=True)]
    return by_rank[:n_labelled].sort().values


def finetune(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: FinetuneConfig,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FinetuneTrainer:
    """Train ``model`` on labelled data with a seeded validation split and early stopping.

    Returns the trainer (``best_accuracy``, ``best_epoch``, ``epoch``) with the best
    model restored into ``model``. ``seed`` fixes the validation split; ``generator``
    (default: seeded with ``seed``) the minibatch order.
    """
    from ebmlab.data import train_validation_split

    check_matrix("images", images)
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"labels must have shape ({images.shape[0]},) to match images; got {tuple(labels.shape)}"
        )
    (train_x, train_y), validation = train_validation_split(
        (images, labels), validation_fraction=config.validation_fraction, seed=seed
    )
    generator = generator or torch.Generator(device=images.device).manual_seed(seed)
    trainer = FinetuneTrainer(model, config, generator=generator)
    while not trainer.done:
        record = trainer.train_epoch(train_x, train_y, validation)
        if on_epoch is not None:
            on_epoch(trainer.epoch, record)
    trainer.restore_best()
    return trainer
