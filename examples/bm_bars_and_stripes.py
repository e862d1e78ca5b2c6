"""Fully visible vs hidden-unit Boltzmann machines on 4x4 bars-and-stripes, exact likelihoods.

Each model is trained with the exact log-likelihood gradient (all 2^16 x 2^n_hidden
states enumerated at every step) on the 30 patterns, and its exact mean
log-likelihood is recorded every ``--eval-every`` epochs. The ceiling is
-log 30 = -3.401 nats (the data's own distribution).

    python examples/bm_bars_and_stripes.py                 # 0 and 6 hidden units, 600 epochs
    python examples/bm_bars_and_stripes.py --hidden 0 4 6 --epochs 1000  # the docs figure
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from ebmlab.experiments import driver
from ebmlab.experiments.bm import BMConfig
from ebmlab.experiments.registry import open_run
from ebmlab.viz._mpl import pyplot
from ebmlab.viz.images import tile_images

N_PATTERNS = 30  # 4x4 bars-and-stripes: 16 bars + 16 stripes - 2 shared (blank and full)


def train(
    n_hidden: int, args: argparse.Namespace, root: Path
) -> tuple[list[dict], torch.Tensor, float]:
    config = BMConfig(
        n_hidden=n_hidden,
        epochs=args.epochs,
        eval_every=args.eval_every,
        checkpoint_every=args.epochs,
        seed=args.seed,
    )
    start = time.perf_counter()
    path = driver.train(config, root / f"hidden-{n_hidden}", overwrite=True, progress=False).path
    seconds = time.perf_counter() - start
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    model = open_run(path).model
    samples = model.sample(32, 500, generator=torch.Generator().manual_seed(args.seed))
    return [r for r in records if "log_likelihood" in r], samples, seconds


def tiles(samples: torch.Tensor) -> torch.Tensor:
    """4x4 samples in a grid, separated by grey lines so that white pixels stay visible."""
    grid = torch.as_tensor(tile_images(samples, (4, 4), n_columns=16))
    frame = torch.as_tensor(tile_images(torch.zeros_like(samples), (4, 4), n_columns=16))
    return torch.where(frame == 1, 0.5, grid)


def plot(results: dict[int, tuple[list[dict], torch.Tensor, float]], figure_path: Path) -> None:
    plt = pyplot()
    figure = plt.figure(figsize=(11, 4))
    grid = figure.add_gridspec(len(results), 2, width_ratios=[1.6, 1])
    curves = figure.add_subplot(grid[:, 0])
    for n_hidden, (records, samples, _) in results.items():
        label = "fully visible" if n_hidden == 0 else f"{n_hidden} hidden units"
        epochs = [r["epoch"] for r in records]
        curves.plot(epochs, [r["log_likelihood"] for r in records], label=label)
        panel = figure.add_subplot(grid[list(results).index(n_hidden), 1])
        panel.imshow(tiles(samples), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        panel.set_title(f"{label}: 32 Gibbs samples (500 sweeps)", fontsize=9)
        panel.set_axis_off()
    ceiling = -math.log(N_PATTERNS)
    curves.axhline(ceiling, color="k", ls="--", lw=1, label="ceiling -log 30")
    curves.set_ylim(ceiling - 1.5, ceiling + 0.1)
    curves.set(
        xlabel="epoch (one exact full-batch step)", ylabel="exact mean log-likelihood (nats)"
    )
    curves.set_title("Boltzmann machines on 4x4 bars-and-stripes")
    curves.legend(loc="lower right")
    curves.grid(alpha=0.3)
    figure.tight_layout()
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(figure_path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[0, 6])
    parser.add_argument("--epochs", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the matrices are tiny: 1 is fastest)"
    )
    parser.add_argument("--out", type=Path, default=None, help="run folders (default: a temp dir)")
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/bm_bars_and_stripes.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temp:
        root = args.out or Path(temp)
        results = {n_hidden: train(n_hidden, args, root) for n_hidden in args.hidden}
        plot(results, args.figure)
    print(f"{'n_hidden':>8} {'epoch 100':>10} {'epoch 300':>10} {'final':>8} {'seconds':>8}")
    for n_hidden, (records, _, seconds) in results.items():
        at = {r["epoch"]: r["log_likelihood"] for r in records}
        row = [at.get(100, math.nan), at.get(300, math.nan), records[-1]["log_likelihood"]]
        print(
            f"{n_hidden:>8} "
            + " ".join(f"{v:>10.4f}" for v in row[:2])
            + f" {row[2]:>8.4f} {seconds:>8.1f}"
        )
    print(f"ceiling -log {N_PATTERNS} = {-math.log(N_PATTERNS):.4f}; figure: {args.figure}")


if __name__ == "__main__":
    main()
