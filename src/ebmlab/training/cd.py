r"""Contrastive divergence (CD-k) and persistent CD (PCD-k) for layered models.

The objective is a surrogate loss whose autograd gradient *is* the CD update:

.. math:: \mathcal{L}(\theta) = \frac{1}{B}\sum_b E_\theta(v^{(b)}_{\rm data}, \bar h^{(b)}_{\rm data})
          - \frac{1}{B}\sum_b E_\theta(v^{(b)}_{\rm model}, \bar h^{(b)}_{\rm model}),

where :math:`\bar h = p(h = 1 \mid v)` and every :math:`v, \bar h` is held constant.
For any RBM the energy is affine in :math:`h`, so the free-energy gradient is
:math:`\partial F(v)/\partial\theta = \mathbb{E}_{p(h|v)}[\partial E(v,h)/\partial\theta]
= \partial E(v, \bar h)/\partial\theta`, and the gradient of :math:`\mathcal{L}` equals that
of :math:`\langle F \rangle_{\rm data} - \langle F \rangle_{\rm model}`: minus the classic
update :math:`\langle v h^\top \rangle_{\rm data} - \langle v h^\top \rangle_{k}` with
hidden probabilities on both sides (the Rao-Blackwellised form). Written this
way, the positive hidden means are shared with the first Gibbs step and the
weight gradient is the statistic :math:`v^\top \bar h` itself: a CD-1 update costs
five GEMMs instead of the six of the free-energy form, and data and model rows
share one GEMM for the statistic (see ``BernoulliRBM.weighted_energy``). For the plain
Bernoulli RBM, :mod:`ebmlab.training.fused_cd` applies the same update without autograd.

References
----------
Hinton, G. (2002). Training products of experts by minimizing contrastive
divergence. Neural Computation 14(8). Tieleman, T. (2008). Training restricted
Boltzmann machines using approximations to the likelihood gradient. ICML.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ebmlab._grad import grad_off, without_grad
from ebmlab._validation import check_positive_int
from ebmlab.models.rbm import sample_bernoulli
from ebmlab.samplers.base import run_chain
from ebmlab.samplers.tempering import ParallelTempering, TemperingState
from ebmlab.training.compiled_gibbs import CompiledGibbs


def cd_loss(
    model: Any,
    v_data: torch.Tensor,
    h_data: torch.Tensor,
    v_model: torch.Tensor,
    h_model: torch.Tensor,
) -> torch.Tensor:
    """Surrogate ``mean E(v_data, h_data) - mean E(v_model, h_model)``, all inputs held constant.

    ``h_data`` and ``h_model`` are the hidden means p(h = 1 | v). Models may provide
    ``weighted_energy(v, h, weights)`` (a cheaper ``(weights * energy(v, h)).sum()``).
    """
    v = torch.cat([v_data, v_model]).detach()
    h = torch.cat([h_data, h_model]).detach()
    weights = torch.cat(
        [
            torch.full((v_data.shape[0],), 1 / v_data.shape[0], dtype=v.dtype, device=v.device),
            torch.full((v_model.shape[0],), -1 / v_model.shape[0], dtype=v.dtype, device=v.device),
        ]
    )
    weighted_energy = getattr(model, "weighted_energy", None)
    if weighted_energy is not None:
        return weighted_energy(v, h, weights)
    return (weights * model.energy(v, h)).sum()


def sparsity_penalty(
    model: Any, v_data: torch.Tensor, *, target: float, cost: float
) -> torch.Tensor:
    r"""Cross-entropy between the target activation ``p`` and the batch's mean activation ``q_j``.

    Its gradient with respect to hidden unit j's total input is proportional to
    :math:`q_j - p` (Hinton's guide, section 11), pushing the units towards the target.
    """
    q = model.mean_h(v_data).mean(0)
    target_tensor = torch.full_like(q, target)
    return cost * F.binary_cross_entropy(q, target_tensor, reduction="sum")


class ContrastiveDivergence:
    """Produces CD-k or PCD-k negative samples for a layered model.

    Parameters
    ----------
    model
        A model with ``sample_h``, ``mean_v``, ``sample_v`` (e.g. :class:`~ebmlab.models.BernoulliRBM`).
    k : int
        Number of block Gibbs steps per update (the k of CD-k).
    persistent : bool
        If True, chains persist across updates (PCD); otherwise each update
        restarts chains at the data (CD).
    n_chains : int, optional
        Number of persistent chains; defaults to the first batch's size.
    tempering : ParallelTempering, optional
        Persistent chains only: each of the ``k`` sweeps is a parallel-tempering step
        (a Gibbs sweep at every temperature, then replica swaps), and the beta = 1
        replicas are the negative samples (Desjardins et al. 2010).
    compiled_gibbs : CompiledGibbs, optional
        A Bernoulli RBM's sweeps as one compiled step with counter-based draws
        (:mod:`ebmlab.training.compiled_gibbs`), instead of :class:`BlockGibbs`.
    reuse_hidden_means : bool
        Persistent chains only: start each update's first sweep from the hidden means
        p(h = 1 | v) computed for the previous update's statistic, under the previous
        parameters, instead of recomputing them (scikit-learn's PCD). One product of the
        k-th sweep's cost fewer per update; the chain's first half-step lags the
        parameters by one update.

    Notes
    -----
    The persistent chains live in :attr:`chains` (with ``reuse_hidden_means``, also
    :attr:`chain_hidden_means`; with tempering, :attr:`tempering_state`: every replica,
    the ladder and the swap counters) and are part of the trainer's checkpoint, so a
    resumed run continues the same Markov chains.
    """

    def __init__(
        self,
        model: Any,
        *,
        k: int = 1,
        persistent: bool = False,
        n_chains: int | None = None,
        tempering: ParallelTempering | None = None,
        compiled_gibbs: CompiledGibbs | None = None,
        reuse_hidden_means: bool = False,
    ) -> None:
        self.model = model
        self.k = check_positive_int("k", k)
        self.persistent = persistent
        self.n_chains = None if n_chains is None else check_positive_int("n_chains", n_chains)
        if tempering is not None and not persistent:
            raise ValueError("tempering needs persistent chains (persistent=True)")
        if compiled_gibbs is not None and tempering is not None:
            raise ValueError("compiled Gibbs sweeps and tempering cannot be combined")
        if reuse_hidden_means and (not persistent or tempering is not None):
            raise ValueError(
                "reuse_hidden_means needs persistent chains without tempering "
                f"(persistent=True, tempering=None); got persistent={persistent}"
            )
        self.reuse_hidden_means = reuse_hidden_means
        self.tempering = tempering
        self.compiled_gibbs = compiled_gibbs
        self.chains: torch.Tensor | None = None
        self.chain_hidden_means: torch.Tensor | None = None
        self.tempering_state: TemperingState | None = None

    def negatives(
        self,
        v_data: torch.Tensor,
        h_data: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The negative samples and their hidden means p(h = 1 | v_model), for this update.

        ``h_data`` = p(h = 1 | v_data): CD's first Gibbs step samples from it.
        """
        if self.tempering is not None:
            return self._tempered_negatives(v_data, generator)
        start = self._start(v_data, h_data)
        if self.compiled_gibbs is not None:
            visible, hidden_mean = self.compiled_gibbs.run(start, self.k, generator=generator)
        else:
            visible, hidden_mean = self._sweeps(start, generator)
        if self.persistent:
            self._keep(visible, hidden_mean)
        return visible, hidden_mean

    def _start(self, v_data: torch.Tensor, h_data: torch.Tensor) -> torch.Tensor:
        """The hidden means the first sweep samples from: the data's (CD), or the chains'
        (PCD: stored from the previous update when reused, else computed now)."""
        if not self.persistent:
            return h_data
        if self.chains is None:
            self.chains = self._initial_chains(v_data)
        if self.reuse_hidden_means and self.chain_hidden_means is not None:
            return self.chain_hidden_means
        with grad_off():
            return self.model.mean_h(self.chains)

    @without_grad
    def _sweeps(
        self, hidden_mean: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` block-Gibbs sweeps h ~ p(h | v), v ~ p(v | h) from ``hidden_mean``, as
        :class:`~ebmlab.samplers.BlockGibbs` draws them (the same numbers in the same
        order); each sweep's closing p(h | v) starts the next and gives the statistic, and
        no sampler state is built: small models pay per operation."""
        model, visible = self.model, None
        for _ in range(self.k):
            hidden = sample_bernoulli(hidden_mean, generator=generator)
            visible = model.sample_v(hidden, generator=generator)
            hidden_mean = model.mean_h(visible)
        return visible, hidden_mean

    def _keep(self, visible: torch.Tensor, hidden_mean: torch.Tensor) -> None:
        """Store the persistent chains (and, when reused, their hidden means)."""
        self.chains = visible
        if self.reuse_hidden_means:
            self.chain_hidden_means = hidden_mean

    def _initial_chains(self, v_data: torch.Tensor) -> torch.Tensor:
        n = self.n_chains or v_data.shape[0]
        return v_data[torch.arange(n, device=v_data.device) % v_data.shape[0]].clone()

    def _tempered_negatives(self, v_data, generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tempering_state is None:
            self.tempering_state = self.tempering.init(self._initial_chains(v_data))
        state, _, _ = run_chain(self.tempering, self.tempering_state, self.k, generator=generator)
        self.tempering_state = state
        with torch.no_grad():
            return state.cold, self.model.mean_h(state.cold)

    def state_dict(self) -> dict[str, Any]:
        if self.tempering_state is not None:
            return {"tempering": self.tempering.state_dict(self.tempering_state)}
        state = {} if self.chains is None else {"chains": self.chains}
        if self.chain_hidden_means is not None:
            state["chain_hidden_means"] = self.chain_hidden_means
        stream = {} if self.compiled_gibbs is None else self.compiled_gibbs.state_dict()
        return state | ({"stream": stream} if stream else {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.compiled_gibbs is not None:
            self.compiled_gibbs.load_state_dict(state.get("stream", {}))
        if self.tempering is not None:
            saved = state.get("tempering")
            self.tempering_state = None if saved is None else self.tempering.load_state_dict(saved)
            return
        # Checkpoints load on the CPU; the chains continue on the model's device.
        reference = next(self.model.parameters())
        self.chains, self.chain_hidden_means = (
            None if saved is None else saved.to(device=reference.device, dtype=reference.dtype)
            for saved in (state.get("chains"), state.get("chain_hidden_means"))
        )
        if not self.reuse_hidden_means:  # a checkpoint of a reusing run: recomputed here
            self.chain_hidden_means = None
