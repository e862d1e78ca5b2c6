"""Replay buffers of persistent chains for EBM training (PCD in data space).

A buffer holds ``buffer_size`` samples. Each training step draws a batch from
it, replaces each drawn sample by fresh noise with probability ``reinit_prob``,
runs a few sampler steps from there and pushes the results back to the slots
they came from. Initial and fresh samples come from an *initial distribution*:
:class:`UniformInit` (JEM), :class:`GaussianInit`, or :class:`ClassGaussianInit`
(JEM++'s informative initialisation: a Gaussian fitted to each class).

Every state dictionary holds only tensors and plain numbers, so it can be
written as safetensors plus JSON (no pickle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from ebmlab._validation import check_positive_float, check_positive_int, check_probability


class InitDistribution(Protocol):
    """What a buffer needs from its initial distribution."""

    sample_shape: tuple[int, ...]

    def sample(
        self, n: int, *, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, torch.Tensor | float | int]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor | float | int]) -> None: ...


class UniformInit:
    """Independent U(low, high) entries (JEM: U(-1, 1), the data range)."""

    def __init__(
        self,
        sample_shape: Sequence[int],
        *,
        low: float = -1.0,
        high: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        self.sample_shape = _check_shape(sample_shape)
        if not float(low) < float(high):
            raise ValueError(f"low must be smaller than high; got low={low}, high={high}")
        self.low, self.high = float(low), float(high)
        self.dtype, self.device = dtype, device

    def sample(self, n, *, generator=None, y=None):  # noqa: D102 - see InitDistribution
        u = torch.rand(
            (n, *self.sample_shape), generator=generator, dtype=self.dtype, device=self.device
        )
        return self.low + (self.high - self.low) * u

    def state_dict(self):  # noqa: D102
        return {"low": self.low, "high": self.high}

    def load_state_dict(self, state):  # noqa: D102
        self.low, self.high = float(state["low"]), float(state["high"])


class GaussianInit:
    """Independent N(mean, std^2) entries; ``mean`` and ``std`` broadcast to ``sample_shape``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor | float) -> None:
        self.mean = torch.as_tensor(mean).detach().clone()
        if not self.mean.is_floating_point():
            raise TypeError(f"mean must be a floating tensor; got dtype {self.mean.dtype}")
        self.std = torch.as_tensor(std, dtype=self.mean.dtype, device=self.mean.device).clone()
        self.std = torch.broadcast_to(self.std, self.mean.shape).clone()
        if not (self.std > 0).all():
            raise ValueError("std must be > 0 everywhere")
        self.sample_shape = tuple(self.mean.shape)

    @classmethod
    def fit(cls, x: torch.Tensor) -> GaussianInit:
        """Per-feature mean and standard deviation of data ``x`` (batch, ...)."""
        x = _check_data(x)
        return cls(x.mean(dim=0), x.std(dim=0).clamp_min(1e-6))

    def sample(self, n, *, generator=None, y=None):  # noqa: D102
        noise = torch.randn(
            (n, *self.sample_shape),
            generator=generator,
            dtype=self.mean.dtype,
            device=self.mean.device,
        )
        return self.mean + self.std * noise

    def state_dict(self):  # noqa: D102
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state):  # noqa: D102
        self.mean = _same_shape("mean", state["mean"], self.mean)
        self.std = _same_shape("std", state["std"], self.std)


