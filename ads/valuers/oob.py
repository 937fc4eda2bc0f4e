"""Data-OOB (Kwon & Zou 2023): out-of-bag accuracy of a bagged ensemble, per point.

With B bootstrap samples S_b of the training set and a weak learner f_b fitted on each,

    psi(i) = sum_b 1[i not in S_b] T(y_i, f_b(x_i)) / sum_b 1[i not in S_b],
    T(y, y') = 1[y = y']                                  (their eq. 3, classification)

i.e. how often the models that did not see point i predict its label. It needs no
validation set (the one given is ignored). Learners: ``tree`` (the default; decision
trees with sqrt(d) features per split, a random forest, the paper's choice) or
``logistic`` (the L2 logistic-regression head, as OpenDataVal bags the model it is given).
A point that is never out of bag (probability (1 - 1/n)^n per estimator, about e^-B)
gets the mean value. Estimator b is seeded by (seed, b), so the values do not depend on
``n_jobs``.

The logistic learner fits all B bagged heads at once (:func:`bagged_logistic`): a
bootstrap sample is the training set with weights w_b = the bootstrap counts, so every
head minimises F_b(theta) = sum_i w_bi l_i(theta) + lam/2 ||theta[:d]||^2 on the same
rows. Starting from the full-data fit theta^, all heads take chord-Newton steps
theta_b <- theta_b - H^{-1} grad F_b(theta_b) with the one Hessian H of the full-data
objective at theta^ (E[w_b] = 1, so E[hess F_b] = H near theta^): one Cholesky factor,
and per step two (n, d+1) x (d+1, B (C-1)) products for all heads together. A head
whose largest step is not below ``tol`` after ``max_iter`` steps (or whose gradient
grows) is refitted on its own by :class:`ads.influence.LogisticHead`'s damped Newton,
so every head is the exact minimiser either way. Memory: n x B (C-1) floats per block
of heads (``OOB_BLOCK``) and the (d+1)(C-1) square Hessian.
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int, check_positive_float
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs, progress_bar, resolve_seed

#: Bagged logistic heads fitted together (memory: n x OOB_BLOCK x (C-1) floats a few times).
OOB_BLOCK = 64
#: Binary heads use their own Hessian at theta^ (one batched product) while the (n, (d+1)^2) outer-product table has at most this many floats.
NEWTON_MAX = 2**24


def bootstrap(n: int, seed: int, b: int):
    """In-bag row indices of estimator b (n draws with replacement) and its RNG."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, b]))
    return rng.integers(0, n, n), rng


