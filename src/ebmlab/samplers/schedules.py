"""Step-size schedules as small callable objects.

A schedule maps the step counter ``t = 0, 1, 2, ...`` to a step size. Because
each schedule is a plain callable it plugs straight into
:class:`torch.optim.lr_scheduler.LambdaLR` (which multiplies the optimizer's
base learning rate by ``schedule(t)``), so ``LambdaLR(SGLD(params, lr=1.0),
schedule)`` makes the optimizer's learning rate equal to the schedule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ebmlab._validation import check_nonnegative_int, check_positive_float, check_positive_int


@dataclass(frozen=True)
class ConstantSchedule:
    """A constant step size: ``schedule(t) = value``."""

    value: float

    def __post_init__(self) -> None:
        check_positive_float("value", self.value)

    def __call__(self, t: int) -> float:
        check_nonnegative_int("t", t)
        return float(self.value)

    def to_dict(self) -> dict[str, float]:
        """The constructor arguments, for a run's config file."""
        return asdict(self)


@dataclass(frozen=True)
class PolynomialDecay:
    r"""Polynomially decaying step size :math:`\epsilon_t = a (b + t)^{-\gamma}`.

    Parameters
    ----------
    a : float
        Scale, > 0.
    b : float
        Offset, > 0 (keeps :math:`\epsilon_0 = a b^{-\gamma}` finite).
    gamma : float
        Decay exponent. Welling & Teh require :math:`\gamma \in (0.5, 1]`.

    Notes
    -----
    The Robbins-Monro conditions :math:`\sum_t \epsilon_t = \infty` and
    :math:`\sum_t \epsilon_t^2 < \infty` hold exactly when
    :math:`0.5 < \gamma \le 1`; they make SGLD's injected noise dominate the
    stochastic-gradient noise as :math:`t \to \infty`, so the Metropolis
    correction can be dropped. Welling & Teh use :math:`\gamma = 0.55`.

    References
    ----------
    Welling, M. & Teh, Y. W. (2011). Bayesian learning via stochastic gradient
    Langevin dynamics. ICML, section 3 and section 5.1.
    """

    a: float
    b: float
    gamma: float

    def __post_init__(self) -> None:
        check_positive_float("a", self.a)
        check_positive_float("b", self.b)
        check_positive_float("gamma", self.gamma)

    @classmethod
    def from_range(
        cls, start: float, end: float, n_steps: int, *, gamma: float = 0.55
    ) -> PolynomialDecay:
        r"""The decay with ``schedule(0) = start`` and ``schedule(n_steps - 1) = end``.

        Notes
        -----
        From :math:`a b^{-\gamma} = s` and :math:`a (b + T)^{-\gamma} = e` with
        :math:`T = n_{steps} - 1`: :math:`(1 + T/b)^{\gamma} = s/e`, so
        :math:`b = T / ((s/e)^{1/\gamma} - 1)` and :math:`a = s\, b^{\gamma}`.
        """
        start = check_positive_float("start", start)
        end = check_positive_float("end", end)
        check_positive_int("n_steps", n_steps)
        gamma = check_positive_float("gamma", gamma)
        if not end < start:
            raise ValueError(
                f"end must be smaller than start for a decay; got start={start}, end={end}"
            )
        if n_steps < 2:
            raise ValueError(f"n_steps must be >= 2 to decay from start to end; got {n_steps}")
        b = (n_steps - 1) / ((start / end) ** (1.0 / gamma) - 1.0)
        return cls(a=start * b**gamma, b=b, gamma=gamma)

    def __call__(self, t: int) -> float:
        check_nonnegative_int("t", t)
        return self.a * math.pow(self.b + t, -self.gamma)

    def to_dict(self) -> dict[str, float]:
        """The constructor arguments, for a run's config file."""
        return asdict(self)
