"""Data-OOB (Kwon & Zou 2023): out-of-bag accuracy of a bagged ensemble, per point.

With B bootstrap samples S_b of the training set and a weak learner f_b fitted on each,

    psi(i) = sum_b 1[i not in S_b] T(y_i, f_b(x_i)) / sum_b 1[i not in S_b],
    T(y, y') = 1[y = y']                                  (their eq. 3, classification)

i.e. how often the models that did not see point i predict its label. It needs no
validation set (the one given is ignored). Learners: ``tree`` (decision trees with
sqrt(d) features per split, a random forest, the paper's choice) or ``logistic``
(the L2 logistic-regression head). A point that is never out of bag (probability
(1 - 1/n)^n per estimator, about e^-B) gets the mean value. Estimator b is seeded by
(seed, b), so the values do not depend on ``n_jobs``; memory: 2 x n counters.
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs, progress_bar, resolve_seed


def _one_estimator(X, y, n_classes, learner, seed, b):
    rng = np.random.default_rng(np.random.SeedSequence([seed, b]))
    n = len(y)
    inbag = rng.integers(0, n, n)
    oob = np.ones(n, dtype=bool)
    oob[inbag] = False
    rows = np.flatnonzero(oob)
    if rows.size == 0:
        return rows, np.zeros(0, dtype=bool)
    if learner == "tree":
        from sklearn.tree import DecisionTreeClassifier

        model = DecisionTreeClassifier(max_features="sqrt", random_state=int(rng.integers(2**31)))
        pred = model.fit(X[inbag], y[inbag]).predict(X[rows])
    else:
        from ads.influence import LogisticHead

        pred = LogisticHead(tol=1e-6).fit(X[inbag], y[inbag], n_classes).predict_proba(X[rows]).argmax(axis=1)
    return rows, pred == y[rows]


@VALUERS.register
class DataOOBValuer(Valuer):
    """Data-OOB values (see :mod:`ads.valuers.oob`).

    Parameters
    ----------
    n_estimators : int, default 200
        B, the bootstrap samples (the paper uses 800 trees; 200 gives the same ranking
        on its benchmarks to within noise at a quarter of the cost).
    learner : {"tree", "logistic"}, default "tree"
    n_jobs : int, default 1
        joblib workers (threads) over estimators.
    random_state : int, optional; progress : bool, default True
    """

    name = "data-oob"

    def __init__(self, n_estimators: int = 200, learner: str = "tree", n_jobs: int | None = 1, random_state=None,
                 progress: bool = True):
        self.n_estimators = n_estimators
        self.learner = learner
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, "DataOOBValuer")
        B = check_int(self.n_estimators, "n_estimators", "DataOOBValuer", min_value=1)
        check_choice(self.learner, ("tree", "logistic"), "learner", "DataOOBValuer")
        seed = resolve_seed(self.random_state, random_state, "DataOOBValuer")
        hits, counts = np.zeros(len(y)), np.zeros(len(y))
        step = 8 if self.n_jobs != 1 else 1
        with progress_bar(B, "data-oob", self.progress, unit="est") as bar:
            for s in range(0, B, step):
                bs = range(s, min(s + step, B))
                if self.n_jobs == 1:
                    results = [_one_estimator(X, y, C, self.learner, seed, b) for b in bs]
                else:
                    from joblib import Parallel, delayed

                    results = Parallel(n_jobs=self.n_jobs, prefer="threads")(
                        delayed(_one_estimator)(X, y, C, self.learner, seed, b) for b in bs)
                for rows, correct in results:
                    counts[rows] += 1
                    hits[rows] += correct
                bar.update(len(bs))
        seen = counts > 0
        vals = np.full(len(y), np.nan)
        vals[seen] = hits[seen] / counts[seen]
        vals[~seen] = vals[seen].mean() if seen.any() else 0.0
        self.values_ = vals
        self.oob_counts_ = counts
        return self
