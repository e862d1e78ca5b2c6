r"""Partition function and likelihood bound of deep Boltzmann machines.

Importing this module registers the :class:`~ebmlab.models.dbm.DBM` with
:func:`~ebmlab.estimators.exact.exact_log_partition` (enumerate one parity of layers,
sum the other out) and :func:`~ebmlab.estimators.annealing.annealing_path` (the odd
layers annealed, the even ones summed out), so the same
:func:`~ebmlab.estimators.ais.ais_log_partition` serves RBMs and DBMs. The test
likelihood of a DBM is intractable even with :math:`Z` known; :func:`dbm_elbo` gives
the mean-field lower bound.

References
----------
Salakhutdinov, R. & Hinton, G. (2009). Deep Boltzmann machines. AISTATS, sections 3-4.
Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis of deep belief
networks. ICML, section 4.
"""

from __future__ import annotations

import math
import time

import torch
from torch.nn import functional as F

from ebmlab._validation import check_positive_int
from ebmlab.estimators.ais import LogZEstimate
from ebmlab.estimators.annealing import AnnealingPath, annealing_path
from ebmlab.estimators.exact import chunked_logsumexp, exact_log_partition, float64_copy
from ebmlab.estimators.likelihood import LogLikelihoodEstimate, mean_and_stderr
from ebmlab.estimators.rbm_path import BASE_PSEUDO_COUNT
from ebmlab.models.dbm import DBM
from ebmlab.models.rbm import sample_bernoulli

__all__ = ["DBMAnnealingPath", "dbm_elbo", "variational_bound"]


# ----- exact log Z ------------------------------------------------------------------------
@exact_log_partition.register(DBM)
@torch.no_grad()
def _exact_log_partition_dbm(model: DBM, *, max_units: int = 25, chunk_size: int = 2**16) -> float:
    r"""Enumerate the parity (odd or even layers) with fewer units; sum the other out.

    Notes
    -----
    :math:`\log Z = \log \sum_{x_{\rm odd}} e^{-F_{\rm odd}(x_{\rm odd})}
    = \log \sum_{x_{\rm even}} e^{-F_{\rm even}(x_{\rm even})}`, so the cost is
    :math:`2^{\min(n_{\rm odd}, n_{\rm even})}` free-energy evaluations.
    """
    check_positive_int("max_units", max_units)
    check_positive_int("chunk_size", chunk_size)
    sizes = {p: [model.layer_sizes[k] for k in model.parity_layers(p)] for p in (0, 1)}
    parity = min((1, 0), key=lambda p: sum(sizes[p]))
    n_units = sum(sizes[parity])
    if n_units > max_units:
        raise ValueError(
            f"exact_log_partition enumerates 2**{n_units} states of the DBM's "
            f"{'odd' if parity else 'even'} layers, above max_units={max_units}; "
            "use ais_log_partition instead"
        )
    model64 = float64_copy(model)
    free_energy = model64.free_energy_odd if parity else model64.free_energy_even

    def neg_energy(x: torch.Tensor) -> torch.Tensor:
        return -free_energy(*x.split(sizes[parity], dim=1))

    device = model.weights[0].device
    return chunked_logsumexp(n_units, neg_energy, chunk_size=chunk_size, device=device)


