"""A small multilayer perceptron: the backbone of the 2-D toy EBMs and small classifiers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ebmlab._validation import check_choice, check_positive_int

_ACTIVATIONS = {
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": nn.ReLU,
}


class MLP(nn.Module):
    """Fully connected network ``in_features -> hidden_sizes... -> out_features``.

    Parameters
    ----------
    in_features : int
        Input dimension (inputs of shape (batch, ...) are flattened).
    out_features : int
        Output dimension (1 for an energy, n_classes for a classifier).
    hidden_sizes : sequence of int
        Widths of the hidden layers.
    activation : str
        One of silu, elu, tanh, softplus, leaky_relu (slope 0.2, JEM's choice), relu.
        Langevin sampling needs input gradients, so smooth activations (silu,
        elu, softplus) give better-behaved energy landscapes than relu.
    generator : torch.Generator, optional
        Randomness for the initial weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "silu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        for width in hidden_sizes:
            check_positive_int("hidden_sizes[i]", width)
        self.activation = check_choice("activation", activation, tuple(_ACTIVATIONS))
        widths = [in_features, *hidden_sizes, out_features]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*layers)
        if generator is not None:
            self._reset_parameters(generator)

    @torch.no_grad()
    def _reset_parameters(self, generator: torch.Generator) -> None:
        # PyTorch's default Linear initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        # drawn from the given generator so that a run is reproducible from its seed.
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                bound = layer.in_features**-0.5
                for p in (layer.weight, layer.bias):
                    p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound - bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs of shape (batch, out_features)."""
        return self.layers(x.flatten(1))


class MLPEnergy(nn.Module):
    """Scalar energy :math:`E(x)` given by an :class:`MLP` with one output.

    ``energy(x)`` (and calling the module) returns shape (batch,), with the
    library's sign convention :math:`p(x) \\propto e^{-E(x)}`.
    """

    def __init__(
        self,
        n_features: int,
        *,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "silu",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.net = MLP(
            n_features, 1, hidden_sizes=hidden_sizes, activation=activation, generator=generator
        )

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energies, shape (batch,)."""
        return self.net(x).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.energy(x)
