"""Stochastic gradient Langevin dynamics on a bimodal posterior (Welling & Teh 2011, figure 1).

Model: theta1 ~ N(0, 10), theta2 ~ N(0, 1) and x_i ~ 1/2 N(theta1, 2) + 1/2 N(theta1 + theta2, 2),
with 100 points drawn at theta = (0, 1). Swapping the two components gives a second mode
near (1, -1). SGLD takes one data point per step, scales its log-likelihood gradient by
N = 100 and adds Gaussian noise of variance equal to the step size, which decays as
a (b + t)^-0.55 from 0.01 to 0.0001; draws are weighted by their step size. Two
dimensions let us compare with the exact posterior on a grid. Writes OUT/sgld_mixture.png:
the exact posterior | the SGLD draws' histogram, with the mass of the theta2 > 0 mode.

    python examples/sgld_mixture.py --out docs/figures      # the docs figure, about 10 s on 1 core
    python examples/sgld_mixture.py --out /tmp/x --tiny     # a few seconds: checks the script
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ebmlab.experiments.sgld_mixture import log_posterior, mixture_data, sgld_mixture_chains
from ebmlab.viz._mpl import pyplot

FULL = {"n_chains": 200, "n_steps": 10_000, "resolution": 200}
TINY = {"n_chains": 8, "n_steps": 200, "resolution": 50}
EXTENT = (-1.5, 2.5, -3.0, 3.0)  # theta1 range, theta2 range


def exact_posterior(
    data: torch.Tensor, resolution: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The posterior normalised on a grid: xs, ys and probabilities per cell, [i, j] at (xs[j], ys[i])."""
    xs = torch.linspace(EXTENT[0], EXTENT[1], resolution, dtype=torch.float64)
    ys = torch.linspace(EXTENT[2], EXTENT[3], resolution, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    log_p = log_posterior(grid, data)
    probabilities = torch.softmax(log_p.reshape(-1), 0).reshape(log_p.shape)
    return xs.numpy(), ys.numpy(), probabilities.numpy()


def plot(exact, samples: np.ndarray, weights: np.ndarray, fractions, path: Path) -> None:
    xs, ys, probabilities = exact
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    axes[0].imshow(probabilities, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    axes[0].set_title(f"exact posterior (mass at theta2 > 0: {fractions[0]:.3f})")
    histogram, _, _ = np.histogram2d(
        samples[:, 1], samples[:, 0], bins=60, range=[extent[2:], extent[:2]], weights=weights
    )
    axes[1].imshow(histogram, origin="lower", extent=extent, aspect="auto", cmap="viridis")
    axes[1].set_title(f"SGLD draws, step-size weighted ({fractions[1]:.3f})")
    for axis in axes:
        axis.set_xlabel("theta1")
        axis.set_xticks([-1, 0, 1, 2])  # the panels' end labels would collide
    axes[0].set_ylabel("theta2")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny settings (for the tests)")
    args = parser.parse_args()
    settings = TINY if args.tiny else FULL
    started = time.perf_counter()
    data = mixture_data(args.seed)
    collector = sgld_mixture_chains(data, settings["n_chains"], settings["n_steps"], args.seed)
    draws = collector.samples  # (n_kept, n_chains, 2)
    # Every chain's draw at step t has that step's weight.
    weights = collector.weights[:, None].expand(draws.shape[:2]).reshape(-1).numpy()
    samples = draws.reshape(-1, 2).numpy()
    exact = exact_posterior(data, settings["resolution"])
    xs, ys, probabilities = exact
    exact_fraction = float(probabilities[ys > 0].sum())
    sgld_fraction = float(weights[samples[:, 1] > 0].sum() / weights.sum())
    print(f"mass at theta2 > 0: exact {exact_fraction:.3f}, SGLD {sgld_fraction:.3f}")
    path = args.out / "sgld_mixture.png"
    plot(exact, samples, weights, (exact_fraction, sgld_fraction), path)
    print(f"wrote {path} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
