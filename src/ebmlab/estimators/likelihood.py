r"""Test log-likelihood from a :math:`\log Z` estimate: :math:`\log p(v) = -F(v) - \log Z`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ebmlab.estimators.ais import LogZEstimate

__all__ = ["LogLikelihoodEstimate", "log_likelihood", "mean_and_stderr"]


@dataclass(frozen=True)
class LogLikelihoodEstimate:
    r"""A mean test log-likelihood (nats per example) with its uncertainty.

    Attributes
    ----------
    value : float
        The estimate of :math:`\frac1N \sum_n \log p(v_n)`.
    lower, upper : float
        For :func:`log_likelihood`: the values given by the upper and lower ends of the
        :math:`\log Z` interval (a larger :math:`\log Z` gives a smaller likelihood).
        For reverse AIS: ``value -/+ 3 * stderr``.
    stderr : float
        Standard error of the mean over the data points (sample sd / sqrt(N)); it
        measures how much the test set, not the :math:`\log Z` estimate, moves the value.
    n_samples : int
        Number of data points N.
    method : str
        ``"ais"``, ``"raise"`` or ``"exact"``.
    n_chains, n_betas : int or None
        Chains and inverse temperatures behind the estimate (None when not sampled).
    seconds : float
        Wall-clock time of the estimate (excluding a reused :math:`\log Z` run).
    """

    value: float
    lower: float
    upper: float
    stderr: float
    n_samples: int
    method: str = "ais"
    n_chains: int | None = None
    n_betas: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dictionary of every field."""
        return asdict(self)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value) of a 1-D tensor."""
    values = values.to(torch.float64)
    n = values.numel()
    stderr = (values.std() / math.sqrt(n)).item() if n > 1 else 0.0
    return values.mean().item(), stderr


@torch.no_grad()
def log_likelihood(
    model: torch.nn.Module, data: torch.Tensor, log_z: LogZEstimate
) -> LogLikelihoodEstimate:
    r"""Mean test log-likelihood of ``data`` given an estimate of :math:`\log Z`.

    Parameters
    ----------
    model
        A model with ``free_energy(v)`` (and, if it has one, ``check_visible``).
    data : torch.Tensor
        Test data, shape ``(batch, n_visible)``.
    log_z : LogZEstimate
        E.g. from :func:`~ebmlab.estimators.ais.ais_log_partition`.

    Notes
    -----
    .. math:: \widehat{\mathcal L} = -\frac1N \sum_n F(v_n) - \log \hat Z,

    with ``lower`` from ``log_z.log_z_upper`` and ``upper`` from ``log_z.log_z_lower``
    (``+inf`` when the lower end of the :math:`\log Z` interval is :math:`-\infty`).
    The free energies are summed in float64.
    """
    if not isinstance(log_z, LogZEstimate):
        raise TypeError(f"log_z must be a LogZEstimate; got {type(log_z).__name__}")
    check_visible = getattr(model, "check_visible", None)
    if check_visible is not None:
        check_visible(data, "data")
    if data.shape[0] == 0:
        raise ValueError("data must hold at least one row; got shape (0, ...)")
    negative_free_energy = -model.free_energy(data).to(torch.float64)
    mean, stderr = mean_and_stderr(negative_free_energy)
    return LogLikelihoodEstimate(
        value=mean - log_z.log_z,
        lower=mean - log_z.log_z_upper,
        upper=mean - log_z.log_z_lower,
        stderr=stderr,
        n_samples=data.shape[0],
        method="ais",
        n_chains=log_z.n_chains,
        n_betas=log_z.n_betas,
    )
