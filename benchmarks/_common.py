"""Helpers shared by the benchmark scripts: machine description and the GEMM roofline."""

from __future__ import annotations

import os
import platform
import time

import torch


def machine_summary() -> str:
    """One line naming the CPU, cores, threads and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(
                line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    import numpy
    import sklearn

    return (
        f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__} ({torch.get_num_threads()} threads); "
        f"numpy {numpy.__version__}; scikit-learn {sklearn.__version__}"
    )


def gemm_flops_per_second(
    m: int, k: int, n: int, *, dtype=torch.float32, seconds: float = 1.0
) -> float:
    """Measured fp32 GEMM rate for an (m x k) @ (k x n) product, in FLOP/s (2mkn per product)."""
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
    """Smallest wall time of ``repeats`` calls (seconds): the least disturbed measurement."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)
