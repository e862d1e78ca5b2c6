"""Greedy layer-wise training of a deep belief network, resumable per layer and epoch.

Each RBM of the stack is trained by :class:`~ebmlab.training.trainer.CDTrainer` on
the activations of the layer below, bottom first (Hinton, Osindero & Teh 2006).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ebmlab._validation import check_choice, check_matrix, check_nonnegative_int
from ebmlab.models.dbn import DBN, PROPAGATIONS
from ebmlab.training.distributed import DistributedContext
from ebmlab.training.trainer import CDConfig, CDTrainer

LayerEpochCallback = Callable[[int, int, dict[str, Any]], None]
_MONITOR_SEED = 104_729  # fixed: the propagated monitor sets must not depend on training


def check_layer_configs(configs: CDConfig | Sequence[CDConfig], n_layers: int) -> list[CDConfig]:
    """One :class:`CDConfig` per RBM: a single config is shared by every layer."""
    if isinstance(configs, CDConfig):
        return [configs] * n_layers
    configs = list(configs)
    if len(configs) != n_layers or not all(isinstance(c, CDConfig) for c in configs):
        raise ValueError(
            f"configs must be one CDConfig or a list of {n_layers} CDConfigs (one per RBM); "
            f"got {len(configs)} item(s)"
        )
    return configs


@torch.no_grad()
def propagate(
    dbn: DBN,
    data: torch.Tensor,
    layer: int,
    *,
    propagation: str,
    generator: torch.Generator | None = None,
    batch_size: int = 10_000,
) -> torch.Tensor:
    """The training data of RBM ``layer``: ``data`` passed up through the RBMs below it.

    Batched so that a 60,000-row up-pass never holds more than ``batch_size`` rows of
    intermediate activations at once.
    """
    parts = [
        dbn.up_pass(chunk, layer=layer, propagation=propagation, generator=generator)
        for chunk in data.split(batch_size)
    ]
    return torch.cat(parts)


class GreedyTrainer:
    """Trains ``dbn.rbms[0]``, then ``dbn.rbms[1]`` on its activations, and so on.

    Parameters
    ----------
    dbn : DBN
        The network; its RBMs are trained in place.
    configs : CDConfig or list of CDConfig
        Hyperparameters, shared or one per RBM.
    propagation : {"mean", "sample"}
        Data of the RBM above: the probabilities :math:`p(h = 1 \\mid \\cdot)` of the
        layer below, or one binary sample of them drawn when the layer starts (fixed
        for that layer's training; set ``dynamic_binarization`` in that layer's config
        with ``"mean"`` to redraw every epoch instead).
    generator : torch.Generator
        The only source of randomness; its state is part of :meth:`state_dict`.
    init_visible_bias : bool
        Start each RBM's visible biases at the log-odds of its data means.
    start_layer : int
        Index of the first RBM to train; those below are taken as trained (to add a
        layer on top of an existing stack).
    init_from_below : bool
        Start RBM ``l`` (``l >= 1``) at the transpose of RBM ``l - 1`` when the sizes
        allow it (``layer_sizes[l + 1] == layer_sizes[l - 1]``). The DBN is then the
        same model as before the layer was added, and training it on samples of
        :math:`Q(h \\mid v)` cannot lower the variational bound at first order
        (Hinton et al. 2006, section 4).

    Notes
    -----
    :meth:`train_epoch` moves to the next layer lazily, at the start of the first epoch
    that needs it, so that a run stopped after any epoch and restored with
    :meth:`load_state_dict` draws the same random numbers as one that never stopped.
    """

    def __init__(
        self,
        dbn: DBN,
        configs: CDConfig | Sequence[CDConfig],
        *,
        propagation: str = "mean",
        generator: torch.Generator,
        init_visible_bias: bool = True,
        init_from_below: bool = False,
        start_layer: int = 0,
        context: DistributedContext | None = None,
    ) -> None:
        self.dbn = dbn
        self.context = context  # torchrun: each layer's CDTrainer trains data-parallel
        self.configs = check_layer_configs(configs, dbn.n_layers)
        self.propagation = check_choice("propagation", propagation, PROPAGATIONS)
        self.generator = generator
        self.init_visible_bias = init_visible_bias
        self.init_from_below = init_from_below
        check_nonnegative_int("start_layer", start_layer)
        if start_layer >= dbn.n_layers:
            raise ValueError(f"start_layer must be below {dbn.n_layers}; got {start_layer}")
        self.layer = start_layer
        self.propagation_seed = self._draw_seed() if start_layer > 0 else 0
        self.trainer = CDTrainer(
            dbn.rbms[start_layer], self.configs[start_layer], generator=generator, context=context
        )
        self._cache: tuple[int, torch.Tensor, torch.Tensor] | None = None

    # ----- progress ------------------------------------------------------------------------
    @property
    def layer_done(self) -> bool:
        return self.trainer.epoch >= self.configs[self.layer].epochs

    @property
    def done(self) -> bool:
        return self.layer == self.dbn.n_layers - 1 and self.layer_done

    def _draw_seed(self) -> int:
        # A fresh seed per layer, drawn from the training generator: the layer's
        # propagated sample can be redrawn identically after a restart.
        return int(torch.randint(2**62, (1,), generator=self.generator))

    def _next_layer(self) -> None:
        self.layer += 1
        self.propagation_seed = self._draw_seed()
        rbm = self.dbn.rbms[self.layer]
        self.trainer = CDTrainer(
            rbm, self.configs[self.layer], generator=self.generator, context=self.context
        )

    @torch.no_grad()
    def _start_layer(self, layer_data: torch.Tensor) -> None:
        rbm = self.dbn.rbms[self.layer]
        below = self.dbn.rbms[self.layer - 1] if self.layer > 0 else None
        if self.init_from_below and below is not None and below.n_visible == rbm.n_hidden:
            rbm.weight.copy_(below.weight.t())
            rbm.visible_bias.copy_(below.hidden_bias)
            rbm.hidden_bias.copy_(below.visible_bias)
        elif self.init_visible_bias:
            rbm.init_visible_bias(layer_data)

    # ----- data ----------------------------------------------------------------------------
    def layer_data(self, data: torch.Tensor) -> torch.Tensor:
        """``data`` propagated to the current layer (cached per layer)."""
        if self._cache is not None and self._cache[0] == self.layer and self._cache[1] is data:
            return self._cache[2]
        generator = torch.Generator(device=data.device).manual_seed(self.propagation_seed)
        layer_data = propagate(
            self.dbn, data, self.layer, propagation=self.propagation, generator=generator
        )
        self._cache = (self.layer, data, layer_data)
        return layer_data

    def train_epoch(self, data: torch.Tensor, *, progress: bool = False) -> dict[str, Any]:
        """Train one epoch of the current layer (moving on first if it is finished)."""
        if self.done:
            raise RuntimeError("all layers are trained; there is no epoch left")
        check_matrix("data", data, n_columns=self.dbn.n_visible)
        if self.layer_done:
            self._next_layer()
        layer_data = self.layer_data(data)
        if self.trainer.epoch == 0:
            self._start_layer(layer_data)
        record = self.trainer.train_epoch(layer_data, progress=progress)
        record.update(layer=self.layer, layer_epoch=self.trainer.epoch)
        return record

    @torch.no_grad()
    def monitor(
        self, train_subset: torch.Tensor, validation: torch.Tensor | None
    ) -> dict[str, float]:
        """The current layer's monitors on binary samples of the monitor sets' up-pass.

        The up-pass uses a fixed seed, so monitoring never touches the training generator.
        """

        def up(x: torch.Tensor) -> torch.Tensor:
            generator = torch.Generator(device=x.device).manual_seed(_MONITOR_SEED)
            return propagate(self.dbn, x, self.layer, propagation="sample", generator=generator)

        return self.trainer.monitor(
            up(train_subset), None if validation is None else up(validation)
        )

    # ----- checkpoint state ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "propagation_seed": self.propagation_seed,
            "trainer": self.trainer.state_dict(),
            "finished_epochs": [c.epochs for c in self.configs[: self.layer]],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; a finished layer's epochs cannot change.

        More epochs for the layer in training (or the ones above) extend the run; a
        layer below it is done, and training it further would change what the
        layers above it learned from.
        """
        finished = state.get("finished_epochs", [c.epochs for c in self.configs[: state["layer"]]])
        for layer, epochs in enumerate(finished):
            if self.configs[layer].epochs != epochs:
                raise ValueError(
                    f"layer {layer} finished its pretraining after {epochs} epochs; its epochs "
                    f"cannot change when resuming (asked {self.configs[layer].epochs})"
                )
        self.layer = int(state["layer"])
        self.propagation_seed = int(state["propagation_seed"])
        self.trainer = CDTrainer(
            self.dbn.rbms[self.layer],
            self.configs[self.layer],
            generator=self.generator,
            context=self.context,
        )
        self.trainer.load_state_dict(state["trainer"])
        self._cache = None


