"""Exact KNN-Shapley (Jia et al. 2019, Theorem 1) as a valuer; the kernel is :mod:`ads.shapley`."""

from __future__ import annotations

from ads._validation import check_int
from ads.valuers.base import VALUERS, Valuer


@VALUERS.register
class KNNShapleyValuer(Valuer):
    """Exact KNN-Shapley values; see :func:`ads.shapley.knn_shapley`.

    Parameters
    ----------
    k : int, default 10
        K of the KNN classifier whose utility is valued.
    n_jobs : int, optional
        Threads over validation blocks (:func:`ads.shapley.knn_shapley`'s; None = its
        default: one below 10^6 training x validation pairs, else up to 4).
    progress : bool, default True
        Accepted for a uniform interface; the exact kernel takes well under a second per
        10k x 1k, so it shows none.
    """

    name = "knn-shapley"

    def __init__(self, k: int = 10, n_jobs: int | None = None, progress: bool = True):
        self.k = k
        self.n_jobs = n_jobs
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        from ads.shapley import knn_shapley

        check_int(self.k, "k", "KNNShapleyValuer", min_value=1)
        if self.n_jobs is not None:
            check_int(self.n_jobs, "n_jobs", "KNNShapleyValuer", min_value=1)
        self.values_ = knn_shapley(X, y, X_val, y_val, k=self.k, n_jobs=self.n_jobs)
        return self
