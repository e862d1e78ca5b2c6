r"""Maximum-likelihood training of general Boltzmann machines.

The log-likelihood gradient of a Boltzmann machine is the difference of two
expectations of the sufficient statistics :math:`z z^\top` and :math:`z`, with
:math:`z = (x, h)`:

.. math:: \frac{\partial \overline{\log p(x)}}{\partial J} =
          \langle z z^\top \rangle_{\rm data} - \langle z z^\top \rangle_{\rm model},

where the data term clamps :math:`x` to the data and averages :math:`h` over
:math:`p(h \mid x)`. :class:`BMTrainer` computes each term in one of two ways:

* data term: ``"exact"`` (enumerate :math:`p(h \mid x)` over ``2^n_hidden`` states)
  or ``"mean_field"`` (damped fixed-point iteration, :func:`mean_field_hidden`);
* model term: ``"exact"`` (enumerate all ``2^(n_visible + n_hidden)`` states) or
  ``"pcd"`` (persistent Gibbs chains, Tieleman 2008).

Both moments feed :meth:`BoltzmannMachine.expected_energy`; the difference
``E_data - E_model`` is a surrogate loss whose autograd gradient is exactly
minus the gradient above, and :class:`torch.optim.SGD` (momentum, weight decay
on the couplings only) takes the step. The symmetric zero-diagonal structure is
kept by the model's parametrization, whatever the optimizer does.

References
----------
Ackley, Hinton & Sejnowski (1985), Cognitive Science 9. Salakhutdinov & Hinton
(2009), Deep Boltzmann machines, AISTATS (mean-field data term + persistent chains).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ebmlab._validation import (
    check_choice,
    check_nonnegative_float,
    check_positive_float,
    check_positive_int,
    check_probability,
)
from ebmlab.estimators.exact_bm import (
    MAX_ENUMERATED_UNITS,
    BMMoments,
    bm_model_moments,
    bm_posterior_moments,
    moments_from_batch,
)
from ebmlab.models.bm import MAX_ENUMERATED_HIDDEN, BoltzmannMachine
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.bm_gibbs import BMGibbs, BMGibbsState
from ebmlab.training.optim import build_sgd

DATA_TERMS = ("exact", "mean_field")
MODEL_TERMS = ("exact", "pcd")


@dataclass
class MeanFieldResult:
    """Mean-field hidden means, iterations used, final residual and whether ``residual < tol``."""

    mean: torch.Tensor
    n_iter: int
    residual: float
    converged: bool


@torch.no_grad()
def mean_field_hidden(
    model: BoltzmannMachine,
    x: torch.Tensor,
    *,
    damping: float = 0.5,
    tol: float = 1e-6,
    max_iter: int = 200,
    init: torch.Tensor | None = None,
) -> MeanFieldResult:
    r"""Damped mean-field fixed point for the hidden units given visible rows ``x``.

    Notes
    -----
    The factorised :math:`q(h \mid x) = \prod_j \mu_j^{h_j} (1 - \mu_j)^{1 - h_j}`
    minimising :math:`\mathrm{KL}(q \,\|\, p(h \mid x))` satisfies

    .. math:: \mu = \sigma\big(b_h + W_{vh}^\top x + 2 W_h \mu\big)

    (the 2 because :math:`h^\top W_h h` counts each pair twice). All units are
    updated in parallel, damped: :math:`\mu \leftarrow d\,\mu + (1 - d)\,\sigma(\cdot)`,
    which keeps the parallel iteration from oscillating. Iteration stops when the
    residual :math:`\max |\sigma(\cdot) - \mu|` drops below ``tol`` or after
    ``max_iter`` updates; the returned ``mean`` is the iterate whose residual is
    reported. Starts from ``init`` or from :math:`\sigma(b_h + W_{vh}^\top x)`.
    """
    _check_mean_field(damping, tol, max_iter)
    drive = model.hidden_bias + x @ model.weight_vh
    lateral = 2 * model.weight_hh
    mean = torch.sigmoid(drive) if init is None else init.clone()
    residual = float("inf")
    for n_iter in range(max_iter + 1):
        target = torch.sigmoid(drive + mean @ lateral)
        residual = float((target - mean).abs().max()) if mean.numel() else 0.0
        if residual < tol or n_iter == max_iter:
            break
        mean = damping * mean + (1 - damping) * target
    return MeanFieldResult(mean=mean, n_iter=n_iter, residual=residual, converged=residual < tol)


def bm_loss(
    model: BoltzmannMachine, data_moments: BMMoments, model_moments: BMMoments
) -> torch.Tensor:
    """Surrogate loss ``E_data[E] - E_model[E]``: its gradient is minus the log-likelihood gradient."""
    positive = model.expected_energy(data_moments.mean, data_moments.second_moment)
    negative = model.expected_energy(model_moments.mean, model_moments.second_moment)
    return positive - negative


class BMTrainer:
    """Gradient steps on a :class:`~ebmlab.models.bm.BoltzmannMachine`'s log-likelihood.

    Parameters
    ----------
    model : BoltzmannMachine
        The model to train (in place).
    lr, momentum, weight_decay : float
        SGD hyperparameters; weight decay applies to the couplings, not the biases.
    data_term : {"exact", "mean_field"}
        How :math:`\\langle z z^\\top \\rangle_{\\rm data}` treats the hidden units.
    model_term : {"exact", "pcd"}
        How :math:`\\langle z z^\\top \\rangle_{\\rm model}` is computed.
    n_chains, gibbs_steps : int
        Persistent chains and Gibbs sweeps per update (``model_term="pcd"``).
    scan : {"systematic", "random"}
        Unit order of the Gibbs sweeps.
    mean_field_damping, mean_field_tolerance, mean_field_iterations
        Passed to :func:`mean_field_hidden` as ``damping``, ``tol`` and ``max_iter``
        (``data_term="mean_field"``).

    Notes
    -----
    With ``data_term="exact"`` and ``model_term="exact"`` every step follows the
    true log-likelihood gradient (tiny models only: about 22 units). The
    persistent chains live in :attr:`chains` and are part of :meth:`state_dict`.
    """

    def __init__(
        self,
        model: BoltzmannMachine,
        *,
        lr: float = 0.05,
        momentum: float = 0.5,
        weight_decay: float = 0.0,
        data_term: str = "exact",
        model_term: str = "exact",
        n_chains: int = 100,
        gibbs_steps: int = 1,
        scan: str = "systematic",
        mean_field_damping: float = 0.5,
        mean_field_tolerance: float = 1e-6,
        mean_field_iterations: int = 200,
    ) -> None:
        if not isinstance(model, BoltzmannMachine):
            raise TypeError(f"model must be a BoltzmannMachine; got {type(model).__name__}")
        self.model = model
        check_positive_float("lr", lr)
        check_probability("momentum", momentum)
        check_nonnegative_float("weight_decay", weight_decay)
        self.data_term = check_choice("data_term", data_term, DATA_TERMS)
        self.model_term = check_choice("model_term", model_term, MODEL_TERMS)
        _check_enumerable(model, data_term, model_term)
        self.n_chains = check_positive_int("n_chains", n_chains)
        self.gibbs_steps = check_positive_int("gibbs_steps", gibbs_steps)
        self.sampler = BMGibbs(model, scan=scan)
        self.mean_field = {
            "damping": mean_field_damping,
            "tol": mean_field_tolerance,
            "max_iter": mean_field_iterations,
        }
        _check_mean_field(mean_field_damping, mean_field_tolerance, mean_field_iterations)
        self.optimizer = build_sgd(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.chains: BMGibbsState | None = None

    # ----- the two terms ----------------------------------------------------------------
    def data_moments(self, batch: torch.Tensor) -> tuple[BMMoments, dict[str, Any]]:
        """Clamped statistics of ``batch`` and diagnostics (mean-field iterations and residual)."""
        x = self.model.check_visible(batch, "batch").to(self.model.visible_bias.dtype)
        if self.data_term == "exact" or self.model.n_hidden == 0:
            return bm_posterior_moments(self.model, x), {}
        result = mean_field_hidden(self.model, x, **self.mean_field)
        info = {"mean_field_iterations": result.n_iter, "mean_field_residual": result.residual}
        return moments_from_batch(x, result.mean), info

    def model_moments(self, *, generator: torch.Generator | None = None) -> BMMoments:
        """Free statistics: exact, or from the persistent chains after ``gibbs_steps`` sweeps."""
        if self.model_term == "exact":
            return bm_model_moments(self.model)
        if self.chains is None:
            bias = self.model.visible_bias
            start = torch.randint(
                2, (self.n_chains, self.model.n_visible), generator=generator, device=bias.device
            )
            self.chains = self.sampler.init(start.to(bias.dtype))
        self.chains, _, _ = run_chain(
            self.sampler, self.chains, self.gibbs_steps, generator=generator
        )
        return moments_from_batch(self.chains.visible, self.chains.hidden)

    # ----- one update -------------------------------------------------------------------
    def step(
        self, batch: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """One SGD update on ``batch``; returns diagnostics (gradient norm, mean-field stats).

        Raises
        ------
        FloatingPointError
            If the gradient is not finite; the parameters are left untouched.
        """
        data_moments, info = self.data_moments(batch)
        model_moments = self.model_moments(generator=generator)
        self.optimizer.zero_grad(set_to_none=True)
        bm_loss(self.model, data_moments, model_moments).backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        if not torch.isfinite(torch.tensor(grad_norm)):
            raise FloatingPointError(
                "the Boltzmann machine's gradient is not finite; lower lr or add weight_decay"
            )
        self.optimizer.step()
        return {"grad_norm": grad_norm, **info}

    def train_epoch(
        self, data: torch.Tensor, *, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """One pass over ``data`` in shuffled minibatches; returns the mean diagnostics."""
        check_positive_int("batch_size", batch_size)
        order = torch.randperm(data.shape[0], generator=generator, device=torch.device("cpu"))
        totals: dict[str, float] = {}
        batches = 0
        for start in range(0, data.shape[0], batch_size):
            info = self.step(
                data[order[start : start + batch_size].to(data.device)], generator=generator
            )
            for key, value in info.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            batches += 1
        return {key: value / batches for key, value in totals.items()}

    # ----- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        chains = (
            {}
            if self.chains is None
            else {"visible": self.chains.visible, "hidden": self.chains.hidden}
        )
        return {"optimizer": self.optimizer.state_dict(), "chains": chains}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        chains = state.get("chains") or {}
        self.chains = BMGibbsState(chains["visible"], chains["hidden"]) if chains else None


def _check_enumerable(model: BoltzmannMachine, data_term: str, model_term: str) -> None:
    if data_term == "exact" and model.n_hidden > MAX_ENUMERATED_HIDDEN:
        raise ValueError(
            f"data_term='exact' enumerates 2^n_hidden states; n_hidden must be <= "
            f"{MAX_ENUMERATED_HIDDEN}; got {model.n_hidden} (use data_term='mean_field')"
        )
    if model_term == "exact" and model.n_units > MAX_ENUMERATED_UNITS:
        raise ValueError(
            f"model_term='exact' enumerates 2^(n_visible + n_hidden) states; the total must be <= "
            f"{MAX_ENUMERATED_UNITS}; got {model.n_units} (use model_term='pcd')"
        )


def _check_mean_field(damping: float, tol: float, max_iter: int) -> None:
    check_probability("damping", damping)
    if damping == 1:
        raise ValueError("damping must be < 1 (with damping 1 the iterate never moves); got 1")
    check_positive_float("tol", tol)
    check_positive_int("max_iter", max_iter)