class ClassGaussianInit:
    r"""One Gaussian per class fitted to the data: JEM++'s informative initialisation.

    Parameters
    ----------
    means : Tensor, shape (n_classes, n_features)
        Per-class means of the flattened samples.
    scale_tril : Tensor, shape (n_classes, n_features, n_features) or (n_classes, n_features)
        Cholesky factors of the per-class covariances, or per-feature standard
        deviations (diagonal covariance).
    class_probs : Tensor, shape (n_classes,)
        Class frequencies, used when a sample is requested without labels.
    sample_shape : sequence of int
        Shape of one sample (the flattened features are reshaped to it).

    Notes
    -----
    :meth:`fit` uses :math:`\mu_c = \bar x_c` and
    :math:`\Sigma_c = \operatorname{cov}(x_c) + \lambda I`; a sample of class
    :math:`c` is :math:`\mu_c + L_c \xi` with :math:`L_c L_c^\top = \Sigma_c`.

    References
    ----------
    Yang, X. & Ji, S. (2021). JEM++: Improved techniques for training JEM. ICCV.
    """

    def __init__(
        self,
        means: torch.Tensor,
        scale_tril: torch.Tensor,
        class_probs: torch.Tensor,
        sample_shape: Sequence[int],
    ) -> None:
        self.sample_shape = _check_shape(sample_shape)
        # Contiguous copies: safetensors refuses strided views (Cholesky factors are).
        self.means = means.detach().contiguous().clone()
        self.scale_tril = scale_tril.detach().contiguous().clone()
        self.class_probs = class_probs.detach().contiguous().clone()
        n_classes, n_features = self.means.shape
        if n_features != _numel(self.sample_shape) or class_probs.shape != (n_classes,):
            raise ValueError(
                f"means must have shape (n_classes, prod(sample_shape)) and class_probs "
                f"(n_classes,); got {tuple(means.shape)}, {tuple(class_probs.shape)}, "
                f"sample_shape={self.sample_shape}"
            )
        self.diagonal = self.scale_tril.ndim == 2
        self.n_classes = n_classes

    @classmethod
    def fit(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        n_classes: int,
        *,
        diagonal: bool = False,
        jitter: float = 1e-4,
    ) -> ClassGaussianInit:
        """Fit a Gaussian (full or diagonal covariance) to each class of ``(x, y)``."""
        x = _check_data(x)
        y = _check_labels("y", y, n_classes, len(x))
        jitter = check_positive_float("jitter", jitter)
        flat = x.flatten(1)
        counts = torch.bincount(y, minlength=n_classes)
        if (counts < 2).any():
            raise ValueError(
                f"every class needs >= 2 samples to fit a Gaussian; got counts {counts.tolist()}"
            )
        means = torch.stack([flat[y == c].mean(dim=0) for c in range(n_classes)])
        if diagonal:
            scales = torch.stack([flat[y == c].var(dim=0) for c in range(n_classes)])
            scales = (scales + jitter).sqrt()
        else:
            eye = torch.eye(flat.shape[1], dtype=flat.dtype, device=flat.device)
            covs = [
                torch.cov(flat[y == c].T).reshape(eye.shape) + jitter * eye
                for c in range(n_classes)
            ]
            scales = torch.linalg.cholesky(torch.stack(covs))
        probs = counts.to(flat.dtype) / counts.sum()
        return cls(means, scales, probs, x.shape[1:])

    def sample(self, n, *, generator=None, y=None):  # noqa: D102
        if y is None:
            y = torch.multinomial(self.class_probs, n, replacement=True, generator=generator)
        y = _check_labels("y", y, self.n_classes, n)
        noise = torch.randn(
            (n, self.means.shape[1]),
            generator=generator,
            dtype=self.means.dtype,
            device=self.means.device,
        )
        if self.diagonal:
            flat = self.means[y] + self.scale_tril[y] * noise
        else:
            # One GEMM per class: gathering a (d x d) factor per sample would need
            # n * d^2 memory (24 GB for a 10,000-sample buffer of 28x28 images).
            flat = self.means[y]
            for c in y.unique().tolist():
                rows = y == c
                flat[rows] += noise[rows] @ self.scale_tril[c].T
        return flat.reshape(n, *self.sample_shape)

    def state_dict(self):  # noqa: D102
        return {"means": self.means, "scale_tril": self.scale_tril, "class_probs": self.class_probs}

    def load_state_dict(self, state):  # noqa: D102
        self.means = _same_shape("means", state["means"], self.means)
        self.scale_tril = _same_shape("scale_tril", state["scale_tril"], self.scale_tril)
        self.class_probs = _same_shape("class_probs", state["class_probs"], self.class_probs)


