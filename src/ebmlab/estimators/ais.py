r"""Annealed importance sampling (AIS) estimates of :math:`\log Z`.

References
----------
Neal, R. (2001). Annealed importance sampling. Statistics and Computing 11, 125-139.
Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis of deep belief
networks. ICML, section 4.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch

from ebmlab._validation import check_positive_int
from ebmlab.estimators import rbm_path as _rbm_path  # noqa: F401  (registers the RBM path)
from ebmlab.estimators.annealing import annealing_path, check_betas, run_annealing

__all__ = ["LogZEstimate", "ais_log_partition", "log_mean_exp_interval"]


@dataclass(frozen=True)
class LogZEstimate:
    r"""An AIS estimate of :math:`\log Z` with its 3-sigma interval.

    Attributes
    ----------
    log_z : float
        :math:`\log \hat Z = \log Z_0 + \log \frac1M \sum_m w_m`.
    log_z_lower, log_z_upper : float
        :math:`\log(\hat Z \mp 3 \hat\sigma)`, :math:`\hat\sigma` the standard error of
        :math:`\hat Z` over the chains. ``log_z_lower`` is ``-inf`` when
        :math:`3 \hat\sigma \ge \hat Z` (the interval then says little).
    n_chains, n_betas : int
        Number of AIS runs and of inverse temperatures (including 0 and 1).
    seconds : float
        Wall-clock time of the run.
    log_weights : torch.Tensor
        The ``n_chains`` log importance weights (float64, CPU), for diagnostics.

    Notes
    -----
    :attr:`weight_ess` is the effective sample size of the weights,
    :math:`(\sum_m w_m)^2 / \sum_m w_m^2` (Kish): ``n_chains`` when every run
    carries the same weight, near 1 when one run dominates the estimate, which is
    then no better than that one run whatever its interval says.
    """

    log_z: float
    log_z_lower: float
    log_z_upper: float
    n_chains: int
    n_betas: int
    seconds: float
    log_weights: torch.Tensor = field(repr=False, compare=False, default=None)

    @property
    def weight_ess(self) -> float:
        """Effective sample size of the importance weights (NaN without them)."""
        return weight_ess(self.log_weights) if self.log_weights is not None else math.nan

    @property
    def interval_closed(self) -> bool:
        """Whether both ends of the interval are finite (3 sigma below the estimate)."""
        return math.isfinite(self.log_z_lower) and math.isfinite(self.log_z_upper)

    def to_dict(self) -> dict:
        """JSON-ready dictionary (without the per-chain weights)."""
        values = asdict(self)
        values.pop("log_weights")
        return values

    def summary(self) -> dict:
        """What evaluation results record of this estimate (``value``, ``lower``, ...)."""
        return {
            "value": self.log_z,
            "lower": self.log_z_lower,
            "upper": self.log_z_upper,
            "n_chains": self.n_chains,
            "n_betas": self.n_betas,
            "weight_ess": self.weight_ess,
            "interval_closed": self.interval_closed,
            "seconds": self.seconds,
        }


def weight_ess(log_weights: torch.Tensor) -> float:
    r"""Kish's effective sample size :math:`(\sum w)^2 / \sum w^2` from log-weights.

    Computed as :math:`\exp(2\,\mathrm{LSE}(\log w) - \mathrm{LSE}(2 \log w))`, so
    weights far outside float range are fine.
    """
    log_weights = log_weights.detach().to(torch.float64).reshape(-1)
    if log_weights.numel() == 0:
        raise ValueError("log_weights must hold at least one weight; got none")
    double = 2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0)
    return float(torch.exp(double))


def log_mean_exp_interval(
    log_weights: torch.Tensor, *, n_sigma: float = 3.0
) -> tuple[float, float, float]:
    r""":math:`\log \bar w` and :math:`\log(\bar w \mp n_\sigma \hat\sigma)` from log-weights.

    Notes
    -----
    With :math:`r_m = e^{\log w_m - \max \log w} \in (0, 1]` (no overflow),
    :math:`\rho = n_\sigma\, \mathrm{sd}(r) / (\sqrt M\, \bar r)` is the relative half-width,
    and the bounds are :math:`\log \bar w + \log(1 \pm \rho)`; the lower one is
    :math:`-\infty` once :math:`\rho \ge 1`. One chain gives an infinite interval.
    """
    log_weights = log_weights.to(torch.float64)
    n_chains = log_weights.numel()
    log_mean = (torch.logsumexp(log_weights, 0) - math.log(n_chains)).item()
    if n_chains < 2:
        return log_mean, -math.inf, math.inf
    ratios = torch.exp(log_weights - log_weights.max())
    rho = n_sigma * (ratios.std() / (math.sqrt(n_chains) * ratios.mean())).item()
    lower = log_mean + math.log1p(-rho) if rho < 1 else -math.inf
    return log_mean, lower, log_mean + math.log1p(rho)


@torch.no_grad()
def ais_log_partition(
    model: torch.nn.Module,
    *,
    n_chains: int = 100,
    betas: int | torch.Tensor | None = None,
    base_data: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    compiled: bool = False,
) -> LogZEstimate:
    r"""Estimate :math:`\log Z` of ``model`` by annealed importance sampling.

    Parameters
    ----------
    model
        A model with a registered :func:`~ebmlab.estimators.annealing.annealing_path`
        (the Bernoulli RBM, and the models that register their own).
    n_chains : int
        Number of independent AIS runs :math:`M` (run together as one batch).
    betas : int or torch.Tensor, optional
        ``None``: the 14,501 inverse temperatures of Salakhutdinov & Murray
        (:func:`~ebmlab.estimators.annealing.default_betas`); an int: that many evenly
        spaced values in [0, 1]; a tensor: 1-D, from 0 to 1, non-decreasing.
    base_data : torch.Tensor, optional
        Training data for the base-rate model; ``None`` uses the uniform base model.
        A base model close to the data lowers the variance, never the bias.
    generator : torch.Generator, optional
        Randomness (same seed, same estimate; bit for bit on CPU).
    progress : bool
        Show a tqdm bar over the temperatures.
    compiled : bool
        Bernoulli RBMs in float32: run each temperature as one :func:`torch.compile` step
        with counter-based draws (:mod:`~ebmlab.estimators.rbm_path_compiled`): several
        times faster per temperature after a compilation of some seconds; the estimate is
        reproducible from ``generator`` but not the same numbers as the default path.

    Returns
    -------
    LogZEstimate

    Notes
    -----
    Run :math:`m` starts at :math:`x_0 \sim p_0`, moves with the transitions
    :math:`T_k` that leave :math:`p_{\beta_k}` invariant and gathers

    .. math:: \log w_m = \sum_{k=1}^{K} \log f_{\beta_k}(x_{k-1}) - \log f_{\beta_{k-1}}(x_{k-1}),

    so :math:`E[w] = Z / Z_0` and
    :math:`\log \hat Z = \log Z_0 + \operatorname{logsumexp}_m \log w_m - \log M`.
    :math:`\hat Z` is unbiased, hence :math:`E[\log \hat Z] \le \log Z` (Jensen): AIS
    tends to underestimate :math:`\log Z` and so to overestimate log-likelihoods.

    References
    ----------
    Salakhutdinov & Murray (2008), equations (10)-(13); Neal (2001).
    """
    check_positive_int("n_chains", n_chains)
    schedule = check_betas(betas)
    start = time.perf_counter()
    path = _path(model, base_data, compiled)
    state = path.sample_base(n_chains, generator=generator)
    log_weights = torch.zeros(n_chains, dtype=torch.float64, device=path.device)
    run_annealing(
        path, state, schedule.tolist(), log_weights, generator=generator, progress=progress
    )
    log_weights = log_weights.cpu()
    if not torch.isfinite(log_weights).all():
        raise ValueError(
            "AIS produced non-finite log-weights; check the model parameters for inf/NaN"
        )
    log_mean, lower, upper = log_mean_exp_interval(log_weights)
    log_base = path.log_base_partition
    return LogZEstimate(
        log_z=log_base + log_mean,
        log_z_lower=log_base + lower,
        log_z_upper=log_base + upper,
        n_chains=n_chains,
        n_betas=schedule.numel(),
        seconds=time.perf_counter() - start,
        log_weights=log_weights,
    )


def _path(model: torch.nn.Module, base_data: torch.Tensor | None, compiled: bool):
    if not compiled:
        return annealing_path(model, base_data=base_data)
    from ebmlab.estimators.rbm_path_compiled import CompiledRBMAnnealingPath
    from ebmlab.models.rbm import BernoulliRBM

    if not isinstance(model, BernoulliRBM):
        raise ValueError(f"compiled=True is for a BernoulliRBM; got {type(model).__name__}")
    return CompiledRBMAnnealingPath(model, base_data=base_data)
