"""A function run under :func:`torch.compile` that falls back to eager when compiling fails.

The compiled steps of ebmlab (AIS temperatures, CD's Gibbs sweeps) are pure functions whose
random draws come from a counter-based stream, so their eager and compiled runs draw the same
numbers: falling back costs speed, never reproducibility. Compiling needs a C compiler on
the CPU (and Triton on a GPU); where it fails, one warning says so and the rest of the run
is eager. On CUDA inputs the compiled function is also captured as a CUDA graph
(``mode="reduce-overhead"``): one launch replays a whole block of steps, which removes the
per-kernel launch cost that dominates small samplers on a GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._pytree import tree_flatten, tree_map


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

    Notes
    -----
    The backend is chosen at the first call, from where its tensors live: CPU tensors get
    the C++ loops above; CUDA tensors get CUDA graphs, with each call marked as a new
    step and its outputs cloned, because a graph's replay overwrites the outputs of the
    previous one (a chain feeds them back as inputs).
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
        self._options = None if kernel_threads is None else {"cpp.threads": kernel_threads}
        self._run: Callable | None = None if compile else function
        self.cuda_graphs = False

    def _build(self, arguments: tuple) -> Callable:
        """The compiled function for these arguments' device (see Notes)."""
        self.cuda_graphs = on_cuda(arguments)
        if self.cuda_graphs:
            return torch.compile(self.function, dynamic=False, mode="reduce-overhead")
        return torch.compile(self.function, dynamic=False, options=self._options)

    def __call__(self, *arguments: Any) -> Any:
        try:
            if self._run is None:
                self._run = self._build(arguments)
            if not self.cuda_graphs:
                return self._run(*arguments)
            torch.compiler.cudagraph_mark_step_begin()
            return tree_map(_clone_tensor, self._run(*arguments))
        except Exception as error:  # no C compiler, an unsupported backend: same maths eagerly
            if not self.compiled:
                raise
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {error}); {self.description} "
                "eagerly (the same draws, slower)",
                RuntimeWarning,
                stacklevel=2,
            )
            self._run, self.compiled, self.cuda_graphs = self.function, False, False
            return self._run(*arguments)


def on_cuda(arguments: Any) -> bool:
    """Whether any tensor among ``arguments`` (nested in tuples, lists, dicts) is on CUDA."""
    leaves, _ = tree_flatten(arguments)
    return any(isinstance(leaf, torch.Tensor) and leaf.is_cuda for leaf in leaves)


def _clone_tensor(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value
