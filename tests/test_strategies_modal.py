"""The modAL adapter, called directly and through modAL's ActiveLearner.query.

ActiveLearner.teach/fit are broken with scikit-learn >= 1.8 (modAL passes the removed
``force_all_finite``), so the estimator is fitted here and the learner built without
training data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

import strategies
from ads.errors import ParameterError
from strategies.modal import modal_query


@pytest.fixture(scope="module")
def fitted():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(X))
    lab, pool = idx[:100], idx[100:600]
    clf = LogisticRegression(max_iter=200).fit(X[lab], y[lab])
    return clf, X[lab], X[pool]


@pytest.mark.parametrize("name", strategies.available())
def test_callable_returns_indices_and_rows(fitted, name):
    clf, X_lab, X_pool = fitted
    query = modal_query(name, random_state=0)
    idx, rows = query(clf, X_pool, n_instances=7, X_labeled=X_lab)
    assert idx.dtype == np.int64 and np.unique(idx).size == 7
    np.testing.assert_array_equal(rows, X_pool[idx])
    want = strategies.get(name).select(
        X_pool, 7, X_labeled=X_lab, proba=clf.predict_proba(X_pool), random_state=0
    )
    np.testing.assert_array_equal(idx, want)


def test_embed_and_labeled_from_classifier(fitted):
    clf, X_lab, X_pool = fitted
    seen = []

    def embed(X):
        seen.append(X.shape)
        return X[:, :32]

    clf_with_training = type("Learnerish", (), {"X_training": X_lab, "predict_proba": clf.predict_proba})()
    idx, _ = modal_query("coreset", embed=embed)(clf_with_training, X_pool, n_instances=5)
    np.testing.assert_array_equal(idx, strategies.get("coreset").select(X_pool[:, :32], 5, X_labeled=X_lab[:, :32]))
    assert seen == [X_pool.shape, X_lab.shape]


def test_list_pool_rows(fitted):
    clf, _, X_pool = fitted
    pool = X_pool[:20].tolist()
    idx, rows = modal_query("entropy")(clf, pool, n_instances=3)
    assert rows == [pool[i] for i in idx]


@pytest.mark.parametrize("name", ["badge", "coreset", "margin"])
@pytest.mark.parametrize("n_instances", [1, 2, 9])
def test_through_active_learner(fitted, name, n_instances):
    from modAL.models import ActiveLearner

    clf, X_lab, X_pool = fitted
    query = modal_query(name, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        learner = ActiveLearner(estimator=clf, query_strategy=query)
        idx, rows = learner.query(X_pool, n_instances=n_instances)
    want, _ = query(clf, X_pool, n_instances=n_instances)
    # n_instances=2 guards the 2-tuple unpacking in BaseLearner.query.
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(rows, X_pool[want])


def test_bad_arguments(fitted):
    clf, _, X_pool = fitted
    with pytest.raises(ParameterError, match=r"Unknown strategy 'nope'"):
        modal_query("nope")
    with pytest.raises(ParameterError, match=r"The 'embed' parameter of modal_query must be callable or None\. Got 3\."):
        modal_query("random", embed=3)
    with pytest.raises(ParameterError, match=r"The 'n' parameter of strategy 'random' must be <= the number of candidates \(500\)\. Got 501\."):
        modal_query("random")(clf, X_pool, n_instances=501)
