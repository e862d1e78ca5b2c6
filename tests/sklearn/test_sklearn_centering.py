"""The centered gradient in the scikit-learn RBM adapters (``centering``, ``offset_rate``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy.special import expit, log_expit
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from ebmlab.models import BernoulliRBM as TorchRBM
from ebmlab.models import GaussianBernoulliRBM as TorchGaussianRBM
from ebmlab.sklearn import BernoulliRBM, GaussianBernoulliRBM, expected_failed_checks
from ebmlab.training import CDConfig, CDTrainer

ESTIMATORS = [BernoulliRBM, GaussianBernoulliRBM]
TORCH_MODELS = {BernoulliRBM: TorchRBM, GaussianBernoulliRBM: TorchGaussianRBM}


def data_for(estimator, n_samples=40, n_features=6, *, seed=0, p=0.4):
    """Binary rows for the Bernoulli RBM (on-probability ``p``); standardised reals otherwise."""
    rng = np.random.default_rng(seed)
    if estimator is BernoulliRBM:
        return (rng.random((n_samples, n_features)) < p).astype(np.float64)
    factors = rng.standard_normal((n_samples, 2))
    X = factors @ rng.standard_normal((2, n_features)) + 0.5 * rng.standard_normal(
        (n_samples, n_features)
    )
    return (X - X.mean(0)) / X.std(0)


def reference_trainer(
    estimator, X, *, random_state, n_components, batch_size, lr, epochs=1, offset_rate=0.01
):
    """A CDTrainer built by hand as the adapter should build it, from the same seeds."""
    init_seed, train_seed = np.random.RandomState(random_state).randint(
        np.iinfo(np.int32).max, size=2
    )
    model = TORCH_MODELS[estimator](
        X.shape[1],
        n_components,
        generator=torch.Generator().manual_seed(int(init_seed)),
        dtype=torch.float64,
    )
    if estimator is GaussianBernoulliRBM:
        with torch.no_grad():
            model.init_visible_bias(torch.from_numpy(X))  # the adapter's _start
    config = CDConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        cd_k=1,
        persistent=True,
        n_chains=batch_size,
        momentum=0.0,
        final_momentum=0.0,
        weight_decay=0.0,
        final_lr_fraction=1.0,
        centering=True,
        offset_rate=offset_rate,
    )
    return CDTrainer(model, config, generator=torch.Generator().manual_seed(int(train_seed)))


def parameters(model):
    return [
        model.weight.detach().numpy().T,
        model.hidden_bias.detach().numpy(),
        model.visible_bias.detach().numpy(),
    ]


def fitted(rbm):
    return [rbm.components_, rbm.intercept_hidden_, rbm.intercept_visible_]


# ----- (a) fit is CDTrainer with centering -------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_fit_is_a_centered_cd_trainer(estimator):
    X = data_for(estimator)
    settings = {"n_components": 4, "batch_size": 7, "random_state": 5}
    lr, n_iter, rate = 0.05, 3, 0.2
    rbm = estimator(
        **settings, learning_rate=lr, n_iter=n_iter, centering=True, offset_rate=rate
    ).fit(X)
    trainer = reference_trainer(estimator, X, **settings, lr=lr, epochs=n_iter, offset_rate=rate)
    for _ in range(n_iter):
        trainer.train_epoch(torch.from_numpy(X))
    for ours, theirs in zip(fitted(rbm), parameters(trainer.model), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(rbm.visible_offset_, trainer.centering.visible_offset.numpy())
    np.testing.assert_array_equal(rbm.hidden_offset_, trainer.centering.hidden_offset.numpy())
    # The comparison can fail: the plain step from the same seeds lands elsewhere.
    plain = estimator(**settings, learning_rate=lr, n_iter=n_iter).fit(X)
    assert np.abs(plain.components_ - rbm.components_).max() > 1e-3


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_offsets_are_none_without_centering_and_visible_zero_for_gaussian_units(estimator):
    X = data_for(estimator)
    plain = estimator(n_components=3, n_iter=1, random_state=0).fit(X)
    assert plain.centering is False
    assert plain.visible_offset_ is None and plain.hidden_offset_ is None
    centered = estimator(n_components=3, n_iter=1, random_state=0, centering=True).fit(X)
    assert centered.hidden_offset_.shape == (3,)
    assert centered.visible_offset_.shape == (X.shape[1],)
    if estimator is GaussianBernoulliRBM:
        assert not centered.visible_offset_.any()  # hidden side only
    else:
        # Started at the data mean, moved towards minibatch means of the same data.
        np.testing.assert_allclose(centered.visible_offset_, X.mean(0), rtol=0, atol=0.05)


# ----- (b) partial_fit carries the offsets ---------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_partial_fit_continues_the_offsets(estimator):
    # Different means in the two batches, so restarting the offsets at X2 is visible.
    X1 = data_for(estimator, n_samples=10, seed=1, p=0.15)
    X2 = data_for(estimator, n_samples=10, seed=2, p=0.85)
    if estimator is GaussianBernoulliRBM:
        X2 = X2 + 1.5
    settings = {"n_components": 5, "batch_size": 10, "random_state": 3}
    lr, rate = 0.5, 0.05
    rbm = estimator(**settings, learning_rate=lr, centering=True, offset_rate=rate)
    rbm.partial_fit(X1).partial_fit(X2)

    def reference(*, carry_offsets):
        trainer = reference_trainer(estimator, X1, **settings, lr=lr, offset_rate=rate)
        trainer.update(torch.from_numpy(X1))
        # partial_fit's h_samples_ draws from the same stream.
        trainer.model.sample_h(trainer.objective.chains, generator=trainer.generator)
        if not carry_offsets:
            trainer.centering.visible_offset = trainer.centering.hidden_offset = None
        trainer.update(torch.from_numpy(X2))
        return trainer

    trainer = reference(carry_offsets=True)
    for ours, theirs in zip(fitted(rbm), parameters(trainer.model), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(rbm.hidden_offset_, trainer.centering.hidden_offset.numpy())
    np.testing.assert_array_equal(rbm.visible_offset_, trainer.centering.visible_offset.numpy())
    # A partial_fit that restarted the offsets at X2 would differ by far more than rounding
    # (measured 0.004-0.017 in the parameters and offsets).
    restarted = reference(carry_offsets=False)
    assert np.abs(rbm.hidden_offset_ - restarted.centering.hidden_offset.numpy()).max() > 1e-3
    difference = max(
        np.abs(ours - theirs).max()
        for ours, theirs in zip(fitted(rbm), parameters(restarted.model), strict=True)
    )
    assert difference > 1e-3


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_partial_fit_after_fit_and_float32_keep_the_offsets_dtype(estimator):
    X, rate = data_for(estimator).astype(np.float32), 0.1
    rbm = estimator(n_components=3, n_iter=2, random_state=0, centering=True, offset_rate=rate)
    rbm.fit(X)
    visible, hidden = rbm.visible_offset_.copy(), rbm.hidden_offset_.copy()
    batch = X[:10]
    h_mean = expit(batch @ rbm.components_.T + rbm.intercept_hidden_).mean(0)
    rbm.partial_fit(batch)
    assert rbm.hidden_offset_.dtype == rbm.visible_offset_.dtype == np.float32
    # One moving-average step from where fit left the offsets (not a restart at this batch).
    v_mean = batch.mean(0) if estimator is BernoulliRBM else 0 * visible
    np.testing.assert_allclose(rbm.visible_offset_, (1 - rate) * visible + rate * v_mean, atol=1e-6)
    np.testing.assert_allclose(rbm.hidden_offset_, (1 - rate) * hidden + rate * h_mean, atol=1e-6)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_switching_centering_between_partial_fits(estimator):
    X = data_for(estimator)
    rbm = estimator(n_components=3, random_state=0).partial_fit(X)
    assert rbm.hidden_offset_ is None
    # Switched on: the offsets start at this call's minibatch, as in a first update.
    rbm.set_params(centering=True).partial_fit(X)
    assert rbm.hidden_offset_.shape == (3,)
    rbm.set_params(centering=False).partial_fit(X)
    assert rbm.hidden_offset_ is None and rbm.visible_offset_ is None


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_pickled_estimator_continues_the_same_offsets(estimator):
    X = data_for(estimator)
    rbm = estimator(n_components=3, random_state=0, centering=True).partial_fit(X[:20])
    copy = pickle.loads(pickle.dumps(rbm))
    rbm.partial_fit(X[20:])
    copy.partial_fit(X[20:])
    for ours, theirs in zip(fitted(rbm), fitted(copy), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(rbm.hidden_offset_, copy.hidden_offset_)


# ----- (c) parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_get_params_set_params_and_clone_carry_the_new_parameters(estimator):
    params = estimator().get_params()
    assert params["centering"] is False and params["offset_rate"] == 0.01
    rbm = estimator(n_components=3).set_params(centering=True, offset_rate=0.2)
    assert rbm.get_params()["centering"] is True and rbm.get_params()["offset_rate"] == 0.2
    copy = clone(rbm)
    assert copy.get_params() == rbm.get_params()
    rbm.set_params(**estimator().get_params())
    assert rbm.get_params() == estimator().get_params()
    # clone gives an unfitted copy: no offsets carried over.
    fitted_rbm = clone(copy).set_params(n_iter=1).fit(data_for(estimator))
    assert not hasattr(clone(fitted_rbm), "hidden_offset_")


# ----- (d) bad values --------------------------------------------------------------------------------
BAD_VALUES = [
    ({"centering": "yes"}, "centering must be True or False; got 'yes'"),
    ({"centering": 1}, "centering must be True or False; got 1"),
    ({"centering": None}, "centering must be True or False; got None"),
    ({"offset_rate": 0.0}, r"offset_rate must be a number in \(0, 1\] .*; got 0.0"),
    ({"offset_rate": -0.1}, r"offset_rate must be a number in \(0, 1\] .*; got -0.1"),
    ({"offset_rate": 1.5}, r"offset_rate must be a number in \(0, 1\] .*; got 1.5"),
    ({"offset_rate": float("nan")}, r"offset_rate must be a number in \(0, 1\] .*; got nan"),
    ({"offset_rate": "fast"}, r"offset_rate must be a number in \(0, 1\] .*; got 'fast'"),
    ({"offset_rate": True}, r"offset_rate must be a number in \(0, 1\] .*; got True"),
]


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize(("params", "message"), BAD_VALUES)
def test_bad_centering_values_are_one_clear_value_error(estimator, method, params, message):
    rbm = estimator(n_components=2, n_iter=1, **params)  # scikit-learn: checked at fit time
    with pytest.raises(ValueError, match=message):
        getattr(rbm, method)(data_for(estimator))


def test_a_bad_offset_rate_is_rejected_even_without_centering():
    # As CDConfig checks it: a typo in a grid fails loudly before anyone turns centering on.
    with pytest.raises(ValueError, match="offset_rate must be a number in"):
        BernoulliRBM(offset_rate=2.0).fit(data_for(BernoulliRBM))


def test_numpy_values_are_accepted():
    rbm = BernoulliRBM(n_components=2, n_iter=1, centering=np.True_, offset_rate=np.float32(0.1))
    assert rbm.fit(data_for(BernoulliRBM)).hidden_offset_.shape == (2,)


# ----- (e) scikit-learn's estimator checks, centered ---------------------------------------------
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ebmlab.sklearn.OutOfRangeWarning")
@parametrize_with_checks(
    [
        BernoulliRBM(n_components=8, n_iter=5, random_state=0, centering=True),
        GaussianBernoulliRBM(n_components=8, n_iter=5, random_state=0, centering=True),
    ],
    expected_failed_checks=expected_failed_checks,
    xfail_strict=True,
)
def test_sklearn_estimator_checks_with_centering(estimator, check):
    check(estimator)


# ----- (f) centering is no worse on digits ---------------------------------------------------------
SEEDS = range(5)


def paired_standard_error(differences):
    r"""Standard error of the mean of ``differences[seed, row]`` (centered minus plain).

    With :math:`d_{sn} = \delta + a_s + b_n + e_{sn}` (training seed, test row, both), the
    mean's variance is :math:`\sigma_a^2/S + \sigma_b^2/N + \sigma_e^2/SN`. The spread of the
    per-seed means estimates :math:`\sigma_a^2 + \sigma_e^2/N`, that of the per-row means
    :math:`\sigma_b^2 + \sigma_e^2/S`; their sum counts :math:`\sigma_e^2/SN` twice, so it errs
    on the large (lenient) side by at most that term.
    """
    n_seeds, n_rows = differences.shape
    seed_part = differences.mean(1).var(ddof=1) / n_seeds
    row_part = differences.mean(0).var(ddof=1) / n_rows
    return float(np.sqrt(seed_part + row_part))


def exact_pseudo_likelihood(rbm, v):
    """sum_i log p(v_i | v_-i) of each row, every bit flipped in turn, from the fitted attributes."""

    def free_energy(x):
        hidden = np.logaddexp(0, x @ rbm.components_.T + rbm.intercept_hidden_).sum(1)
        return -x @ rbm.intercept_visible_ - hidden

    reference, total = free_energy(v), np.zeros(v.shape[0])
    for i in range(v.shape[1]):
        flipped = v.copy()
        flipped[:, i] = 1 - flipped[:, i]
        total += log_expit(free_energy(flipped) - reference)
    return total


def downstream_correct(rbm, X_train, y_train, X_test, y_test):
    classifier = LogisticRegression(max_iter=5000).fit(rbm.transform(X_train), y_train)
    return (classifier.predict(rbm.transform(X_test)) == y_test).astype(float)


def digits_split(transform):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    return (*transform(X_train, X_test), y_train, y_test)


def assert_not_worse(centered, plain):
    """Mean paired difference no lower than 3 standard errors below zero (one-sided ~0.1%)."""
    differences = centered - plain
    floor = -3 * paired_standard_error(differences)
    assert differences.mean() > floor, (differences.mean(), floor)


@pytest.mark.slow
def test_centering_is_no_worse_on_binarised_digits():
    def binarise(X_train, X_test):
        return (X_train / 16 > 0.5).astype(np.float64), (X_test / 16 > 0.5).astype(np.float64)

    X_train, X_test, y_train, y_test = digits_split(binarise)
    pseudo_likelihood, correct = {}, {}
    for centering in (False, True):
        rbms = [
            BernoulliRBM(n_components=64, n_iter=20, random_state=seed, centering=centering).fit(
                X_train
            )
            for seed in SEEDS
        ]
        pseudo_likelihood[centering] = np.array([exact_pseudo_likelihood(r, X_test) for r in rbms])
        correct[centering] = np.array(
            [downstream_correct(r, X_train, y_train, X_test, y_test) for r in rbms]
        )
    # Measured (seeds 0-4, 450 test digits): pseudo-likelihood -15.55 centered, -15.73 plain
    # (difference +0.17, standard error 0.17); accuracy 0.929 and 0.931 (-0.001, s.e. 0.008).
    # A wrong sign in the weight transform scores -2e5 and 0.15; shifting the biases by the
    # plain weight gradient instead of the centered one -1e4 (z = -2.9) and 0.59 (z = -8).
    assert_not_worse(pseudo_likelihood[True], pseudo_likelihood[False])
    assert_not_worse(correct[True], correct[False])


@pytest.mark.slow
def test_centering_is_no_worse_on_standardised_digits():
    def standardise(X_train, X_test):
        scaler = StandardScaler().fit(X_train)
        return scaler.transform(X_train), scaler.transform(X_test)

    X_train, X_test, y_train, y_test = digits_split(standardise)
    correct = {}
    for centering in (False, True):
        correct[centering] = np.array(
            [
                downstream_correct(
                    GaussianBernoulliRBM(
                        n_components=64, n_iter=10, random_state=seed, centering=centering
                    ).fit(X_train),
                    X_train,
                    y_train,
                    X_test,
                    y_test,
                )
                for seed in SEEDS
            ]
        )
    # Measured (seeds 0-4): accuracy 0.915 centered, 0.913 plain (+0.002, standard error 0.002).
    assert_not_worse(correct[True], correct[False])
