r"""A scikit-learn classifier: greedy DBN pretraining, then discriminative fine-tuning, by ebmlab.

Pretraining is :func:`ebmlab.training.greedy.train_greedy` on a
:class:`ebmlab.models.DBN`; fine-tuning turns the DBN's up-pass into a sigmoid MLP with
a softmax head (:meth:`ebmlab.training.finetune.DBNClassifier.from_dbn`) and trains it
with :func:`ebmlab.training.finetune.finetune` (Adam, early stopping on a held-out part).
The fitted network lives in NumPy attributes, so the estimator pickles, clones and
deep-copies like any other.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ebmlab._validation import check_positive_float, check_probability
from ebmlab.models.dbn import DBN
from ebmlab.sklearn._common import (
    SEED_BOUND,
    TORCH_DTYPES,
    as_int,
    clip_to_unit_interval,
    device_of,
    to_tensor,
    warn_outside_unit_interval,
)
from ebmlab.training.finetune import DBNClassifier as _TorchDBNClassifier
from ebmlab.training.finetune import FinetuneConfig, finetune
from ebmlab.training.greedy import train_greedy
from ebmlab.training.trainer import CDConfig

__all__ = ["DBNClassifier"]

# What each method does with values outside [0, 1], for the warning.
_CONSEQUENCES = {
    "fit": "fit clips them to [0, 1] and pretrains and fine-tunes on the clipped data.",
    "predict": (
        "The up-pass sigmoid(x W + b) is still computed from them, extrapolating beyond "
        "the data the network was fitted to."
    ),
}


def _hidden_sizes(value: object) -> tuple[int, ...]:
    """``hidden_layer_sizes`` as a non-empty tuple of positive ints (a single int is one layer)."""
    sizes = (value,) if isinstance(value, Integral) else value
    if isinstance(sizes, str | bytes) or not hasattr(sizes, "__iter__") or len(sizes) == 0:
        raise ValueError(
            f"hidden_layer_sizes must be a positive int or a non-empty sequence of them, "
            f"such as (256, 256); got {value!r}"
        )
    try:
        return tuple(as_int("hidden_layer_sizes", size, minimum=1) for size in sizes)
    except ValueError:
        raise ValueError(f"hidden_layer_sizes must hold positive integers; got {value!r}") from None


class DBNClassifier(
    ClassNamePrefixFeaturesOutMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    r"""Deep belief network classifier: greedy CD pretraining, then backpropagation.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(256, 256)
        Units of each hidden layer, bottom first; the DBN's layer sizes are
        ``(n_features, *hidden_layer_sizes)``.
    pretrain_epochs : int, default=10
        CD-k passes over ``X`` for each RBM of the stack; 0 skips pretraining (the
        network starts from PyTorch's random initialisation: the baseline).
    pretrain_learning_rate : float, default=0.05
        CD learning rate (momentum 0.5 then 0.9 and weight decay 1e-4, ebmlab's
        :class:`~ebmlab.training.trainer.CDConfig` defaults).
    cd_k : int, default=1
        Block Gibbs sweeps per CD update.
    batch_size : int, default=100
        Minibatch size of pretraining and of fine-tuning.
    finetune_epochs : int, default=20
        Maximum passes of fine-tuning (Adam on the cross-entropy); 0 trains nothing
        beyond pretraining (the softmax head stays random).
    finetune_learning_rate : float, default=1e-3
        Adam's learning rate.
    validation_fraction : float, default=0.1
        Part of ``(X, y)`` held out of fine-tuning for early stopping, in (0, 1).
    patience : int, default=5
        Stop after this many epochs without a better validation accuracy (0: never).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the pretraining chains and minibatches, the
        softmax head, the validation split and the fine-tuning minibatches. An int
        makes :meth:`fit` reproducible (on CPU bit for bit).
    device : str or torch.device, default="cpu"
        Where the torch computations run; the fitted attributes are NumPy arrays.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The sorted distinct labels (as :class:`~sklearn.preprocessing.LabelEncoder`).
    coefs_ : list of ndarray
        ``coefs_[l]`` of shape ``(n_in, n_out)``: the weights of layer ``l``, the
        softmax head last (the DBN's :math:`W^l` after fine-tuning).
    intercepts_ : list of ndarray
        ``intercepts_[l]`` of shape ``(n_out,)``: the biases matching ``coefs_``.
    n_iter_ : int
        Fine-tuning epochs run (early stopping may end before ``finetune_epochs``).
    validation_scores_ : list of float
        Validation accuracy after each fine-tuning epoch.
    best_validation_score_ : float
        The best of them; the fitted network is the one that reached it (NaN
        when ``finetune_epochs=0``).
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
    Pretraining fits RBM :math:`l` (energy
    :math:`E(h^{l-1}, h^l) = -{h^{l-1}}^\top W^l h^l - {b^l_h}^\top h^l - {b^l_v}^\top h^{l-1}`,
    :math:`p \propto e^{-E}`) by CD-k to the mean-field activations
    :math:`h^{l-1} = \sigma(W^{l-1\,\top} h^{l-2} + b^{l-1}_h)` of the layer below, bottom
    first. Fine-tuning then treats the up-pass as a network,
    :math:`p(y \mid x) = \mathrm{softmax}(V h^L(x) + c)_y`, with the recognition weights
    :math:`W^l, b^l_h` as the starting point and a random head :math:`(V, c)`, and
    minimises the cross-entropy; the network with the best validation accuracy is kept.
    :meth:`transform` returns :math:`h^L(x)` of the fine-tuned network. float32 input
    trains in float32, anything else in float64; sparse input is densified.

    Range policy (as :class:`ebmlab.sklearn.BernoulliRBM`'s). The visible units are
    Bernoulli, so inputs are meant to lie in [0, 1]; finite input outside it is
    accepted with one :class:`~ebmlab.sklearn.OutOfRangeWarning` per call. :meth:`fit`
    pretrains and fine-tunes on :math:`\min(\max(X, 0), 1)` (on digits pipelines that
    hand it standardised or unscaled pixels this scored 0.86 and 0.79 where training
    on the values as given scored 0.66 and 0.10; ``docs/sklearn.md``), while
    :meth:`predict`, :meth:`predict_proba`, :meth:`score` and :meth:`transform` run the
    up-pass on the values as given. NaN and inf raise ``ValueError``.

    References
    ----------
    Hinton, G. E., Osindero, S. & Teh, Y.-W. (2006). A fast learning algorithm for deep
    belief nets. Neural Computation 18(7), 1527-1554. Hinton, G. E. & Salakhutdinov,
    R. R. (2006). Reducing the dimensionality of data with neural networks. Science 313.
    """

    def __init__(
        self,
        hidden_layer_sizes=(256, 256),
        *,
        pretrain_epochs=10,
        pretrain_learning_rate=0.05,
        cd_k=1,
        batch_size=100,
        finetune_epochs=20,
        finetune_learning_rate=1e-3,
        validation_fraction=0.1,
        patience=5,
        random_state=None,
        device="cpu",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_learning_rate = pretrain_learning_rate
        self.cd_k = cd_k
        self.batch_size = batch_size
        self.finetune_epochs = finetune_epochs
        self.finetune_learning_rate = finetune_learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state
        self.device = device

    # ----- fitting -----------------------------------------------------------------------
    def fit(self, X, y):
        """Pretrain the DBN on ``X``, then fine-tune it as a classifier of ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data, meant to lie in [0, 1] (see the range policy in Notes).
        y : array-like of shape (n_samples,)
            Class labels of any type (encoded into ``classes_``).

        Returns
        -------
        self : DBNClassifier
        """
        sizes, device = self._check_hyperparameters()
        X, y = self._validate(X, y, reset=True)
        X = self._check_range(X, "fit")
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        labels = torch.from_numpy(encoder.transform(y).astype(np.int64)).to(device)
        self._check_n_samples(X.shape[0])
        init_seed, pretrain_seed, head_seed, finetune_seed = (
            int(seed) for seed in check_random_state(self.random_state).randint(SEED_BOUND, size=4)
        )
        data = to_tensor(X, device)
        layer_sizes = (X.shape[1], *sizes)
        model = self._network(data, layer_sizes, seeds=(init_seed, pretrain_seed, head_seed))
        self._finetune(model, data, labels, seed=finetune_seed)
        self._store(model)
        return self

    def _network(
        self, data: torch.Tensor, layer_sizes: tuple[int, ...], *, seeds: tuple[int, int, int]
    ) -> _TorchDBNClassifier:
        """The network fine-tuning starts from: the pretrained DBN's up-pass plus a random head."""
        init_seed, pretrain_seed, head_seed = seeds
        n_classes = len(self.classes_)
        # Initial weights are drawn on the CPU, then moved to the data's device.
        kwargs = {
            "generator": torch.Generator().manual_seed(init_seed),
            "dtype": data.dtype,
            "device": data.device,
        }
        if not self.pretrain_epochs:
            return _TorchDBNClassifier(layer_sizes, n_classes, **kwargs)
        dbn = DBN(layer_sizes, **kwargs)
        generator = torch.Generator(device=data.device).manual_seed(pretrain_seed)
        train_greedy(dbn, data, self._cd_config(), propagation="mean", generator=generator)
        head = torch.Generator().manual_seed(head_seed)
        return _TorchDBNClassifier.from_dbn(dbn, n_classes, generator=head)

    def _cd_config(self) -> CDConfig:
        return CDConfig(
            epochs=int(self.pretrain_epochs),
            batch_size=int(self.batch_size),
            lr=float(self.pretrain_learning_rate),
            cd_k=int(self.cd_k),
        )

    def _finetune(self, model, data: torch.Tensor, labels: torch.Tensor, *, seed: int) -> None:
        config = FinetuneConfig(
            epochs=int(self.finetune_epochs),
            batch_size=int(self.batch_size),
            lr=float(self.finetune_learning_rate),
            validation_fraction=float(self.validation_fraction),
            patience=int(self.patience),
        )
        scores: list[float] = []
        trainer = finetune(
            model,
            data,
            labels,
            config,
            seed=seed,
            generator=torch.Generator(device=data.device).manual_seed(seed),
            on_epoch=lambda epoch, record: scores.append(record["validation_accuracy"]),
        )
        self.n_iter_ = trainer.epoch
        self.validation_scores_ = scores
        self.best_validation_score_ = max(scores) if scores else float("nan")

    @torch.no_grad()
    def _store(self, model: _TorchDBNClassifier) -> None:
        """Copy the fitted network into NumPy attributes (the estimator's only state)."""
        layers = [*model.hidden, model.head]
        self.coefs_ = [layer.weight.detach().T.cpu().numpy().copy() for layer in layers]
        self.intercepts_ = [layer.bias.detach().cpu().numpy().copy() for layer in layers]
        self._n_features_out = self.coefs_[-2].shape[1]  # get_feature_names_out of transform

    # ----- using a fitted model ----------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities :math:`p(y \\mid x)`, columns in the order of ``classes_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data with the fitted number of features.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        model, x = self._model_and_input(X)
        with torch.no_grad():
            return torch.softmax(model(x), dim=1).cpu().numpy()

    def predict(self, X):
        """The most probable class of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data with the fitted number of features.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels taken from ``classes_``.
        """
        model, x = self._model_and_input(X)
        with torch.no_grad():
            return self.classes_[model(x).argmax(dim=1).cpu().numpy()]

    def transform(self, X):
        """Top hidden layer's activations :math:`h^L(x)` of the fine-tuned up-pass.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data with the fitted number of features.

        Returns
        -------
        h : ndarray of shape (n_samples, hidden_layer_sizes[-1])
        """
        model, x = self._model_and_input(X)
        with torch.no_grad():
            return model.features(x).cpu().numpy()

    def fit_transform(self, X, y):
        """Fit to ``(X, y)``, then return :meth:`transform` of ``X`` (one range warning at most).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        h : ndarray of shape (n_samples, hidden_layer_sizes[-1])
        """
        self.fit(X, y)
        model, x = self._model_and_input(X, warn=False)
        with torch.no_grad():
            return model.features(x).cpu().numpy()

    # ----- helpers -------------------------------------------------------------------------
    def _check_hyperparameters(self) -> tuple[tuple[int, ...], torch.device]:
        """Validate the constructor arguments (scikit-learn checks them at fit time)."""
        sizes = _hidden_sizes(self.hidden_layer_sizes)
        as_int("pretrain_epochs", self.pretrain_epochs, minimum=0)
        check_positive_float("pretrain_learning_rate", self.pretrain_learning_rate)
        as_int("cd_k", self.cd_k, minimum=1)
        as_int("batch_size", self.batch_size, minimum=1)
        as_int("finetune_epochs", self.finetune_epochs, minimum=0)
        check_positive_float("finetune_learning_rate", self.finetune_learning_rate)
        check_probability("validation_fraction", self.validation_fraction, open_interval=True)
        as_int("patience", self.patience, minimum=0)
        return sizes, self._device()

    def _device(self) -> torch.device:
        return device_of(self.device)

    def _check_n_samples(self, n_samples: int) -> None:
        # The same rounding as ebmlab.data.train_validation_split; checked here so that the
        # message speaks of samples (what scikit-learn users and its checks expect).
        n_validation = int(np.floor(float(self.validation_fraction) * n_samples + 0.5))
        if not 1 <= n_validation <= n_samples - 1:
            raise ValueError(
                f"X has {n_samples} sample(s): too few to hold out validation_fraction="
                f"{self.validation_fraction!r} for early stopping with at least one sample in "
                f"each part"
            )

    def _validate(self, X, y="no_validation", *, reset: bool):
        """scikit-learn's validation (shape, finiteness, features, dtype), densified.

        ``y`` defaults to scikit-learn's "no_validation" marker: X alone is validated and
        returned; any other ``y`` (None included, which fit rejects) gives ``(X, y)``.
        """
        dtype = (np.float64, np.float32) if reset else self.coefs_[0].dtype
        kwargs = {"accept_sparse": ("csr", "csc", "coo"), "dtype": dtype, "reset": reset}
        no_y = isinstance(y, str) and y == "no_validation"
        X = validate_data(self, X, y, **kwargs)
        X, y = (X, None) if no_y else X
        if sp.issparse(X):
            X = X.toarray()
        X = np.ascontiguousarray(X)
        return X if no_y else (X, y)

    def _check_range(self, X: np.ndarray, method: str, *, warn: bool = True) -> np.ndarray:
        """The range policy: finite data outside [0, 1] is accepted, with one warning.

        ``method`` is "fit" (which clips to [0, 1]) or "predict" (every method that runs
        the up-pass, which uses the values as given); returns the array it works on.
        """
        if warn:
            warn_outside_unit_interval(X, model="Bernoulli DBN", consequence=_CONSEQUENCES[method])
        return clip_to_unit_interval(X) if method == "fit" else X

    def _model_and_input(self, X, *, warn: bool = True) -> tuple[_TorchDBNClassifier, torch.Tensor]:
        """The fitted network rebuilt from the NumPy attributes, and ``X`` validated for it."""
        check_is_fitted(self)
        X = self._check_range(self._validate(X, reset=False), "predict", warn=warn)
        device = self._device()
        layer_sizes = [coef.shape[0] for coef in self.coefs_]
        # A throwaway generator keeps the global torch RNG untouched (the weights are overwritten).
        model = _TorchDBNClassifier(
            layer_sizes,
            self.coefs_[-1].shape[1],
            generator=torch.Generator(),
            dtype=TORCH_DTYPES[X.dtype],
            device=device,
        )
        with torch.no_grad():
            for layer, coef, intercept in zip(
                [*model.hidden, model.head], self.coefs_, self.intercepts_, strict=True
            ):
                layer.weight.copy_(torch.from_numpy(coef.T.copy()))
                layer.bias.copy_(torch.from_numpy(intercept))
        return model.eval(), to_tensor(X, device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
