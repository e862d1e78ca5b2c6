r"""The CD/PCD update of a Bernoulli RBM applied in place: no autograd, no ``.grad``, no wrapper.

:class:`~ebmlab.training.CDTrainer` takes this path for a plain
:class:`~ebmlab.models.BernoulliRBM` on one process. It performs exactly the update of
the autograd path (:func:`~ebmlab.training.cd.cd_loss`, then
:meth:`~ebmlab.training.centering.Centering.center_gradients`, then
:class:`torch.optim.SGD`), with the statistics computed once and written straight into
the parameters and momentum buffers. ``tests/training/test_cd_fused.py`` proves it equal
in float64. A model set to ``precision="bfloat16"`` takes the weight statistic as one
bfloat16 product of the stacked batches (:mod:`ebmlab.models.matmul_precision`).

Notes
-----
With offsets :math:`\mu, \lambda` (zero without centering) and the centered batches
:math:`a = v - \mu`, :math:`c = \bar h - \lambda`, the weight step is one GEMM pair,

.. math:: G_W = \tfrac{1}{M} a_m^\top c_m - \tfrac{1}{N} a_d^\top c_d + \omega W,

which equals the plain CD gradient :math:`g_W` plus weight decay :math:`\omega`, less the
centering terms :math:`\mu g_c^\top + g_b \lambda^\top` (expand the products). The
biases move by :math:`G_b = g_b - G_W \lambda` and :math:`G_c = g_c - G_W^\top \mu`, with
:math:`g_b = \bar v_m - \bar v_d`, :math:`g_c = \bar h_m - \bar h_d` (the module docstring of
:mod:`ebmlab.training.centering` derives them). Each parameter :math:`p` then takes SGD's
step with its group's learning rate :math:`\eta`, momentum :math:`m` and dampening
:math:`d`: :math:`p \leftarrow p - \eta G` without momentum, else
:math:`u \leftarrow m u + (1 - d) G` (:math:`u = G` on the first step) and
:math:`p \leftarrow p - \eta u`.

The returned loss is the CD surrogate's value at the parameters before the step,
:math:`\langle W, g_W \rangle + b_h^\top g_c + b_v^\top g_b`; since
:math:`g_W = G_W^{(\omega=0)} + \mu g_c^\top + g_b \lambda^\top`, it equals
:math:`\langle W, G_W^{(\omega=0)} \rangle + g_c^\top (b_h + W^\top\mu) + g_b^\top (b_v + W\lambda)`.
"""

from __future__ import annotations

import torch
from torch import nn

from ebmlab._grad import without_grad
from ebmlab.models.matmul_precision import bfloat16_statistic
from ebmlab.models.rbm import BernoulliRBM


@without_grad
def fused_cd_update(
    model: BernoulliRBM,
    optimizer: torch.optim.SGD,
    v_data: torch.Tensor,
    h_data: torch.Tensor,
    v_model: torch.Tensor,
    h_model: torch.Tensor,
    *,
    weight_decay: float = 0.0,
    visible_offset: torch.Tensor | None = None,
    hidden_offset: torch.Tensor | None = None,
    compute_loss: bool = True,
) -> torch.Tensor | None:
    """Apply one CD/PCD step to ``model`` in place; return the surrogate loss (a 0-d tensor).

    Parameters
    ----------
    model : BernoulliRBM
        Trained in place (its parameters, not their ``.grad``).
    optimizer : torch.optim.SGD
        Holds the learning rates (scheduled), momentum, dampening and momentum buffers;
        its own ``weight_decay`` is ignored in favour of ``weight_decay``.
    v_data, h_data, v_model, h_model
        The minibatch and the negatives, with their hidden means p(h = 1 | v).
    weight_decay : float
        L2 penalty on the weights, folded into the weight gradient before centering.
    visible_offset, hidden_offset : Tensor, optional
        The centering offsets :math:`\\mu, \\lambda` (both or neither).
    compute_loss : bool
        False returns None; then a plain SGD step (no momentum, no centering, float
        operands) adds the statistics straight into the parameters (:func:`plain_sgd_step`).
    """
    centered = hidden_offset is not None
    if not (compute_loss or centered or model.reduced_precision(v_data)) and not any(
        group["momentum"] for group in optimizer.param_groups
    ):
        plain_sgd_step(model, optimizer, v_data, h_data, v_model, h_model, weight_decay)
        optimizer._opt_called = True
        return None
    a_data, a_model, c_data, c_model = v_data, v_model, h_data, h_model
    if centered:
        a_data, a_model = v_data - visible_offset, v_model - visible_offset
        c_data, c_model = h_data - hidden_offset, h_model - hidden_offset
    n_data, n_model = v_data.shape[0], v_model.shape[0]
    weight, visible_bias, hidden_bias = model.weight, model.visible_bias, model.hidden_bias
    # G_W without decay: (1/M) a_m^T c_m - (1/N) a_d^T c_d, one output, two products.
    if model.reduced_precision(v_data):
        # One product of the stacked batches: the difference is rounded once, as itself.
        scaled = torch.cat([c_model * (1.0 / n_model), c_data * (-1.0 / n_data)])
        grad_weight = bfloat16_statistic(torch.cat([a_model, a_data]), scaled)
    else:
        grad_weight = torch.mm(a_model.t(), c_model)
        grad_weight.addmm_(a_data.t(), c_data, beta=1.0 / n_model, alpha=-1.0 / n_data)
    # Column sums scaled afterwards: cheaper than two means and a subtraction.
    grad_hidden = h_model.sum(0).mul_(1.0 / n_model).sub_(h_data.sum(0), alpha=1.0 / n_data)
    grad_visible = v_model.sum(0).mul_(1.0 / n_model).sub_(v_data.sum(0), alpha=1.0 / n_data)
    loss = None
    if compute_loss:  # at the parameters before the step
        loss = _surrogate_loss(model, grad_weight, grad_hidden, grad_visible,
                               visible_offset, hidden_offset)  # fmt: skip
    if weight_decay:
        grad_weight.add_(weight, alpha=weight_decay)
    if centered:
        grad_visible.sub_(grad_weight @ hidden_offset)
        grad_hidden.sub_(grad_weight.t() @ visible_offset)
    for parameter, grad in (
        (weight, grad_weight),
        (hidden_bias, grad_hidden),
        (visible_bias, grad_visible),
    ):
        sgd_apply(optimizer, parameter, grad)
    optimizer._opt_called = True  # what optimizer.step() tells LR schedulers: a step was taken
    return loss