def bagged_logistic(X, y, n_classes: int, weights, *, lam: float = 1.0, tol: float = 1e-6, max_iter: int = 50):
    """Minimisers of F_b for every row of ``weights`` (B, n), (B, d+1, C-1) float64, and
    the number of heads refitted one by one (see the module docstring)."""
    import scipy.linalg as sla

    from ads.influence import LogisticHead, _augment, _hessian, _proba

    W = np.asarray(weights, dtype=np.float64)
    B, n = W.shape
    head = LogisticHead(lam=lam, tol=1e-10).fit(X, y, n_classes)
    Xa = _augment(X)
    D, K = head.theta_.shape
    pen = head.penalty()
    cho = sla.cho_factor(_hessian(Xa, _proba(Xa, head.theta_), np.ones(n), pen))
    Hb = None
    if K == 1 and n * D * D <= NEWTON_MAX:  # binary: hess F_b(theta^) for every head from one product
        q = _proba(Xa, head.theta_)[:, 1]
        Hb = ((W * (q * (1 - q))[None, :]) @ (Xa[:, :, None] * Xa[:, None, :]).reshape(n, D * D)).reshape(B, D, D)
        Hb[:, np.arange(D), np.arange(D)] += pen[:, 0]
    Y1 = np.eye(n_classes)[np.asarray(y, dtype=np.int64)][:, 1:]  # (n, K)
    T = np.repeat(head.theta_[None], B, axis=0)  # (B, D, K)
    active = np.ones(B, dtype=bool)
    gnorm = np.full(B, np.inf)
    failed = np.zeros(B, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        Tb = T[idx]  # (b, D, K)
        Q = _proba(Xa, Tb)[..., 1:]  # (b, n, K)
        R = W[idx][:, :, None] * (Q - Y1[None])  # (b, n, K)
        G = np.matmul(Xa.T, R) + pen[None] * Tb  # (b, D, K)
        g = np.sqrt((G**2).sum(axis=(1, 2)))
        grew = g > 2 * gnorm[idx]
        gnorm[idx] = g
        if Hb is not None:  # binary: each head's own Hessian at theta^
            step = np.linalg.solve(Hb[idx], G)  # (b, D, 1)
        else:
            step = sla.cho_solve(cho, G.reshape(idx.size, -1).T).T.reshape(idx.size, D, K)
        T[idx] = Tb - step
        done = np.abs(step).max(axis=(1, 2)) < tol
        failed[idx[grew]] = True
        active[idx[done | grew]] = False
    failed |= active
    for b in np.flatnonzero(failed):
        fb = LogisticHead(lam=lam, tol=tol).fit(X, y, n_classes, sample_weight=W[b], theta0=T[b])
        T[b] = fb.theta_
    return T, int(failed.sum())


def _one_estimator(X, y, n_classes, learner, seed, b):
    n = len(y)
    inbag, rng = bootstrap(n, seed, b)
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
        ``logistic`` detected flipped labels better on UCI Adult (AUC 0.886 vs 0.864,
        benchmarks/results/valuers.md) at about the trees' time there, but for many classes
        and features (Fashion-MNIST embeddings, (d+1)(C-1) = 1,161 parameters) its heads
        can be far slower than trees (not finished in a 240 s check), so trees stay the default.
    lam : float, default 1.0 (logistic: L2 penalty, scikit-learn's 1 / C)
    n_jobs : int, default 1
        joblib workers (threads) over estimators (trees; the batched heads use BLAS threads).
    random_state : int, optional; progress : bool, default True
    """

    name = "data-oob"

    def __init__(self, n_estimators: int = 200, learner: str = "tree", lam: float = 1.0, n_jobs: int | None = 1,
                 random_state=None, progress: bool = True):
        self.n_estimators = n_estimators
        self.learner = learner
        self.lam = lam
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, "DataOOBValuer")
        B = check_int(self.n_estimators, "n_estimators", "DataOOBValuer", min_value=1)
        check_choice(self.learner, ("tree", "logistic"), "learner", "DataOOBValuer")
        seed = resolve_seed(self.random_state, random_state, "DataOOBValuer")
        hits, counts = np.zeros(len(y)), np.zeros(len(y))
        if self.learner == "logistic":
            from ads.influence import _augment

            check_positive_float(self.lam, "lam", "DataOOBValuer")
            self.refits_ = 0
            n = len(y)
            Xa = _augment(X)
            with progress_bar(B, "data-oob", self.progress, unit="est") as bar:
                for s in range(0, B, OOB_BLOCK):
                    bs = range(s, min(s + OOB_BLOCK, B))
                    W = np.stack([np.bincount(bootstrap(n, seed, b)[0], minlength=n) for b in bs]).astype(np.float64)
                    T, refits = bagged_logistic(X, y, C, W, lam=self.lam)
                    self.refits_ += refits
                    Z = np.concatenate([np.zeros((len(bs), n, 1)), np.matmul(Xa[None], T)], axis=-1)  # (b, n, C)
                    oob = W == 0
                    counts += oob.sum(axis=0)
                    hits += (oob & (Z.argmax(axis=-1) == y[None, :])).sum(axis=0)
                    bar.update(len(bs))
            return self._finish(hits, counts)
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
        return self._finish(hits, counts)

    def _finish(self, hits, counts):
        seen = counts > 0
        vals = np.full(len(counts), np.nan)
        vals[seen] = hits[seen] / counts[seen]
        vals[~seen] = vals[seen].mean() if seen.any() else 0.0
        self.values_ = vals
        self.oob_counts_ = counts
        return self
