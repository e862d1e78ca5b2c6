r"""A scikit-learn transformer for real-valued data: the Gaussian-Bernoulli RBM, trained by ebmlab.

scikit-learn ships only the Bernoulli RBM (its inputs are read as probabilities in
[0, 1]). This estimator has Gaussian visible units, so it takes real-valued features
(standardised, e.g. by ``StandardScaler``) and gives the same kind of hidden-unit
features, with the conventions of :class:`ebmlab.sklearn.BernoulliRBM`: the model is
:class:`ebmlab.models.GaussianBernoulliRBM`, training is
:class:`ebmlab.training.CDTrainer` (PCD-k or CD-k, plain SGD) and the fitted state lives
in NumPy attributes.
"""

from __future__ import annotations

import torch

from ebmlab.models.gaussian_rbm import GaussianBernoulliRBM as _TorchGaussianRBM
from ebmlab.sklearn._base import RBMTransformer
from ebmlab.training.monitor import reconstruction_error

__all__ = ["GaussianBernoulliRBM"]

#: The default learning rate, chosen by measurement (benchmarks/sklearn_gaussian_lr.py,
#: docs/sklearn.md): the best downstream accuracy over standardised digits, wine and breast
#: cancer among 1e-4 ... 1e-1. It is 10 times smaller than the Bernoulli RBM's 0.1, the
#: lower end of Hinton's 10-100 (guide, section 13.2); 0.1 itself diverged on two of three.
DEFAULT_LEARNING_RATE = 1e-2


