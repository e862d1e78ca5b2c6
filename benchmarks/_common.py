"""Helpers shared by the benchmark scripts: machine description and the GEMM roofline."""

from __future__ import annotations

import os
import platform
import time

import torch


def machine_summary() -> str:
    """One line naming the CPU, cores, threads and library versions."""
    cpu = cpu_model()
    import numpy
    import sklearn

    from ebmlab.models.matmul_precision import cpu_has_native_bfloat16

    bf16 = "native bfloat16" if cpu_has_native_bfloat16() else "no bfloat16 units"
    return (
        f"{cpu} ({bf16}); {os.cpu_count()} cores; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); numpy {numpy.__version__}; "
        f"scikit-learn {sklearn.__version__}"
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def gemm_flops_per_second(
    m: int, k: int, n: int, *, dtype=torch.float32, seconds: float = 1.0
) -> float:
    """Measured GEMM rate (operands in ``dtype``) for an (m x k) @ (k x n) product, in FLOP/s."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    out = torch.empty(m, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    repeats, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=out)
        repeats += 1
    return 2 * m * k * n * repeats / (time.perf_counter() - start)


def best_of(function, repeats: int = 3) -> float:
    """Smallest wall time of ``repeats`` calls (seconds), after one untimed warm-up call.

    The warm-up absorbs one-time costs (library initialisation, first allocations); the
    minimum is the least disturbed measurement.
    """
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
