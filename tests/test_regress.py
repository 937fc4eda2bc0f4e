"""Per-class value regressors against a numpy argsort kNN oracle."""

from __future__ import annotations

import numpy as np
import pytest

from ads.errors import DataError, ParameterError
from ads.regress import ValueRegressor


def oracle_class_values(X, y, values, Q, n_neighbors, n_classes):
    out = np.empty((Q.shape[0], n_classes))
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        k = min(n_neighbors, members.size)
        d = ((Q[:, None, :].astype(np.float64) - X[members][None].astype(np.float64)) ** 2).sum(-1)
        nn = np.argsort(d, axis=1, kind="stable")[:, :k]
        out[:, c] = values[members][nn].mean(axis=1)
    return out


@pytest.fixture()
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = rng.integers(0, 4, 120)
    y[:4] = np.arange(4)
    y[y == 3] = 0
    y[5] = 3  # class 3 has a single point: k is capped at the class size
    values = rng.normal(size=120)
    Q = rng.normal(size=(40, 6)).astype(np.float32)
    proba = rng.dirichlet(np.ones(4), size=40)
    return X, y, values, Q, proba


@pytest.mark.parametrize("n_neighbors", [1, 5, 200])
def test_class_values_match_numpy_knn(data, n_neighbors):
    X, y, values, Q, _ = data
    reg = ValueRegressor(n_neighbors=n_neighbors).fit(X, y, values, 4)
    np.testing.assert_allclose(reg.predict_class_values(Q), oracle_class_values(X, y, values, Q, n_neighbors, 4), atol=1e-12)


@pytest.mark.parametrize("aggregate", ["max", "mean", "weighted"])
@pytest.mark.parametrize("top_m", [1, 2, 4, 10])
def test_aggregation_over_top_m(data, aggregate, top_m):
    X, y, values, Q, proba = data
    reg = ValueRegressor(n_neighbors=3, top_m=top_m, aggregate=aggregate).fit(X, y, values, 4)
    cv = oracle_class_values(X, y, values, Q, 3, 4)
    m = min(top_m, 4)
    want = []
    for i in range(Q.shape[0]):
        top = sorted(range(4), key=lambda c: (-proba[i, c], c))[:m]
        v = cv[i, top]
        if aggregate == "max":
            want.append(v.max())
        elif aggregate == "mean":
            want.append(v.mean())
        else:
            want.append((v * proba[i, top]).sum() / proba[i, top].sum())
    np.testing.assert_allclose(reg.predict(Q, proba), want, atol=1e-12)


def test_errors(data):
    X, y, values, Q, proba = data
    with pytest.raises(DataError, match=r"class 4 has no labeled point"):
        ValueRegressor().fit(X, y, values, n_classes=5)
    with pytest.raises(ParameterError, match=r"'aggregate' parameter of ValueRegressor must be one of"):
        ValueRegressor(aggregate="median").fit(X, y, values)
    reg = ValueRegressor().fit(X, y, values, 4)
    with pytest.raises(DataError, match=r"dimension 6"):
        reg.predict_class_values(Q[:, :3])
    with pytest.raises(DataError, match=r"proba must have shape \(40, 4\)"):
        reg.predict(Q, proba[:, :3])
