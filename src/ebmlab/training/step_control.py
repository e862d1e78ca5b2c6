"""More SGLD steps when the model outruns its sampler: a controller on the energy gap.

JEM's generative gradient is :math:`\\nabla_\\theta [\\bar E(x_{data}) - \\bar E(\\hat x)]`
with negatives :math:`\\hat x` from a few SGLD steps. While the sampler keeps up, the
negatives sit where the model puts its mass and the **energy gap**
:math:`g = \\bar E(x_{data}) - \\bar E(\\hat x)` stays near zero; once the model
sharpens faster than a fixed number of steps can follow, the negatives lag in
high-energy regions and :math:`g` turns strongly negative (on Fashion-MNIST it went
from about -0.05 to -4 within about 800 iterations, benchmarks/RESULTS.md). The controller
reads :math:`g` once per logging window (averaged over ranks, so every rank takes the
same decision) and

- adds one step when :math:`g < -\\tau` (the sampler is behind), up to ``max_steps``;
- removes one when :math:`g > -\\tau / 4` (comfortably in step), down to ``min_steps``;
- keeps the count in between, so it does not oscillate around the threshold.

No peer adapts the chain length this way; it is offered as an option and measured
(docs/models/jem.md).
"""

from __future__ import annotations

import math


def adapted_steps(
    steps: int, gap: float, *, min_steps: int, max_steps: int, tolerance: float
) -> int:
    """The SGLD steps of the next window after one whose mean energy gap was ``gap``.

    A non-finite gap leaves ``steps`` unchanged (divergence handling owns that case).
    """
    if not math.isfinite(gap):
        return steps
    if gap < -tolerance:
        return min(max_steps, steps + 1)
    if gap > -tolerance / 4:
        return max(min_steps, steps - 1)
    return steps
