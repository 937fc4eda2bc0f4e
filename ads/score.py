"""Scorers: fit on the labeled (and validation) embeddings, then score pool points.

A scorer follows the scikit-learn convention (``__init__`` stores parameters, ``fit``
sets attributes ending in ``_``) and has one more method, ``score(emb, proba)`` →
float64 scores, higher = more worth labeling. Pool embeddings are scored block by block,
so a scorer never needs the whole pool at once. Built-in scorers:

- ``knn-shapley`` (the ADS paper's recipe): exact KNN-Shapley values of the labeled
  points (:class:`ads.valuers.KNNShapleyValuer`) carried to the pool by per-class kNN
  value regressors (:class:`ads.regress.ValueRegressor`), aggregated over each point's
  top-m classes;
- ``dvrl``: a DVRL value estimator evaluated at (x, c) for each of the top-m classes;
- ``direct``: the exact KNN-Shapley value (x, c) would receive if it were added to the
  labeled set (closed form, :class:`ads.shapley.DirectValueTables`), in expectation over
  p(c|x) by default. No regression: a point far from every labeled point of class c gets
  the value such a point really has, not an extrapolation.

Third-party scorers register through the entry-point group ``ads.scorers``.
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int
from ads.registry import Registry
from ads.regress import AGGREGATIONS, ValueRegressor
from ads.valuers import DVRLValuer, KNNShapleyValuer

SCORERS = Registry("scorer", "ads.scorers")


class Scorer:
    """Base class: subclasses set ``name`` and implement :meth:`fit` and :meth:`score`.

    ``seconds_`` (set by ``fit``) holds the time of the fit's stages, e.g. ``value``.
    """

    name: str = ""

    def fit(self, X, y, X_val, y_val, *, n_classes: int, random_state=None) -> Scorer:
        raise NotImplementedError  # pragma: no cover

    def score(self, X, proba) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover

    def class_values(self, X) -> np.ndarray:
        """Per-class values before aggregation, (n, C) (for ``ads score --per-class``)."""
        raise NotImplementedError(f"scorer {self.name!r} has no per-class values")  # pragma: no cover

    def calibration_scores(self, X_val, proba_val) -> np.ndarray:
        """Scores of the validation points as if they were unlabeled pool points: the
        in-distribution reference of threshold pre-selection. Default: ``score``."""
        return self.score(X_val, proba_val)

    def get_params(self) -> dict:
        """The parameters that rebuild this scorer with ``make_scorer(name, **params)``."""
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


def _check_aggregation(top_m, aggregate, owner):
    check_int(top_m, "top_m", owner, min_value=1)
    check_choice(aggregate, AGGREGATIONS, "aggregate", owner)


@SCORERS.register
class KNNShapleyScorer(Scorer):
    """The ADS paper's scorer: exact KNN-Shapley values regressed per class.

    Parameters
    ----------
    k : int, default 10
        K of the valued KNN classifier.
    n_neighbors : int, default 10
        Neighbours of each per-class value regressor.
    top_m : int, default 10
        Candidate classes per pool point (by probability).
    aggregate : {"max", "mean", "weighted"}, default "max"
    """

    name = "knn-shapley"

    def __init__(self, k: int = 10, n_neighbors: int = 10, top_m: int = 10, aggregate: str = "max"):
        self.k = k
        self.n_neighbors = n_neighbors
        self.top_m = top_m
        self.aggregate = aggregate

    def fit(self, X, y, X_val, y_val, *, n_classes, random_state=None):
        import time

        _check_aggregation(self.top_m, self.aggregate, "the knn-shapley scorer")
        t = time.perf_counter()
        self.values_ = KNNShapleyValuer(k=self.k).fit(X, y, X_val, y_val).values_
        self.seconds_ = {"value": time.perf_counter() - t}
        self.regressor_ = ValueRegressor(n_neighbors=self.n_neighbors, top_m=self.top_m,
                                         aggregate=self.aggregate).fit(X, y, self.values_, n_classes)
        return self

    def score(self, X, proba):
        return self.regressor_.predict(X, proba)

    def class_values(self, X):
        return self.regressor_.predict_class_values(X)


@SCORERS.register
class DVRLScorer(Scorer):
    """A DVRL value estimator trained on the labeled embeddings; a pool point's score
    aggregates its estimated value over its top-m classes (see :class:`ads.dvrl.DVRL`).

    ``params`` go to :class:`ads.dvrl.DVRL` (e.g. ``iterations``); ``random_state`` None
    takes the pipeline's seed.
    """

    name = "dvrl"

    def __init__(self, top_m: int = 10, aggregate: str = "max", **params):
        self.top_m = top_m
        self.aggregate = aggregate
        self.params = params

    def fit(self, X, y, X_val, y_val, *, n_classes, random_state=None):
        import time

        _check_aggregation(self.top_m, self.aggregate, "the dvrl scorer")
        t = time.perf_counter()
        params = {"top_m": self.top_m, "aggregate": self.aggregate, **self.params}
        # the valuer takes the pipeline's seed when params hold no random_state
        valuer = DVRLValuer(**params).fit(X, y, X_val, y_val, n_classes=n_classes, random_state=random_state)
        self.model_, self.values_ = valuer.model_, valuer.values_
        self.seconds_ = {"value": time.perf_counter() - t}
        return self

    def score(self, X, proba):
        return self.model_.predict(X, proba)

    def class_values(self, X):
        return self.model_.predict_class_values(X)

    def get_params(self) -> dict:
        return {"top_m": self.top_m, "aggregate": self.aggregate, **self.params}


DIRECT_AGGREGATIONS = ("expected", "max", "mean")


def aggregate_classes(values: np.ndarray, proba: np.ndarray, aggregate: str) -> np.ndarray:
    """Combine per-class values (n, C): ``expected`` = sum_c p(c|x) value(x, c) (the
    expected value under the model's belief about the label), ``max``, ``mean``."""
    if aggregate == "expected":
        return np.einsum("ij,ij->i", values, np.asarray(proba, dtype=np.float64))
    if aggregate == "max":
        return values.max(axis=1)
    return values.mean(axis=1)


@SCORERS.register
class DirectScorer(Scorer):
    """Exact direct value of each pool point: the KNN-Shapley value (x, c) would receive
    if appended to the labeled set, aggregated over classes.

    Parameters
    ----------
    k : int, default 10
        K of the valued KNN classifier.
    aggregate : {"expected", "max", "mean"}, default "expected"
    """

    name = "direct"

    def __init__(self, k: int = 10, aggregate: str = "expected"):
        self.k = k
        self.aggregate = aggregate

    def fit(self, X, y, X_val, y_val, *, n_classes, random_state=None):
        import time

        from ads.shapley import DirectValueTables

        check_int(self.k, "k", "the direct scorer", min_value=1)
        check_choice(self.aggregate, DIRECT_AGGREGATIONS, "aggregate", "the direct scorer")
        t = time.perf_counter()
        self.tables_ = DirectValueTables(X, y, X_val, y_val, k=self.k, n_classes=n_classes)
        self.seconds_ = {"value": time.perf_counter() - t}
        return self

    def class_values(self, X):
        return self.tables_.class_values(X)

    def score(self, X, proba):
        return aggregate_classes(self.class_values(X), proba, self.aggregate)

    def calibration_scores(self, X_val, proba_val):
        """Validation points scored against the other validation points (a point's own
        distance 0 would rank it first and inflate its value)."""
        return aggregate_classes(self.tables_.self_excluded_class_values(), proba_val, self.aggregate)


def make_scorer(name: str, **params) -> Scorer:
    """The scorer registered as ``name`` (``knn-shapley``, ``dvrl``, or a plug-in's)."""
    return SCORERS.make(name, **params)
