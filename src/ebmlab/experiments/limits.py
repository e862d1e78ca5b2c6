"""Bounds on the work a run's settings may ask for, checked before memory is allocated.

A model or a sample count too large for this machine gets one clear error naming
the setting, instead of an allocator failure, an OOM kill or a swapping machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ebmlab.experiments.recipe import Recipe

GIB = 1024**3


def available_memory() -> int:
    """Bytes of memory this process can still use (MemAvailable; the physical size elsewhere)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(needed: int, what: str) -> None:
    """Raise one clear ValueError when ``needed`` bytes exceed what is available."""
    available = available_memory()
    if needed > available:
        raise ValueError(
            f"{what} needs about {needed / GIB:.1f} GiB of memory; this machine has "
            f"{available / GIB:.1f} GiB available"
        )


@contextmanager
def memory_errors(recipe: Recipe) -> Iterator[None]:
    """Check the recipe's estimate first; turn an allocator failure into one clear error."""
    estimate = recipe.memory_estimate()
    if estimate:
        check_memory(estimate, f"the {recipe.name} model with these settings")
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise ValueError(f"the {recipe.name} model does not fit in memory: {error}") from None
    except RuntimeError as error:
        if "allocate" not in str(error):
            raise
        raise ValueError(f"the {recipe.name} model does not fit in memory: {error}") from None
