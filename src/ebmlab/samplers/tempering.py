"""Parallel tempering (replica exchange) for a Bernoulli RBM.

K copies of the chain run at inverse temperatures 1 = beta_1 > ... > beta_K > 0;
hot copies cross energy barriers and hand their states down the ladder through
Metropolis swaps, so the beta = 1 copy mixes between modes that block Gibbs
alone rarely leaves. PCD training uses the beta = 1 copy as its negative phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

import torch

from ebmlab._validation import (
    check_choice,
    check_matrix,
    check_nonempty,
    check_nonnegative_float,
    check_open_interval,
    check_positive_int,
)
from ebmlab.models.rbm import sample_bernoulli

#: The adaptive ladder never goes hotter than this: at beta = 1e-6 every RBM with
#: energies below 1e5 is already uniform, and a ladder whose gaps grew without bound
#: (constant energies accept every swap) would underflow to beta = 0.
MIN_ADAPTIVE_BETA = 1e-6
_FIELDS = ("visible", "hidden", "energy", "betas", "walker", "direction", "step")
_MOVED = ("visible", "hidden", "energy", "walker", "direction")  # travel with a swap
_COUNTERS = ("swap_attempts", "swap_accepts", "round_trips")


def temperature_ladder(
    n_replicas: int, *, min_beta: float, kind: str = "geometric"
) -> torch.Tensor:
    """Inverse temperatures from 1 down to ``min_beta``, float64, shape (n_replicas,).

    ``kind="geometric"`` spaces ``log(beta)`` evenly (equal acceptance when the
    heat capacity is constant), ``"linear"`` spaces ``beta`` evenly. One replica
    gives ``[1.0]``.
    """
    check_positive_int("n_replicas", n_replicas)
    if isinstance(min_beta, bool) or not isinstance(min_beta, Real) or not 0 < min_beta <= 1:
        raise ValueError(f"min_beta must lie in (0, 1]; got {min_beta!r}")
    check_choice("kind", kind, ("geometric", "linear"))
    if n_replicas == 1:
        return torch.ones(1, dtype=torch.float64)
    if kind == "linear":
        betas = torch.linspace(1.0, min_beta, n_replicas, dtype=torch.float64)
    else:
        betas = torch.logspace(0.0, math.log10(min_beta), n_replicas, dtype=torch.float64)
    betas[0] = 1.0  # exactly, whatever logspace rounds to
    if not bool((betas[1:] < betas[:-1]).all()):
        raise ValueError(
            f"min_beta={min_beta!r} is too close to 1 for {n_replicas} distinct replicas"
        )
    return betas


def check_betas(betas: object) -> torch.Tensor:
    """Return ``betas`` as float64 if it is a valid ladder, else raise naming ``betas``.

    A valid ladder is a non-empty 1-D floating tensor (or sequence) of finite
    values, starting at exactly 1, strictly decreasing, all > 0.
    """
    ladder = betas if isinstance(betas, torch.Tensor) else torch.tensor(betas, dtype=torch.float64)
    if ladder.ndim != 1 or ladder.numel() == 0 or not ladder.is_floating_point():
        raise ValueError(
            f"betas must be a non-empty 1-D floating tensor; got shape {tuple(ladder.shape)} "
            f"and dtype {ladder.dtype}"
        )
    ladder = ladder.to(torch.float64)
    problem = None
    if not bool(torch.isfinite(ladder).all()):
        problem = "finite values"
    elif ladder[0].item() != 1.0:
        problem = "a first value of exactly 1"
    elif not bool((ladder[1:] < ladder[:-1]).all()):
        problem = "strictly decreasing values"
    elif ladder[-1].item() <= 0:
        problem = "values > 0"
    if problem is not None:
        raise ValueError(f"betas must hold {problem}; got {ladder.tolist()}")
    return ladder


def swap_log_acceptance(
    betas: torch.Tensor, energies: torch.Tensor, pairs: torch.Tensor
) -> torch.Tensor:
    r"""Log Metropolis probability of exchanging the states of replica pairs.

    ``betas`` (K,), ``energies`` (K, n_chains) joint energies, ``pairs`` (P, 2)
    replica indices (i, j). Returns (P, n_chains) values
    :math:`\min(0, (\beta_i - \beta_j)(E_i - E_j))`.
    """
    i, j = pairs[:, 0], pairs[:, 1]
    log_ratio = (betas[i] - betas[j])[:, None] * (energies[i] - energies[j])
    return log_ratio.clamp(max=0.0)


@dataclass
class TemperingState:
    """All replicas of a set of parallel-tempering chains.

    Attributes
    ----------
    visible, hidden : Tensor
        Shape (K, n_chains, n_visible) and (K, n_chains, n_hidden); row k sits at
        ``betas[k]``. ``hidden`` is zero until the first step (steps never read it).
    energy : Tensor
        Joint energies :math:`E(v, h)` (not multiplied by beta), shape (K, n_chains).
    betas : Tensor
        The ladder, float64, shape (K,).
    walker : Tensor
        Label (long) of the walker at each temperature; walkers start at their index.
    direction : Tensor
        int8 per slot: +1 the walker last visited beta_1 (going hot), -1 it then
        reached beta_K (going cold), 0 it has not visited beta_1 yet.
    step : int
        Number of completed steps; its parity picks the swap pairs.
    swap_attempts, swap_accepts : Tensor
        Long counts per neighbour pair (K - 1,), over chains and steps.
    round_trips : Tensor
        0-d long: walkers that went beta_1 -> beta_K -> beta_1, all chains together.
    """

    visible: torch.Tensor
    hidden: torch.Tensor
    energy: torch.Tensor
    betas: torch.Tensor
    walker: torch.Tensor
    direction: torch.Tensor
    step: int
    swap_attempts: torch.Tensor
    swap_accepts: torch.Tensor
    round_trips: torch.Tensor

    @property
    def swap_acceptance(self) -> torch.Tensor:
        """Accepted / attempted swaps per neighbour pair (float64; nan where none tried)."""
        attempts = self.swap_attempts.to(torch.float64)
        rate = self.swap_accepts.to(torch.float64) / attempts.clamp(min=1)
        return torch.where(attempts > 0, rate, torch.nan)

    @property
    def cold(self) -> torch.Tensor:
        """The visible states at beta = 1, shape (n_chains, n_visible)."""
        return self.visible[0]


class ParallelTempering:
    r"""Replica-exchange block Gibbs sampling of a Bernoulli RBM.

    Parameters
    ----------
    model : BernoulliRBM
        Binary visible layer with ``weight``, ``visible_bias``, ``hidden_bias``.
    betas : Tensor, optional
        A ladder (see :func:`check_betas`); overrides ``n_replicas``, ``min_beta``, ``ladder``.
    n_replicas, min_beta, ladder
        Passed to :func:`temperature_ladder` when ``betas`` is None.
    adapt : bool
        Adapt the ladder after every swap round (training only, see Notes).
    target_acceptance : float
        Swap acceptance the adaptation aims at, in (0, 1).
    adaptation_rate : float
        Step size of the adaptation, >= 0.

    Notes
    -----
    Replica k targets :math:`p_\beta(v, h) \propto e^{-\beta E(v, h)}`, whose conditionals are
    :math:`p(h = 1 \mid v) = \sigma(\beta (b_h + W^\top v))` and
    :math:`p(v = 1 \mid h) = \sigma(\beta (b_v + W h))`. A step is one block Gibbs sweep (h, then
    v) of every replica, one GEMM per half-sweep for all of them, followed by a swap round:
    even steps try pairs (1, 2), (3, 4), ..., odd steps (2, 3), (4, 5), ... (1-based), and a
    pair exchanges its joint states (v, h) with probability
    :math:`\min(1, e^{(\beta_i - \beta_j)(E_i - E_j)})`, which keeps the product of the
    tempered joints invariant.

    With ``adapt=True`` each tried pair's log-gap :math:`g_i = \log\beta_i - \log\beta_{i+1}`
    is multiplied by :math:`\exp(\eta (a_i - a^*))`, with :math:`a_i` the pair's mean swap
    probability in this round, :math:`a^*` the target and :math:`\eta` the rate: a
    Robbins-Monro-style rule that narrows gaps accepting too rarely and widens the others.
    Gaps stay >= 1e-6 and beta_K >= ``MIN_ADAPTIVE_BETA``; beta_1 stays 1. A moving ladder
    makes the chain non-stationary: adapt during training, then sample with a fixed ladder.

    References
    ----------
    Swendsen, R. H. & Wang, J.-S. (1986). Replica Monte Carlo simulation of spin glasses.
    Physical Review Letters 57, 2607. Desjardins, G., Courville, A., Bengio, Y., Vincent, P.
    & Delalleau, O. (2010). Tempered Markov chain Monte Carlo for training of restricted
    Boltzmann machines. AISTATS. Cho, K., Raiko, T. & Ilin, A. (2010). Parallel tempering is
    efficient for learning restricted Boltzmann machines. IJCNN.
    """

    def __init__(
        self,
        model: Any,
        *,
        betas: torch.Tensor | None = None,
        n_replicas: int = 10,
        min_beta: float = 0.1,
        ladder: str = "geometric",
        adapt: bool = False,
        target_acceptance: float = 0.3,
        adaptation_rate: float = 0.05,
    ) -> None:
        if not getattr(model, "binary_visible", False) or not all(
            hasattr(model, name) for name in ("weight", "visible_bias", "hidden_bias")
        ):
            raise ValueError(
                "model must have a Bernoulli visible layer with weight, visible_bias and "
                f"hidden_bias (a BernoulliRBM); got {type(model).__name__}"
            )
        self.model = model
        if betas is None:
            check_choice("ladder", ladder, ("geometric", "linear"))
            betas = temperature_ladder(n_replicas, min_beta=min_beta, kind=ladder)
        self.betas = check_betas(betas).to(model.weight.device)
        self.adapt = bool(adapt)
        self.target_acceptance = check_open_interval("target_acceptance", target_acceptance, 0, 1)
        self.adaptation_rate = check_nonnegative_float("adaptation_rate", adaptation_rate)

    def init(self, x0: torch.Tensor) -> TemperingState:
        """Start every replica of chain set c at ``x0[c]``; ``x0`` is (n_chains, n_visible)."""
        check = getattr(self.model, "check_visible", None)
        x0 = check_nonempty("x0", check(x0, "x0") if check else check_matrix("x0", x0))
        n_replicas, n_chains = self.betas.numel(), x0.shape[0]
        visible = x0.detach().expand(n_replicas, -1, -1).clone()
        hidden = visible.new_zeros(n_replicas, n_chains, self.model.hidden_bias.numel())
        direction = torch.zeros(n_replicas, n_chains, dtype=torch.int8, device=x0.device)
        direction[0] = 1
        counts = torch.zeros(max(n_replicas - 1, 0), dtype=torch.long, device=x0.device)
        return TemperingState(
            visible=visible,
            hidden=hidden,
            energy=-(visible @ self.model.visible_bias.detach()),  # E(v, h = 0)
            betas=self.betas.clone(),
            walker=torch.arange(n_replicas, device=x0.device)[:, None].repeat(1, n_chains),
            direction=direction,
            step=0,
            swap_attempts=counts,
            swap_accepts=counts.clone(),
            round_trips=torch.zeros((), dtype=torch.long, device=x0.device),
        )

    @torch.no_grad()
    def step(
        self, state: TemperingState, *, generator: torch.Generator | None = None
    ) -> tuple[TemperingState, dict[str, Any]]:
        """One Gibbs sweep of every replica, one swap round, and (if ``adapt``) a ladder update.

        ``info`` holds ``swap_acceptance`` (fraction of chains accepting) and
        ``swap_probability`` (mean Metropolis probability) per neighbour pair,
        nan for pairs not tried this step.
        """
        visible, hidden, energy = self._sweep(state.visible, state.betas, generator)
        state = replace(state, visible=visible, hidden=hidden, energy=energy)
        return self.swap(state, generator=generator)

    def _sweep(self, visible, betas, generator):
        model = self.model
        weight = model.weight.detach()
        n_replicas, n_chains, n_visible = visible.shape
        beta = betas.to(weight.dtype)[:, None, None]
        flat = visible.reshape(n_replicas * n_chains, n_visible)
        hidden_input = torch.addmm(model.hidden_bias.detach(), flat, weight)
        hidden_input = hidden_input.view(n_replicas, n_chains, -1)
        hidden = sample_bernoulli(torch.sigmoid(beta * hidden_input), generator=generator)
        flat_hidden = hidden.view(n_replicas * n_chains, -1)
        visible_input = torch.addmm(model.visible_bias.detach(), flat_hidden, weight.t())
        visible_input = visible_input.view(n_replicas, n_chains, n_visible)
        visible = sample_bernoulli(torch.sigmoid(beta * visible_input), generator=generator)
        # E(v, h) = -v . (b_v + W h) - b_h . h reuses the visible input: no third GEMM.
        energy = -(visible * visible_input).sum(-1) - hidden @ model.hidden_bias.detach()
        return visible, hidden, energy

    @torch.no_grad()
    def swap(
        self, state: TemperingState, *, generator: torch.Generator | None = None
    ) -> tuple[TemperingState, dict[str, Any]]:
        """The swap round of step ``state.step`` alone (no sweep); returns step + 1."""
        n_replicas, n_chains = state.energy.shape
        device = state.energy.device
        lower = torch.arange(state.step % 2, n_replicas - 1, 2, device=device)
        # The swap uses the betas the sweep used (cast to the model's dtype and back).
        betas = state.betas.to(self.model.weight.dtype).to(torch.float64)
        pairs = torch.stack([lower, lower + 1], 1)
        log_accept = swap_log_acceptance(betas, state.energy.to(torch.float64), pairs)
        uniform = torch.rand(
            log_accept.shape, generator=generator, dtype=torch.float64, device=device
        )
        accepted = uniform < log_accept.exp()
        order = _swap_order(n_replicas, lower, accepted)
        moved = {name: _take(getattr(state, name), order) for name in _MOVED}
        info = _swap_info(n_replicas, lower, accepted, log_accept.exp())
        betas = state.betas
        if self.adapt and lower.numel():
            betas = self._adapt(betas, lower, info["swap_probability"][lower])
        attempts = state.swap_attempts.index_add(0, lower, torch.full_like(lower, n_chains))
        round_trips = state.round_trips + _mark_ends(moved["direction"])
        accepts = state.swap_accepts.index_add(0, lower, accepted.sum(1))
        new = replace(state, **moved, betas=betas, step=state.step + 1)
        new.swap_attempts, new.swap_accepts, new.round_trips = attempts, accepts, round_trips
        return new, info

    def _adapt(self, betas: torch.Tensor, lower: torch.Tensor, probability: torch.Tensor):
        log_gap = -torch.diff(betas.log())
        rate = torch.exp(self.adaptation_rate * (probability - self.target_acceptance))
        log_gap[lower] = log_gap[lower] * rate
        log_gap = log_gap.clamp(min=1e-6)
        span = -math.log(MIN_ADAPTIVE_BETA)
        log_gap = log_gap * (span / log_gap.sum()).clamp(max=1.0)
        return torch.cat([log_gap.new_zeros(1), -log_gap.cumsum(0)]).exp()

    def state_dict(self, state: TemperingState) -> dict[str, torch.Tensor]:
        """Every tensor of ``state`` (contiguous copies), for a safetensors checkpoint."""
        values = {name: getattr(state, name) for name in _FIELDS + _COUNTERS}
        values["step"] = torch.tensor(state.step, dtype=torch.long)
        return {name: value.detach().clone().contiguous() for name, value in values.items()}

    def load_state_dict(self, values: dict[str, torch.Tensor]) -> TemperingState:
        """Rebuild a :class:`TemperingState` from :meth:`state_dict` on the model's device."""
        missing = sorted(set(_FIELDS + _COUNTERS) - set(values))
        if missing:
            raise ValueError(f"values lacks the tempering state keys {missing}")
        device = self.model.weight.device
        loaded = {name: values[name].to(device) for name in _FIELDS + _COUNTERS}
        loaded["step"] = int(values["step"])
        loaded["betas"] = check_betas(loaded["betas"])
        n_replicas = loaded["betas"].numel()
        n_chains = loaded["visible"].shape[1] if loaded["visible"].ndim == 3 else -1
        shapes = {"visible": (n_replicas, n_chains, self.model.visible_bias.numel()),
                  "hidden": (n_replicas, n_chains, self.model.hidden_bias.numel()),
                  "energy": (n_replicas, n_chains), "walker": (n_replicas, n_chains),
                  "direction": (n_replicas, n_chains), "swap_attempts": (n_replicas - 1,),
                  "swap_accepts": (n_replicas - 1,), "round_trips": ()}  # fmt: skip
        for name, shape in shapes.items():
            if tuple(loaded[name].shape) != shape:
                raise ValueError(
                    f"values[{name!r}] must have shape {shape} for this model and ladder; "
                    f"got {tuple(loaded[name].shape)}"
                )
        return TemperingState(**loaded)


