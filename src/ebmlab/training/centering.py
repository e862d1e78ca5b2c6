r"""Centering for RBMs: offsets kept as moving averages, and the centered gradient.

A centered RBM writes the same family of distributions in shifted coordinates,

.. math:: E_c(v, h) = -b'^\top v - c'^\top h - (v - \mu)^\top W (h - \lambda),

with offsets :math:`\mu` (the data mean of :math:`v`) and :math:`\lambda` (the data mean
of :math:`p(h = 1 \mid v)`). Expanding the product shows that it is the plain RBM
:math:`(W,\ b = b' - W\lambda,\ c = c' - W^\top\mu)` plus the constant
:math:`-\mu^\top W \lambda`: every :math:`p(v)` is unchanged and
:math:`\log Z_c = \log Z + \mu^\top W \lambda` (:class:`CenteredRBM` converts both ways).

Training keeps the *plain* parameters, so every sampler, estimator, DBN layer and
checkpoint reader works unchanged; :class:`Centering` turns the plain CD gradient
into the centered one. With :math:`g_W, g_b, g_c` the gradients of the CD loss
(model statistics minus data statistics, e.g. :math:`g_b = \langle v\rangle_m - \langle v\rangle_d`),

.. math:: g_{W}^{c} = \langle (v-\mu)(h-\lambda)^\top \rangle_m - \langle (v-\mu)(h-\lambda)^\top \rangle_d
          = g_W - \mu\, g_c^\top - g_b\, \lambda^\top,

and a centered step :math:`\Delta W = -\eta g_W^c,\ \Delta b' = -\eta g_b,\ \Delta c' = -\eta g_c`
moves the plain parameters by :math:`-\eta` times

.. math:: G_W = g_W^c, \qquad G_b = g_b - g_W^c \lambda, \qquad G_c = g_c - (g_W^c)^\top \mu.

When the offsets move, the plain parameters stay put: that *is* the reparametrisation
of the centered biases that Melchior et al.'s algorithm performs. Weight decay is folded
into :math:`g_W` before the transform, so it acts on the centered update as in the paper.
With momentum the velocity accumulates transformed gradients; the offsets move slowly,
so this differs from momentum in centered coordinates only by their drift.

Gaussian-Bernoulli RBMs (fixed :math:`\sigma`, data standardised so :math:`\mu = 0`) are
centered on the hidden side only: their interaction is :math:`(v/\sigma)^\top W (h - \lambda)`,
so :math:`g_W^c = g_W - (\sigma \odot g_b) \lambda^\top`, :math:`G_b = g_b - \sigma \odot (g_W^c \lambda)`
and :math:`b = b' - \sigma \odot (W \lambda)`.

References
----------
Melchior, J., Fischer, A. & Wiskott, L. (2016). How to center deep Boltzmann machines.
JMLR 17(99), Algorithm 1 and section 3. Montavon, G. & Müller, K.-R. (2012). Deep
Boltzmann machines and the centering trick. Neural Networks: Tricks of the Trade.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ebmlab._validation import check_probability
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.models.rbm import BernoulliRBM

RBM = BernoulliRBM | GaussianBernoulliRBM


def check_offset_rate(rate: object) -> float:
    """Return ``rate`` if it lies in (0, 1] (a moving-average rate); else a ValueError naming it."""
    try:
        value = check_probability("offset_rate", rate)
    except ValueError:
        value = 0.0
    if value == 0:
        raise ValueError(f"offset_rate must lie in (0, 1]; got {rate!r}")
    return value


def _visible_scale(model: nn.Module) -> torch.Tensor | None:
    """``None`` for binary visible units; :math:`\\sigma` for Gaussian ones (hidden-side only)."""
    if isinstance(model, GaussianBernoulliRBM):
        if model.learn_sigma:
            raise ValueError(
                "centering a GaussianBernoulliRBM needs a fixed sigma (learn_sigma=False): "
                "with a learnt sigma the visible bias reparametrisation moves with it"
            )
        return model.sigma
    if isinstance(model, BernoulliRBM):
        return None
    raise ValueError(
        f"centering needs a BernoulliRBM or GaussianBernoulliRBM; got {type(model).__name__}"
    )


def _check_offset(name: str, offset: torch.Tensor, size: int, reference: torch.Tensor) -> None:
    if offset.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},); got {tuple(offset.shape)}")
    if not torch.isfinite(offset).all():
        raise ValueError(f"{name} must be finite")
    if offset.dtype != reference.dtype:
        raise ValueError(f"{name} must have dtype {reference.dtype}; got {offset.dtype}")


@dataclass
class CenteredRBM:
    r"""An RBM in centered coordinates: the same distribution as a plain one, other parameters.

    Attributes
    ----------
    weight, visible_bias, hidden_bias
        :math:`W, b', c'` of :math:`E_c(v,h) = -b'^\top v - c'^\top h - (v-\mu)^\top W (h-\lambda)`
        (Gaussian visible units: :math:`\sum_i (v_i - b'_i)^2 / 2\sigma_i^2 - c'^\top h
        - (v/\sigma)^\top W (h - \lambda)`).
    visible_offset, hidden_offset
        :math:`\mu` and :math:`\lambda` (:math:`\mu = 0` for Gaussian visible units).
    sigma
        The Gaussian units' fixed standard deviations, or None for binary visible units.
    """

    weight: torch.Tensor
    visible_bias: torch.Tensor
    hidden_bias: torch.Tensor
    visible_offset: torch.Tensor
    hidden_offset: torch.Tensor
    sigma: torch.Tensor | None = None

    @classmethod
    @torch.no_grad()
    def from_plain(
        cls, model: RBM, *, hidden_offset: torch.Tensor, visible_offset: torch.Tensor | None = None
    ) -> CenteredRBM:
        """The centered coordinates of ``model`` at the given offsets (its distribution unchanged)."""
        sigma = _visible_scale(model)
        weight = model.weight.detach().clone()
        mu = torch.zeros_like(model.visible_bias) if visible_offset is None else visible_offset
        _check_offset("hidden_offset", hidden_offset, model.n_hidden, weight)
        _check_offset("visible_offset", mu, model.n_visible, weight)
        if sigma is not None and bool(mu.ne(0).any()):
            raise ValueError("a GaussianBernoulliRBM is centered on the hidden side only")
        shift = weight @ hidden_offset if sigma is None else sigma * (weight @ hidden_offset)
        return cls(
            weight=weight,
            visible_bias=model.visible_bias.detach() + shift,
            hidden_bias=model.hidden_bias.detach() + weight.t() @ mu,
            visible_offset=mu.clone(),
            hidden_offset=hidden_offset.clone(),
            sigma=None if sigma is None else sigma.clone(),
        )

    @torch.no_grad()
    def to_plain(self) -> RBM:
        """The plain RBM with the same :math:`p(v)` (:math:`b = b' - W\\lambda`, :math:`c = c' - W^\\top\\mu`)."""
        n_visible, n_hidden = self.weight.shape
        place = {"dtype": self.weight.dtype, "device": self.weight.device}
        if self.sigma is None:
            model: RBM = BernoulliRBM(n_visible, n_hidden, weight_std=0.0, **place)
            shift = self.weight @ self.hidden_offset
        else:
            model = GaussianBernoulliRBM(n_visible, n_hidden, weight_std=0.0, **place)
            model.log_sigma.copy_(self.sigma.log())
            shift = self.sigma * (self.weight @ self.hidden_offset)
        model.weight.copy_(self.weight)
        model.visible_bias.copy_(self.visible_bias - shift)
        model.hidden_bias.copy_(self.hidden_bias - self.weight.t() @ self.visible_offset)
        return model

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Centered joint energy :math:`E_c(v, h)`, shape (batch,)."""
        centered_h = h - self.hidden_offset
        if self.sigma is None:
            interaction = (((v - self.visible_offset) @ self.weight) * centered_h).sum(-1)
            return -interaction - v @ self.visible_bias - h @ self.hidden_bias
        interaction = (((v / self.sigma) @ self.weight) * centered_h).sum(-1)
        quadratic = ((v - self.visible_bias) ** 2 / (2 * self.sigma**2)).sum(-1)
        return quadratic - interaction - h @ self.hidden_bias

    @torch.no_grad()
    def log_z_shift(self) -> float:
        r""":math:`\log Z_c - \log Z` of the plain model from :meth:`to_plain`.

        Binary units: :math:`\mu^\top W \lambda`. Gaussian units, with
        :math:`u = \sigma \odot W\lambda`: :math:`-\sum_i (2 b'_i u_i - u_i^2) / 2\sigma_i^2`.
        """
        if self.sigma is None:
            return float(self.visible_offset @ self.weight @ self.hidden_offset)
        u = self.sigma * (self.weight @ self.hidden_offset)
        return float(-((2 * self.visible_bias * u - u**2) / (2 * self.sigma**2)).sum())


