"""Per-class value regressors: carry labeled-point values over to unlabeled points.

For each class c, a kNN regressor over the labeled points of class c and their values
(FAISS exact flat L2 index). An unlabeled point's score is an aggregate, over its top-m
candidate classes by model confidence, of the value regressed for each class:
``max`` (the ADS paper's choice, default), ``mean``, or ``weighted`` (probability-weighted
mean over the top-m classes).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ads.errors import DataError, ParameterError, check_int

AGGREGATIONS = ("max", "mean", "weighted")


class ValueRegressor:
    """Scorer: regress per-class values, aggregate over the top-m classes.

    Parameters
    ----------
    n_neighbors : int, default 10
        Neighbours of each per-class kNN regressor (capped by the class's size).
    top_m : int, default 10
        Number of candidate classes (by probability, ties -> lower class index).
    aggregate : {"max", "mean", "weighted"}
    """

    def __init__(self, n_neighbors: int = 10, top_m: int = 10, aggregate: str = "max"):
        self.n_neighbors = n_neighbors
        self.top_m = top_m
        self.aggregate = aggregate

    def fit(self, X, y, values, n_classes: int | None = None):
        """Fit one regressor per class.

        X : (n, d) embeddings of the labeled points; y : (n,) int labels;
        values : (n,) float values. Every class 0..n_classes-1 needs a labeled point.
        """
        import faiss

        check_int(self.n_neighbors, "n_neighbors", "ValueRegressor", min_value=1)
        check_int(self.top_m, "top_m", "ValueRegressor", min_value=1)
        if self.aggregate not in AGGREGATIONS:
            raise ParameterError(
                f"The 'aggregate' parameter of ValueRegressor must be one of {list(AGGREGATIONS)}. Got {self.aggregate!r}."
            )
        X = np.ascontiguousarray(X, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        if X.ndim != 2 or y.shape != (X.shape[0],) or values.shape != (X.shape[0],):
            raise DataError(
                f"ValueRegressor.fit needs X (n, d), y (n,), values (n,). Got {X.shape}, {y.shape}, {values.shape}."
            )
        n_classes = int(y.max()) + 1 if n_classes is None else n_classes
        self.n_classes_ = n_classes
        self.indexes_, self.values_ = [], []
        for c in range(n_classes):
            members = np.flatnonzero(y == c)
            if members.size == 0:
                raise DataError(f"class {c} has no labeled point: a value regressor needs at least one per class.")
            index = faiss.IndexFlatL2(X.shape[1])
            index.add(X[members])
            self.indexes_.append(index)
            self.values_.append(values[members])
        self.dim_ = X.shape[1]
        return self

    def __getstate__(self):
        """Picklable (a Dask worker receives the fitted scorer): each faiss index through
        ``faiss.serialize_index``, a GPU index moved to the CPU first (GPU indexes do not
        serialise); it is searched on the CPU after unpickling."""
        import faiss

        state = dict(self.__dict__)
        if "indexes_" in state:
            cpu = [faiss.index_gpu_to_cpu(i) if "Gpu" in type(i).__name__ else i for i in state["indexes_"]]
            state["indexes_"] = [faiss.serialize_index(i) for i in cpu]
        return state

    def __setstate__(self, state):
        import faiss

        if "indexes_" in state:
            state = {**state, "indexes_": [faiss.deserialize_index(b) for b in state["indexes_"]]}
        self.__dict__.update(state)

    def predict_class_values(self, X, classes=None) -> np.ndarray:
        """Regressed value of each point for each class, shape (n, C) (NaN where not asked).

        classes : optional bool mask (n, C) of the (point, class) pairs to compute.
        """
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.dim_:
            raise DataError(f"ValueRegressor expects embeddings of dimension {self.dim_}. Got shape {X.shape}.")
        out = np.full((X.shape[0], self.n_classes_), np.nan)

        def search(c):
            index, vals = self.indexes_[c], self.values_[c]
            # Every point asked: a slice, so X[rows] is a view, not a gathered copy.
            rows = slice(None) if classes is None or classes[:, c].all() else np.flatnonzero(classes[:, c])
            Xc = X[rows]
            if Xc.shape[0]:
                _, nn = index.search(Xc, min(self.n_neighbors, vals.shape[0]))
                out[rows, c] = vals[nn].mean(axis=1)

        # One faiss thread per class search, classes spread over a thread pool (faiss
        # releases the GIL): OpenMP's threads inside each search stall when the machine
        # is busy (2.3x slower seen on 2 shared cores).
        import faiss

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            workers = min(self.n_classes_, os.cpu_count() or 1)
            if workers > 1:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(search, range(self.n_classes_)))
            else:
                for c in range(self.n_classes_):
                    search(c)
        finally:
            faiss.omp_set_num_threads(before)
        return out

    def predict(self, X, proba) -> np.ndarray:
        """Scores (float64, (n,)): aggregate over the top-m classes by ``proba``."""
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape != (np.shape(X)[0], self.n_classes_):
            raise DataError(f"proba must have shape ({np.shape(X)[0]}, {self.n_classes_}). Got {proba.shape}.")
        top, mask = top_classes(proba, self.top_m)
        cv = self.predict_class_values(X, mask)
        return aggregate_top(cv, proba, top, self.aggregate)


def top_classes(proba: np.ndarray, top_m: int):
    """The top-m candidate classes of each point by probability, ties -> lower class index.

    Returns ``top`` (n, min(top_m, C)) int class indices, most probable first, and ``mask``
    (n, C) bool, True at those (point, class) pairs.
    """
    m = min(top_m, proba.shape[1])
    top = np.argsort(-proba, axis=1, kind="stable")[:, :m]
    mask = np.zeros(proba.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return top, mask


def aggregate_top(class_values: np.ndarray, proba: np.ndarray, top: np.ndarray, aggregate: str) -> np.ndarray:
    """Aggregate per-class values (n, C) over each point's ``top`` classes.

    ``max`` and ``mean`` of the values; ``weighted``: their mean weighted by ``proba``
    (a point whose top probabilities all are 0 gets 0).
    """
    tv = np.take_along_axis(class_values, top, axis=1)
    if aggregate == "max":
        return tv.max(axis=1)
    if aggregate == "mean":
        return tv.mean(axis=1)
    w = np.take_along_axis(proba, top, axis=1)
    ws = w.sum(axis=1)
    ws[ws == 0] = 1.0
    return (tv * w).sum(axis=1) / ws