def _swap_order(n_replicas: int, lower: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
    # order[k, c]: the slot whose state moves to slot k of chain set c.
    order = torch.arange(n_replicas, device=lower.device)[:, None].repeat(1, accepted.shape[1])
    order[lower] = torch.where(accepted, lower[:, None] + 1, lower[:, None])
    order[lower + 1] = torch.where(accepted, lower[:, None], lower[:, None] + 1)
    return order


def _take(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    # values[order[k, c], c, ...] for every slot k and chain c.
    index = order.view(*order.shape, *([1] * (values.ndim - 2))).expand_as(values)
    return values.gather(0, index)


def _swap_info(n_replicas, lower, accepted, probability) -> dict[str, torch.Tensor]:
    shape = (max(n_replicas - 1, 0),)
    fraction = torch.full(shape, torch.nan, dtype=torch.float64, device=lower.device)
    mean_probability = fraction.clone()
    fraction[lower] = accepted.to(torch.float64).mean(1)
    mean_probability[lower] = probability.mean(1)
    return {"swap_acceptance": fraction, "swap_probability": mean_probability}


def _mark_ends(direction: torch.Tensor) -> torch.Tensor:
    # In place on the freshly gathered directions; returns the round trips completed.
    if direction.shape[0] < 2:
        return torch.zeros((), dtype=torch.long, device=direction.device)
    hot = direction[-1]
    direction[-1] = torch.where(hot == 1, torch.full_like(hot, -1), hot)
    completed = (direction[0] == -1).sum()
    direction[0] = 1
    return completed
