r"""The machinery shared by the RBM transformers: PCD-k / CD-k fitting, state, randomness.

:class:`RBMTransformer` holds everything that does not depend on the visible units'
distribution: scikit-learn's validation, the fit / partial_fit loops on
:class:`ebmlab.training.CDTrainer`, the NumPy attributes that are the estimator's only
state, the torch random stream kept with them, ``transform`` (:math:`p(h = 1 \mid v)`)
and ``gibbs``. With ``centering=True`` the updates are the centered gradient of
:mod:`ebmlab.training.centering`, its offsets fitted state like the persistent chains.
The subclasses say which ebmlab model they fit, how its parameters start, what their
input may be, what ``score_samples`` is and what ``verbose`` prints.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ebmlab._validation import check_positive_float
from ebmlab.models.rbm import sample_bernoulli
from ebmlab.samplers.gibbs import BlockGibbs
from ebmlab.sklearn._common import SEED_BOUND, TORCH_DTYPES, as_int, device_of, to_tensor
from ebmlab.training.centering import check_offset_rate
from ebmlab.training.trainer import CDConfig, CDTrainer, NonFiniteError


def _check_offset_rate(value: object) -> float:
    """``offset_rate`` in (0, 1], checked whether or not centering is on (as CDConfig does)."""
    try:
        return check_offset_rate(value)
    except ValueError:
        # One message for every bad value (the shared check says [0, 1] for some of them).
        raise ValueError(
            f"offset_rate must be a number in (0, 1] (the centering offsets' moving-average "
            f"rate); got {value!r}"
        ) from None


def _as_array(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().cpu().numpy().copy()


class RBMTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Base of the scikit-learn RBM transformers (not an estimator by itself).

    Subclasses set :attr:`_torch_model` and define ``__init__`` (scikit-learn reads the
    parameters from its signature), :meth:`score_samples` and the hooks below.
    """

    #: The ebmlab model class fitted; built as ``cls(n_visible, n_hidden, weight_std=...,
    #: generator=..., dtype=..., device=...)``.
    _torch_model: type[nn.Module]
    #: The name ``verbose`` prints for the value :meth:`_progress` returns after each pass.
    _progress_label: str

    # ----- hooks ---------------------------------------------------------------------------
    def _check_range(self, X: np.ndarray, method: str, *, warn: bool = True) -> np.ndarray:
        """Apply the input policy of ``method`` to validated ``X``; returns what it works on.

        ``warn=False`` applies the policy silently (a call that already warned once).
        """
        return X

    def _start(self, model: nn.Module, data: torch.Tensor) -> None:
        """Adjust a freshly initialised model to the first data it sees (default: nothing)."""

    def _progress(self, model: nn.Module, data: torch.Tensor, generator: torch.Generator) -> float:
        """The training-data figure ``verbose`` prints, drawing randomness from ``generator``."""
        raise NotImplementedError

    # ----- fitting -------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit the model to ``X`` with ``n_iter`` passes of CD-k / PCD-k.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        device = self._check_hyperparameters()
        self._fit(self._input(X, reset=True, method="fit"), device)
        return self

    def fit_transform(self, X, y=None):
        """Fit to ``X``, then return :meth:`transform` of ``X`` (validated and checked once).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        h : ndarray of shape (n_samples, n_components)
        """
        device = self._check_hyperparameters()
        X = self._validate(X, reset=True)
        self._fit(self._check_range(X, "fit"), device)
        # transform's policy on the same rows; a second warning would repeat the first.
        return self._hidden_means(self._check_range(X, "transform", warn=False))

    def _fit(self, X: np.ndarray, device: torch.device) -> None:
        model, generator = self._initialise(X, device)
        data = to_tensor(X, device)
        self._start(model, data)
        # No loss per update (the epoch ends check the parameters): the lean plain SGD step.
        trainer = self._trainer(model, generator, track_loss=False)
        begin = time.perf_counter()
        try:
            for iteration in range(1, self.n_iter + 1):
                trainer.train_epoch(data)
                if self.verbose:
                    begin = self._report(model, data, iteration, begin)
        except NonFiniteError as error:
            raise NonFiniteError(
                f"fit made the parameters non-finite; lower learning_rate "
                f"(got {self.learning_rate!r})"
            ) from error
        self._store(model, trainer)

    def partial_fit(self, X, y=None):
        """One CD-k / PCD-k update with all of ``X`` as the minibatch.

        The first call initialises the model like :meth:`fit`; later calls continue
        the same persistent chains, centering offsets and random stream.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The updated estimator.
        """
        device = self._check_hyperparameters()
        first_call = not hasattr(self, "components_")
        dtype = None if first_call else self.components_.dtype
        X = self._input(X, reset=first_call, method="fit", dtype=dtype)
        data = to_tensor(X, device)
        if first_call:
            model, generator = self._initialise(X, device)
            self._start(model, data)
        else:
            model, generator = self._model(X.dtype, device), self._generator(device)
        trainer = self._trainer(model, generator)
        if self.persistent and getattr(self, "_chains", None) is not None:
            trainer.objective.chains = torch.tensor(self._chains, device=device)
            # An estimator pickled before the means were stored recomputes them.
            means = getattr(self, "_chain_hidden_means", None)
            if means is not None:
                trainer.objective.chain_hidden_means = torch.tensor(means, device=device)
        if not first_call:
            self._restore_offsets(trainer, device)
        loss = trainer.update(data)
        parameters = torch.cat([p.detach().flatten() for p in model.parameters()])
        if not (np.isfinite(loss) and torch.isfinite(parameters).all()):
            raise NonFiniteError(
                f"partial_fit made the parameters non-finite (loss {loss}); lower learning_rate "
                f"(got {self.learning_rate!r})"
            )
        self._store(model, trainer)
        return self

    def _initialise(self, X: np.ndarray, device: torch.device) -> tuple[nn.Module, torch.Generator]:
        """A fresh model (weights N(0, 0.01^2), zero biases) and the training generator."""
        init_seed, train_seed = check_random_state(self.random_state).randint(SEED_BOUND, size=2)
        # The model draws its initial weights on the CPU, then moves them to ``device``.
        model = self._torch_model(
            X.shape[1],
            int(self.n_components),
            generator=torch.Generator().manual_seed(int(init_seed)),
            dtype=TORCH_DTYPES[X.dtype],
            device=device,
        )
        generator = torch.Generator(device=device).manual_seed(int(train_seed))
        self._chains = self._chain_hidden_means = None
        return model, generator

    def _restore_offsets(self, trainer: CDTrainer, device: torch.device) -> None:
        """Give ``trainer`` the offsets an earlier update left, as the chains are carried.

        Without stored offsets (the earlier updates did not center) the trainer starts
        them from this minibatch, as a first update does.
        """
        if trainer.centering is None or getattr(self, "hidden_offset_", None) is None:
            return
        offsets = {"visible_offset": self.visible_offset_, "hidden_offset": self.hidden_offset_}
        trainer.centering.load_state_dict(
            {name: torch.tensor(value, device=device) for name, value in offsets.items()}
        )

    def _trainer(
        self, model: nn.Module, generator: torch.Generator, *, track_loss: bool = True
    ) -> CDTrainer:
        # No momentum, decay or lr schedule, and by default no centering: scikit-learn's
        # plain SGD step; PCD's sweeps start from the previous update's hidden means, as
        # scikit-learn's do.
        config = CDConfig(
            epochs=max(int(self.n_iter), 1),
            batch_size=int(self.batch_size),
            lr=float(self.learning_rate),
            cd_k=int(self.cd_k),
            persistent=bool(self.persistent),
            reuse_hidden_means=bool(self.persistent),
            n_chains=int(self.batch_size),
            momentum=0.0,
            final_momentum=0.0,
            weight_decay=0.0,
            final_lr_fraction=1.0,
            centering=bool(self.centering),
            offset_rate=float(self.offset_rate),
        )
        return CDTrainer(model, config, generator=generator, track_loss=track_loss)

    @torch.no_grad()
    def _store(self, model: nn.Module, trainer: CDTrainer) -> None:
        """Copy the fitted state into NumPy attributes (the estimator's only state)."""
        self.components_ = model.weight.detach().T.cpu().numpy().copy()
        self.intercept_hidden_ = model.hidden_bias.detach().cpu().numpy().copy()
        self.intercept_visible_ = model.visible_bias.detach().cpu().numpy().copy()
        self._n_features_out = self.components_.shape[0]
        chains, means = trainer.objective.chains, trainer.objective.chain_hidden_means
        self._chains = None if chains is None else chains.cpu().numpy().copy()
        self._chain_hidden_means = None if means is None else means.cpu().numpy().copy()
        # scikit-learn's h_samples_: the chains' hidden state, drawn from those means.
        self.h_samples_ = (
            None
            if means is None
            else sample_bernoulli(means, generator=trainer.generator).cpu().numpy()
        )
        self._save_generator(trainer.generator)
        offsets = {} if trainer.centering is None else trainer.centering.state_dict()
        self.visible_offset_ = _as_array(offsets.get("visible_offset"))
        self.hidden_offset_ = _as_array(offsets.get("hidden_offset"))

    def _report(self, model: nn.Module, data: torch.Tensor, iteration: int, begin: float) -> float:
        # A generator of its own, so that verbose output never changes the fit.
        generator = torch.Generator(device=data.device).manual_seed(iteration)
        with torch.no_grad():
            value = self._progress(model, data, generator)
        end = time.perf_counter()
        print(
            f"[{type(self).__name__}] Iteration {iteration}, "
            f"{self._progress_label} = {value:.2f}, time = {end - begin:.2f}s"
        )
        return end

    # ----- using a fitted model ------------------------------------------------------------
    def transform(self, X):
        r"""Hidden unit probabilities :math:`p(h = 1 \mid v = X)` (mean field).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data with the fitted number of features.

        Returns
        -------
        h : ndarray of shape (n_samples, n_components)
            In the dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        return self._hidden_means(self._input(X, reset=False, method="transform"))

    def _hidden_means(self, X: np.ndarray) -> np.ndarray:
        model, device = self._model(X.dtype), self._device()
        with torch.no_grad():
            return model.mean_h(to_tensor(X, device)).cpu().numpy()

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
            The sampled visible units, in the dtype of ``v``.
        """
        check_is_fitted(self)
        v = self._input(v, reset=False, method="gibbs")
        device = self._device()
        sampler = BlockGibbs(self._model(v.dtype, device))
        generator = self._generator(device)
        state, _ = sampler.step(sampler.init(to_tensor(v, device)), generator=generator)
        self._save_generator(generator)
        return state.visible.cpu().numpy()

    def _scoring_model(
        self, X, model_class: type[nn.Module] | None = None
    ) -> tuple[nn.Module, torch.Tensor]:
        """The fitted model (as ``model_class``, by default the trained one) and ``X``
        validated for :meth:`score_samples`."""
        check_is_fitted(self)
        X = self._input(X, reset=False, method="score_samples")
        device = self._device()
        return self._model(X.dtype, device, model_class), to_tensor(X, device)

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
        if not isinstance(self.centering, bool | np.bool_):
            raise ValueError(f"centering must be True or False; got {self.centering!r}")
        _check_offset_rate(self.offset_rate)
        return self._device()

    def _device(self) -> torch.device:
        return device_of(self.device)

    def _input(self, X, *, reset: bool, method: str, dtype=None) -> np.ndarray:
        """scikit-learn's validation, then the subclass's range policy for ``method``."""
        return self._check_range(self._validate(X, reset=reset, dtype=dtype), method)

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

    def _model(
        self,
        dtype: np.dtype,
        device: torch.device | None = None,
        model_class: type[nn.Module] | None = None,
    ) -> nn.Module:
        """An ebmlab model holding the fitted attributes, in ``dtype``."""
        device = device or self._device()
        model_class = model_class or self._torch_model
        torch_dtype = TORCH_DTYPES[np.dtype(dtype)]
        n_components, n_features = self.components_.shape
        # A throwaway generator keeps the global torch RNG untouched (the weights are overwritten).
        model = model_class(
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
