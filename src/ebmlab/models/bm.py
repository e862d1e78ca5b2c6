"""The general Boltzmann machine: binary units with arbitrary symmetric couplings.

With ``n_hidden=0`` it is the fully visible Boltzmann machine. The couplings
``weight_vv`` and ``weight_hh`` are symmetric with a zero diagonal *by
construction*: a :mod:`torch.nn.utils.parametrize` parametrization maps a free
square matrix ``A`` to ``(A + A^T) / 2`` with the diagonal masked, so no optimizer
step, assignment or loaded checkpoint can break the structure. The state dict
(and so every checkpoint) still uses the plain names ``weight_vv``, ``weight_vh``,
``weight_hh``, ``visible_bias`` and ``hidden_bias``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ebmlab._validation import (
    check_choice,
    check_matrix,
    check_nonempty,
    check_nonnegative_float,
    check_nonnegative_int,
    check_positive_int,
    check_smoothing,
    check_unit_interval,
)
from ebmlab.models._init import gaussian_weight
from ebmlab.models.enumeration import enumerate_binary

SCANS = ("systematic", "random")
# Summing the hidden units out enumerates 2^n_hidden states per visible vector.
MAX_ENUMERATED_HIDDEN = 20


class SymmetricZeroDiagonal(nn.Module):
    """Parametrization ``A -> (A + A^T) / 2`` with the diagonal set to zero."""

    def forward(self, free: torch.Tensor) -> torch.Tensor:
        mask = 1 - torch.eye(free.shape[0], dtype=free.dtype, device=free.device)
        return 0.5 * (free + free.t()) * mask

    def right_inverse(self, matrix: torch.Tensor) -> torch.Tensor:
        # Assigning any matrix stores its projection, so the free matrix stays symmetric too.
        return self.forward(matrix)


def binary_states(n: int, *, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """All ``2^n`` binary vectors, shape (2^n, n); column ``j`` of row ``k`` is ``(k >> j) & 1``."""
    return enumerate_binary(n, dtype=dtype, device=device)


class BoltzmannMachine(nn.Module):
    r"""Boltzmann machine with ``n_visible`` visible and ``n_hidden`` hidden binary units.

    Parameters
    ----------
    n_visible : int
        Number of visible units.
    n_hidden : int
        Number of hidden units (0 gives the fully visible Boltzmann machine).
    weight_std : float
        Standard deviation of the initial Gaussian couplings (Hinton's guide: 0.01).
    generator : torch.Generator, optional
        Randomness for the initial couplings.
    dtype, device
        Parameter dtype (the default dtype if None) and device.

    Notes
    -----
    The energy, with :math:`x` the visible and :math:`h` the hidden units, is

    .. math:: E(x, h) = -x^\top W_v x - x^\top W_{vh} h - h^\top W_h h - b_h^\top h - b_v^\top x,

    and :math:`p(x, h) = e^{-E(x, h)} / Z`. :math:`W_v` and :math:`W_h` are
    symmetric with zero diagonals, so :math:`x^\top W_v x = 2 \sum_{i<j} W_{v,ij}
    x_i x_j` counts each pair *twice*. Flipping :math:`x_i` from 0 to 1 with every
    other unit fixed changes the energy by :math:`-(b_{v,i} + 2 (W_v x)_i +
    (W_{vh} h)_i)` (the zero diagonal keeps :math:`x_i` out of :math:`(W_v x)_i`), so

    .. math:: p(x_i = 1 \mid x_{-i}, h) = \sigma\big(b_{v,i} + 2 (W_v x)_i + (W_{vh} h)_i\big),
              \qquad
              p(h_j = 1 \mid x, h_{-j}) = \sigma\big(b_{h,j} + 2 (W_h h)_j + (W_{vh}^\top x)_j\big).

    Stacking :math:`z = (x, h)` gives :math:`E(z) = -z^\top J z - b^\top z` with
    :math:`J = \begin{pmatrix} W_v & W_{vh}/2 \\ W_{vh}^\top/2 & W_h \end{pmatrix}`,
    the form the Gibbs sweep and the exact enumeration use.

    To set ``weight_vv`` or ``weight_hh``, *assign* (``bm.weight_vv = M``): the
    matrix is projected onto the symmetric zero-diagonal ones. An in-place
    ``bm.weight_vv.copy_(M)`` would write into a temporary and has no effect.

    References
    ----------
    Ackley, D., Hinton, G. & Sejnowski, T. (1985). A learning algorithm for
    Boltzmann machines. Cognitive Science 9(1), 147-169.
    """

    def __init__(
        self,
        n_visible: int,
        n_hidden: int = 0,
        *,
        weight_std: float = 0.01,
        generator: torch.Generator | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.n_visible = check_positive_int("n_visible", n_visible)
        self.n_hidden = check_nonnegative_int("n_hidden", n_hidden)
        check_nonnegative_float("weight_std", weight_std)
        dtype = dtype or torch.get_default_dtype()

        def gaussian(rows: int, columns: int, *, symmetric: bool = False) -> nn.Parameter:
            draw = gaussian_weight(
                rows, columns, weight_std, generator=generator, dtype=dtype, device=device
            )
            if symmetric:  # mirror the upper triangle: each coupling ~ N(0, weight_std^2)
                draw = torch.triu(draw, 1) + torch.triu(draw, 1).t()
            return nn.Parameter(draw)

        self.weight_vv = gaussian(n_visible, n_visible, symmetric=True)
        self.weight_vh = gaussian(n_visible, n_hidden)
        self.weight_hh = gaussian(n_hidden, n_hidden, symmetric=True)
        self.visible_bias = nn.Parameter(torch.zeros(n_visible, dtype=dtype, device=device))
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden, dtype=dtype, device=device))
        for name in ("weight_vv", "weight_hh"):
            parametrize.register_parametrization(self, name, SymmetricZeroDiagonal())
        self.register_state_dict_post_hook(_plain_state_dict_names)
        self.register_load_state_dict_pre_hook(_load_plain_state_dict_names)

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}"

    @property
    def n_units(self) -> int:
        return self.n_visible + self.n_hidden

    @torch.no_grad()
    def init_visible_bias(self, data: torch.Tensor, *, smoothing: float = 1e-2) -> BoltzmannMachine:
        """Set :math:`b_v = \\log(p / (1 - p))` from the data means, clipped to [smoothing, 1 - smoothing].

        Exact for a model without couplings; a good start otherwise. ``smoothing``
        must lie in (0, 0.5); ``data`` must be non-empty, finite and in [0, 1].
        Returns ``self``.
        """
        check_nonempty("data", self.check_visible(data, "data"))
        check_smoothing(smoothing, data.dtype)
        p = data.mean(0).clamp(smoothing, 1 - smoothing)
        self.visible_bias.copy_(torch.log(p) - torch.log1p(-p))
        return self

    # ----- the joint form z = (x, h) ---------------------------------------------------
    def joint_coupling(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(J, b)`` with :math:`E(z) = -z^\\top J z - b^\\top z` for :math:`z = (x, h)`."""
        half = 0.5 * self.weight_vh
        top = torch.cat([self.weight_vv, half], dim=1)
        bottom = torch.cat([half.t(), self.weight_hh], dim=1)
        coupling = torch.cat([top, bottom], dim=0)
        return coupling, torch.cat([self.visible_bias, self.hidden_bias])

    def expected_energy(self, mean: torch.Tensor, second_moment: torch.Tensor) -> torch.Tensor:
        r"""Expected energy :math:`\mathbb{E}_q[E(z)] = -\langle J, \mathbb{E}_q[z z^\top]\rangle - b^\top \mathbb{E}_q[z]`.

        The energy is linear in the parameters, so the difference of this value
        under the data distribution and under the model is a loss whose gradient
        is exactly minus the log-likelihood gradient (Boltzmann learning rule).
        ``mean`` has shape (n_units,), ``second_moment`` (n_units, n_units).
        """
        coupling, bias = self.joint_coupling()
        return -(coupling * second_moment).sum() - bias @ mean

    # ----- energies ---------------------------------------------------------------------
    def energy(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Joint energy :math:`E(x, h)`, shape (batch,); ``h`` is required iff ``n_hidden > 0``."""
        h = self._hidden_or_empty(x, h)
        visible = ((x @ self.weight_vv) * x).sum(-1) + x @ self.visible_bias
        hidden = ((h @ self.weight_hh) * h).sum(-1) + h @ self.hidden_bias
        return -visible - ((x @ self.weight_vh) * h).sum(-1) - hidden

    def free_energy(self, x: torch.Tensor) -> torch.Tensor:
        """Free energy :math:`F(x) = -\\log \\sum_h e^{-E(x, h)}` by enumerating the hidden units.

        ``x`` must be a finite (batch, n_visible) floating tensor.
        """
        check_matrix("x", x, n_columns=self.n_visible)
        if self.n_hidden == 0:
            return self.energy(x)
        if self.n_hidden > MAX_ENUMERATED_HIDDEN:
            raise ValueError(
                f"free_energy enumerates 2^n_hidden states; n_hidden must be <= "
                f"{MAX_ENUMERATED_HIDDEN}; got {self.n_hidden}"
            )
        return -torch.logsumexp(self.joint_log_weights(x), dim=1)

    def joint_log_weights(
        self, x: torch.Tensor, hidden_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:math:`-E(x, h)` for every row of ``x`` and every hidden state, shape (batch, 2^n_hidden).

        ``hidden_states`` defaults to :func:`binary_states` ``(n_hidden)``.
        """
        h = hidden_states
        if h is None:
            h = binary_states(self.n_hidden, dtype=x.dtype, device=x.device)
        visible = ((x @ self.weight_vv) * x).sum(-1) + x @ self.visible_bias
        hidden = ((h @ self.weight_hh) * h).sum(-1) + h @ self.hidden_bias
        cross = (x @ self.weight_vh) @ h.t()
        return visible.unsqueeze(1) + cross + hidden.unsqueeze(0)

    # ----- conditionals -----------------------------------------------------------------
    def visible_preactivation(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Input to each visible unit given all the others, :math:`b_v + 2 W_v x + W_{vh} h`."""
        h = self._hidden_or_empty(x, h)
        return self.visible_bias + 2 * x @ self.weight_vv + h @ self.weight_vh.t()

    def hidden_preactivation(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Input to each hidden unit given all the others, :math:`b_h + W_{vh}^\\top x + 2 W_h h`."""
        return self.hidden_bias + x @ self.weight_vh + 2 * h @ self.weight_hh

    def visible_conditional(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`p(x_i = 1 \\mid x_{-i}, h)` for every visible unit, shape (batch, n_visible)."""
        return torch.sigmoid(self.visible_preactivation(x, h))

    def hidden_conditional(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:math:`p(h_j = 1 \\mid x, h_{-j})` for every hidden unit, shape (batch, n_hidden)."""
        return torch.sigmoid(self.hidden_preactivation(x, h))

    # ----- Gibbs sampling ---------------------------------------------------------------
    @torch.no_grad()
    def gibbs_sweep(
        self,
        x: torch.Tensor,
        h: torch.Tensor | None = None,
        *,
        scan: str = "systematic",
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Gibbs sweep (``n_units`` single-unit updates) of every chain; returns new ``(x, h)``.

        ``scan="systematic"`` updates the units in order (visible, then hidden);
        ``scan="random"`` makes ``n_units`` updates, each chain picking its unit
        uniformly at random. Both leave :math:`p(x, h)` invariant. The chains
        (rows) are updated in parallel; the units one after another, because each
        conditional depends on the current value of every other unit.
        """
        check_choice("scan", scan, SCANS)
        h = self._hidden_or_empty(x, h)
        coupling, bias = self.joint_coupling()
        state = torch.cat([x, h], dim=1)
        uniform = torch.rand(
            state.shape, generator=generator, dtype=state.dtype, device=state.device
        )
        if scan == "systematic":
            for k in range(self.n_units):
                field = bias[k] + 2 * (state @ coupling[:, k])
                state[:, k] = (uniform[:, k] < torch.sigmoid(field)).to(state.dtype)
        else:
            rows = torch.arange(state.shape[0], device=state.device)
            units = torch.randint(
                self.n_units, state.shape, generator=generator, device=state.device
            )
            for t in range(self.n_units):
                k = units[:, t]
                field = bias[k] + 2 * (state * coupling[k]).sum(1)
                state[rows, k] = (uniform[:, t] < torch.sigmoid(field)).to(state.dtype)
        return state[:, : self.n_visible], state[:, self.n_visible :]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        n_steps: int,
        *,
        scan: str = "systematic",
        generator: torch.Generator | None = None,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ``n`` independent Gibbs chains for ``n_steps`` sweeps; return their visible states.

        Chains start at ``x0`` (shape (n, n_visible)) or at uniformly random
        binary vectors, with hidden units uniformly random.
        """
        check_positive_int("n", n)
        check_nonnegative_int("n_steps", n_steps)
        check_choice("scan", scan, SCANS)
        dtype, device = self.visible_bias.dtype, self.visible_bias.device
        if x0 is None:
            x = torch.randint(2, (n, self.n_visible), generator=generator, device=device).to(dtype)
        else:
            x = self.check_visible(x0, "x0").to(dtype=dtype, device=device).clone()
            if x.shape[0] != n:
                raise ValueError(f"x0 must have n={n} rows; got shape {tuple(x.shape)}")
        h = torch.randint(2, (n, self.n_hidden), generator=generator, device=device).to(dtype)
        for _ in range(n_steps):
            x, h = self.gibbs_sweep(x, h, scan=scan, generator=generator)
        return x

    # ----- validation -------------------------------------------------------------------
    def check_visible(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Raise a clear error unless ``x`` is a finite (batch, n_visible) tensor in [0, 1]."""
        check_matrix(name, x, n_columns=self.n_visible)
        return check_unit_interval(name, x, model="Boltzmann machine")

    def _hidden_or_empty(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        if h is None:
            if self.n_hidden > 0:
                raise ValueError(
                    f"h is required when n_hidden > 0 (n_hidden={self.n_hidden}); "
                    "use free_energy(x) to sum the hidden units out"
                )
            return x.new_zeros(x.shape[0], 0)
        if h.ndim != 2 or h.shape != (x.shape[0], self.n_hidden):
            raise ValueError(
                f"h must have shape ({x.shape[0]}, {self.n_hidden}); got {tuple(h.shape)}"
            )
        return h


# The parametrization stores the free matrices under "parametrizations.<name>.original";
# checkpoints and users see the plain names and the (symmetric, zero-diagonal) values.
_PARAMETRIZED = ("weight_vv", "weight_hh")


def _plain_state_dict_names(
    module: BoltzmannMachine, state_dict, prefix: str, local_metadata
) -> None:
    for name in _PARAMETRIZED:
        state_dict.pop(f"{prefix}parametrizations.{name}.original", None)
        state_dict[f"{prefix}{name}"] = getattr(module, name).detach()


def _load_plain_state_dict_names(
    module: BoltzmannMachine,
    state_dict,
    prefix,
    local_metadata,
    strict,
    missing,
    unexpected,
    errors,
) -> None:
    for name in _PARAMETRIZED:
        key = f"{prefix}{name}"
        if key in state_dict:
            state_dict[f"{prefix}parametrizations.{name}.original"] = SymmetricZeroDiagonal()(
                state_dict.pop(key)
            )