# ----- AIS path -----------------------------------------------------------------------------
class DBMAnnealingPath(AnnealingPath):
    r"""Annealing path from a base-rate model to a DBM, over the odd layers.

    Notes
    -----
    The intermediate joint is :math:`f_\beta(x) = e^{(1-\beta)\, b_A^\top v - \beta E(x)}`
    with :math:`b_A` the base model's visible biases (logit of smoothed data means, as
    for the RBM path; zero without data). Summing out the even layers, the visible one
    included, leaves a function of the odd layers:

    .. math:: \log f_\beta(x_{\rm odd}) = \beta \sum_{l\ {\rm odd}} b_l^\top x_l
              + \mathbf 1^\top \operatorname{softplus}\big(b_A + \beta (b_0 - b_A + W_0 x_1)\big)
              + \sum_{l \ge 2\ {\rm even}} \mathbf 1^\top \operatorname{softplus}\big(\beta\,
              (b_l + W_{l-1}^\top x_{l-1} + W_l x_{l+1})\big).

    At :math:`\beta = 0` the odd layers are uniform and
    :math:`Z_0 = 2^{n_{\rm hidden}} \prod_i (1 + e^{b_{A,i}})`. The transition at
    :math:`\beta` draws the even layers given the odd ones, then the odd layers given
    the new even ones, from the conditionals of :math:`f_\beta`. RAISE needs the
    visible layer in the state and is not offered.
    """

    def __init__(self, model: DBM, *, base_data: torch.Tensor | None = None) -> None:
        self.model = model
        self.odd, self.even = model.parity_layers(1), model.parity_layers(0)
        self.biases = [b.detach() for b in model.biases]
        self.base_bias = _base_visible_bias(model, base_data)
        n_hidden = sum(model.layer_sizes[1:])
        self.log_base_partition = F.softplus(
            self.base_bias.to(torch.float64)
        ).sum().item() + n_hidden * math.log(2.0)

    def sample_base(self, n_chains: int, *, generator: torch.Generator | None = None) -> list:
        reference = self.biases[0]
        layers: list[torch.Tensor | None] = [None] * self.model.n_layers
        for k in self.odd:
            half = reference.new_full((n_chains, self.model.layer_sizes[k]), 0.5)
            layers[k] = sample_bernoulli(half, generator=generator)
        return layers

    def _even_inputs(self, layers: list, beta: float) -> dict[int, torch.Tensor]:
        # The total input to every even layer under f_beta, given the odd layers.
        inputs = {}
        for k in self.even:
            raw = self.model.layer_input(layers, k)
            if k == 0:
                inputs[k] = self.base_bias + beta * (raw - self.base_bias)
            else:
                inputs[k] = beta * raw
        return inputs

    @torch.no_grad()
    def log_unnormalized(self, state: list, beta: float) -> torch.Tensor:
        odd_linear = sum(state[k] @ self.biases[k] for k in self.odd)
        softplus = sum(
            F.softplus(a).sum(-1, dtype=torch.float64)
            for a in self._even_inputs(state, beta).values()
        )
        return beta * odd_linear.to(torch.float64) + softplus

    @torch.no_grad()
    def advance(self, state, beta_prev, beta, log_weights, *, generator=None, transition=True):
        """Weight update and transition sharing the even layers' raw inputs."""
        odd_linear = sum(state[k] @ self.biases[k] for k in self.odd).to(torch.float64)
        log_weights += (beta - beta_prev) * odd_linear
        even_inputs = {}
        for k in self.even:
            raw = self.model.layer_input(state, k)
            offset = self.base_bias if k == 0 else 0.0
            now, before = offset + beta * (raw - offset), offset + beta_prev * (raw - offset)
            log_weights += (F.softplus(now) - F.softplus(before)).sum(-1, dtype=torch.float64)
            even_inputs[k] = now
        if transition:
            self._sweep(state, even_inputs, beta, generator)
        return state

    @torch.no_grad()
    def transition(self, state: list, beta: float, *, generator=None) -> list:
        self._sweep(state, self._even_inputs(state, beta), beta, generator)
        return state

    def _sweep(self, state: list, even_inputs: dict, beta: float, generator) -> None:
        for k in self.even:
            state[k] = sample_bernoulli(torch.sigmoid(even_inputs[k]), generator=generator)
        for k in self.odd:
            raw = self.model.layer_input(state, k)
            state[k] = sample_bernoulli(torch.sigmoid(beta * raw), generator=generator)
        for k in self.even:
            state[k] = None  # summed out in the weights: never read before being redrawn


def _base_visible_bias(model: DBM, base_data: torch.Tensor | None) -> torch.Tensor:
    """Logit of the smoothed data means, :math:`(c_i + 5) / (N + 10)` (see rbm_path)."""
    reference = model.biases[0]
    if base_data is None:
        return torch.zeros_like(reference).detach()
    model.check_visible(base_data, "base_data")
    if base_data.shape[0] == 0:
        raise ValueError("base_data must hold at least one row; got shape (0, ...)")
    counts = base_data.to(torch.float64).sum(0)
    p = (counts + BASE_PSEUDO_COUNT) / (base_data.shape[0] + 2 * BASE_PSEUDO_COUNT)
    return (torch.log(p) - torch.log1p(-p)).to(device=reference.device, dtype=reference.dtype)


