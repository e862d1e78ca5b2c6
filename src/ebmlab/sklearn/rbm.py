r"""A scikit-learn drop-in for ``sklearn.neural_network.BernoulliRBM``, trained by ebmlab.

The estimator keeps scikit-learn's constructor, attributes and methods, and runs
every computation through ebmlab: the model is :class:`ebmlab.models.BernoulliRBM`,
training is :class:`ebmlab.training.CDTrainer` (PCD-k or CD-k), ``gibbs`` is one
:class:`ebmlab.samplers.BlockGibbs` sweep and ``score_samples`` is
:func:`ebmlab.estimators.pseudo_log_likelihood`. The fitted state lives in NumPy
attributes, so the estimator pickles, clones and deep-copies like any other.

Range policy: whatever scikit-learn's ``BernoulliRBM`` accepts, this one accepts.
Finite input outside [0, 1] is accepted with one :class:`OutOfRangeWarning` per
call: ``fit`` and ``partial_fit`` clip it to [0, 1], every other method uses it as
given. NaN and inf are errors.
"""

from __future__ import annotations

import torch
from sklearn.utils import check_random_state

from ebmlab._validation import check_matrix
from ebmlab.estimators.pseudo_likelihood import pseudo_log_likelihood
from ebmlab.models.rbm import BernoulliRBM as _TorchRBM
from ebmlab.sklearn._base import RBMTransformer
from ebmlab.sklearn._common import (
    SEED_BOUND,
    clip_to_unit_interval,
    warn_outside_unit_interval,
)

__all__ = ["BernoulliRBM"]

# What each method does with values outside [0, 1], for the warning.
_CONSEQUENCES = {
    "fit": (
        "fit clips them to [0, 1] and trains on the clipped data (scikit-learn would train "
        "on them as given, which measured far worse: see docs/sklearn.md)."
    ),
    "transform": (
        "transform still returns the mean-field p(h = 1 | v) = expit(X @ components_.T + "
        "intercept_hidden_), as scikit-learn does, extrapolating beyond the data it was fitted to."
    ),
    "gibbs": "gibbs computes p(h | v) from them as given; the sample it returns is 0 or 1.",
    "score_samples": (
        "score_samples flips a unit as v -> 1 - v, so its pseudo-likelihood is only "
        "meaningful for binary data."
    ),
}


class _AnyRealRBM(_TorchRBM):
    """ebmlab's Bernoulli RBM without its [0, 1] check on the visible units, for scoring.

    The estimator has validated its input and warned about the range already; the free
    energy is defined for any real ``v``, which is what scikit-learn scores. Training
    keeps the plain class (its data is clipped into [0, 1]), which CDTrainer updates by
    its analytic path for exactly that class.
    """

    def check_visible(self, v: torch.Tensor, name: str = "v") -> torch.Tensor:
        check_matrix(name, v, n_columns=self.n_visible)
        if v.dtype != self.weight.dtype:
            raise TypeError(
                f"{name} has dtype {v.dtype} but the model's parameters are {self.weight.dtype}"
            )
        return v


