"""Two-dimensional toy densities for energy-based models and samplers.

Every sampler draws its randomness from the ``generator`` argument only (never
the global numpy RNG), so a seeded :class:`torch.Generator` reproduces the
points bit for bit. Scales follow the versions commonly used in the
normalising-flow and EBM literature (FFJORD's ``toy_data``), so figures are
comparable with published ones: most mass lies in roughly [-4, 4]^2.

References
----------
Grathwohl, W., Chen, R. T. Q., Bettencourt, J., Sutskever, I. & Duvenaud, D.
(2019). FFJORD: Free-form continuous dynamics for scalable reversible
generative models. ICLR (toy densities of section 5.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ebmlab._validation import check_choice, check_positive_int

MaybeGenerator = torch.Generator | None


def _rand(n: int, generator: MaybeGenerator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float32)


def _randn(*shape: int, generator: MaybeGenerator) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float32)


def _coin(n: int, generator: MaybeGenerator) -> torch.Tensor:
    """n fair 0/1 draws as float32."""
    return torch.randint(0, 2, (n,), generator=generator).to(torch.float32)


def _eight_gaussians(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # Centres at radius 4 on the eight compass directions, std 0.5, all divided by
    # 1.414: centres at distance ~2.83, per-coordinate std ~0.354.
    angle = torch.randint(0, 8, (n,), generator=generator).to(torch.float32) * (math.pi / 4)
    centres = 4.0 * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return (centres + 0.5 * _randn(n, 2, generator=generator)) / 1.414


def _rings(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # Four concentric circles of radii 3, 2.25, 1.5 and 0.75, equally likely; noise std 0.08.
    radius = 0.75 * (1 + torch.randint(0, 4, (n,), generator=generator).to(torch.float32))
    angle = 2 * math.pi * _rand(n, generator)
    circle = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return circle + 0.08 * _randn(n, 2, generator=generator)


def _checkerboard(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # Uniform on the 8 cells (of side 2 in [-4, 4]^2) whose column + row index is even.
    column = torch.randint(0, 4, (n,), generator=generator).to(torch.float32)
    row = 2 * _coin(n, generator) + column.remainder(2)
    x = column - 2 + _rand(n, generator)
    y = row - 2 + _rand(n, generator)
    return 2 * torch.stack([x, y], dim=1)


def _moons(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # scikit-learn's two interleaved half circles (noise 0.1), scaled by 2 and shifted.
    angle = math.pi * _rand(n, generator)
    inner = _coin(n, generator)
    x = torch.cos(angle) * (1 - 2 * inner) + inner
    y = torch.sin(angle) * (1 - 2 * inner) + 0.5 * inner
    points = torch.stack([x, y], dim=1) + 0.1 * _randn(n, 2, generator=generator)
    return 2 * points + torch.tensor([-1.0, -0.2])


def _swissroll(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # scikit-learn's swiss roll (t in [1.5 pi, 4.5 pi], noise 1) seen from above, / 5.
    t = 1.5 * math.pi * (1 + 2 * _rand(n, generator))
    roll = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    return (roll + _randn(n, 2, generator=generator)) / 5


def _pinwheel(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # Five arms; radial std 0.3 around 1, tangential std 0.1, twisted by 0.25 * exp(radius).
    arm = torch.randint(0, 5, (n,), generator=generator).to(torch.float32)
    radial = 1 + 0.3 * _randn(n, generator=generator)
    tangential = 0.1 * _randn(n, generator=generator)
    angle = arm * (2 * math.pi / 5) + 0.25 * torch.exp(radial)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return 2 * torch.stack([radial * cos + tangential * sin, tangential * cos - radial * sin], 1)


def _two_spirals(n: int, generator: MaybeGenerator) -> torch.Tensor:
    # Arc length s = sqrt(u) * 3 pi (540 degrees); one spiral and its point reflection.
    s = torch.sqrt(_rand(n, generator)) * (3 * math.pi)
    x = -torch.cos(s) * s + 0.5 * _rand(n, generator)
    y = torch.sin(s) * s + 0.5 * _rand(n, generator)
    sign = 1 - 2 * _coin(n, generator)
    points = sign[:, None] * torch.stack([x, y], dim=1) / 3
    return points + 0.1 * _randn(n, 2, generator=generator)


_SAMPLERS: dict[str, Callable[[int, MaybeGenerator], torch.Tensor]] = {
    "8gaussians": _eight_gaussians,
    "rings": _rings,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "swissroll": _swissroll,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
}
TOY2D_NAMES: tuple[str, ...] = tuple(_SAMPLERS)


def sample_toy2d(name: str, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n`` points from a named 2-D toy density.

    Parameters
    ----------
    name : str
        One of :data:`TOY2D_NAMES`: ``8gaussians``, ``rings``, ``checkerboard``,
        ``moons``, ``swissroll``, ``pinwheel``, ``2spirals``.
    n : int
        Number of points, >= 1.
    generator : torch.Generator, optional
        The only source of randomness (the global torch RNG when None).

    Returns
    -------
    torch.Tensor
        float32 of shape (n, 2); real-valued, not restricted to [0, 1].

    Notes
    -----
    - 8gaussians: mixture of N(4 u_k / 1.414, (0.5 / 1.414)^2 I), u_k the eight
      unit vectors at angles k pi / 4, equal weights.
    - rings: radius uniform on {3, 2.25, 1.5, 0.75}, angle uniform, plus
      N(0, 0.08^2 I).
    - checkerboard: uniform on the squares [2i - 4, 2i - 2) x [2j - 4, 2j - 2)
      with i + j even, i, j in 0..3.
    - moons: two half circles of radius 1 plus N(0, 0.1^2 I), mapped by
      x -> 2 x + (-1, -0.2).
    - swissroll: t ~ U(1.5 pi, 4.5 pi), (t cos t, t sin t) + N(0, I), divided by 5.
    - pinwheel: five arms, radial N(1, 0.3^2), tangential N(0, 0.1^2), rotated
      by 2 pi k / 5 + 0.25 exp(radial), times 2.
    - 2spirals: s = 3 pi sqrt(u), (-s cos s, s sin s) + U(0, 0.5)^2 jitter, a
      random sign, divided by 3, plus N(0, 0.1^2 I).

    References
    ----------
    Grathwohl et al. (2019), FFJORD, section 5.1 and its ``toy_data`` script.
    """
    check_choice("name", name, TOY2D_NAMES)
    n = check_positive_int("n", n)
    return _SAMPLERS[name](n, generator).contiguous()