@annealing_path.register(DBM)
def _dbm_annealing_path(model: DBM, *, base_data: torch.Tensor | None = None) -> DBMAnnealingPath:
    return DBMAnnealingPath(model, base_data=base_data)


# ----- variational bound --------------------------------------------------------------------
def variational_bound(model: DBM, v: torch.Tensor, means: list[torch.Tensor]) -> torch.Tensor:
    r"""Unnormalised bound :math:`\mathbb E_q[-E(v, h)] + H(q)` per example, float64.

    Notes
    -----
    The energy is linear in each layer and layers are independent under the factorised
    :math:`q`, so :math:`\mathbb E_q[-E(v, h)] = -E(v, \mu)`; the entropy is
    :math:`-\sum \mu \log \mu + (1 - \mu) \log(1 - \mu)` (0 log 0 = 0). Then
    :math:`\log p(v) \ge` this :math:`- \log Z` for any :math:`\mu` (Jensen).
    """
    with torch.no_grad():
        energy = model.energy([v, *means]).to(torch.float64)
        entropy = sum(_bernoulli_entropy(mu.to(torch.float64)) for mu in means)
    return -energy + entropy


def _bernoulli_entropy(mu: torch.Tensor) -> torch.Tensor:
    return -(torch.special.xlogy(mu, mu) + torch.special.xlogy(1 - mu, 1 - mu)).sum(-1)


def dbm_elbo(
    model: DBM,
    data: torch.Tensor,
    log_z: LogZEstimate | float,
    *,
    n_iterations: int = 30,
    tolerance: float = 1e-5,
    damping: float = 0.0,
    batch_size: int = 1000,
) -> LogLikelihoodEstimate:
    r"""Mean-field lower bound on the mean test log-likelihood of a DBM.

    Parameters
    ----------
    model : DBM
    data : torch.Tensor
        Test data, (batch, n_visible).
    log_z : LogZEstimate or float
        From :func:`~ebmlab.estimators.ais.ais_log_partition`, or an exact value.
    n_iterations, tolerance, damping
        Passed to :meth:`DBM.mean_field`.
    batch_size : int
        Rows run through mean-field at once (bounds memory).

    Returns
    -------
    LogLikelihoodEstimate
        ``value`` = mean ELBO; ``lower``/``upper`` from the upper/lower end of the
        :math:`\log Z` interval; ``method`` = ``"elbo"``.

    Notes
    -----
    .. math:: \log p(v) \ge \mathcal L(v) = -E(v, \mu) + H(\mu) - \log Z,

    with :math:`\mu` the mean-field fixed point. With AIS the bound inherits AIS's
    tendency to underestimate :math:`\log Z`; the interval reflects its spread only.

    References
    ----------
    Salakhutdinov & Hinton (2009), section 4 and equation (5).
    """
    if not isinstance(model, DBM):
        raise TypeError(f"model must be a DBM; got {type(model).__name__}")
    model.check_visible(data, "data")
    if data.shape[0] == 0:
        raise ValueError("data must hold at least one row; got shape (0, ...)")
    check_positive_int("batch_size", batch_size)
    if isinstance(log_z, LogZEstimate):
        value, low, high = log_z.log_z, log_z.log_z_lower, log_z.log_z_upper
        n_chains, n_betas = log_z.n_chains, log_z.n_betas
    elif isinstance(log_z, int | float) and not isinstance(log_z, bool) and math.isfinite(log_z):
        value = low = high = float(log_z)
        n_chains = n_betas = None
    else:
        raise TypeError(f"log_z must be a LogZEstimate or a finite float; got {log_z!r}")
    start = time.perf_counter()
    bounds = []
    for batch in data.split(batch_size):
        result = model.mean_field(
            batch, n_iterations=n_iterations, tolerance=tolerance, damping=damping
        )
        bounds.append(variational_bound(model, batch, result.means))
    mean, stderr = mean_and_stderr(torch.cat(bounds))
    return LogLikelihoodEstimate(
        value=mean - value,
        lower=mean - high,
        upper=mean - low,
        stderr=stderr,
        n_samples=data.shape[0],
        method="elbo",
        n_chains=n_chains,
        n_betas=n_betas,
        seconds=time.perf_counter() - start,
    )