class BernoulliRBM(RBMTransformer):
    r"""Bernoulli restricted Boltzmann machine with scikit-learn's interface, trained by ebmlab.

    A drop-in replacement for :class:`sklearn.neural_network.BernoulliRBM`: same
    constructor arguments and defaults (PCD-1, learning rate applied to the
    minibatch-mean gradient, no momentum or weight decay), same attributes and
    methods, the same accepted input, plus ``cd_k``, ``persistent``, ``device`` and
    the optional centered gradient (``centering``, ``offset_rate``).

    Parameters
    ----------
    n_components : int, default=256
        Number of binary hidden units.
    learning_rate : float, default=0.1
        Step size applied to the minibatch-mean gradient (as scikit-learn's).
    batch_size : int, default=10
        Examples per minibatch; also the number of persistent chains.
    n_iter : int, default=10
        Passes over the training data in :meth:`fit` (0 only initialises).
    verbose : int, default=0
        Print the stochastic pseudo-log-likelihood and time after each pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order and the Gibbs chains of
        :meth:`fit` and the first :meth:`partial_fit`, and chooses the flipped bits
        of :meth:`score_samples`. An int makes every call reproducible (on CPU bit for bit).
    cd_k : int, default=1
        Block Gibbs sweeps per update (the k of CD-k / PCD-k).
    persistent : bool, default=True
        PCD (chains persist across updates and :meth:`partial_fit` calls) when True;
        CD restarting the chains at the data each update when False.
    device : str or torch.device, default="cpu"
        Where the torch computations run; the fitted attributes are NumPy arrays.
    centering : bool, default=False
        Train with the centered gradient (Melchior, Fischer & Wiskott, 2016):
        :math:`\Delta W \propto \langle (v-\mu)(h-\lambda)^\top \rangle_{\rm data}
        - \langle (v-\mu)(h-\lambda)^\top \rangle_{\rm model}`, with offsets :math:`\mu`,
        :math:`\lambda` following the data means of :math:`v` and :math:`p(h = 1 \mid v)`.
        The fitted model stays a plain RBM; False is scikit-learn's plain step.
    offset_rate : float, default=0.01
        Moving-average rate :math:`\nu` in (0, 1] of the offsets: after each update
        :math:`\mu \leftarrow (1 - \nu)\mu + \nu \langle v \rangle_{\rm batch}`, and so
        :math:`\lambda`. Checked, but unused, when ``centering=False``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Weight matrix :math:`W^\top`.
    intercept_hidden_ : ndarray of shape (n_components,)
        Hidden biases :math:`b_h`.
    intercept_visible_ : ndarray of shape (n_features,)
        Visible biases :math:`b_v`.
    h_samples_ : ndarray of shape (batch_size, n_components) or None
        Hidden units sampled from :math:`p(h \mid v)` at the persistent chains'
        visible state; None when ``persistent=False`` (CD keeps no chains) or before
        the first update (``n_iter=0``).
    visible_offset_ : ndarray of shape (n_features,) or None
        The centering offset :math:`\mu` after the last update (where :meth:`partial_fit`
        continues); None when ``centering=False``.
    hidden_offset_ : ndarray of shape (n_components,) or None
        The centering offset :math:`\lambda`, likewise.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during :meth:`fit`, when ``X`` has string column names.

    Warns
    -----
    OutOfRangeWarning
        Once per call, when finite input lies outside [0, 1] (see Notes).

    Notes
    -----
    The energy is :math:`E(v, h) = -v^\top W h - b_h^\top h - b_v^\top v` with
    :math:`p(v, h) = e^{-E(v, h)} / Z`; :meth:`transform` returns
    :math:`p(h = 1 \mid v) = \sigma(v W + b_h)` = ``expit(X @ components_.T + intercept_hidden_)``.
    Each update moves the parameters by ``learning_rate`` times
    :math:`\langle v h^\top \rangle_{\rm data} - \langle v h^\top \rangle_{\rm model}`,
    both averaged over their rows, with hidden probabilities on both sides, as
    scikit-learn does.

    With ``centering=True`` the same statistics enter in the centered coordinates of
    :math:`E_c(v, h) = -b'^\top v - c'^\top h - (v - \mu)^\top W (h - \lambda)`, the plain
    RBM :math:`(W, b = b' - W\lambda, c = c' - W^\top\mu)` up to a constant (Melchior et al.,
    Algorithm 1). The estimator stores the plain :math:`W, b, c`, so :meth:`transform`,
    :meth:`score_samples` and :meth:`gibbs` are unchanged; only the step differs
    (:mod:`ebmlab.training.centering` has the transform). :meth:`fit` starts the offsets
    at the means of its data, the first :meth:`partial_fit` at its minibatch's.

    Range policy. The visible units are binary and a value in [0, 1] reads as the
    probability that a unit is on; the formulas above are nonetheless defined for
    any real :math:`v`, and scikit-learn accepts any finite input. So does this
    estimator, and each call that meets finite data outside [0, 1] emits one
    :class:`OutOfRangeWarning` saying what the method does with it.
    :meth:`transform`, :meth:`gibbs` and :meth:`score_samples` compute with the
    values as given (test images brighter than the training ones, after a
    ``MinMaxScaler`` fitted to the training set, get the mean-field features
    scikit-learn would give them). :meth:`fit` and :meth:`partial_fit` train on
    :math:`\min(\max(X, 0), 1)`, where scikit-learn trains on ``X`` as given: on
    digits pipelines that hand the RBM standardised or unscaled pixels, clipping
    scored 0.88 where training as given scored 0.63 and 0.08 (mean test accuracy over
    five seeds; ``docs/sklearn.md`` has the measurement). Data inside [0, 1] trains
    exactly as before. NaN and inf raise ``ValueError``.

    Other differences from scikit-learn: the training order is shuffled every pass;
    the persistent chains start at the first minibatch rather than at all-zero
    hidden units; float32 input is trained and transformed in float32 and float64
    input in float64 (the parameters keep the dtype of the first fit); sparse input
    is densified; :meth:`gibbs` returns floats rather than booleans.

    References
    ----------
    Tieleman, T. (2008). Training restricted Boltzmann machines using approximations
    to the likelihood gradient. ICML. Hinton, G. (2010). A practical guide to
    training restricted Boltzmann machines. UTML TR 2010-003. Melchior, J., Fischer, A. &
    Wiskott, L. (2016). How to center deep Boltzmann machines. JMLR 17(99), Algorithm 1.
    """

    _torch_model = _TorchRBM
    _progress_label = "pseudo-likelihood"

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=0.1,
        batch_size=10,
        n_iter=10,
        verbose=0,
        random_state=None,
        cd_k=1,
        persistent=True,
        device="cpu",
        centering=False,
        offset_rate=0.01,
    ):
        self.n_components = n_components
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_iter = n_iter
        self.verbose = verbose
        self.random_state = random_state
        self.cd_k = cd_k
        self.persistent = persistent
        self.device = device
        self.centering = centering
        self.offset_rate = offset_rate

    def _check_range(self, X, method, *, warn=True):
        if warn:
            warn_outside_unit_interval(X, model="Bernoulli RBM", consequence=_CONSEQUENCES[method])
        # Only training clips: every other method computes with the values as given.
        return clip_to_unit_interval(X) if method == "fit" else X

    def _progress(self, model, data, generator):
        return pseudo_log_likelihood(model, data, generator=generator).mean().item()

    def score_samples(self, X):
        r"""Stochastic pseudo-log-likelihood of each row, flipping one random bit per row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data, meant to be binary.

        Returns
        -------
        pseudo_likelihood : ndarray of shape (n_samples,)

        Notes
        -----
        With :math:`\bar v` equal to :math:`v` with a uniformly chosen unit :math:`i`
        flipped (:math:`\bar v_i = 1 - v_i`), the estimate is
        :math:`n_{\rm features} \log\sigma(F(\bar v) - F(v))`, unbiased for
        :math:`\sum_i \log p(v_i \mid v_{-i})` on binary data, where
        :math:`F(v) = -b_v^\top v - \sum_j \log(1 + e^{(vW + b_h)_j})`. The units come
        from ``random_state``, so an int ``random_state`` gives the same units every call.
        """
        model, v = self._scoring_model(X, _AnyRealRBM)
        seed = int(check_random_state(self.random_state).randint(SEED_BOUND))
        generator = torch.Generator(device=v.device).manual_seed(seed)
        return pseudo_log_likelihood(model, v, generator=generator).cpu().numpy()

    def gibbs(self, v):
        r"""One block Gibbs sweep, :math:`h \sim p(h \mid v)` then :math:`v' \sim p(v \mid h)`.

        Uses and advances the estimator's own random stream (like scikit-learn's
        ``random_state_``).

        Parameters
        ----------
        v : {array-like, sparse matrix} of shape (n_samples, n_features)
            Visible units to start from.

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
            The sampled visible units, 0.0 or 1.0 in the dtype of ``v``.
        """
        return super().gibbs(v)
