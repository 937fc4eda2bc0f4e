"""Leave-one-out values: phi(i) = V(D) - V(D minus i).

- ``utility="knn"``: exact, in closed form, for Jia et al. 2019's KNN utility. For a
  validation point t, removing i changes the K nearest only if i is among them (rank
  r_t(i) < K); then the (K+1)-th nearest, at rank K, takes its place:
  V_t(D) - V_t(D minus i) = (1[y_i = y_t] - 1[y_{(K)} = y_t]) / K, or 1[y_i = y_t] / K when
  n <= K (nobody takes the place). phi(i) is the mean over validation points. O(n m log n),
  validation points in blocks.
- ``utility="logistic"``: an L2 logistic-regression head (:class:`ads.influence.LogisticHead`)
  with V = the validation ``metric`` ("loss": mean log-likelihood; "accuracy": accuracy).
  ``approx="refit"`` (default) retrains without every point exactly, by Newton steps from
  the full model with the Hessian downdated by Woodbury (:func:`ads.influence.loo_params`;
  heads of at most ``exact_max`` parameters); ``approx="influence"`` uses Koh & Liang's
  first-order approximation V(D minus i) - V(D) ~= grad psi^T H^{-1} grad l_i instead (for
  ``accuracy`` on the smooth surrogate: see :func:`ads.influence.psi`).
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int, check_positive_float
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs, progress_bar
from ads.valuers.utility import RANK_BLOCK

#: Training points retrained together by the exact logistic leave-one-out.
LOO_BLOCK = 32


def knn_loo(X, y, X_val, y_val, k: int, *, block: int = RANK_BLOCK, progress: bool = False) -> np.ndarray:
    """Exact leave-one-out values of the KNN utility, (n,) float64 (see module docstring)."""
    n, m = len(X), len(X_val)
    sq = np.einsum("ij,ij->i", X, X)
    out = np.zeros(n)
    top = min(k, n)
    with progress_bar(m, "loo", progress, unit="val") as bar:
        for s in range(0, m, block):
            xv, yv = X_val[s:s + block], y_val[s:s + block]
            d = sq[:, None] - 2.0 * (X @ xv.T) + np.einsum("ij,ij->i", xv, xv)[None, :]
            order = np.argsort(d, axis=0, kind="stable")[: top + 1]  # (<= K+1, b): by (distance, index)
            same = y[order] == yv[None, :]
            delta = same[:top].astype(np.float64)
            if n > k:
                delta -= same[k][None, :]
            np.add.at(out, order[:top].ravel(), (delta / k).ravel())
            bar.update(len(yv))
    return out / m


@VALUERS.register
class LOOValuer(Valuer):
    """Leave-one-out (see :mod:`ads.valuers.loo`).

    Parameters
    ----------
    utility : {"knn", "logistic"}, default "knn"
    k : int, default 10 (knn)
    metric : {"loss", "accuracy"}, default "loss" (logistic)
    lam : float, default 1.0 (logistic: L2 penalty, scikit-learn's 1 / C)
    approx : {"refit", "influence"}, default "refit" (logistic)
    progress : bool, default True
    """

    name = "loo"

    def __init__(self, utility: str = "knn", k: int = 10, metric: str = "loss", lam: float = 1.0,
                 approx: str = "refit", progress: bool = True):
        self.utility = utility
        self.k = k
        self.metric = metric
        self.lam = lam
        self.approx = approx
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, "LOOValuer")
        check_choice(self.utility, ("knn", "logistic"), "utility", "LOOValuer")
        if self.utility == "knn":
            k = check_int(self.k, "k", "LOOValuer", min_value=1)
            self.values_ = knn_loo(X, y, X_val, y_val, k, progress=self.progress)
            return self
        from ads import influence as inf

        check_choice(self.metric, inf.METRICS, "metric", "LOOValuer")
        check_choice(self.approx, ("refit", "influence"), "approx", "LOOValuer")
        check_positive_float(self.lam, "lam", "LOOValuer")
        head = inf.LogisticHead(lam=self.lam).fit(X, y, C)
        self.head_ = head
        if self.approx == "influence" or head.n_params_ > head.exact_max:
            _, g = inf.psi(head, X_val, y_val, self.metric)
            self.values_ = -inf.influence_on(head, X, y, inf.inverse_hvp(head, X, g))
            return self
        full = inf.metric_at(head.theta_, X_val, y_val, self.metric)
        vals = np.empty(len(y))
        Hinv = np.linalg.inv(inf.hessian(head, X))
        with progress_bar(len(y), "loo", self.progress, unit="pt") as bar:
            for s in range(0, len(y), LOO_BLOCK):
                rows = np.arange(s, min(s + LOO_BLOCK, len(y)))
                vals[rows] = full - inf.metric_at(inf.loo_params(head, X, y, rows, Hinv=Hinv), X_val, y_val, self.metric)
                bar.update(len(rows))
        self.values_ = vals
        return self
