r"""Centering for deep Boltzmann machines: one offset per layer, the centered gradient.

A centered DBM with layers :math:`x_0` (visible), ..., :math:`x_L` writes

.. math:: E_c(x) = -\sum_l b_l'^\top (x_l - \mu_l) - \sum_l (x_l - \mu_l)^\top W_l (x_{l+1} - \mu_{l+1}),

with offsets :math:`\mu_0` (the data mean of :math:`v`) and :math:`\mu_l` (the data mean of
the mean-field posterior of layer :math:`l`). Expanding the products gives the plain DBM
with the same weights and biases

.. math:: b_l = b_l' - W_l \mu_{l+1} - W_{l-1}^\top \mu_{l-1}

(terms with :math:`W_{-1}` or :math:`W_L` absent) plus a constant, so :math:`p(x)` is the
same and only :math:`\log Z` shifts. As for the RBM (:mod:`ebmlab.training.centering`),
training keeps the *plain* parameters, so the sampler, mean field, AIS, the ELBO and
checkpoints are untouched; :class:`DBMCentering` turns the plain gradients into the
centered step's. With :math:`g_{W_l}, g_{b_l}` the plain gradients (model minus data
statistics), the centered weight gradient is

.. math:: g_{W_l}^c = g_{W_l} - \mu_l\, g_{b_{l+1}}^\top - g_{b_l}\, \mu_{l+1}^\top,

the centered bias gradient is :math:`g_{b_l}` itself, and the step
:math:`\Delta W_l = -\eta g^c_{W_l}`, :math:`\Delta b_l' = -\eta g_{b_l}` moves the plain
parameters by :math:`-\eta` times

.. math:: G_{W_l} = g^c_{W_l}, \qquad
          G_{b_l} = g_{b_l} - g^c_{W_l} \mu_{l+1} - (g^c_{W_{l-1}})^\top \mu_{l-1}.

The two-layer case is the RBM's transform. Weight decay is folded into
:math:`g_{W_l}` before the transform, so it acts on the centered weights as in the paper.

References
----------
Melchior, J., Fischer, A. & Wiskott, L. (2016). How to center deep Boltzmann machines.
JMLR 17(99), Algorithm 1 (offsets from data means, moving averages) and section 4.
"""

from __future__ import annotations

import torch

from ebmlab.models.dbm import DBM
from ebmlab.training.centering import check_offset_rate


class DBMCentering:
    """Per-layer offsets as moving averages of data statistics, and the centered gradient.

    Parameters
    ----------
    model : DBM
        The plain model being trained.
    rate : float
        Moving-average rate :math:`\\nu` in (0, 1]: after each update
        :math:`\\mu_l \\leftarrow (1 - \\nu)\\mu_l + \\nu \\langle x_l \\rangle_{\\rm batch}`, with
        the visible data for :math:`l = 0` and the mean-field means above it.

    Notes
    -----
    The offsets start at the statistics of the data given to :meth:`initialise` and are
    saved by :meth:`state_dict`. The gradient transform is in the module docstring.
    """

    def __init__(self, model: DBM, *, rate: float = 0.01) -> None:
        if not isinstance(model, DBM):
            raise TypeError(f"model must be a DBM; got {type(model).__name__}")
        self.model = model
        self.rate = check_offset_rate(rate)
        self.offsets: list[torch.Tensor] | None = None

    @torch.no_grad()
    def initialise(self, layers: list[torch.Tensor]) -> None:
        """Set each offset to the mean of its layer: ``[v, *mean_field_means]``."""
        self._check_layers(layers)
        self.offsets = [x.mean(0).clone() for x in layers]

    @torch.no_grad()
    def update_offsets(self, layers: list[torch.Tensor]) -> None:
        """Move each offset towards its layer's minibatch mean."""
        self._check_layers(layers)
        for offset, x in zip(self.offsets, layers, strict=True):
            offset.lerp_(x.mean(0), self.rate)

    @torch.no_grad()
    def center_gradients(self, *, weight_decay: float = 0.0) -> None:
        """Rewrite the model's ``.grad`` (plain gradients) as the centered step's (see module)."""
        weights, biases, mu = self.model.weights, self.model.biases, self.offsets
        bias_grads = [b.grad for b in biases]
        centered = []
        for k, weight in enumerate(weights):
            grad = weight.grad if not weight_decay else weight.grad.add(weight, alpha=weight_decay)
            upper, lower = bias_grads[k + 1], bias_grads[k]
            centered.append(grad - torch.outer(mu[k], upper) - torch.outer(lower, mu[k + 1]))
        for layer, bias in enumerate(biases):
            grad = bias_grads[layer].clone()
            if layer < len(weights):
                grad -= centered[layer] @ mu[layer + 1]
            if layer > 0:
                grad -= centered[layer - 1].t() @ mu[layer - 1]
            bias.grad = grad
        for weight, grad in zip(weights, centered, strict=True):
            weight.grad = grad

    def _check_layers(self, layers: list[torch.Tensor]) -> None:
        sizes = [b.numel() for b in self.model.biases]
        got = [tuple(x.shape[1:]) for x in layers]
        if got != [(n,) for n in sizes]:
            raise ValueError(f"layers must be one (batch, n) tensor per layer {sizes}; got {got}")

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        return {} if self.offsets is None else {"offsets": [o.clone() for o in self.offsets]}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        if not state:
            self.offsets = None
            return
        reference = self.model.biases[0]
        offsets = [o.to(device=reference.device, dtype=reference.dtype) for o in state["offsets"]]
        sizes = [b.numel() for b in self.model.biases]
        if [tuple(o.shape) for o in offsets] != [(n,) for n in sizes]:
            raise ValueError(f"offsets must have the layer sizes {sizes}")
        self.offsets = [o.clone() for o in offsets]