def _surrogate_loss(
    model: BernoulliRBM,
    grad_weight: torch.Tensor,
    grad_hidden: torch.Tensor,
    grad_visible: torch.Tensor,
    visible_offset: torch.Tensor | None,
    hidden_offset: torch.Tensor | None,
) -> torch.Tensor:
    """The CD surrogate's value from the (decay-free) gradients, centered or not (Notes)."""
    hidden_term, visible_term = model.hidden_bias, model.visible_bias
    if hidden_offset is not None:  # the centered biases b_h + W^T mu and b_v + W lambda
        hidden_term = torch.addmv(model.hidden_bias, model.weight.t(), visible_offset)
        visible_term = torch.addmv(model.visible_bias, model.weight, hidden_offset)
    return (
        torch.dot(model.weight.view(-1), grad_weight.view(-1))
        + torch.dot(hidden_term, grad_hidden)
        + torch.dot(visible_term, grad_visible)
    )


def plain_sgd_step(
    model: BernoulliRBM,
    optimizer: torch.optim.SGD,
    v_data: torch.Tensor,
    h_data: torch.Tensor,
    v_model: torch.Tensor,
    h_model: torch.Tensor,
    weight_decay: float,
) -> None:
    r"""SGD without momentum, the statistics added straight into the parameters.

    :math:`W \leftarrow (1 - \eta\omega) W + \tfrac{\eta}{N} v_d^\top \bar h_d
    - \tfrac{\eta}{M} v_m^\top \bar h_m` is two in-place GEMMs, and each bias moves by
    its two column sums as two in-place products with a ones vector (scikit-learn's
    update): no gradient tensor, about half the operations of the general path, which
    matters when each costs microseconds.
    """
    n_data, n_model = v_data.shape[0], v_model.shape[0]
    weight, hidden_bias, visible_bias = model.weight, model.hidden_bias, model.visible_bias
    lr = _group_of(optimizer, weight)["lr"]
    weight.addmm_(v_data.t(), h_data, beta=1.0 - lr * weight_decay, alpha=lr / n_data)
    weight.addmm_(v_model.t(), h_model, alpha=-lr / n_model)
    # Column sums as products with a ones vector, accumulated in place: one operation
    # per term instead of a sum and an addition.
    ones_data = v_data.new_ones(n_data)
    ones_model = ones_data if n_model == n_data else v_data.new_ones(n_model)
    for bias, data_side, model_side in (
        (hidden_bias, h_data, h_model),
        (visible_bias, v_data, v_model),
    ):
        lr = _group_of(optimizer, bias)["lr"]
        bias.addmv_(data_side.t(), ones_data, alpha=lr / n_data)
        bias.addmv_(model_side.t(), ones_model, alpha=-lr / n_model)


def sgd_apply(optimizer: torch.optim.SGD, parameter: nn.Parameter, grad: torch.Tensor) -> None:
    """SGD's step for one parameter with ``grad`` (decay already in it), in torch's own state.

    The momentum buffer lives in ``optimizer.state`` under torch's key, so checkpoints and a
    later ``optimizer.step()`` continue seamlessly. ``grad`` may be overwritten. Call it
    under :func:`torch.no_grad` (as :func:`fused_cd_update` does).
    """
    group = _group_of(optimizer, parameter)
    momentum = group["momentum"]
    if momentum:
        state = optimizer.state[parameter]
        buffer = state.get("momentum_buffer")
        if buffer is None:
            state["momentum_buffer"] = buffer = grad
        else:
            buffer.mul_(momentum).add_(grad, alpha=1.0 - group["dampening"])
        grad = buffer
    parameter.add_(grad, alpha=-group["lr"])


def _group_of(optimizer: torch.optim.SGD, parameter: nn.Parameter) -> dict:
    for group in optimizer.param_groups:
        for member in group["params"]:
            if member is parameter:
                return group
    raise ValueError("the optimizer does not hold this parameter")
