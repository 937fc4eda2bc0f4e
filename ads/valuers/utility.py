"""Utilities V(S) of subsets of the training set, for leave-one-out and Monte Carlo valuers.

A :class:`Utility` is bound to (X, y, X_val, y_val) once; then ``utility(subset)`` is
V(S) and :meth:`Utility.scan` returns the marginal contributions V(pi[:j+1]) - V(pi[:j])
along whole permutations, which is what TMC and Beta Shapley sample.

- ``knn`` (:class:`KNNUtility`): Jia et al. 2019's KNN utility, the mean over validation
  points of (1/K) #{same-label points among the min(K, |S|) nearest members of S}, ties
  broken by training index; V(empty) = 0. Its exact Shapley values are
  :func:`ads.shapley.knn_shapley`'s.
- ``logistic`` (:class:`LogisticUtility`): validation accuracy (or mean log-likelihood)
  of :class:`ads.influence.LogisticHead` trained on S, warm-started from the previous
  prefix along a permutation; V(empty) = 1/C (resp. -log C), the uniform prediction. S
  with a single class has no finite fit (the intercept is not penalised): it predicts that
  class, accuracy = its share of the validation set (log-likelihood: the uniform -log C).
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int
from ads.errors import ParameterError

#: Validation points per block when distances are ranked (block x n float64).
RANK_BLOCK = 256
#: Chord-Newton steps per prefix before the logistic utility forms its Hessian afresh.
CHORD_ITER = 8


def knn_ranks(X, X_val, *, block: int = RANK_BLOCK) -> np.ndarray:
    """Rank of every training point for every validation point, int32 (n, m): 0 = nearest,
    by (squared Euclidean distance, training index). Memory: n x m x 4 bytes."""
    n, m = len(X), len(X_val)
    sq = np.einsum("ij,ij->i", X, X)
    R = np.empty((n, m), dtype=np.int32)
    ar = np.arange(n, dtype=np.int32)
    for s in range(0, m, block):
        xv = X_val[s:s + block]
        d = sq[:, None] - 2.0 * (X @ xv.T) + np.einsum("ij,ij->i", xv, xv)[None, :]
        order = np.argsort(d, axis=0, kind="stable")
        np.put_along_axis(R[:, s:s + block], order, ar[:, None], axis=0)
    return R


class Utility:
    """V(S) on a validation set. Subclasses implement :meth:`bind` and :meth:`__call__`;
    :meth:`scan` has a generic (prefix by prefix) implementation."""

    name = ""

    def bind(self, X, y, X_val, y_val, n_classes: int) -> Utility:
        raise NotImplementedError  # pragma: no cover

    def __call__(self, subset) -> float:
        raise NotImplementedError  # pragma: no cover

    @property
    def empty(self) -> float:
        return self(np.array([], dtype=np.int64))

    @property
    def full(self) -> float:
        return self(np.arange(self.n))

    def scan(self, perms: np.ndarray, truncation: float = 0.0) -> np.ndarray:
        """Marginal contributions along each permutation, (P, n): entry [p, j] is
        V(pi_p[:j+1]) - V(pi_p[:j]). With ``truncation`` > 0 (Ghorbani & Zou 2019, Alg. 1)
        the rest of a permutation counts 0 once |V(D) - V(prefix)| < truncation |V(D)|."""
        full, empty = self.full, self.empty
        out = np.zeros(perms.shape, dtype=np.float64)
        for p, perm in enumerate(perms):
            prev = empty
            for j in range(perms.shape[1]):
                if truncation > 0 and abs(full - prev) < truncation * abs(full):
                    break
                v = self(perm[: j + 1])
                out[p, j] = v - prev
                prev = v
        return out


class KNNUtility(Utility):
    """Jia et al. 2019's KNN utility (see the module docstring). Memory: the rank table,
    n x m int32, and P x m x K slots per batch of P permutations."""

    name = "knn"

    def __init__(self, k: int = 10):
        self.k = k

    def bind(self, X, y, X_val, y_val, n_classes):
        self.k = check_int(self.k, "k", "KNNUtility", min_value=1)
        self.n, self.m = len(X), len(X_val)
        self.R = knn_ranks(X, X_val)
        self.y, self.y_val = np.asarray(y), np.asarray(y_val)
        return self

    def __call__(self, subset) -> float:
        subset = np.asarray(subset, dtype=np.int64)
        if subset.size == 0:
            return 0.0
        r = self.R[subset]  # (|S|, m)
        if self.k < subset.size:  # ranks are distinct, so the K smallest are exact
            members = subset[np.argpartition(r, self.k - 1, axis=0)[: self.k]]
        else:
            members = subset[:, None]
        return float((self.y[members] == self.y_val[None, :]).sum() / (self.k * self.m))

    @property
    def full(self) -> float:
        top = self.R < self.k
        return float((top & (self.y[:, None] == self.y_val[None, :])).sum() / (self.k * self.m))

    def scan(self, perms, truncation=0.0):
        """All P permutations advance together: per validation point the K nearest members
        of the prefix sit in K slots (rank, same label); a new point replaces the slot of
        largest rank when its own rank is smaller, and V changes by
        (same_new - same_replaced) / (K m). O(P m K) per position."""
        P, n = perms.shape
        K, m = self.k, self.m
        full = self.full
        slots = np.full((P, m, K), np.iinfo(np.int32).max, dtype=np.int32)
        same = np.zeros((P, m, K), dtype=bool)
        u = np.zeros(P)  # V(prefix) * K * m
        out = np.zeros((P, n))
        active = np.ones(P, dtype=bool)
        scale = 1.0 / (K * m)
        for j in range(n):
            if truncation > 0:
                active &= ~(np.abs(full - u * scale) < truncation * abs(full))
                if not active.any():
                    break
            idx = perms[:, j]
            r = self.R[idx]  # (P, m)
            pos = slots.argmax(axis=2)[..., None]
            cur = np.take_along_axis(slots, pos, axis=2)[..., 0]
            better = r < cur
            s_new = self.y[idx][:, None] == self.y_val[None, :]
            s_old = np.take_along_axis(same, pos, axis=2)[..., 0]
            delta = (better & s_new).sum(axis=1) - (better & s_old).sum(axis=1)
            np.put_along_axis(slots, pos, np.where(better, r, cur)[..., None], axis=2)
            np.put_along_axis(same, pos, np.where(better, s_new, s_old)[..., None], axis=2)
            u += delta
            out[:, j] = np.where(active, delta * scale, 0.0)
        return out


class LogisticUtility(Utility):
    """Validation accuracy (``metric='accuracy'``) or mean log-likelihood (``'loss'``) of
    an L2 logistic-regression head trained on S (see the module docstring)."""

    name = "logistic"

    def __init__(self, metric: str = "accuracy", lam: float = 1.0):
        self.metric = metric
        self.lam = lam

    def bind(self, X, y, X_val, y_val, n_classes):
        from ads.influence import LogisticHead

        check_choice(self.metric, ("accuracy", "loss"), "metric", "LogisticUtility")
        self.X, self.y, self.X_val, self.y_val, self.C = X, y, X_val, y_val, n_classes
        self.n = len(X)
        self._head = LogisticHead(lam=self.lam, tol=1e-8)
        return self

    def _score(self, theta) -> float:
        from ads.influence import metric_at

        return float(metric_at(theta, self.X_val, self.y_val, self.metric))

    @property
    def empty(self) -> float:
        return 1.0 / self.C if self.metric == "accuracy" else -float(np.log(self.C))

    def _fit(self, subset, theta0=None):
        return self._head.fit(self.X[subset], self.y[subset], self.C, theta0=theta0).theta_

    def _one_class(self, subset) -> float | None:
        """V(S) when S is empty or has one class (no finite fit); None otherwise."""
        if subset.size == 0:
            return self.empty
        first = self.y[subset[0]]
        if (self.y[subset] != first).any():
            return None
        return float(np.mean(self.y_val == first)) if self.metric == "accuracy" else self.empty

    def __call__(self, subset) -> float:
        subset = np.asarray(subset, dtype=np.int64)
        v = self._one_class(subset)
        return v if v is not None else self._score(self._fit(subset))

    def scan(self, perms, truncation=0.0):
        """Along each permutation the head of prefix j+1 is fitted from the head of prefix
        j. Two classes: chord-Newton steps theta <- theta - H^{-1} grad F with a Hessian H
        kept from an earlier prefix and updated by the new point's rank-one term
        s x~ x~^T (s = p(1 - p) where H was last formed), one Cholesky factor per prefix;
        H is formed afresh when a prefix needs more than ``CHORD_ITER`` steps, and a
        prefix that still has not converged is fitted by :class:`ads.influence.LogisticHead`.
        The fixed point is grad F = 0 either way: the same minimiser (to ``tol``)."""
        full, empty = self.full, self.empty
        out = np.zeros(perms.shape)
        for p, perm in enumerate(perms):
            prev, theta, H = empty, None, None
            for j in range(perms.shape[1]):
                if truncation > 0 and abs(full - prev) < truncation * abs(full):
                    break
                v = self._one_class(perm[: j + 1])
                if v is None:
                    if self.C == 2:
                        theta, H = self._chord(perm[: j + 1], theta, H)
                    else:
                        theta = self._fit(perm[: j + 1], theta)
                    v = self._score(theta)
                out[p, j] = v - prev
                prev = v
        return out

    def _chord(self, subset, theta, H):
        """Binary head on ``subset`` from the previous prefix's (theta, H); see :meth:`scan`."""
        import scipy.linalg as sla

        from ads.influence import _augment, _hessian, _proba

        Xa = _augment(self.X[subset])
        yb = (self.y[subset] == 1).astype(np.float64)
        pen = np.full((Xa.shape[1], 1), float(self.lam))
        pen[-1] = 0.0
        if theta is None:
            theta = self._fit(subset)
            return theta, _hessian(Xa, _proba(Xa, theta), np.ones(len(Xa)), pen)
        x = Xa[-1]
        q = 1.0 / (1.0 + np.exp(-float(x @ theta[:, 0])))
        H = H + q * (1 - q) * np.outer(x, x)
        for _ in range(2):  # the kept Hessian, then one formed afresh at the previous prefix's head
            cho = sla.cho_factor(H)
            t, gnorm = theta[:, 0].copy(), np.inf
            for _ in range(CHORD_ITER):
                g = Xa.T @ (1.0 / (1.0 + np.exp(-np.clip(Xa @ t, -500, 500))) - yb) + pen[:, 0] * t
                gn = float(np.abs(g).max())
                if not gn < gnorm:  # not contracting: stop this attempt
                    break
                gnorm = gn
                step = sla.cho_solve(cho, g)
                t -= step
                if np.abs(step).max() < self._head.tol:
                    return t[:, None], H
            H = _hessian(Xa, _proba(Xa, theta), np.ones(len(Xa)), pen)
        theta = self._fit(subset, theta)
        return theta, _hessian(Xa, _proba(Xa, theta), np.ones(len(Xa)), pen)


UTILITIES = {"knn": KNNUtility, "logistic": LogisticUtility}


def make_utility(name: str, *, k: int = 10, metric: str = "accuracy", lam: float = 1.0) -> Utility:
    """The utility ``name`` (``knn`` or ``logistic``) with its parameters."""
    if name == "knn":
        return KNNUtility(k=k)
    if name == "logistic":
        return LogisticUtility(metric=metric, lam=lam)
    raise ParameterError(f"The 'utility' parameter must be one of {list(UTILITIES)}. Got {name!r}.")
