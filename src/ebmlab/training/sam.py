r"""Sharpness-aware minimisation: the gradient taken at the worst point of a small ball.

SAM (Foret et al. 2021) minimises :math:`\max_{\|\epsilon\| \le \rho} L(\theta + \epsilon)`
with the first-order solution :math:`\hat\epsilon = \rho\, g / \|g\|_2`,
:math:`g = \nabla L(\theta)`: one update is

1. :math:`g = \nabla L(\theta)`, then :math:`\theta \leftarrow \theta + \hat\epsilon` (:func:`ascend`);
2. :math:`g_{\rm SAM} = \nabla L(\theta + \hat\epsilon)` (a second forward and backward pass);
3. :math:`\theta \leftarrow \theta - \hat\epsilon` (:func:`descend_back`), and the base
   optimizer steps with :math:`g_{\rm SAM}` at the original point.

SADA-JEM (Yang, Su & Ji, CVPR 2023) trains JEM this way and reports a smoother energy
landscape, so short SGLD chains keep up with the model; ``JEMConfig.sam_rho`` turns it
on. The norm is taken over all parameters together, as in the paper.

References
----------
Foret, Kleiner, Mobahi & Neyshabur (2021). Sharpness-aware minimization for efficiently
improving generalization. ICLR, equation (2) and Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def ascend(parameters: Iterable[torch.nn.Parameter], rho: float) -> list[torch.Tensor | None]:
    """Move each parameter by :math:`\\rho\\, g / \\|g\\|` (``.grad`` holds :math:`g`).

    Returns the steps taken, for :func:`descend_back`; ``None`` for parameters without a
    gradient. A zero gradient moves nothing.
    """
    parameters = list(parameters)
    grads = [p.grad for p in parameters]
    present = [g for g in grads if g is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in present]))
    scale = rho / norm.clamp_min(1e-12)
    steps = []
    for parameter, grad in zip(parameters, grads, strict=True):
        if grad is None:
            steps.append(None)
            continue
        step = grad * scale
        parameter.add_(step)
        steps.append(step)
    return steps


@torch.no_grad()
def descend_back(
    parameters: Iterable[torch.nn.Parameter], steps: list[torch.Tensor | None]
) -> None:
    """Undo :func:`ascend`: subtract each step taken."""
    for parameter, step in zip(list(parameters), steps, strict=True):
        if step is not None:
            parameter.sub_(step)
