r"""A scikit-learn drop-in for ``sklearn.neural_network.BernoulliRBM``, trained by ebmlab.

The estimator keeps scikit-learn's constructor, attributes and methods, and runs
every computation through ebmlab: the model is :class:`ebmlab.models.BernoulliRBM`,
training is :class:`ebmlab.training.CDTrainer` (PCD-k or CD-k), ``gibbs`` is one
:class:`ebmlab.samplers.BlockGibbs` sweep and ``score_samples`` is
:func:`ebmlab.estimators.pseudo_log_likelihood`. The fitted state lives in NumPy
attributes, so the estimator pickles, clones and deep-copies like any other.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ebmlab._validation import (
    check_positive_float,
    check_unit_interval,
)
from ebmlab.estimators.pseudo_likelihood import pseudo_log_likelihood
from ebmlab.models.rbm import BernoulliRBM as _TorchRBM
from ebmlab.samplers.gibbs import BlockGibbs
from ebmlab.sklearn._common import SEED_BOUND, TORCH_DTYPES, as_int, to_tensor
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError

__all__ = ["BernoulliRBM"]


class BernoulliRBM(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    r"""Bernoulli restricted Boltzmann machine with scikit-learn's interface, trained by ebmlab.

    A drop-in replacement for :class:`sklearn.neural_network.BernoulliRBM`: same
    constructor arguments and defaults (PCD-1, learning rate applied to the
    minibatch-mean gradient, no momentum or weight decay), same attributes and
    methods, plus ``cd_k``, ``persistent`` and ``device``.

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
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during :meth:`fit`, when ``X`` has string column names.

    Notes
    -----
    The energy is :math:`E(v, h) = -v^\top W h - b_h^\top h - b_v^\top v` with
    :math:`p(v, h) = e^{-E(v, h)} / Z`; :meth:`transform` returns
    :math:`p(h = 1 \mid v) = \sigma(v W + b_h)` = ``expit(X @ components_.T + intercept_hidden_)``.
    Each update moves the parameters by ``learning_rate`` times
    :math:`\langle v h^\top \rangle_{\rm data} - \langle v h^\top \rangle_{\rm model}`,
    both averaged over their rows, with hidden probabilities on both sides, as
    scikit-learn does. Differences from scikit-learn: the training order is
    shuffled every pass; the persistent chains start at the first minibatch
    rather than at all-zero hidden units; inputs must lie in [0, 1]; float32 input
    is trained and transformed in float32 and float64 input in float64 (the
    parameters keep the dtype of the first fit); sparse input is densified;
    :meth:`gibbs` returns floats rather than booleans.

    References
    ----------
    Tieleman, T. (2008). Training restricted Boltzmann machines using approximations
    to the likelihood gradient. ICML. Hinton, G. (2010). A practical guide to
    training restricted Boltzmann machines. UTML TR 2010-003.
    """

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

    # ----- fitting -----------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit the model to ``X`` with ``n_iter`` passes of CD-k / PCD-k.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data in [0, 1].
        y : None
            Ignored.

        Returns
        -------
        self : BernoulliRBM
        """
        device = self._check_hyperparameters()
        X = self._check_visible(X, reset=True)
        model, generator = self._initialise(X, device)
        trainer = self._trainer(model, generator)
        data = to_tensor(X, device)
        begin = time.perf_counter()
        for iteration in range(1, self.n_iter + 1):
            trainer.train_epoch(data)
            if self.verbose:
                begin = self._report(model, data, iteration, begin)
        self._store(model, trainer)
        return self

    def partial_fit(self, X, y=None):
        """One CD-k / PCD-k update with all of ``X`` as the minibatch.

        The first call initialises the model like :meth:`fit`; later calls continue
        the same persistent chains and random stream.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data in [0, 1].
        y : None
            Ignored.

        Returns
        -------
        self : BernoulliRBM
        """
        device = self._check_hyperparameters()
        first_call = not hasattr(self, "components_")
        X = self._check_visible(
            X, reset=first_call, dtype=None if first_call else self.components_.dtype
        )
        if first_call:
            model, generator = self._initialise(X, device)
        else:
            model, generator = self._model(X.dtype, device), self._generator(device)
        trainer = self._trainer(model, generator)
        if self.persistent and getattr(self, "_chains", None) is not None:
            trainer.objective.chains = torch.tensor(self._chains, device=device)
        loss = trainer.update(to_tensor(X, device))
        parameters = torch.cat([p.detach().flatten() for p in model.parameters()])
        if not (np.isfinite(loss) and torch.isfinite(parameters).all()):
            raise NonFiniteError(
                f"partial_fit made the parameters non-finite (loss {loss}); lower learning_rate "
                f"(got {self.learning_rate!r})"
            )
        self._store(model, trainer)
        return self

    def _initialise(self, X: np.ndarray, device: torch.device) -> tuple[_TorchRBM, torch.Generator]:
        """A fresh model (weights N(0, 0.01^2), zero biases) and the training generator."""
        init_seed, train_seed = check_random_state(self.random_state).randint(SEED_BOUND, size=2)
        # The model draws its initial weights on the CPU, then moves them to ``device``.
        model = _TorchRBM(
            X.shape[1],
            int(self.n_components),
            generator=torch.Generator().manual_seed(int(init_seed)),
            dtype=TORCH_DTYPES[X.dtype],
            device=device,
        )
        generator = torch.Generator(device=device).manual_seed(int(train_seed))
        self._chains = None
        return model, generator

    def _trainer(self, model: _TorchRBM, generator: torch.Generator) -> CDTrainer:
        # momentum 0 and weight decay 0 make the update scikit-learn's plain SGD step.
        config = CDConfig(
            epochs=max(int(self.n_iter), 1),
            batch_size=int(self.batch_size),
            lr=float(self.learning_rate),
            cd_k=int(self.cd_k),
            persistent=bool(self.persistent),
            n_chains=int(self.batch_size),
            momentum=0.0,
            final_momentum=0.0,
            weight_decay=0.0,
        )
        return CDTrainer(model, config, generator=generator)

    @torch.no_grad()
    def _store(self, model: _TorchRBM, trainer: CDTrainer) -> None:
        """Copy the fitted state into NumPy attributes (the estimator's only state)."""
        self.components_ = model.weight.detach().T.cpu().numpy().copy()
        self.intercept_hidden_ = model.hidden_bias.detach().cpu().numpy().copy()
        self.intercept_visible_ = model.visible_bias.detach().cpu().numpy().copy()
        self._n_features_out = self.components_.shape[0]
        chains = trainer.objective.chains
        self._chains = None if chains is None else chains.cpu().numpy().copy()
        self.h_samples_ = (
            None
            if chains is None
            else model.sample_h(chains, generator=trainer.generator).cpu().numpy()
        )
        self._save_generator(trainer.generator)

    def _report(self, model: _TorchRBM, data: torch.Tensor, iteration: int, begin: float) -> float:
        # A generator of its own, so that verbose output never changes the fit.
        generator = torch.Generator(device=data.device).manual_seed(iteration)
        pll = pseudo_log_likelihood(model, data, generator=generator).mean().item()
        end = time.perf_counter()
        print(
            f"[{type(self).__name__}] Iteration {iteration}, "
            f"pseudo-likelihood = {pll:.2f}, time = {end - begin:.2f}s"
        )
        return end

    # ----- using a fitted model ----------------------------------------------------------
    def transform(self, X):
        """Hidden unit probabilities :math:`p(h = 1 \\mid v = X)`.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data in [0, 1].

        Returns
        -------
        h : ndarray of shape (n_samples, n_components)
            In the dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        X = self._check_visible(X, reset=False)
        model, device = self._model(X.dtype), self._device()
        with torch.no_grad():
            return model.mean_h(to_tensor(X, device)).cpu().numpy()

    def gibbs(self, v):
        """One block Gibbs sweep, :math:`h \\sim p(h \\mid v)` then :math:`v' \\sim p(v \\mid h)`.

        Uses and advances the estimator's own random stream (like scikit-learn's
        ``random_state_``).

        Parameters
        ----------
        v : {array-like, sparse matrix} of shape (n_samples, n_features)
            Visible units to start from, in [0, 1].

        Returns
        -------
        v_new : ndarray of shape (n_samples, n_features)
            The sampled visible units, 0.0 or 1.0 in the dtype of ``v``.
        """
        check_is_fitted(self)
        v = self._check_visible(v, reset=False)
        device = self._device()
        sampler = BlockGibbs(self._model(v.dtype, device))
        generator = self._generator(device)
        state, _ = sampler.step(sampler.init(to_tensor(v, device)), generator=generator)
        self._save_generator(generator)
        return state.visible.cpu().numpy()

    def score_samples(self, X):
        """Stochastic pseudo-log-likelihood of each row, flipping one random bit per row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data in [0, 1] (the estimate is meant for binary data).

        Returns
        -------
        pseudo_likelihood : ndarray of shape (n_samples,)

        Notes
        -----
        With :math:`\\bar v` equal to :math:`v` with a uniformly chosen bit :math:`i`
        flipped, the estimate is :math:`n_{\\rm features} \\log\\sigma(F(\\bar v) - F(v))`,
        unbiased for :math:`\\sum_i \\log p(v_i \\mid v_{-i})`. The bits come from
        ``random_state``, so an int ``random_state`` gives the same bits every call.
        """
        check_is_fitted(self)
        X = self._check_visible(X, reset=False)
        device = self._device()
        seed = int(check_random_state(self.random_state).randint(SEED_BOUND))
        generator = torch.Generator(device=device).manual_seed(seed)
        model = self._model(X.dtype, device)
        v = to_tensor(X, device)
        return pseudo_log_likelihood(model, v, generator=generator).cpu().numpy()

    # ----- helpers -------------------------------------------------------------------------
    def _check_hyperparameters(self) -> torch.device:
        """Validate the constructor arguments (scikit-learn checks them at fit time)."""
        as_int("n_components", self.n_components, minimum=1)
        check_positive_float("learning_rate", self.learning_rate)
        as_int("batch_size", self.batch_size, minimum=1)
        as_int("n_iter", self.n_iter, minimum=0)
        if not isinstance(self.verbose, bool | np.bool_):
            as_int("verbose", self.verbose, minimum=0)
        as_int("cd_k", self.cd_k, minimum=1)
        if not isinstance(self.persistent, bool | np.bool_):
            raise TypeError(f"persistent must be a bool; got {self.persistent!r}")
        return self._device()

    def _device(self) -> torch.device:
        try:
            return torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(
                f"device must name a torch device such as 'cpu' or 'cuda'; got {self.device!r}"
            ) from error

    def _check_visible(self, X, *, reset: bool, dtype=None) -> np.ndarray:
        """Validate ``X`` (scikit-learn rules, densified) and require values in [0, 1]."""
        X = self._validate(X, reset=reset, dtype=dtype)
        # Only the extremes go to torch: the message reports them, and no copy of X is made.
        check_unit_interval("X", torch.tensor([X.min(), X.max()]), model="Bernoulli RBM")
        return X

    def _validate(self, X, *, reset: bool, dtype=None) -> np.ndarray:
        """scikit-learn's validation (shape, finiteness, features, dtype), then densify."""
        # dok and lil matrices are converted to csr first, so that NaN and inf are caught.
        X = validate_data(
            self,
            X,
            accept_sparse=("csr", "csc", "coo"),
            dtype=dtype or (np.float64, np.float32),
            reset=reset,
        )
        if sp.issparse(X):
            X = X.toarray()
        return np.ascontiguousarray(X)

    def _model(self, dtype: np.dtype, device: torch.device | None = None) -> _TorchRBM:
        """An ebmlab RBM holding the fitted attributes, in ``dtype``."""
        device = device or self._device()
        torch_dtype = TORCH_DTYPES[np.dtype(dtype)]
        n_components, n_features = self.components_.shape
        # A throwaway generator keeps the global torch RNG untouched (the weights are overwritten).
        model = _TorchRBM(
            n_features,
            n_components,
            weight_std=0.0,
            generator=torch.Generator(),
            dtype=torch_dtype,
            device=device,
        )
        with torch.no_grad():
            for parameter, value in (
                (model.weight, self.components_.T),
                (model.hidden_bias, self.intercept_hidden_),
                (model.visible_bias, self.intercept_visible_),
            ):
                parameter.copy_(torch.tensor(np.asarray(value, dtype=dtype)))
        return model

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = torch.Generator(device=device)
        generator.set_state(torch.from_numpy(self._generator_state.copy()))
        return generator

    def _save_generator(self, generator: torch.Generator) -> None:
        self._generator_state = generator.get_state().numpy().copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