class Centering:
    """Offsets as moving averages of the data statistics, and the centered CD gradient.

    Parameters
    ----------
    model : BernoulliRBM or GaussianBernoulliRBM
        The plain model being trained (Gaussian visible units: fixed sigma, hidden side only).
    rate : float
        Moving-average rate :math:`\\nu` in (0, 1]: after each update
        :math:`\\mu \\leftarrow (1-\\nu)\\mu + \\nu \\langle v \\rangle_{\\rm batch}` and the same for
        :math:`\\lambda` with :math:`\\langle p(h=1|v) \\rangle_{\\rm batch}`. Melchior et al. found
        small rates (0.01-0.1) stabilise learning.

    Notes
    -----
    The offsets start at the statistics of the data given to :meth:`initialise` (the
    first minibatch if never called) and are saved by :meth:`state_dict`. See the module
    docstring for the gradient transform.
    """

    def __init__(self, model: RBM, *, rate: float = 0.01) -> None:
        self.scale = _visible_scale(model)
        self.model = model
        self.rate = check_offset_rate(rate)
        self.visible_offset: torch.Tensor | None = None
        self.hidden_offset: torch.Tensor | None = None

    @torch.no_grad()
    def initialise(self, v: torch.Tensor, h_mean: torch.Tensor) -> None:
        """Set the offsets to the means of ``v`` and of ``h_mean`` = p(h = 1 | v) (binary units)."""
        self.visible_offset = torch.zeros_like(v[0]) if self.scale is not None else v.mean(0)
        self.hidden_offset = h_mean.mean(0)

    @torch.no_grad()
    def update_offsets(self, v_mean: torch.Tensor, h_mean: torch.Tensor) -> None:
        """Move the offsets towards a minibatch's means ``v_mean`` and ``h_mean``."""
        if self.scale is None:
            self.visible_offset.lerp_(v_mean, self.rate)
        self.hidden_offset.lerp_(h_mean, self.rate)

    @torch.no_grad()
    def center_gradients(self, *, weight_decay: float = 0.0) -> None:
        """Rewrite the model's ``.grad`` (plain CD gradients) as the centered update's (see module)."""
        model, mu, lam = self.model, self.visible_offset, self.hidden_offset
        grad_w, grad_b, grad_c = (
            model.weight.grad,
            model.visible_bias.grad,
            model.hidden_bias.grad,
        )
        if weight_decay:
            grad_w = grad_w.add(model.weight, alpha=weight_decay)
        visible_difference = grad_b if self.scale is None else self.scale * grad_b
        centered_w = grad_w - torch.outer(mu, grad_c) - torch.outer(visible_difference, lam)
        shift_b = centered_w @ lam if self.scale is None else self.scale * (centered_w @ lam)
        model.weight.grad = centered_w
        model.visible_bias.grad = grad_b - shift_b
        model.hidden_bias.grad = grad_c - centered_w.t() @ mu

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.hidden_offset is None:
            return {}
        return {"visible_offset": self.visible_offset, "hidden_offset": self.hidden_offset}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        reference = self.model.weight
        if not state:
            self.visible_offset = self.hidden_offset = None
            return
        sizes = {"visible_offset": self.model.n_visible, "hidden_offset": self.model.n_hidden}
        for name, size in sizes.items():
            offset = state[name].to(device=reference.device, dtype=reference.dtype)
            _check_offset(name, offset, size, reference)
            setattr(self, name, offset.clone())
