"""The ebmlab.sklearn estimators inside scikit-learn's machinery: grid search across processes,
pickling, pandas output, feature names and the fitted attributes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from ebmlab.sklearn import BernoulliRBM, DBNClassifier, GaussianBernoulliRBM

SMALL_DBN = {"pretrain_epochs": 2, "batch_size": 10, "finetune_epochs": 3}


def labelled_data(n_samples=80, n_features=6, seed=0):
    """Two classes whose first three features are shifted apart (real-valued)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(2, size=n_samples)
    X = rng.standard_normal((n_samples, n_features)) + 1.5 * y[:, None] * (np.arange(6) < 3)
    return X, y


def transformer_pipeline(name):
    """A scaler suited to the estimator, the estimator, and a logistic regression."""
    if name == "bernoulli":
        return make_pipeline(MinMaxScaler(), BernoulliRBM(n_components=4, n_iter=2, random_state=0))
    return make_pipeline(
        StandardScaler(), GaussianBernoulliRBM(n_components=4, n_iter=2, random_state=0)
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::ebmlab.sklearn.OutOfRangeWarning")
@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "dbn"])
def test_grid_search_with_two_processes_matches_one(name):
    # n_jobs=2 pickles the estimators into worker processes and back: the scores must be
    # exactly those of the one-process search (the fits are reproducible from random_state).
    X, y = labelled_data()
    if name == "dbn":
        model = make_pipeline(MinMaxScaler(), DBNClassifier((4,), **SMALL_DBN, random_state=0))
        grid = {"dbnclassifier__hidden_layer_sizes": [(4,), (8,)]}
    else:
        scaler, rbm = (step for _, step in transformer_pipeline(name).steps)
        model = make_pipeline(scaler, rbm, LogisticRegression())
        grid = {f"{type(rbm).__name__.lower()}__n_components": [2, 4]}
    searches = [GridSearchCV(model, grid, cv=2, n_jobs=n_jobs).fit(X, y) for n_jobs in (1, 2)]
    one, two = (search.cv_results_["mean_test_score"] for search in searches)
    np.testing.assert_array_equal(one, two)
    assert searches[1].best_params_ == searches[0].best_params_
    assert searches[1].score(X, y) == searches[0].score(X, y)


@pytest.mark.parametrize("name", ["bernoulli", "gaussian"])
def test_pickled_and_cloned_transformers_give_the_same_features(name):
    X, _ = labelled_data()
    fitted = transformer_pipeline(name).fit(X)
    copy = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(copy.transform(X), fitted.transform(X))
    np.testing.assert_array_equal(clone(fitted).fit(X).transform(X), fitted.transform(X))


@pytest.mark.parametrize(
    ("name", "attributes"),
    [
        (
            "bernoulli",
            {"components_": (4, 6), "intercept_hidden_": (4,), "intercept_visible_": (6,)},
        ),
        (
            "gaussian",
            {"components_": (4, 6), "intercept_hidden_": (4,), "intercept_visible_": (6,)},
        ),
    ],
)
def test_fitted_attributes_and_feature_names(name, attributes):
    X, _ = labelled_data()
    pipeline = transformer_pipeline(name).fit(X)
    rbm = pipeline[-1]
    for attribute, shape in attributes.items():
        assert getattr(rbm, attribute).shape == shape
    assert rbm.h_samples_.shape == (10, 4) and rbm.n_features_in_ == 6
    prefix = type(rbm).__name__.lower()
    assert list(pipeline.get_feature_names_out()) == [f"{prefix}{i}" for i in range(4)]


def test_dbn_fitted_attributes_and_feature_names():
    X, y = labelled_data()
    clf = DBNClassifier((5, 4), **SMALL_DBN, random_state=0).fit(MinMaxScaler().fit_transform(X), y)
    assert [c.shape for c in clf.coefs_] == [(6, 5), (5, 4), (4, 2)]
    assert [b.shape for b in clf.intercepts_] == [(5,), (4,), (2,)]
    assert clf.n_features_in_ == 6 and list(clf.classes_) == [0, 1]
    assert 1 <= clf.n_iter_ <= 3 and len(clf.validation_scores_) == clf.n_iter_
    assert list(clf.get_feature_names_out()) == [f"dbnclassifier{i}" for i in range(4)]


@pytest.mark.filterwarnings("ignore::ebmlab.sklearn.OutOfRangeWarning")
@pytest.mark.parametrize("name", ["bernoulli", "gaussian", "dbn"])
def test_set_output_pandas_keeps_names_and_values(name):
    pd = pytest.importorskip("pandas")
    X, y = labelled_data()
    frame = pd.DataFrame(X, columns=[f"feature_{i}" for i in range(6)])

    def fitted(output):
        if name == "dbn":
            dbn = DBNClassifier((4,), **SMALL_DBN, random_state=0)
            model = make_pipeline(MinMaxScaler(), dbn).set_output(transform=output)
            return model.fit(frame, y)
        return transformer_pipeline(name).set_output(transform=output).fit(frame)

    model, plain = fitted("pandas"), fitted("default")
    output = model.transform(frame)
    assert isinstance(output, pd.DataFrame)
    assert list(output.columns) == list(model.get_feature_names_out())
    np.testing.assert_array_equal(output.to_numpy(), plain.transform(frame))
    # The estimator was fitted on the scaler's DataFrame, so it knows the column names.
    np.testing.assert_array_equal(model[-1].feature_names_in_, frame.columns)
