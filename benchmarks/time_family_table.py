"""Seconds per unit of training of each model of ``ebmlab table`` (its cost table).

Usage: ``python benchmarks/time_family_table.py DATASET [NAME ...]``. Trains every
entry of :func:`ebmlab.experiments.family_table.family` for 2 epochs (40 iterations
for JEM) into a temporary folder and prints seconds per unit, data loading included,
in the form of ``SECONDS_PER_UNIT``. Prints the CPU it ran on.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from ebmlab.experiments import driver
from ebmlab.experiments.family_table import family
from ebmlab.experiments.registry import get_recipe


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(dataset: str, names: list[str]) -> None:
    print(f"# {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        for entry in family(dataset):
            if names and entry.name not in names:
                continue
            units = 40 if entry.unit == "iteration" else 2
            settings = entry.config_settings(dataset, units, None)
            config = get_recipe(entry.recipe).config_from_file(None, settings)
            start = time.perf_counter()
            driver.train(config, Path(scratch) / entry.name, progress=False)
            seconds = time.perf_counter() - start
            print(f'    "{entry.name}": {seconds / units:.3g},  # {units} {entry.unit}s in '
                  f"{seconds:.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fashion-mnist", sys.argv[2:])
