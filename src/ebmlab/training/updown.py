r"""Generative fine-tuning of a DBN by the up-down (contrastive wake-sleep) algorithm.

After greedy pretraining a DBN's lower layers use tied weights both ways: :math:`W_l`
generates :math:`h^l` from :math:`h^{l+1}` and its transpose recognises. The up-down
algorithm unties them (:meth:`~ebmlab.models.dbn.DBN.untie`: recognition weights
:math:`R_l, r_l`) and fine-tunes the whole generative model. For each minibatch of
binary data :math:`v = w^0`:

1. **Up (wake).** :math:`w^{l+1} \sim \sigma(w^l R_l + r_l)` up to the top RBM's
   visible layer :math:`w^{L-1}`. Each generative layer learns to reconstruct the
   layer below from the one above, the delta rule
   :math:`\Delta W_l \propto (w^l - \sigma(b_l + W_l w^{l+1}))\, {w^{l+1}}^\top`.
2. **Top.** CD-``cd_k`` on the top RBM, its chain started at :math:`w^{L-1}`; the
   chain's last visible state is :math:`s^{L-1}`.
3. **Down (sleep).** :math:`s^l \sim \sigma(b_l + W_l s^{l+1})` down to :math:`s^0`, and
   each recognition layer learns to invert the generative one,
   :math:`\Delta R_l \propto s^l\, (s^{l+1} - \sigma(s^l R_l + r_l))^\top`.

Biases follow the same deltas. The wake updates raise a variational bound on
:math:`\log p(v)` for the current recognition distribution; the sleep updates fit that
distribution to the model's own fantasies. All steps are plain SGD at ``lr``.

References
----------
Hinton, G. E., Osindero, S. & Teh, Y.-W. (2006). A fast learning algorithm for deep
belief nets. Neural Computation 18(7), section 5 and Appendix B (the up-down algorithm).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ebmlab._fields import option
from ebmlab._validation import check_nonnegative_int, check_positive_float, check_positive_int
from ebmlab.models.dbn import DBN
from ebmlab.models.rbm import sample_bernoulli
from ebmlab.training.trainer import NonFiniteError


@dataclass
class UpDownConfig:
    """Hyperparameters of up-down fine-tuning.

    Attributes
    ----------
    epochs, batch_size, lr
        Passes over the data (0: none), minibatch size, SGD step of every update.
    cd_k
        Gibbs steps of the top RBM's contrastive phase.
    """

    epochs: int = option(0, "Epochs of generative up-down fine-tuning (0: none).", resumable=True)
    batch_size: int = option(100, "Up-down minibatch size.")
    lr: float = option(0.001, "Up-down learning rate (generative, recognition and top weights).")
    cd_k: int = option(10, "Gibbs steps in the top RBM per up-down update.")

    def __post_init__(self) -> None:
        check_nonnegative_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_positive_int("cd_k", self.cd_k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UpDownTrainer:
    """Up-down fine-tuning of ``dbn`` (untied on construction); see the module docstring.

    Parameters
    ----------
    dbn : DBN
        A DBN with at least two hidden layers (one layer is an RBM: train it by CD).
    config : UpDownConfig
    generator : torch.Generator
        Minibatch order and every Bernoulli draw; checkpointed.
    """

    def __init__(self, dbn: DBN, config: UpDownConfig, *, generator: torch.Generator) -> None:
        if not isinstance(dbn, DBN):
            raise TypeError(f"dbn must be a DBN; got {type(dbn).__name__}")
        if dbn.n_layers < 2:
            raise ValueError(
                f"up-down fine-tuning needs a DBN with at least 2 hidden layers; got {dbn.n_layers}"
            )
        dbn.untie()
        self.dbn, self.config, self.generator = dbn, config, generator
        self.epoch = 0

    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    def _sample(self, mean: torch.Tensor) -> torch.Tensor:
        return sample_bernoulli(mean, generator=self.generator)

    @torch.no_grad()
    def update(self, v: torch.Tensor) -> float:
        """One up-down update on binary ``v``; returns the wake reconstruction error of ``v``."""
        dbn, lr, n = self.dbn, self.config.lr, v.shape[0]
        lower, top = dbn.rbms[:-1], dbn.top
        wake = [v]
        for layer in range(len(lower)):
            wake.append(self._sample(torch.sigmoid(dbn.recognition_preactivation(wake[-1], layer))))
        # Top RBM: CD-k from the wake state.
        positive_h = top.mean_h(wake[-1])
        visible, hidden_mean = wake[-1], positive_h
        for _ in range(self.config.cd_k):
            visible = self._sample(top.mean_v(self._sample(hidden_mean)))
            hidden_mean = top.mean_h(visible)
        # Down from the top chain's state, with the generative weights as they are now.
        sleep = [visible]
        for rbm in reversed(lower):
            sleep.insert(0, self._sample(rbm.mean_v(sleep[0])))
        reconstruction = float(((v - lower[0].mean_v(wake[1])) ** 2).mean())
        # Wake: generative delta rule; sleep: recognition delta rule; top: CD.
        for layer, rbm in enumerate(lower):
            error = wake[layer] - rbm.mean_v(wake[layer + 1])
            rbm.weight.add_(error.t() @ wake[layer + 1], alpha=lr / n)
            rbm.visible_bias.add_(error.mean(0), alpha=lr)
            recognition = dbn.recognition[layer]
            miss = sleep[layer + 1] - torch.sigmoid(recognition(sleep[layer]))
            recognition.weight.add_(sleep[layer].t() @ miss, alpha=lr / n)
            recognition.bias.add_(miss.mean(0), alpha=lr)
        top.weight.add_(wake[-1].t() @ positive_h - visible.t() @ hidden_mean, alpha=lr / n)
        top.visible_bias.add_((wake[-1] - visible).mean(0), alpha=lr)
        top.hidden_bias.add_((positive_h - hidden_mean).mean(0), alpha=lr)
        return reconstruction

    def train_epoch(self, data: torch.Tensor, *, binarize: bool = False) -> dict[str, float]:
        """One pass over ``data`` in a random order.

        ``binarize`` draws each minibatch's binary pixels afresh from the grey levels
        (dynamic binarisation, as the pretraining's bottom RBM did); otherwise ``data``
        is used as given.
        """
        self.dbn.check_visible(data, "data")
        start, total = time.perf_counter(), 0.0
        order = torch.randperm(data.shape[0], generator=self.generator, device=data.device)
        for index in order.split(self.config.batch_size):
            v = self._sample(data[index]) if binarize else data[index]
            total += self.update(v) * index.numel()
        for name, parameter in self.dbn.named_parameters():
            if not torch.isfinite(parameter).all():
                raise NonFiniteError(
                    f"parameter {name} became non-finite in up-down epoch {self.epoch + 1}; "
                    "lower --updown-lr (the last checkpoint is still good)"
                )
        self.epoch += 1
        error = total / data.shape[0]
        if not math.isfinite(error):
            raise NonFiniteError(f"the up-down reconstruction error became {error}")
        return {"updown_reconstruction_error": error, "epoch_seconds": time.perf_counter() - start}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.generator.set_state(state["generator"])
