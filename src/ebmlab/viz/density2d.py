"""Figures for 2-D densities and MCMC output: learned densities, posteriors, trace plots.

matplotlib is imported lazily (Agg backend) by each function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ebmlab.viz._mpl import pyplot, save_figure

Extent = tuple[float, float, float, float]


@torch.no_grad()
def log_density_grid(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    extent: Extent,
    *,
    resolution: int = 200,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Evaluate a 2-D unnormalised log density on a grid and normalise it there.

    Returns ``(xs, ys, log_p)`` with ``log_p[i, j]`` at ``(xs[j], ys[i])``,
    normalised so that :math:`\sum_{ij} e^{\log p_{ij}} \Delta x \Delta y = 1`.
    For an EBM pass ``lambda x: -energy(x)``.
    """
    x_min, x_max, y_min, y_max = extent
    xs = torch.linspace(x_min, x_max, resolution, dtype=torch.float64)
    ys = torch.linspace(y_min, y_max, resolution, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    values = torch.cat([log_density(chunk).double().reshape(-1) for chunk in points.split(65536)])
    log_p = values.reshape(resolution, resolution)
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    return xs, ys, log_p - torch.logsumexp(log_p.reshape(-1), 0) - cell.log()


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, path, dpi=110)
    pyplot().close(figure)
    return path


def save_density2d(
    energy: Callable[[torch.Tensor], torch.Tensor],
    path: str | Path,
    *,
    data: torch.Tensor,
    samples: torch.Tensor | None = None,
    extent: Extent = (-4.0, 4.0, -4.0, 4.0),
    resolution: int = 200,
    title: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Data | learned density :math:`e^{-E(x)}/Z` on a grid | model samples, side by side.

    The grid points are passed to ``energy`` in ``dtype`` (the model's dtype).
    """
    plt = pyplot()

    def log_density(points: torch.Tensor) -> torch.Tensor:
        return -energy(points.to(dtype))

    xs, ys, log_p = log_density_grid(log_density, extent, resolution=resolution)
    panels = 3 if samples is not None else 2
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.2))
    _scatter(axes[0], data, "data", extent)
    axes[1].imshow(
        log_p.exp().numpy(), origin="lower", extent=extent, cmap="viridis", aspect="equal"
    )
    axes[1].set_title("exp(-E(x)) / Z")
    if samples is not None:
        _scatter(axes[2], samples, "samples", extent)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def _scatter(axis, points: torch.Tensor, title: str, extent: Extent) -> None:
    points = points.detach().cpu().double()
    axis.scatter(points[:, 0], points[:, 1], s=1.5, alpha=0.4, color="tab:blue", rasterized=True)
    axis.set_xlim(extent[0], extent[1])
    axis.set_ylim(extent[2], extent[3])
    axis.set_aspect("equal")
    axis.set_title(title)


def save_posterior2d(
    xs: torch.Tensor,
    ys: torch.Tensor,
    log_p: torch.Tensor,
    samples: torch.Tensor,
    path: str | Path,
    *,
    labels: Sequence[str] = ("theta1", "theta2"),
    title: str | None = None,
    max_points: int = 20000,
) -> Path:
    """Contours of a gridded (log) posterior with samples (n, 2) scattered over it."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 5))
    step = max(1, len(samples) // max_points)
    points = samples[::step].detach().cpu().double()
    axis.scatter(points[:, 0], points[:, 1], s=1, alpha=0.25, color="tab:red", rasterized=True)
    density = log_p.exp()
    levels = torch.linspace(0.05, 0.95, 8).double() * density.max()
    axis.contour(xs.numpy(), ys.numpy(), density.numpy(), levels=levels.numpy(), colors="k")
    axis.set_xlabel(labels[0])
    axis.set_ylabel(labels[1])
    axis.set_xlim(float(xs[0]), float(xs[-1]))
    axis.set_ylim(float(ys[0]), float(ys[-1]))
    if title:
        axis.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def save_trace_plot(
    samples: torch.Tensor,
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    max_chains: int = 4,
) -> Path:
    """Trace plots of ``samples`` (n_chains, n_draws[, d]): one panel per component."""
    plt = pyplot()
    samples = samples.detach().cpu().double()
    if samples.ndim == 2:
        samples = samples[..., None]
    if samples.ndim != 3:
        raise ValueError(
            f"samples must have shape (n_chains, n_draws) or (n_chains, n_draws, d); "
            f"got {tuple(samples.shape)}"
        )
    n_components = samples.shape[2]
    names = list(names) if names is not None else [f"x[{i}]" for i in range(n_components)]
    figure, axes = plt.subplots(n_components, 1, figsize=(8, 2.2 * n_components), squeeze=False)
    for i, axis in enumerate(axes[:, 0]):
        for chain in samples[:max_chains, :, i]:
            axis.plot(chain.numpy(), linewidth=0.6, alpha=0.8)
        axis.set_ylabel(names[i])
    axes[-1, 0].set_xlabel("draw")
    figure.tight_layout()
    return _save(figure, path)
