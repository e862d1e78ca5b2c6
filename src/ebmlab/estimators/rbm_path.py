r"""The annealing path of a Bernoulli RBM (Salakhutdinov & Murray 2008).

The base model A has zero weights and hidden biases and visible biases :math:`b_A`;
the target B is the RBM :math:`(W, b_v, b_h)`. The intermediate distributions are the
marginals of :math:`f_\beta(v, h^A, h^B) = e^{-(1-\beta) E_A(v, h^A) - \beta E_B(v, h^B)}`;
A's hidden units do not interact with anything, so they factor out, and summing
:math:`h^B` out gives (up to the constant of A's hidden units, dropped from both
:math:`f_\beta` and :math:`Z_0`)

.. math:: \log f_\beta(v) = (1 - \beta)\, b_A^\top v + \beta\, b_v^\top v
          + \sum_j \operatorname{softplus}\big(\beta (b_h + W^\top v)_j\big).

At :math:`\beta = 0` the target's hidden units are uniform, so
:math:`Z_0 = 2^{n_h} \prod_i (1 + e^{b_{A,i}})`. The transition at :math:`\beta` is one block Gibbs sweep of the joint:
:math:`h \sim \sigma(\beta (b_h + W^\top v))`, then
:math:`v \sim \sigma((1 - \beta) b_A + \beta (b_v + W h))`.

References
----------
Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis of deep belief
networks. ICML, section 4.1 and appendix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ebmlab.estimators.annealing import AnnealingPath, annealing_path
from ebmlab.models.rbm import BernoulliRBM, sample_bernoulli

#: Pseudo-counts added to each outcome when fitting the base rates (see base_visible_bias).
BASE_PSEUDO_COUNT = 5.0


def base_visible_bias(model: BernoulliRBM, base_data: torch.Tensor | None) -> torch.Tensor:
    r"""Visible biases of the base-rate model: :math:`\operatorname{logit}(p)` of smoothed data means.

    :math:`p_i = (c_i + 5) / (N + 10)` with :math:`c_i = \sum_n v_{ni}`. Salakhutdinov &
    Murray's code adds 5 pseudo-counts to the ones only, :math:`(c_i + 5)/(N + 5)`, which
    gives :math:`p_i = 1` and an infinite bias for an always-on unit; adding them to both
    outcomes keeps :math:`p_i \in (0, 1)` and differs by :math:`O(5/N)` (AIS stays
    unbiased for any base model; only its variance depends on the choice).
    ``base_data=None`` gives the uniform base model (zero biases).
    """
    weight = model.weight
    if base_data is None:
        return torch.zeros(model.n_visible, dtype=weight.dtype, device=weight.device)
    model.check_visible(base_data, "base_data")
    if base_data.shape[0] == 0:
        raise ValueError("base_data must hold at least one row; got shape (0, ...)")
    counts = base_data.to(torch.float64).sum(0)
    p = (counts + BASE_PSEUDO_COUNT) / (base_data.shape[0] + 2 * BASE_PSEUDO_COUNT)
    return (torch.log(p) - torch.log1p(-p)).to(device=weight.device, dtype=weight.dtype)


@dataclass(eq=False)
class RBMChains:
    """Chains of the RBM path: the visible layer plus preallocated work buffers.

    The buffers are overwritten at every step (the AIS loop allocates nothing but
    two small per-chain vectors); ``visible`` is updated in place.
    """

    visible: torch.Tensor
    hidden_input: torch.Tensor  # (n_chains, n_hidden + 1): b_h + W^T v and v . (b_v - b_A)
    scaled: torch.Tensor  # beta * (b_h + W^T v), later sigma of it
    scaled_prev: torch.Tensor  # beta_prev * (b_h + W^T v), later softplus differences
    hidden: torch.Tensor
    visible_input: torch.Tensor
    uniform_hidden: torch.Tensor
    uniform_visible: torch.Tensor
    visible_offset: torch.Tensor  # (n_visible,): b_A + beta (b_v - b_A)
    preactivation: torch.Tensor = None  # view hidden_input[:, :-1], b_h + W^T v
    bias_gap_dot: torch.Tensor = None  # view hidden_input[:, -1], v . (b_v - b_A)

    def __post_init__(self) -> None:
        # Views made once: slicing inside the loop costs more than it looks.
        self.preactivation = self.hidden_input[:, :-1]
        self.bias_gap_dot = self.hidden_input[:, -1]


class RBMAnnealingPath(AnnealingPath):
    """Annealing path from the base-rate model to a :class:`BernoulliRBM` (see module notes)."""

    def __init__(self, model: BernoulliRBM, *, base_data: torch.Tensor | None = None) -> None:
        weight = model.weight.detach()
        self.device = weight.device
        self.n_visible, self.n_hidden = model.n_visible, model.n_hidden
        self.base_bias = base_visible_bias(model, base_data)
        bias_gap = model.visible_bias.detach() - self.base_bias
        # One GEMM gives both b_h + W^T v and v . (b_v - b_A): W gets (b_v - b_A) as an
        # extra column and b_h a trailing zero.
        self._weight_ext = torch.cat([weight, bias_gap[:, None]], dim=1).contiguous()
        self._hidden_bias_ext = torch.cat([model.hidden_bias.detach(), bias_gap.new_zeros(1)])
        self._weight_t = weight.t().contiguous()
        self._bias_gap = bias_gap
        # A model set to precision="bfloat16" anneals with bfloat16 operands (fp32 results).
        self._reduced = getattr(model, "precision", "float32") == "bfloat16"
        self._reduced = self._reduced and weight.dtype == torch.float32
        if self._reduced:
            self._weight_ext_bf16 = self._weight_ext.to(torch.bfloat16)
            self._weight_t_bf16 = self._weight_t.to(torch.bfloat16)
        # At beta = 0 the target's hidden units are free (uniform), so Z_0 counts them:
        # Z_0 = 2^{n_hidden} prod_i (1 + e^{b_A,i}).
        self.log_base_partition = F.softplus(
            self.base_bias.to(torch.float64)
        ).sum().item() + self.n_hidden * math.log(2.0)
        # float64 copies for log_unnormalized (used off the hot loop: RAISE, tests)
        self._params64 = tuple(
            p.detach().to(torch.float64)
            for p in (weight, model.visible_bias, model.hidden_bias, self.base_bias)
        )

    # ----- states ---------------------------------------------------------------------
    def _chains(self, visible: torch.Tensor) -> RBMChains:
        n_chains = visible.shape[0]

        def buffer(*shape):
            return visible.new_empty(shape)

        return RBMChains(
            visible=visible,
            hidden_input=buffer(n_chains, self.n_hidden + 1),
            scaled=buffer(n_chains, self.n_hidden),
            scaled_prev=buffer(n_chains, self.n_hidden),
            hidden=buffer(n_chains, self.n_hidden),
            visible_input=buffer(n_chains, self.n_visible),
            uniform_hidden=buffer(n_chains, self.n_hidden),
            uniform_visible=buffer(n_chains, self.n_visible),
            visible_offset=buffer(self.n_visible),
        )

    def sample_base(self, n_chains: int, *, generator: torch.Generator | None = None) -> RBMChains:
        probabilities = torch.sigmoid(self.base_bias).expand(n_chains, -1)
        return self._chains(sample_bernoulli(probabilities, generator=generator).contiguous())

    def state_from_data(self, data: torch.Tensor) -> RBMChains:
        return self._chains(data.to(self._weight_t.dtype).contiguous().clone())

    # ----- path -----------------------------------------------------------------------
    def log_unnormalized(self, state: RBMChains, beta: float) -> torch.Tensor:
        weight, visible_bias, hidden_bias, base_bias = self._params64
        v = state.visible.to(torch.float64)
        linear = v @ ((1.0 - beta) * base_bias + beta * visible_bias)
        return linear + F.softplus(beta * torch.addmm(hidden_bias, v, weight)).sum(-1)

    def transition(self, state: RBMChains, beta: float, *, generator=None) -> RBMChains:
        self._hidden_input(state)
        torch.mul(state.preactivation, beta, out=state.scaled)
        self._gibbs_sweep(state, beta, generator)
        return state

    def advance(self, state, beta_prev, beta, log_weights, *, generator=None, transition=True):
        """Fused weight update and transition: two GEMMs per temperature; the only
        allocations are the two softplus outputs and two per-chain float64 vectors."""
        self._hidden_input(state)
        torch.mul(state.preactivation, beta, out=state.scaled)
        torch.mul(state.preactivation, beta_prev, out=state.scaled_prev)
        # softplus(beta a) - softplus(beta' a), summed in float64; the linear part is
        # (beta - beta') v . (b_v - b_A), the extra GEMM column.
        softplus_gap = torch.sub(
            F.softplus(state.scaled), F.softplus(state.scaled_prev), out=state.scaled_prev
        )
        log_weights += softplus_gap.sum(-1, dtype=torch.float64)
        log_weights += state.bias_gap_dot.to(torch.float64) * (beta - beta_prev)
        if transition:
            self._gibbs_sweep(state, beta, generator)
        return state

    def _hidden_input(self, state: RBMChains) -> None:
        """``state.hidden_input = [b_h, 0] + v [W, b_v - b_A]``, in the model's precision."""
        if self._reduced:
            product = torch.mm(state.visible.to(torch.bfloat16), self._weight_ext_bf16)
            torch.add(self._hidden_bias_ext, product, out=state.hidden_input)
        else:
            torch.addmm(
                self._hidden_bias_ext, state.visible, self._weight_ext, out=state.hidden_input
            )

    def _gibbs_sweep(self, state: RBMChains, beta: float, generator) -> None:
        # h ~ sigma(beta a) with a = b_h + W^T v already scaled in state.scaled; then
        # v ~ sigma(b_A + beta (b_v - b_A) + beta W h). Bernoulli draws compare one
        # uniform with p in place, the rule of ebmlab.models.rbm.sample_bernoulli.
        probabilities = torch.sigmoid(state.scaled, out=state.scaled)
        torch.rand(probabilities.shape, generator=generator, out=state.uniform_hidden)
        torch.lt(state.uniform_hidden, probabilities, out=state.hidden)
        offset = torch.add(self.base_bias, self._bias_gap, alpha=beta, out=state.visible_offset)
        if self._reduced:
            product = torch.mm(state.hidden.to(torch.bfloat16), self._weight_t_bf16)
            visible_input = torch.add(offset, product, alpha=beta, out=state.visible_input)
        else:
            visible_input = torch.addmm(
                offset, state.hidden, self._weight_t, alpha=beta, out=state.visible_input
            )
        probabilities = torch.sigmoid(visible_input, out=visible_input)
        torch.rand(probabilities.shape, generator=generator, out=state.uniform_visible)
        torch.lt(state.uniform_visible, probabilities, out=state.visible)


@annealing_path.register(BernoulliRBM)
def _rbm_annealing_path(
    model: BernoulliRBM, *, base_data: torch.Tensor | None = None
) -> RBMAnnealingPath:
    return RBMAnnealingPath(model, base_data=base_data)
