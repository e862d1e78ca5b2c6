r"""A plain SGD epoch of CD-k / PCD-k on bias-augmented matrices: two GEMMs per update.

A small RBM (scikit-learn's digits: 64 visible, 100 hidden, minibatches of 10) spends its
update on the fixed cost of each tensor operation, a few microseconds, not on arithmetic.
:func:`augmented_cd_epoch` folds the biases into the weight matrix and the column sums
into the products, so that one update is two products for the statistics and one per
conditional, with every buffer allocated once per epoch: 13 operations instead of 17 and
about 1.5x scikit-learn's fit on digits (benchmarks/RESULTS.md). :class:`CDTrainer
<ebmlab.training.CDTrainer>` takes it for whole epochs of a Bernoulli RBM (or a
Gaussian-Bernoulli RBM with unit variances, :func:`supports`) whose step is plain SGD (no momentum, no centering, no tracked loss, float operands, no
tempering or compiled sweeps, no dynamic binarisation); it draws the same random numbers
in the same order as the general path, and ``tests/training/test_cd_augmented.py``
proves the two equal in float64.

Notes
-----
With the augmented weights and batches

.. math::

    A = \begin{pmatrix} W & b_v \\ b_h^\top & 0 \end{pmatrix}, \qquad
    \tilde v = (v, 1), \qquad \tilde h = (\bar h, 1),

the conditionals are :math:`p(h = 1 \mid v) = \sigma(\tilde v A_{:, :n_h})` and
:math:`p(v = 1 \mid h) = \sigma(\tilde h A_{:n_v, :}^\top)`, and the plain SGD step with
learning rate :math:`\eta` on :math:`N` data rows and :math:`M` chains,

.. math::

    W \mathrel{+}= \tfrac{\eta}{N} v_d^\top \bar h_d - \tfrac{\eta}{M} v_m^\top \bar h_m,
    \quad b_h \mathrel{+}= \eta (\langle \bar h_d \rangle - \langle \bar h_m \rangle),
    \quad b_v \mathrel{+}= \eta (\langle v_d \rangle - \langle v_m \rangle),

is :math:`A \mathrel{+}= \tfrac{\eta}{N} \tilde v_d^\top \tilde h_d - \tfrac{\eta}{M}
\tilde v_m^\top \tilde h_m`: the ones column of :math:`\tilde v` turns the products'
last row into the hidden bias step, that of :math:`\tilde h` the last column into the
visible one. The corner collects :math:`\eta - \eta` and is never read. Weight decay
:math:`\omega` scales the :math:`W` block by :math:`1 - \eta\omega` first. A
Gaussian-Bernoulli RBM with :math:`\sigma = 1` has the same step (its free energy's
gradients in :math:`W, b_v, b_h` are :math:`-v^\top \bar h`, :math:`-(v - b_v)` and
:math:`-\bar h`) and draws :math:`v = \tilde h A_{:n_v, :}^\top + \varepsilon`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ebmlab._grad import without_grad
from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM
from ebmlab.models.rbm import BernoulliRBM

LayeredRBM = BernoulliRBM | GaussianBernoulliRBM


def supports(model: object) -> bool:
    r"""Whether :func:`augmented_cd_epoch` performs ``model``'s plain SGD update exactly.

    A Bernoulli RBM, or a Gaussian-Bernoulli RBM with unit visible variances held fixed
    (standardised data; ``sigma=1, learn_sigma=False``, its defaults): then
    :math:`p(v \mid h) = \mathcal{N}(b + W h, I)`, whose mean is the same augmented product,
    and the CD step has the Bernoulli RBM's form. Any other :math:`\sigma` leaves the
    per-unit factors :math:`1 / \sigma_i` that this layout does not carry.
    """
    if type(model) is BernoulliRBM:
        return True
    return (
        type(model) is GaussianBernoulliRBM
        and not model.learn_sigma
        and bool((model.log_sigma == 0).all())
    )


@dataclass
class PersistentChains:
    """PCD's carried state: the chains, their hidden means when reused, and how many.

    ``visible`` None starts ``n_chains`` chains (default: a minibatch's worth) from the
    epoch's first minibatch, cycled, as :class:`~ebmlab.training.cd.ContrastiveDivergence`
    does. With ``reuse_hidden_means`` each update's first sweep starts from the hidden
    means of the previous update (``hidden_means``, computed from ``visible`` when None);
    without, from p(h = 1 | chains) under the current parameters.
    """

    visible: torch.Tensor | None
    hidden_means: torch.Tensor | None = None
    n_chains: int | None = None
    reuse_hidden_means: bool = False


class _Buffers:
    """The augmented weights and the epoch's preallocated unit buffers (ones columns set)."""

    def __init__(self, model: LayeredRBM, n_batch: int, n_rows: int) -> None:
        n_visible, n_hidden = model.n_visible, model.n_hidden
        weight = model.weight
        self.augmented = weight.new_zeros(n_visible + 1, n_hidden + 1)
        self.augmented[:n_visible, :n_hidden] = weight
        self.augmented[:n_visible, n_hidden] = model.visible_bias
        self.augmented[n_visible, :n_hidden] = model.hidden_bias
        # Views into A: to the hidden units (with b_h), to the visible units (with b_v).
        self.to_hidden = self.augmented[:, :n_hidden]
        self.to_visible = self.augmented[:n_visible, :].t()
        self.weight_block = self.augmented[:n_visible, :n_hidden]
        # The minibatch's hidden means; samples with rows enough for a minibatch or the
        # chains (views of the first rows serve both).
        self.data_hidden = weight.new_ones(n_batch, n_hidden + 1)
        self.hidden_sample = weight.new_ones(n_rows, n_hidden + 1)
        # Gaussian visible units: the standard normal draws, as torch.randn lays them out.
        self.noise = None if model.binary_visible else weight.new_empty(n_rows, n_visible)
        self.n_visible, self.n_hidden = n_visible, n_hidden

    def write_back(self, model: LayeredRBM) -> None:
        model.weight.copy_(self.weight_block)
        model.visible_bias.copy_(self.augmented[: self.n_visible, self.n_hidden])
        model.hidden_bias.copy_(self.augmented[self.n_visible, : self.n_hidden])


def _augment(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` with a column of ones appended (a new tensor)."""
    augmented = rows.new_ones(rows.shape[0], rows.shape[1] + 1)
    augmented[:, :-1] = rows
    return augmented


@without_grad
def augmented_cd_epoch(
    model: LayeredRBM,
    shuffled: torch.Tensor,
    *,
    batch_size: int,
    lr: float,
    k: int,
    chains: PersistentChains | None,
    generator: torch.Generator | None,
    weight_decay: float = 0.0,
) -> PersistentChains | None:
    """One epoch of plain SGD CD-k (``chains`` None) or PCD-k over ``shuffled``, in place.

    Parameters
    ----------
    model : BernoulliRBM or GaussianBernoulliRBM
        One that :func:`supports` accepts; its parameters are read at the start and
        written at the end of the epoch.
    shuffled : Tensor of shape (n_samples, n_visible)
        The epoch's data in its visiting order; minibatches are consecutive rows.
    batch_size, lr, k, weight_decay
        The minibatch size, the learning rate, the Gibbs sweeps per update and the L2
        penalty on the weights (not the biases).
    chains : PersistentChains or None
        PCD's state at the start of the epoch; None runs CD-k (each update's chains
        start at its minibatch).
    generator : torch.Generator or None
        The Gibbs sweeps' randomness: per sweep, uniforms for the hidden then the
        visible units, as :meth:`~ebmlab.training.cd.ContrastiveDivergence.negatives`
        draws them.

    Returns
    -------
    PersistentChains or None
        The chains at the end of the epoch (with their hidden means when
        ``chains.reuse_hidden_means``, else None: recomputed at each update), or None
        for CD-k.

    Notes
    -----
    In float64 the epoch equals the per-update path to rounding. In float32 the biases
    enter the products inside the GEMM instead of after it, so a uniform that lies within
    rounding of its probability can, rarely, fall on the other side: the two paths are
    then the same Markov chain with sample paths that part.
    """
    n_batch = min(batch_size, shuffled.shape[0])
    data = _augment(shuffled)
    persistent = chains is not None
    n_chains = _count_chains(chains, n_batch)
    buffers = _Buffers(model, n_batch, max(n_batch, n_chains))
    if persistent:
        visible, hidden = _start_chains(buffers, chains, data[:n_batch], n_chains)
    else:  # CD: chain buffers as large as a minibatch, refilled by every update
        visible = data.new_ones(n_batch, model.n_visible + 1)
        hidden = data.new_ones(n_batch, model.n_hidden + 1)
    for batch in data.split(batch_size):
        n_data = batch.shape[0]
        data_hidden = buffers.data_hidden[:n_data]
        _hidden_means(buffers, batch, data_hidden)
        if persistent:
            if not chains.reuse_hidden_means:  # under the current parameters
                _hidden_means(buffers, visible, hidden)
            start, chain_visible, chain_hidden = hidden, visible, hidden
        else:  # CD: the chains start from the minibatch's hidden means
            start, chain_visible, chain_hidden = data_hidden, visible[:n_data], hidden[:n_data]
        for _ in range(k):
            _sweep(buffers, start, chain_visible, chain_hidden, generator)
            start = chain_hidden
        if weight_decay:
            buffers.weight_block.mul_(1.0 - lr * weight_decay)
        buffers.augmented.addmm_(batch.t(), data_hidden, alpha=lr / n_data)
        buffers.augmented.addmm_(
            chain_visible.t(), chain_hidden, alpha=-lr / chain_visible.shape[0]
        )
    buffers.write_back(model)
    if not persistent:
        return None
    means = hidden[:, :-1].clone() if chains.reuse_hidden_means else None
    return PersistentChains(
        visible[:, :-1].clone(), means, chains.n_chains, chains.reuse_hidden_means
    )


def _count_chains(chains: PersistentChains | None, n_batch: int) -> int:
    if chains is None:
        return n_batch
    if chains.visible is not None:
        return chains.visible.shape[0]
    return chains.n_chains or n_batch


def _start_chains(
    buffers: _Buffers, chains: PersistentChains, first_batch: torch.Tensor, n_chains: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented chain buffers (visible, hidden means) from ``chains``."""
    if chains.visible is None:
        index = torch.arange(n_chains, device=first_batch.device) % first_batch.shape[0]
        visible = first_batch[index].clone()
    else:
        visible = _augment(chains.visible)
    hidden = visible.new_ones(n_chains, buffers.n_hidden + 1)
    if chains.hidden_means is not None:
        hidden[:, :-1] = chains.hidden_means
    elif chains.reuse_hidden_means:  # the first update computes what the later ones reuse
        _hidden_means(buffers, visible, hidden)
    return visible, hidden


def _hidden_means(buffers: _Buffers, visible: torch.Tensor, out: torch.Tensor) -> None:
    """``out[:, :n_hidden] = p(h = 1 | v)`` for augmented ``visible`` (ones column kept)."""
    means = out[:, : buffers.n_hidden]
    torch.mm(visible, buffers.to_hidden, out=means)
    means.sigmoid_()


def _sweep(
    buffers: _Buffers,
    start: torch.Tensor,
    visible: torch.Tensor,
    hidden: torch.Tensor,
    generator: torch.Generator | None,
) -> None:
    """h ~ p(h) with means ``start``, v ~ p(v | h), then p(h = 1 | v) into ``hidden``.

    The uniforms are drawn straight into the buffers' unit columns (the same numbers, in
    the same order, as ``torch.rand`` of that shape) and compared in place, so no
    sample tensor is allocated or copied.
    """
    n_hidden, n_visible = buffers.n_hidden, buffers.n_visible
    sample = buffers.hidden_sample[: visible.shape[0]]
    sample[:, :n_hidden].uniform_(generator=generator).lt_(start[:, :n_hidden])
    visible_units = visible[:, :n_visible]
    if buffers.noise is None:  # Bernoulli: v = 1 where u < p(v = 1 | h)
        visible_means = torch.mm(sample, buffers.to_visible).sigmoid_()
        visible_units.uniform_(generator=generator).lt_(visible_means)
    else:  # Gaussian, unit variances: v = b + W h + noise
        noise = buffers.noise[: visible.shape[0]]
        torch.randn(noise.shape, generator=generator, out=noise)
        torch.addmm(noise, sample, buffers.to_visible, out=visible_units)
    _hidden_means(buffers, visible, hidden)
