r"""Energies evaluated in reduced precision, for samplers whose steps tolerate it.

A Langevin step needs :math:`\nabla_x E(x)` to about a percent: JEM's SGLD
(step 1, noise 0.01) follows the gradient for a handful of steps from a replay
buffer, and its negatives only enter the loss through a Monte Carlo average.
Running the energy's forward and input-gradient passes in bfloat16 lets CPUs
with AMX (and GPUs with bfloat16 tensor cores) do them several times faster;
hardware without native bfloat16 emulates it and may be slower than float32.
"""

from __future__ import annotations

import torch

from ebmlab._validation import check_choice
from ebmlab.samplers.langevin import EnergyFn

SAMPLING_DTYPES = ("float32", "bfloat16")


def autocast_energy(energy: EnergyFn, dtype: str = "float32") -> EnergyFn:
    r"""``energy`` evaluated under :func:`torch.autocast` to ``dtype``, returning float32.

    Parameters
    ----------
    energy : callable
        ``x -> E(x)``, shape (batch,).
    dtype : {"float32", "bfloat16"}
        ``"float32"`` returns ``energy`` itself; ``"bfloat16"`` runs the
        autocast-eligible operations (convolutions, matrix products) of its
        forward pass, and so of the input-gradient pass, in bfloat16.

    Notes
    -----
    Only the energy and its gradient are approximate: the chain state and the
    update :math:`x \leftarrow x - \alpha \nabla_x E(x) + \sigma \epsilon` stay
    in float32, because autocast casts copies of ``x`` and the gradient flows
    back to ``x``'s own dtype. bfloat16 keeps 8 mantissa bits (a relative
    rounding error of :math:`2^{-9} \approx 0.2\%` per operation), enough for
    a gradient step; it is not for the model's training update, where the
    loss is a difference of nearly equal energies. float64 inputs are never
    cast, so exact-arithmetic tests are unaffected.
    """
    check_choice("dtype", dtype, SAMPLING_DTYPES)
    if dtype == "float32":
        return energy

    def reduced(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            values = energy(x)
        return values.float()

    return reduced
