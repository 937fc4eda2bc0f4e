"""Scorers: fit on the labeled (and validation) embeddings, then score pool points.

A scorer follows the scikit-learn convention (``__init__`` stores parameters, ``fit``
sets attributes ending in ``_``) and has one more method, ``score(emb, proba)`` →
float64 scores, higher = more worth labeling. Pool embeddings are scored block by block,
so a scorer never needs the whole pool at once. Built-in scorers:

- ``knn-shapley`` (the ADS paper's recipe): exact KNN-Shapley values of the labeled
  points (:class:`ads.valuers.KNNShapleyValuer`) carried to the pool by per-class kNN
  value regressors (:class:`ads.regress.ValueRegressor`), aggregated over each point's
  top-m classes;
- ``dvrl``: a DVRL value estimator evaluated at (x, c) for each of the top-m classes.

Third-party scorers register through the entry-point group ``ads.scorers``.
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int, check_random_state
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
        if params.get("random_state") is None:
            params["random_state"] = check_random_state(random_state, "the dvrl scorer")
        valuer = DVRLValuer(**params).fit(X, y, X_val, y_val, n_classes=n_classes)
        self.model_, self.values_ = valuer.model_, valuer.values_
        self.seconds_ = {"value": time.perf_counter() - t}
        return self

    def score(self, X, proba):
        return self.model_.predict(X, proba)

    def get_params(self) -> dict:
        return {"top_m": self.top_m, "aggregate": self.aggregate, **self.params}


def make_scorer(name: str, **params) -> Scorer:
    """The scorer registered as ``name`` (``knn-shapley``, ``dvrl``, or a plug-in's)."""
    return SCORERS.make(name, **params)
