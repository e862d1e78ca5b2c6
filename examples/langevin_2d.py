"""An energy-based model of a 2-D density, trained with Langevin negatives from a replay buffer.

The energy E(x) is a small MLP; p(x) = exp(-E(x)) / Z. Each update lowers the energy
of a data minibatch and raises it at negatives drawn by unadjusted Langevin dynamics,

    x <- x - step_size * grad E(x) + sqrt(2 step_size) * noise,

started from a replay buffer of persistent chains (5% restarted from uniform noise).
The loop below is the whole algorithm, written with the library's pieces
(``ebmlab train ebm2d`` runs the same recipe into a resumable run folder). Writes
OUT/langevin_2d.png: data | exp(-E) normalised on the grid | the buffer's samples.

    python examples/langevin_2d.py --out docs/figures       # the docs figure, about 75 s on 1 core
    python examples/langevin_2d.py --out /tmp/x --tiny      # a few seconds: checks the script
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ebmlab.data import sample_toy2d
from ebmlab.models.nets.mlp import MLPEnergy
from ebmlab.samplers import Langevin, ReplayBuffer, UniformInit
from ebmlab.training.ebm import LangevinNegatives, contrastive_step
from ebmlab.viz._mpl import pyplot
from ebmlab.viz.density2d import log_density_grid

FULL = {"n_iterations": 6000, "n_steps": 20, "buffer_size": 10_000, "resolution": 200}
TINY = {"n_iterations": 20, "n_steps": 5, "buffer_size": 500, "resolution": 40}
EXTENT = (-4.0, 4.0, -4.0, 4.0)


def train(dataset: str, settings: dict, seed: int) -> tuple[MLPEnergy, torch.Tensor, torch.Tensor]:
    """Train the energy; returns it, the training points and the final buffer."""
    generator = torch.Generator().manual_seed(seed)
    data = sample_toy2d(dataset, 20_000, generator=generator)
    energy = MLPEnergy(2, hidden_sizes=(128, 128), generator=generator)
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-3)
    # Calibrated Langevin (noise sqrt(2 step)): a real sampler of exp(-E), unlike JEM's SGLD.
    sampler = Langevin.calibrated(energy, step_size=0.01)
    buffer = ReplayBuffer(
        settings["buffer_size"],
        UniformInit((2,), low=EXTENT[0], high=EXTENT[1]),
        reinit_prob=0.05,
        generator=generator,
    )
    negatives = LangevinNegatives(sampler, n_steps=settings["n_steps"], buffer=buffer)
    for iteration in range(1, settings["n_iterations"] + 1):
        rows = torch.randint(len(data), (256,), generator=generator)
        stats = contrastive_step(
            energy, optimizer, data[rows], negatives, l2_weight=0.01, generator=generator
        )
        if iteration % max(1, settings["n_iterations"] // 5) == 0:
            print(
                f"iteration {iteration:5d}  E(data) {stats['energy_data']:+.3f}  "
                f"E(negatives) {stats['energy_negative']:+.3f}"
            )
    return energy, data, buffer.buffer


def plot(
    energy: MLPEnergy, data: torch.Tensor, samples: torch.Tensor, settings: dict, path: Path
) -> Path:
    """Data | exp(-E(x)) normalised on a grid | samples, side by side."""
    _, _, log_p = log_density_grid(
        lambda x: -energy(x.float()), EXTENT, resolution=settings["resolution"]
    )
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    for axis, points, title in ((axes[0], data, "data"), (axes[2], samples, "Langevin samples")):
        points = points[:2000].detach()
        axis.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4, rasterized=True)
        axis.set_title(title)
    axes[1].imshow(log_p.exp().numpy(), origin="lower", extent=EXTENT, cmap="viridis")
    axes[1].set_title("exp(-E(x)) / Z on the grid")
    for axis in axes:
        axis.set_xlim(EXTENT[:2])
        axis.set_ylim(EXTENT[2:])
        axis.set_aspect("equal")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="figure folder")
    parser.add_argument("--dataset", default="8gaussians", help="a 2-D toy set (ebmlab data list)")
    parser.add_argument("--iterations", type=int, default=None, help="parameter updates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="tiny settings (for the tests)")
    args = parser.parse_args()
    settings = dict(TINY if args.tiny else FULL)
    if args.iterations is not None:
        settings["n_iterations"] = args.iterations
    started = time.perf_counter()
    energy, data, samples = train(args.dataset, settings, args.seed)
    path = plot(energy, data, samples, settings, args.out / "langevin_2d.png")
    print(f"wrote {path} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
