r"""bfloat16 matrix products with float32 weights: the opt-in ``precision="bfloat16"`` of RBMs.

A layered model's cost is its matrix products: ``v @ W`` and ``h @ W^T`` for every Gibbs
half-sweep, ``v^T h`` for every CD statistic, two products per AIS temperature. CPUs with
bfloat16 units (AMX on Intel Sapphire Rapids and later, AVX512-BF16 on AMD Zen 4) run
them several times faster with bfloat16 operands; CPUs without them emulate bfloat16 and
run *slower* than float32 (benchmarks/RESULTS.md has both), so float32 stays the default.

Only the operands are rounded: the weights themselves (and every optimizer update) stay
float32, products accumulate in float32 inside the GEMM kernel, and biases are added to
the float32 result. bfloat16 keeps 8 significant bits, a relative rounding error of at
most :math:`2^{-9} \approx 0.2\%` on the weights and on each product's output. Binary
units (0 or 1) are exact in bfloat16.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ebmlab._validation import check_choice

PRECISIONS = ("float32", "bfloat16")


def check_precision(precision: object) -> str:
    """Return ``precision`` if it is one of :data:`PRECISIONS`; else a ValueError naming it."""
    return check_choice("precision", precision, PRECISIONS)


CPUINFO = Path("/proc/cpuinfo")


def cpu_has_native_bfloat16(cpuinfo: str | Path = CPUINFO) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX-BF16, AVX512-BF16, Arm BF16).

    Reads the kernel's CPU flags; False where they cannot be read (not Linux).
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return bool(flags & {"amx_bf16", "avx512_bf16"})
        if line.startswith("Features"):  # Arm: BF16 matrix instructions (e.g. Graviton3)
            return "bf16" in line.split(":", 1)[1].split()
    return False


def warn_if_emulated(device: torch.device, *, stacklevel: int = 2) -> None:
    """Warn that bfloat16 products are slower than float32 on a CPU without bfloat16 units.

    Measured with torch 2.13 on the RBM update's 100 x 784 x 500 product: 52 GFLOP/s
    (0.34x float32) on an AVX-512 Xeon without AVX512-BF16, 2 GFLOP/s (0.016x) on an
    AVX2-only AMD EPYC Zen 3 (benchmarks/RESULTS.md); 2.2-5.4x faster than float32 where
    the units exist.
    """
    # Only where the CPU's flags can be read (Linux): elsewhere nothing is known.
    if device.type == "cpu" and CPUINFO.exists() and not cpu_has_native_bfloat16():
        warnings.warn(
            "precision='bfloat16' on a CPU without bfloat16 matrix units (no AMX-BF16 or "
            "AVX512-BF16 flag): the products are emulated and slower than float32, by up "
            "to 60x; use precision='float32' here",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


class BFloat16Copy:
    """A bfloat16 copy of a tensor, made again only when the tensor has changed.

    Every in-place change (an optimizer step, ``load_state_dict``'s ``copy_``) bumps a
    tensor's version counter, so the copy is refreshed exactly when it would be stale.
    """

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._copy: torch.Tensor | None = None

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        key = (id(tensor), tensor._version)
        if key != self._key:
            self._copy = tensor.detach().to(torch.bfloat16)
            self._key = key
        return self._copy

    def __deepcopy__(self, memo: dict) -> BFloat16Copy:
        return BFloat16Copy()  # a copied model makes its own copy on first use


def bfloat16_addmm(bias: torch.Tensor, x: torch.Tensor, weight_bf16: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight`` with bfloat16 operands, returned in float32."""
    return torch.mm(x.to(torch.bfloat16), weight_bf16).float().add_(bias)


def bfloat16_statistic(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left^T @ right`` with bfloat16 operands, returned in float32."""
    return torch.mm(left.t().to(torch.bfloat16), right.to(torch.bfloat16)).float()