class GaussianBernoulliRBM(RBMTransformer):
    r"""Gaussian-Bernoulli restricted Boltzmann machine: real-valued visible, binary hidden units.

    A transformer for real-valued data with the interface of
    :class:`ebmlab.sklearn.BernoulliRBM` (and so of scikit-learn's ``BernoulliRBM``):
    ``fit``, ``partial_fit``, ``transform`` (hidden probabilities), ``score_samples``,
    ``gibbs``. Standardise the features first (``StandardScaler``): the visible units
    have unit variance.

    Parameters
    ----------
    n_components : int, default=256
        Number of binary hidden units.
    learning_rate : float, default=0.01
        Step size applied to the minibatch-mean gradient. Gaussian visible units have
        unbounded activations, so this must be far smaller than a Bernoulli RBM's
        (Hinton's guide: 10-100 times); the default, 10 times smaller than
        ``BernoulliRBM``'s, was chosen by measurement on standardised data sets.
    batch_size : int, default=10
        Examples per minibatch; also the number of persistent chains.
    n_iter : int, default=10
        Passes over the training data in :meth:`fit` (0 only initialises).
    verbose : int, default=0
        Print the mean-field reconstruction error and time after each pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the minibatch order and the Gibbs chains of
        :meth:`fit` and the first :meth:`partial_fit`. An int makes every call
        reproducible (on CPU bit for bit).
    cd_k : int, default=1
        Block Gibbs sweeps per update (the k of CD-k / PCD-k).
    persistent : bool, default=True
        PCD (chains persist across updates and :meth:`partial_fit` calls) when True;
        CD restarting the chains at the data each update when False.
    device : str or torch.device, default="cpu"
        Where the torch computations run; the fitted attributes are NumPy arrays.
    centering : bool, default=False
        Train with the centered gradient on the hidden side (Melchior, Fischer & Wiskott,
        2016): :math:`\Delta W \propto \langle v (h-\lambda)^\top \rangle_{\rm data}
        - \langle v (h-\lambda)^\top \rangle_{\rm model}`, with :math:`\lambda` following the
        data mean of :math:`p(h = 1 \mid v)` (standardised data: :math:`\mu = 0`). The
        fitted model stays a plain Gaussian-Bernoulli RBM; False is the plain step.
    offset_rate : float, default=0.01
        Moving-average rate :math:`\nu` in (0, 1] of the offset: after each update
        :math:`\lambda \leftarrow (1 - \nu)\lambda + \nu \langle p(h = 1 \mid v) \rangle_{\rm
        batch}`. Checked, but unused, when ``centering=False``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Weight matrix :math:`W^\top`.
    intercept_hidden_ : ndarray of shape (n_components,)
        Hidden biases :math:`c`.
    intercept_visible_ : ndarray of shape (n_features,)
        Visible means :math:`b` (the Gaussians' centres when no hidden unit is on).
    h_samples_ : ndarray of shape (batch_size, n_components) or None
        Hidden units sampled from :math:`p(h \mid v)` at the persistent chains'
        visible state; None when ``persistent=False`` or before the first update.
    visible_offset_ : ndarray of shape (n_features,) or None
        Zeros when ``centering=True`` (the visible side is not centered); None otherwise.
    hidden_offset_ : ndarray of shape (n_components,) or None
        The centering offset :math:`\lambda` after the last update (where
        :meth:`partial_fit` continues); None when ``centering=False``.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during :meth:`fit`, when ``X`` has string column names.

    Notes
    -----
    The energy, with unit visible variances (:math:`\sigma_i = 1`), is

    .. math:: E(v, h) = \tfrac12 \lVert v - b \rVert^2 - c^\top h - v^\top W h,
              \qquad p(v, h) = e^{-E(v, h)} / Z,

    so :math:`p(v \mid h) = \mathcal{N}(b + W h, I)` and
    :math:`p(h_j = 1 \mid v) = \sigma(c_j + v^\top W_{:j})`. :meth:`transform` returns the
    latter, ``expit(X @ components_.T + intercept_hidden_)``: the same formula as the
    Bernoulli RBM's, on real-valued input. Summing out :math:`h` gives the free energy

    .. math:: F(v) = \tfrac12 \lVert v - b \rVert^2
              - \sum_j \log\big(1 + e^{c_j + v^\top W_{:j}}\big),

    and :math:`\log p(v) = -F(v) - \log Z`. :meth:`score_samples` returns :math:`-F(v)`,
    the unnormalised log-density: exact up to the constant :math:`\log Z`, so it ranks
    and compares samples under one fitted model (novelty scores, a free-energy gap
    between training and held-out data) but is not a normalised log-likelihood and
    is not comparable across models. (The Bernoulli RBM's bit-flip pseudo-likelihood
    has no meaning for real-valued units.)

    Each update moves the parameters by ``learning_rate`` times the difference of
    the data and model statistics, averaged over the minibatch, with hidden
    probabilities on both sides: :math:`\langle v h^\top \rangle_{\rm data} -
    \langle v h^\top \rangle_{\rm model}` for :math:`W`, :math:`\langle h \rangle_{\rm
    data} - \langle h \rangle_{\rm model}` for :math:`c` and :math:`\langle v
    \rangle_{\rm data} - \langle v \rangle_{\rm model}` for :math:`b`; no momentum, no
    weight decay. With ``centering=True`` the interaction is written
    :math:`v^\top W (h - \lambda)`: the plain model with :math:`b = b' - W\lambda` (Melchior
    et al.; :mod:`ebmlab.training.centering` has the update), so only the step differs
    and every other method is unchanged. The weights start from :math:`\mathcal{N}(0, 0.01^2)`, the hidden
    biases at zero and the visible means at the mean of the first data seen (the
    maximum-likelihood value without weights; Hinton's guide, section 8). The model
    negatives of a Gaussian RBM are real-valued samples, so :meth:`gibbs` returns
    :math:`v' \sim \mathcal{N}(b + W h, I)`. Any finite input is accepted; NaN and inf
    raise ``ValueError``. float32 input trains in float32, float64 in float64; sparse
    input is densified.

    References
    ----------
    Hinton, G. (2010). A practical guide to training restricted Boltzmann machines,
    section 13.2. UTML TR 2010-003. Cho, K., Ilin, A. & Raiko, T. (2011). Improved
    learning of Gaussian-Bernoulli restricted Boltzmann machines. ICANN. Melchior, J.,
    Fischer, A. & Wiskott, L. (2016). How to center deep Boltzmann machines. JMLR 17(99).
    """

    _torch_model = _TorchGaussianRBM
    _progress_label = "reconstruction error"

    def __init__(
        self,
        n_components=256,
        *,
        learning_rate=DEFAULT_LEARNING_RATE,
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

    def _start(self, model, data):
        model.init_visible_bias(data)

    def _progress(self, model, data, generator):
        return reconstruction_error(model, data, generator=generator)

    def score_samples(self, X):
        r"""Unnormalised log-density :math:`-F(v) = \log p(v) + \log Z` of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data, scaled as the training data was.

        Returns
        -------
        score : ndarray of shape (n_samples,)
            :math:`\sum_j \log(1 + e^{c_j + v^\top W_{:j}}) - \tfrac12 \lVert v - b \rVert^2`.

        Notes
        -----
        Exact and deterministic, but off from :math:`\log p(v)` by the unknown constant
        :math:`\log Z` of the fitted model: differences between rows are log-density
        ratios, absolute values are not log-likelihoods.
        """
        model, v = self._scoring_model(X)
        with torch.no_grad():
            return (-model.free_energy(v)).cpu().numpy()

    def gibbs(self, v):
        r"""One block Gibbs sweep, :math:`h \sim p(h \mid v)` then :math:`v' \sim \mathcal{N}(b + W h, I)`.

        Uses and advances the estimator's own random stream.

        Parameters
        ----------
        v : {array-like, sparse matrix} of shape (n_samples, n_features)
            Visible units to start from.

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
            The sampled (real-valued) visible units, in the dtype of ``v``.
        """
        return super().gibbs(v)