def train_greedy(
    dbn: DBN,
    data: torch.Tensor,
    configs: CDConfig | Sequence[CDConfig],
    *,
    propagation: str = "mean",
    generator: torch.Generator,
    on_epoch: LayerEpochCallback | None = None,
    init_from_below: bool = False,
    start_layer: int = 0,
    progress: bool = False,
) -> DBN:
    """Greedily train every RBM of ``dbn`` on ``data``; returns ``dbn`` (trained in place).

    Parameters
    ----------
    dbn : DBN
    data : torch.Tensor
        ``(N, n_visible)`` training data in [0, 1].
    configs : CDConfig or list of CDConfig
        Shared or per-layer hyperparameters.
    propagation, init_from_below, start_layer
        See :class:`GreedyTrainer`.
    generator : torch.Generator
        All training randomness.
    on_epoch : callable, optional
        Called as ``on_epoch(layer, layer_epoch, record)`` after every epoch.

    Notes
    -----
    For checkpointing and resuming use :class:`GreedyTrainer` directly, as
    the ``dbn`` recipe (:class:`ebmlab.experiments.dbn.DBNRecipe`) does.
    """
    dbn.check_visible(data, "data")
    trainer = GreedyTrainer(
        dbn,
        configs,
        propagation=propagation,
        generator=generator,
        init_from_below=init_from_below,
        start_layer=start_layer,
    )
    while not trainer.done:
        record = trainer.train_epoch(data, progress=progress)
        if on_epoch is not None:
            on_epoch(record["layer"], record["layer_epoch"], record)
    return dbn
