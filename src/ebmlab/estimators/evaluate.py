"""One call that evaluates a model's test log-likelihood for the CLI (JSON-ready)."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from ebmlab._validation import check_nonnegative_int, check_positive_int
from ebmlab.estimators.ais import ais_log_partition
from ebmlab.estimators.annealing import default_betas
from ebmlab.estimators.likelihood import log_likelihood
from ebmlab.estimators.reverse_ais import DEFAULT_RAISE_BETAS, raise_log_likelihood

__all__ = ["evaluate_log_likelihood", "quick_log_likelihood"]


def evaluate_log_likelihood(
    model: torch.nn.Module,
    test_data: torch.Tensor,
    *,
    train_data: torch.Tensor | None = None,
    n_chains: int = 100,
    n_betas: int | None = None,
    raise_chains: int = 10,
    raise_betas: int | None = None,
    raise_max_samples: int | None = 500,
    generator: torch.Generator | None = None,
    progress: bool = True,
    compiled: bool = False,
) -> dict:
    """AIS test log-likelihood, its log Z, and a RAISE cross-check, as a JSON-ready dict.

    Parameters
    ----------
    model
        A model with a registered annealing path (the Bernoulli RBM).
    test_data : torch.Tensor
        Held-out data, shape ``(batch, n_visible)``.
    train_data : torch.Tensor, optional
        Fits the base-rate model of AIS and RAISE (``None``: uniform base model).
    n_chains : int
        AIS runs.
    n_betas : int, optional
        ``None``: the published 14,501-temperature schedule; an int: that many evenly
        spaced inverse temperatures.
    raise_chains : int
        Reverse runs per test point; 0 skips RAISE (its values are then ``None``).
    raise_betas : int, optional
        RAISE temperatures, ``default_betas(raise_betas)`` (default 1,000).
    raise_max_samples : int, optional
        RAISE runs on the first ``raise_max_samples`` test points (``None``: all): it
        costs ``raise_chains`` annealing runs per point.
    generator : torch.Generator, optional
        Randomness for both estimators.
    progress : bool
        tqdm bars.
    compiled : bool
        AIS through the compiled path (:func:`~ebmlab.estimators.ais_log_partition`'s
        ``compiled``: a float32 Bernoulli RBM; some seconds of compiling first).

    Returns
    -------
    dict
        ``{"test_loglik": {value, lower, upper, stderr, n_samples},
        "log_z": {value, lower, upper, n_chains, n_betas, weight_ess, interval_closed,
        seconds},
        "raise_loglik": {value, stderr, n_chains, n_betas, n_samples, ais_value, seconds},
        "seconds": total}``; ``raise_loglik.ais_value`` is the AIS estimate on the same
        test points as RAISE, the number to compare it with (docs/estimators.md).
    """
    check_positive_int("n_chains", n_chains)
    check_nonnegative_int("raise_chains", raise_chains)
    if raise_max_samples is not None:
        check_positive_int("raise_max_samples", raise_max_samples)
    start = time.perf_counter()
    betas = None if n_betas is None else check_positive_int("n_betas", n_betas)
    log_z = ais_log_partition(
        model,
        n_chains=n_chains,
        betas=betas,
        base_data=train_data,
        generator=generator,
        progress=progress,
        compiled=compiled,
    )
    test = log_likelihood(model, test_data, log_z)
    result = {
        "test_loglik": {
            key: getattr(test, key) for key in ("value", "lower", "upper", "stderr", "n_samples")
        },
        "log_z": log_z.summary(),
        "raise_loglik": _raise_entry(
            model,
            test_data,
            log_z,
            train_data,
            raise_chains,
            raise_betas,
            raise_max_samples,
            generator,
            progress,
        ),
    }
    result["seconds"] = time.perf_counter() - start
    return result


def _raise_entry(
    model, test_data, log_z, train_data, n_chains, n_betas, max_samples, generator, progress
):
    keys = ("value", "stderr", "n_chains", "n_betas", "n_samples", "ais_value", "seconds")
    if n_chains == 0:
        return dict.fromkeys(keys)
    subset = test_data if max_samples is None else test_data[:max_samples]
    betas = default_betas(DEFAULT_RAISE_BETAS if n_betas is None else n_betas)
    estimate = raise_log_likelihood(
        model,
        subset,
        n_chains=n_chains,
        betas=betas,
        base_data=train_data,
        generator=generator,
        progress=progress,
    )
    entry = {key: getattr(estimate, key) for key in keys if hasattr(estimate, key)}
    entry["ais_value"] = log_likelihood(model, subset, log_z).value
    return {key: entry[key] for key in keys}


def quick_log_likelihood(
    model: Any,
    data: torch.Tensor,
    *,
    train_data: torch.Tensor | None = None,
    n_chains: int = 16,
    n_betas: int = 1000,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """A cheap AIS estimate of the mean log-likelihood of ``data``, for curves while training.

    Few chains and a short schedule (``default_betas(n_betas)``): biased and noisy
    compared with :func:`evaluate_log_likelihood` at its defaults, and labelled so.
    Returns ``{"value", "lower", "upper", "method"}`` with ``None`` for an infinite bound
    (JSON has no infinity).
    """
    check_positive_int("n_chains", n_chains)
    betas = default_betas(check_positive_int("n_betas", n_betas))
    log_z = ais_log_partition(
        model,
        n_chains=n_chains,
        betas=betas,
        base_data=train_data,
        generator=generator,
        progress=False,
    )
    estimate = log_likelihood(model, data, log_z)

    def finite(value: float) -> float | None:
        return float(value) if math.isfinite(value) else None

    return {
        "value": finite(estimate.value),
        "lower": finite(estimate.lower),
        "upper": finite(estimate.upper),
        "method": f"AIS, {n_chains} chains x {n_betas} temperatures (cheap, for monitoring)",
    }


def open_interval_warnings(result: dict) -> list[str]:
    """A warning per estimate in ``result`` whose interval is open, with the AIS weights' ESS.

    ``log_z`` itself is not warned about: the log-likelihood whose interval it opens is.
    """
    log_z = result.get("log_z") if isinstance(result.get("log_z"), dict) else {}
    ess, chains = log_z.get("weight_ess"), log_z.get("n_chains")
    weights = f"; the AIS weights' ESS is {ess:.1f} of {chains} chains" if ess is not None else ""
    lines = []
    for key, entry in result.items():
        if key == "log_z" or not (isinstance(entry, dict) and {"lower", "upper"} <= set(entry)):
            continue
        ends = (entry["lower"], entry["upper"])
        if all(isinstance(v, int | float) for v in ends) and not all(map(math.isfinite, ends)):
            lines.append(
                f"warning: the interval of {key} is open [{ends[0]:.6g}, {ends[1]:.6g}]{weights}: "
                "not a usable number; raise --n-chains or --n-betas"
            )
    return lines
