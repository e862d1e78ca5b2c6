r"""Annealing paths and schedules shared by AIS and reverse AIS (RAISE).

An *annealing path* joins a tractable base distribution :math:`p_0` (known
:math:`Z_0`, exact samples) to a model :math:`p_1` through unnormalised
intermediate distributions :math:`f_\beta`, and supplies a Markov transition that
leaves each :math:`p_\beta` invariant. :func:`annealing_path` is a
:func:`functools.singledispatch` factory: another model registers its own path
with ``@annealing_path.register(TheirModel)`` (the DBM anneals its odd layers and
sums the even ones out) and AIS and RAISE work unchanged.

References
----------
Neal, R. (2001). Annealed importance sampling. Statistics and Computing 11.
Salakhutdinov, R. & Murray, I. (2008). On the quantitative analysis of deep belief
networks. ICML, section 4.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = ["AnnealingPath", "annealing_path", "check_betas", "default_betas", "run_annealing"]


def default_betas(n_betas: int | None = None, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """The inverse temperatures of Salakhutdinov & Murray (2008).

    ``0:1e-3:0.5``, ``0.5:1e-4:0.9``, ``0.9:1e-5:1.0``: 14,501 values that are
    densest near 1, where the intermediate distributions change fastest.

    Parameters
    ----------
    n_betas : int, optional
        ``None`` gives the published schedule. An int (>= 4) gives a schedule of that
        many values with the same three segments and the same share of points in
        each (500 : 4,000 : 10,000); reverse AIS uses it for a cheaper default.
    """
    segments = ((0.0, 0.5, 500), (0.5, 0.9, 4000), (0.9, 1.0, 10000))
    if n_betas is not None:
        if isinstance(n_betas, bool) or not isinstance(n_betas, int) or n_betas < 4:
            raise ValueError(f"n_betas must be an integer >= 4 or None; got {n_betas!r}")
        total = sum(steps for *_, steps in segments)
        counts = [max(1, round((n_betas - 1) * steps / total)) for *_, steps in segments]
        counts[-1] = n_betas - 1 - sum(counts[:-1])
        segments = tuple((lo, hi, c) for (lo, hi, _), c in zip(segments, counts, strict=True))
    parts = [torch.zeros(1, dtype=torch.float64)]
    for low, high, steps in segments:
        parts.append(torch.linspace(low, high, steps + 1, dtype=torch.float64)[1:])
    return torch.cat(parts).to(dtype=dtype, device=device)


def check_betas(betas: Any) -> torch.Tensor:
    """Normalise ``betas`` (None, an int or a 1-D tensor) to a validated float64 CPU tensor.

    ``None`` -> :func:`default_betas`; an int ``n >= 2`` -> ``n`` evenly spaced values
    in [0, 1]; a tensor must be 1-D, finite, start at 0, end at 1 and never decrease.
    """
    if betas is None:
        return default_betas()
    if isinstance(betas, int) and not isinstance(betas, bool):
        if betas < 2:
            raise ValueError(f"betas must be at least 2 when given as an integer; got {betas!r}")
        return torch.linspace(0.0, 1.0, betas, dtype=torch.float64)
    if not isinstance(betas, torch.Tensor):
        raise TypeError(
            f"betas must be None, an int or a 1-D torch.Tensor; got {type(betas).__name__}"
        )
    betas = betas.detach().to("cpu", torch.float64)
    if betas.ndim != 1 or betas.numel() < 2:
        raise ValueError(
            f"betas must be a 1-D tensor of at least 2 values; got shape {tuple(betas.shape)}"
        )
    if not torch.isfinite(betas).all():
        raise ValueError("betas contains NaN or inf values")
    if betas[0] != 0 or betas[-1] != 1:
        raise ValueError(
            f"betas must start at 0 and end at 1; got first={betas[0].item():.6g}, "
            f"last={betas[-1].item():.6g}"
        )
    if (betas[1:] < betas[:-1]).any():
        first = int(torch.nonzero(betas[1:] < betas[:-1])[0])
        raise ValueError(
            f"betas must be non-decreasing; got betas[{first}]={betas[first].item():.6g} > "
            f"betas[{first + 1}]={betas[first + 1].item():.6g}"
        )
    return betas


class AnnealingPath:
    r"""A path of distributions :math:`f_\beta`, :math:`\beta \in [0, 1]`, from a base to a model.

    Subclasses implement :meth:`sample_base`, :meth:`log_unnormalized` and
    :meth:`transition`; they may override :meth:`advance` with a fused version that
    shares work between the weight update and the transition (the RBM path does).

    Attributes
    ----------
    log_base_partition : float
        :math:`\log Z_0`, the base distribution's exact log normaliser.
    device : torch.device
        Where the chains live (the log-weights are kept there too).
    """

    log_base_partition: float
    device: torch.device = torch.device("cpu")

    def sample_base(self, n_chains: int, *, generator: torch.Generator | None = None) -> Any:
        """``n_chains`` exact, independent draws from the base distribution :math:`p_0`."""
        raise NotImplementedError

    def state_from_data(self, data: torch.Tensor) -> Any:
        """A state whose observed layer is ``data`` (needed by reverse AIS only)."""
        raise NotImplementedError(f"{type(self).__name__} does not support reverse AIS")

    def log_unnormalized(self, state: Any, beta: float) -> torch.Tensor:
        r""":math:`\log f_\beta(x)` for every chain, float64, shape (n_chains,)."""
        raise NotImplementedError

    def transition(
        self, state: Any, beta: float, *, generator: torch.Generator | None = None
    ) -> Any:
        r"""One Markov step that leaves :math:`p_\beta` invariant (may update ``state`` in place)."""
        raise NotImplementedError

    def advance(
        self,
        state: Any,
        beta_prev: float,
        beta: float,
        log_weights: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        transition: bool = True,
    ) -> Any:
        r"""Add :math:`\log f_\beta(x) - \log f_{\beta'}(x)` to ``log_weights`` in place,
        then (if ``transition``) move ``x`` with the transition at :math:`\beta`."""
        log_weights += self.log_unnormalized(state, beta) - self.log_unnormalized(state, beta_prev)
        if transition:
            state = self.transition(state, beta, generator=generator)
        return state


@functools.singledispatch
def annealing_path(model: object, *, base_data: torch.Tensor | None = None) -> AnnealingPath:
    """Build the annealing path for ``model`` (dispatches on the model's type).

    Parameters
    ----------
    model
        A model type with a registered path (``BernoulliRBM`` in
        :mod:`ebmlab.estimators.rbm_path`).
    base_data : torch.Tensor, optional
        Training data used to fit the base distribution; ``None`` gives the uniform one.
    """
    raise TypeError(
        f"no annealing path is registered for {type(model).__name__}; register one with "
        "@ebmlab.estimators.annealing.annealing_path.register"
    )


def run_annealing(
    path: AnnealingPath,
    state: Any,
    betas: list[float],
    log_weights: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    progress: bool = False,
    description: str = "AIS",
) -> Any:
    r"""Walk ``state`` along ``betas``, accumulating AIS log-weights in place.

    Adds :math:`\sum_{k=1}^{K} [\log f_{\beta_k}(x_{k-1}) - \log f_{\beta_{k-1}}(x_{k-1})]`
    to ``log_weights``, where :math:`x_k` follows the transition at :math:`\beta_k`
    (no transition after the last weight update). Reverse AIS calls it with the
    schedule reversed.
    """
    n_steps = len(betas) - 1
    steps = range(1, len(betas))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=description, leave=False, mininterval=0.5)
    for k in steps:
        state = path.advance(
            state, betas[k - 1], betas[k], log_weights, generator=generator, transition=k < n_steps
        )
    return state