class ReplayBuffer:
    r"""A buffer of persistent chains with random reinitialisation.

    Parameters
    ----------
    buffer_size : int
        Number of stored samples (JEM: 10,000).
    init : UniformInit, GaussianInit or ClassGaussianInit
        Distribution of the initial contents and of the fresh samples.
    reinit_prob : float
        :math:`\rho`, probability that a drawn sample is replaced by a fresh
        one (JEM: 0.05).
    n_classes : int, optional
        Split the buffer into ``n_classes`` equal blocks, block ``c`` holding
        chains for class ``c`` (class-conditional sampling); ``buffer_size``
        must be divisible by ``n_classes``.
    generator : torch.Generator, optional
        Randomness for the initial contents.

    Notes
    -----
    :meth:`sample` draws slots uniformly (within the requested classes' blocks
    when ``y`` is given) and returns each stored sample with probability
    :math:`1 - \rho` and a fresh draw from ``init`` with probability
    :math:`\rho`. Reinitialisation keeps some chains short-run, which stops the
    buffer from collapsing onto a few modes.

    References
    ----------
    Du, Y. & Mordatch, I. (2019). Implicit generation and generalization in
    energy-based models. NeurIPS. Grathwohl et al. (2020), Algorithm 1.
    """

    def __init__(
        self,
        buffer_size: int,
        init: InitDistribution,
        *,
        reinit_prob: float = 0.05,
        n_classes: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.reinit_prob = check_probability("reinit_prob", reinit_prob)
        if n_classes is not None:
            check_positive_int("n_classes", n_classes)
            if buffer_size % n_classes:
                raise ValueError(
                    f"buffer_size must be divisible by n_classes for a class-conditional buffer; "
                    f"got buffer_size={buffer_size}, n_classes={n_classes}"
                )
        self.n_classes = n_classes
        self.init = init
        self.buffer = init.sample(buffer_size, generator=generator, y=self.slot_classes())

    @property
    def per_class(self) -> int:
        """Slots per class block (the whole buffer when unconditional)."""
        return self.buffer_size // (self.n_classes or 1)

    def slot_classes(self, indices: torch.Tensor | None = None) -> torch.Tensor | None:
        """Class of each slot (``indices``, or all slots); None for an unconditional buffer."""
        if self.n_classes is None:
            return None
        if indices is None:
            indices = torch.arange(self.buffer_size)
        return indices // self.per_class

    def __len__(self) -> int:
        return self.buffer_size

    def sample(
        self,
        batch_size: int,
        *,
        generator: torch.Generator | None = None,
        y: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` starting points and the slots they came from.

        With ``y`` (class labels, shape (batch_size,)) the slots are drawn from
        the classes' blocks; without it, from the whole buffer.
        """
        check_positive_int("batch_size", batch_size)
        device = self.buffer.device
        offsets = torch.randint(self.per_class, (batch_size,), generator=generator, device=device)
        if y is None:
            indices = offsets
        else:
            if self.n_classes is None:
                raise ValueError(
                    "y was given but the buffer is unconditional; construct it with n_classes"
                )
            y = _check_labels("y", y, self.n_classes, batch_size).to(device)
            indices = y * self.per_class + offsets
        x = self.buffer[indices].clone()
        reinit = torch.rand(batch_size, generator=generator, device=device) < self.reinit_prob
        n_fresh = int(reinit.sum())
        if n_fresh:
            classes = self.slot_classes(indices[reinit])
            x[reinit] = self.init.sample(n_fresh, generator=generator, y=classes).to(x)
        return x, indices

    def push(self, x: torch.Tensor, indices: torch.Tensor) -> None:
        """Write samples ``x`` back to slots ``indices`` (as returned by :meth:`sample`)."""
        if x.shape[1:] != self.buffer.shape[1:] or indices.shape != (x.shape[0],):
            raise ValueError(
                f"x must have shape (batch, {', '.join(map(str, self.buffer.shape[1:]))}) with one "
                f"index per row; got x {tuple(x.shape)}, indices {tuple(indices.shape)}"
            )
        self.buffer[indices.to(self.buffer.device)] = x.detach().to(self.buffer)

    def state_dict(self) -> dict[str, torch.Tensor | float | int]:
        """The buffer's contents and its initial distribution (tensors and numbers only)."""
        state: dict[str, torch.Tensor | float | int] = {"buffer": self.buffer}
        state.update({f"init.{k}": v for k, v in self.init.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor | float | int]) -> None:
        """Restore the contents saved by :meth:`state_dict` (same size and sample shape)."""
        self.buffer = _same_shape("buffer", state["buffer"], self.buffer)
        self.init.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("init.")})


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_shape(sample_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(sample_shape)
    if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(
            f"sample_shape must be a non-empty sequence of positive ints; got {sample_shape!r}"
        )
    return shape


def _check_data(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or len(x) < 2:
        raise ValueError("x must be a floating tensor of shape (n_samples >= 2, ...)")
    return x


def _check_labels(name: str, y: object, n_classes: int, n: int) -> torch.Tensor:
    if (
        not isinstance(y, torch.Tensor)
        or y.dtype not in (torch.int32, torch.int64)
        or y.shape != (n,)
    ):
        raise ValueError(f"{name} must be an integer tensor of shape ({n},); got {y!r:.80}")
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, {n_classes - 1}]; got min={int(y.min())}, max={int(y.max())}"
        )
    return y.long()


def _same_shape(name: str, value: object, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.shape != like.shape:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"state[{name!r}] must be a tensor of shape {tuple(like.shape)}; got {shape}"
        )
    return value.detach().clone().to(like)
