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
  that lacks a class has no finite fit (the intercepts are not penalised, so an absent
  class's logit runs to -inf). Then: log-likelihood = the uniform -log C; accuracy = that of
  the limit classifier over the classes S has, i.e. S's share of the validation set for a
  single class, and for two or more (C > 2 only) the head fitted on S over its own classes
  (relabelled in order, the smallest the reference; :class:`ads.influence.LogisticHead`
  with L-BFGS), predicting only those classes.
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int
from ads.errors import ParameterError

#: Validation points per block when distances are ranked (block x n float64).
RANK_BLOCK = 256
#: Most quasi-Newton steps per prefix before the logistic utility forms its Hessian afresh
#: (a step costs a gradient pass, O(|S| p); forming and inverting H, O(|S| p^2 + p^3)).
CHORD_ITER = 40


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
        full, empty = (self.full if truncation > 0 else None), self.empty  # V(D): a fit, only when truncating
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

    def __init__(self, metric: str = "accuracy", lam: float = 1.0, tol: float = 1e-8):
        self.metric = metric
        self.lam = lam
        self.tol = tol  # the fits' step-size tolerance (LogisticHead's)

    def bind(self, X, y, X_val, y_val, n_classes):
        from ads.influence import LogisticHead, _augment

        check_choice(self.metric, ("accuracy", "loss"), "metric", "LogisticUtility")
        self.X, self.y, self.X_val, self.y_val, self.C = X, y, X_val, y_val, n_classes
        self.n = len(X)
        self._head = LogisticHead(lam=self.lam, tol=self.tol)
        self._pen = np.full((X.shape[1] + 1, 1), float(self.lam))
        self._pen[-1] = 0.0
        self._Xva = _augment(X_val)
        self.refreshes_ = self.refits_ = 0  # scan's Hessians formed afresh / prefixes refitted (this process)
        self._full = None
        return self

    @property
    def full(self) -> float:
        """V(D), fitted once per binding (every scan of a truncated run reads it)."""
        if self._full is None:
            self._full = self(np.arange(self.n))
        return self._full

    def _score(self, theta) -> float:
        from ads.influence import metric_at

        return float(metric_at(theta, self._Xva, self.y_val, self.metric, augmented=True))

    @property
    def empty(self) -> float:
        return 1.0 / self.C if self.metric == "accuracy" else -float(np.log(self.C))

    def _fit(self, subset, theta0=None):
        return self._head.fit(self.X[subset], self.y[subset], self.C, theta0=theta0).theta_

    def _lacking(self, subset) -> float | None:
        """V(S) when S lacks a class (no finite fit; see the module docstring); None otherwise."""
        if subset.size == 0:
            return self.empty
        present = np.unique(self.y[subset])
        if len(present) == self.C:
            return None
        if self.metric != "accuracy":
            return self.empty
        if len(present) == 1:
            return float(np.mean(self.y_val == present[0]))
        from ads.influence import LogisticHead, _proba

        sub = LogisticHead(lam=self.lam, tol=self.tol, exact_max=0)
        sub.fit(self.X[subset], np.searchsorted(present, self.y[subset]), len(present))
        return float(np.mean(present[_proba(self._Xva, sub.theta_).argmax(axis=1)] == self.y_val))

    def __call__(self, subset) -> float:
        subset = np.asarray(subset, dtype=np.int64)
        v = self._lacking(subset)
        return v if v is not None else self._score(self._fit(subset))

    def scan(self, perms, truncation=0.0):
        """Along each permutation the head of prefix j+1 is fitted from the head of prefix j
        by quasi-Newton steps theta <- theta - a H^{-1} grad F, with an inverse Hessian kept
        from earlier prefixes. The new point adds x~ x~^T (x) (diag(q) - q q^T) to H (q: its
        probabilities under the previous head), a rank-(C-1) term that Woodbury's identity
        folds into H^{-1} in O(p^2 (C-1)) for p = (d+1)(C-1) parameters (Sherman-Morrison
        for two classes); each step then corrects H^{-1} by BFGS's rank-two update for how
        the other points' curvature moved (:class:`InverseHessian`), and a backtracking
        search on F picks a. A prefix costs a few gradient passes and no factorisation.
        H is formed and inverted afresh at the current iterate when the search fails or
        ``CHORD_ITER`` steps do not reach ``tol``, and a prefix that still has not
        converged is fitted from there by :class:`ads.influence.LogisticHead`. The
        fixed point is grad F = 0 either way: the same minimiser (to ``tol``); the kept
        H^{-1} only sets how fast the steps get there, so it is kept in float32 (half the
        memory traffic; F and its gradient are float64). Heads with more parameters than
        :data:`ads.influence.EXACT_MAX` are refitted by L-BFGS from the previous head."""
        from ads.influence import _augment

        full, empty = (self.full if truncation > 0 else None), self.empty
        big = (self.X.shape[1] + 1) * (self.C - 1) > self._head.exact_max  # no Hessian: warm refits
        out = np.zeros(perms.shape)
        for p, perm in enumerate(perms):
            Xa = _augment(self.X[perm])  # prefixes are views: nothing is copied per prefix
            Y = np.eye(self.C)[self.y[perm]][:, 1:]
            prev, state, seen = empty, None, np.zeros(self.C, dtype=bool)
            for j in range(perms.shape[1]):
                if truncation > 0 and abs(full - prev) < truncation * abs(full):
                    break
                if state is not None:
                    if big:
                        state = (self._fit(perm[: j + 1], state[0]), None)
                    else:
                        state = self._chord(perm[: j + 1], Xa[: j + 1], Y[: j + 1], *state)
                    v = self._score(state[0])
                else:  # a class was missing up to the previous prefix: no finite fit
                    seen[self.y[perm[j]]] = True
                    if seen.all():
                        theta = self._fit(perm[: j + 1])
                        state = (theta, None) if big else self._refresh(Xa[: j + 1], theta)
                        v = self._score(state[0])
                    else:
                        v = self._lacking(perm[: j + 1])
                out[p, j] = v - prev
                prev = v
        return out

    def _refresh(self, Xa, theta):
        """(theta, H^{-1}) with the Hessian of F on the rows ``Xa`` formed at ``theta``;
        H^{-1} in float32, as :meth:`scan` keeps it (numpy's LAPACK: scipy's own threads
        would contend with numpy's in the loop)."""
        from ads.influence import _hessian, _proba

        Hinv = np.linalg.inv(_hessian(Xa, _proba(Xa, theta), np.ones(len(Xa)), self._pen))
        return theta, (0.5 * (Hinv + Hinv.T)).astype(np.float32)

    def _objective(self, Xa, Y, theta):
        """F(theta) on the rows ``Xa`` and its gradient, in one pass."""
        z = Xa @ theta
        if self.C == 2:
            lse = np.logaddexp(0.0, z)
        else:  # log(1 + sum_c exp z_c), class 0's logit being 0
            top = np.maximum(z.max(axis=1, keepdims=True), 0.0)
            lse = top + np.log(np.exp(-top) + np.exp(z - top).sum(axis=1, keepdims=True))
        f = float(lse.sum() - (Y * z).sum() + 0.5 * (self._pen * theta**2).sum())
        return f, Xa.T @ (np.exp(z - lse) - Y) + self._pen * theta

    def _chord(self, subset, Xa, Y, theta, Hinv):
        """The head on ``subset`` (augmented rows ``Xa``, one-hot ``Y`` without class 0) from
        the previous prefix's (theta, H^{-1}); see :meth:`scan`. Returns (theta, H^{-1})."""
        from ads.influence import _proba

        x = Xa[-1]
        q = _proba(x[None], theta)[0, 1:]
        Hinv = InverseHessian(Hinv, point_term(Hinv, x, q))  # merged with the step's BFGS pairs
        t = theta
        f, g = self._objective(Xa, Y, t)
        g = g.reshape(-1)  # flat: the product cache keys on the object
        for attempt in range(2):  # the kept H^{-1}, then one formed afresh at the current iterate
            for _ in range(CHORD_ITER):
                step = Hinv.dot(g).reshape(t.shape)
                slope, a = float(g @ step.reshape(-1)), 1.0
                while True:  # backtracking (Armijo) on F; below rounding level any step is taken
                    t_new = t - a * step
                    f_new, g_new = self._objective(Xa, Y, t_new)
                    if f_new <= f - 1e-4 * a * slope + 1e-13 * abs(f) or a < 1e-3:
                        break
                    a /= 2
                if a < 1e-3:
                    break
                g_new = g_new.reshape(-1)
                Hinv.add((t_new - t).reshape(-1), g, g_new)
                size = a * float(np.abs(step).max())
                t, f, g = t_new, f_new, g_new
                if size < self._head.tol:
                    return t, Hinv.fold()
            if attempt == 0:
                Hinv = InverseHessian(self._refresh(Xa, t)[1])
                self.refreshes_ += 1
        self.refits_ += 1
        return self._refresh(Xa, self._fit(subset, t))


class InverseHessian:
    """An inverse-Hessian approximation H0 + W^T M W: a dense H0 and the BFGS pairs (s, y)
    added since, in Byrd, Nocedal & Schnabel's (1994) compact form, W^T = [S, H0 Y],

        M = [[R^-T (D + Y^T H0 Y) R^-1, -R^-T], [-R^-1, 0]],  R = triu(S^T Y), D = diag(S^T Y),

    which equals applying BFGS's update (I - r s y^T) H (I - r y s^T) + r s s^T,
    r = 1 / y^T s, for each pair in turn. A product costs O(p^2 + p m) for m pairs, and
    :meth:`fold` merges the pairs into H0 with one O(p^2 m) matrix product instead of m
    rank-two passes over H0. Pairs with y^T s <= 0 are skipped (H stays positive definite).
    H0 may be float32 (products are formed in H0's dtype, returned in float64), and may
    carry a symmetric low-rank term L D L^T not yet merged (``low`` = (L, D), from
    :func:`point_term`): the BFGS pairs then start from H0 + L D L^T, and :meth:`fold`
    merges both in the same product."""

    def __init__(self, H0, low=None):
        self.H0, self.low, self.S, self.Y, self.HY, self.W, self.M = H0, low, [], [], [], None, None
        self._last = (None, None)  # (g, H0 g) of the last product: H0 is read once per step

    def _h0(self, g):
        if self._last[0] is not g:
            h = (self.H0 @ g.astype(self.H0.dtype)).astype(np.float64)
            if self.low is not None:
                L, D = self.low
                h += L @ (D @ (L.T @ g))
            self._last = (g, h)
        return self._last[1]

    def add(self, s, g_old, g_new) -> None:
        """The pair (s, y = g_new - g_old), g_old the vector of the last :meth:`dot`."""
        y = g_new - g_old
        if not float(s @ y) > 1e-300:
            return
        self.S.append(s)
        self.Y.append(y)
        h_old = self._h0(g_old)  # cached by the last dot; H0 g_new is cached for the next one
        self.HY.append(self._h0(g_new) - h_old)
        S, Yk, HY = np.array(self.S), np.array(self.Y), np.array(self.HY)
        SY = S @ Yk.T
        Ri = np.linalg.inv(np.triu(SY))
        m = len(S)
        self.M = np.zeros((2 * m, 2 * m))
        self.M[:m, :m] = Ri.T @ (np.diag(np.diag(SY)) + Yk @ HY.T) @ Ri
        self.M[:m, m:] = -Ri.T
        self.M[m:, :m] = -Ri
        self.W = np.vstack([S, HY])

    def dot(self, g):
        out = self._h0(g).copy()
        if self.W is not None:
            out += self.W.T @ (self.M @ (self.W @ g))
        return out

    def fold(self):
        """H0 + L D L^T + W^T M W as a dense array (H0 updated in place)."""
        blocks = ([self.low] if self.low is not None else []) + ([(self.W.T, self.M)] if self.W is not None else [])
        if blocks:
            from scipy.linalg import block_diag  # plain numpy inside: no BLAS threads

            L, D = np.hstack([b[0] for b in blocks]), block_diag(*[b[1] for b in blocks])
            dt = self.H0.dtype
            self.H0 += L.astype(dt) @ (D @ L.T).astype(dt)
        return self.H0


def point_term(Hinv, x, q):
    """(L, D) with (H + x x^T (x) (diag(q) - q q^T))^{-1} = H^{-1} + L D L^T, by Woodbury's
    identity: the multinomial head's Hessian term of one point x~ (augmented) with class-1..
    probabilities q is U U^T, U = x (x) A^{1/2} (rank <= C - 1), so L = H^{-1} U and
    D = -(I + U^T H^{-1} U)^{-1}; O(p^2 (C-1)), one pass over Hinv. L is float64."""
    w, V = np.linalg.eigh(np.diag(q) - np.outer(q, q))
    U = np.kron(x[:, None], V * np.sqrt(np.clip(w, 0.0, None)))
    L = (Hinv @ U.astype(Hinv.dtype)).astype(np.float64)
    return L, -np.linalg.inv(np.eye(U.shape[1]) + U.T @ L)


UTILITIES = {"knn": KNNUtility, "logistic": LogisticUtility}


def make_utility(name: str, *, k: int = 10, metric: str = "accuracy", lam: float = 1.0, tol: float = 1e-8) -> Utility:
    """The utility ``name`` (``knn`` or ``logistic``) with its parameters."""
    if name == "knn":
        return KNNUtility(k=k)
    if name == "logistic":
        return LogisticUtility(metric=metric, lam=lam, tol=tol)
    raise ParameterError(f"The 'utility' parameter must be one of {list(UTILITIES)}. Got {name!r}.")
