"""Per-epoch training monitors for layered models (Hinton's guide, sections 5-6)."""

from __future__ import annotations

from typing import Any

import torch


@torch.no_grad()
def reconstruction_error(
    model: Any, v: torch.Tensor, *, generator: torch.Generator | None = None
) -> float:
    """Mean squared error between ``v`` and ``p(v | h)`` with ``h ~ p(h | v)``, per visible unit.

    Cheap and popular, but not the objective: a model can reconstruct well and
    still generate badly (Hinton's guide, section 5).
    """
    hidden = model.sample_h(v, generator=generator)
    return float(((v - model.mean_v(hidden)) ** 2).mean())


@torch.no_grad()
def free_energy_gap(model: Any, train_subset: torch.Tensor, validation: torch.Tensor) -> float:
    """``mean F(validation) - mean F(train_subset)``: grows when the model overfits.

    The partition function cancels, so the gap is comparable across epochs
    (Hinton's guide, section 6).
    """
    return float(model.free_energy(validation).mean() - model.free_energy(train_subset).mean())
