"""A function run under :func:`torch.compile` that falls back to eager when compiling fails.

The compiled steps of ebmlab (AIS temperatures, CD's Gibbs sweeps) are pure functions whose
random draws come from a counter-based stream, so their eager and compiled runs draw the same
numbers: falling back costs speed, never reproducibility. Compiling needs a C compiler on
the CPU (and Triton on a GPU); where it fails, one warning says so and the rest of the run
is eager.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch


class CompiledFunction:
    """``function`` under ``torch.compile(dynamic=False)``, or eager after a failed compile.

    Parameters
    ----------
    function : callable
        A pure tensor function.
    description : str
        What runs, for the warning (e.g. ``"AIS runs its step"``).
    compile : bool
        False runs ``function`` eagerly from the start (tests, debugging).
    kernel_threads : int, optional
        Threads of the generated C++ loops (default: torch's thread count). Library
        GEMMs and convolutions keep torch's threads either way. 1 suits loops over a few
        thousand numbers: on the project's 2-vCPU machine (AMD EPYC Zen 4, 2 threads) the
        OpenMP-parallel loops made one step of a 1,000-particle 2-D Langevin chain 12x
        slower (1.20 ms against 0.10 ms single-threaded; eager 0.6 ms).
    """

    def __init__(
        self,
        function: Callable,
        description: str,
        *,
        compile: bool = True,
        kernel_threads: int | None = None,
    ) -> None:
        self.function = function
        self.description = description
        self.compiled = compile
        options = None if kernel_threads is None else {"cpp.threads": kernel_threads}
        self._run = torch.compile(function, dynamic=False, options=options) if compile else function

    def __call__(self, *arguments: Any) -> Any:
        try:
            return self._run(*arguments)
        except Exception as error:  # no C compiler, an unsupported backend: same maths eagerly
            if not self.compiled:
                raise
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {error}); {self.description} "
                "eagerly (the same draws, slower)",
                RuntimeWarning,
                stacklevel=2,
            )
            self._run, self.compiled = self.function, False
            return self._run(*arguments)
