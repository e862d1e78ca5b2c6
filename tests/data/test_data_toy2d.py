"""2-D toy densities: seeded through the generator only, shapes, and their defining geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ebmlab.data import TOY2D_NAMES, sample_toy2d

N = 20_000


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_toy_sets_are_deterministic_finite_and_shaped(name):
    points = sample_toy2d(name, 500, generator=_seeded(0))
    assert points.shape == (500, 2) and points.dtype == torch.float32
    assert torch.isfinite(points).all()
    assert torch.equal(points, sample_toy2d(name, 500, generator=_seeded(0)))
    assert not torch.equal(points, sample_toy2d(name, 500, generator=_seeded(1)))
    assert points.abs().max() < 6  # "roughly [-4, 4]^2" plus noise tails
    assert sample_toy2d(name, 1, generator=_seeded(0)).shape == (1, 2)


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_global_random_states_are_left_alone(name):
    # Reading the legacy global numpy state is the point here: it must not move.
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    sample_toy2d(name, 100, generator=_seeded(0))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)  # noqa: NPY002


def test_eight_gaussians_components():
    points = sample_toy2d("8gaussians", N, generator=_seeded(2)).double()
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    centres = 4 / 1.414 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    nearest = torch.cdist(points, centres).argmin(1)
    residual = points - centres[nearest]
    # Each component has weight 1/8: counts have SE sqrt(N p (1-p)); 4-SE band.
    counts = torch.bincount(nearest, minlength=8).double()
    assert torch.all((counts - N / 8).abs() <= 4 * math.sqrt(N / 8 * 7 / 8))
    # Per-coordinate std 0.5/1.414; a sample std's relative SE is 1/sqrt(2N). Nearest-
    # centre assignment cuts tails beyond ~3 sd (adjacent centres are 6.1 sd apart), which
    # shrinks the std by < 0.5%, inside the 4-SE band of 2%.
    sigma = 0.5 / 1.414
    assert torch.all((residual.std(0) / sigma - 1).abs() <= 4 / math.sqrt(2 * N))


def test_checkerboard_fills_only_even_cells():
    points = sample_toy2d("checkerboard", N, generator=_seeded(3))
    assert points.min() >= -4 and points.max() < 4
    cells = torch.floor(points / 2).long() + 2  # cell indices 0..3
    assert torch.all((cells.sum(1) % 2) == 0)
    # The 8 allowed cells are equally likely: 4-SE band on each count.
    counts = torch.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16).double()
    allowed = counts[counts > 0]
    assert allowed.numel() == 8
    assert torch.all((allowed - N / 8).abs() <= 4 * math.sqrt(N / 8 * 7 / 8))


def test_rings_radii():
    points = sample_toy2d("rings", N, generator=_seeded(4))
    radius = points.norm(dim=1)
    ring = torch.round(radius / 0.75).long()  # radii 0.75, 1.5, 2.25, 3 and noise sd 0.08
    assert set(ring.unique().tolist()) == {1, 2, 3, 4}
    assert (radius - 0.75 * ring).abs().max() < 8 * 0.08


@pytest.mark.parametrize(("name", "n"), [("moons", 0), ("rings", -3), ("rings", 2.0)])
def test_bad_size(name, n):
    with pytest.raises(ValueError, match=f"n must be a positive integer; got {n!r}"):
        sample_toy2d(name, n)


def test_unknown_toy_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="name must be one of 8gaussians, rings, .*got 'spiral'"):
        sample_toy2d("spiral", 10)
