"""Data-OOB (Kwon & Zou 2023): out-of-bag accuracy of a bagged ensemble, per point.

With B bootstrap samples S_b of the training set and a weak learner f_b fitted on each,

    psi(i) = sum_b 1[i not in S_b] T(y_i, f_b(x_i)) / sum_b 1[i not in S_b],
    T(y, y') = 1[y = y']                                  (their eq. 3, classification)

i.e. how often the models that did not see point i predict its label. ``score="proba"``
uses T(y, f(x)) = p_f(y | x), the probability the model gives the label, instead (the
paper leaves T general; a proper score separates points the 0/1 score ties: with B = 200
a point is out of bag ~74 times, so 0/1 values take ~74 levels). It needs no
validation set (the one given is ignored). Learners: ``extra-tree`` (the default:
extremely randomised trees, Geurts et al. 2006, sqrt(d) features and a random threshold
per split, depth <= ``max_depth``), ``tree`` (CART trees with sqrt(d) features per split,
a random forest, the paper's choice) or ``logistic`` (the L2 logistic-regression head, as
OpenDataVal bags the model it is given).

Defaults (B = 50 depth-8 extra trees, T = p_f(y | x)) were picked by the rule "the
cheapest setting whose detection AUC on seed 0 of UCI Adult and Fashion-MNIST is at least
that of the paper's setting (full-depth CART trees, 0/1 score)" from the ablation in
benchmarks/results/valuers_oob_steps.md; seeds 1-2 and SMS spam were not used to choose.
Shallow trees make smoother, better calibrated out-of-bag predictions, which the proper
score turns into finer values: on seed 0, AUC 0.895 vs 0.864 (Adult) and 0.992 vs 0.991
(Fashion) at 1/5 and 1/20 of the time of 200 full CART trees.
A point that is never out of bag (probability (1 - 1/n)^n per estimator, about e^-B)
gets the mean value. Estimator b is seeded by (seed, b), so the values do not depend on
``n_jobs``.

``n_components=k`` grows the trees on the top-k principal components of the training
rows instead of the raw coordinates (PCA once, before any bootstrap: the centred rows
times the leading eigenvectors of X^T X; as rotation forests, Rodriguez et al. 2006, feed
trees rotated features). Our reading of the ablation below: an axis-aligned split on one
coordinate of a sentence embedding sees little of the label, one on a leading component
more. Three seeds, 20 % flipped labels (benchmarks/results/valuers_oob_pca.md): on SMS
spam with MiniLM embeddings (384 dims), 50 depth-8 extra trees on 16 components found the
flipped labels with mean AUC 0.984 against 0.972 on the coordinates (100 trees: 0.986 vs
0.978), in half the time; on UCI Adult's one-hot features it lowered the AUC to 0.865
from 0.899, and on Fashion-MNIST CNN features to 0.989 from 0.991. A fixed projection is
therefore off by default. ``n_components="auto"`` grows the B trees on both inputs (the
coordinates and the top ``AUTO_COMPONENTS`` = 16 components) and keeps the ensemble with
the higher mean out-of-bag T of the given labels (the reasoning: with uniform label noise,
a model closer to the clean labels also gives the noisy ones a higher mean out-of-bag
probability). It needs no clean
labels, costs twice the trees, and chose the better input on all 9 data-set x seed cases
there (AUC 0.984 / 0.899 / 0.991).

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

``steps=k`` instead stops after k chord steps from theta^ with that one Hessian and no
refits. One step is the infinitesimal-jackknife (influence-function) approximation of
every bagged head,

    theta_b ~ theta^ - H^{-1} sum_i (w_bi - 1) grad l_i(theta^)

(the full-data gradient vanishes at theta^, and E[w_bi] = 1), which costs two
(n, d+1) x (d+1, B (C-1)) products in all and no per-head Hessian. On UCI Adult with 20 %
flipped labels it agreed with the exact heads on 97-98 % of the out-of-bag predictions
and gave the same detection AUC to within +-0.003 on three seeds at ~1/20 of the time
(benchmarks/results/valuers_oob_steps.md).
"""

from __future__ import annotations

import numpy as np

from ads._validation import check_choice, check_int, check_positive_float
from ads.errors import ParameterError
from ads.valuers.base import VALUERS, Valuer, check_fit_inputs, progress_bar, resolve_seed, stream

#: n_components="auto" compares the coordinates with this many leading principal components.
AUTO_COMPONENTS = 16
#: Bagged logistic heads fitted together (memory: n x OOB_BLOCK x (C-1) floats a few times).
OOB_BLOCK = 64
#: Binary heads use their own Hessian at theta^ (one batched product) while the (n, (d+1)^2) outer-product table has at most this many floats.
NEWTON_MAX = 2**24


def bootstrap(n: int, seed: int, b: int):
    """In-bag row indices of estimator b (n draws with replacement) and its RNG."""
    rng = stream(seed, "data-oob", b)
    return rng.integers(0, n, n), rng


def full_fit(X, y, n_classes: int, lam: float):
    """The full-data head theta^, the augmented rows, the L2 weights and the Cholesky factor
    of the full-data Hessian at theta^ (what every block of bagged heads starts from)."""
    import scipy.linalg as sla

    from ads.influence import LogisticHead, _augment, _hessian, _proba

    head = LogisticHead(lam=lam, tol=1e-10).fit(X, y, n_classes)
    Xa = _augment(X)
    pen = head.penalty()
    return head, Xa, pen, sla.cho_factor(_hessian(Xa, _proba(Xa, head.theta_), np.ones(len(y)), pen))


def bagged_logistic(X, y, n_classes: int, weights, *, lam: float = 1.0, tol: float = 1e-6, max_iter: int = 50,
                    steps: int | None = None, full=None):
    """Minimisers of F_b for every row of ``weights`` (B, n), (B, d+1, C-1) float64, and
    the number of heads refitted one by one (see the module docstring). With ``steps`` =
    k: the heads after k chord-Newton steps from the full-data fit, no refits (0). ``full``:
    :func:`full_fit`'s result, to share it between blocks of heads."""
    from scipy.linalg import cho_solve

    from ads.influence import LogisticHead, _proba

    W = np.asarray(weights, dtype=np.float64)
    B, n = W.shape
    if full is None:
        full = full_fit(X, y, n_classes, lam)
    head, Xa, pen, cho = full
    D, K = head.theta_.shape
    Hb = None
    if steps is not None:
        max_iter = steps
    elif K == 1 and n * D * D <= NEWTON_MAX:  # binary: hess F_b(theta^) for every head from one product
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
            step = cho_solve(cho, G.reshape(idx.size, -1).T).T.reshape(idx.size, D, K)
        T[idx] = Tb - step
        if steps is not None:  # a fixed number of steps: no stopping test, no refits
            continue
        done = np.abs(step).max(axis=(1, 2)) < tol
        failed[idx[grew]] = True
        active[idx[done | grew]] = False
    if steps is not None:
        return T, 0
    failed |= active
    for b in np.flatnonzero(failed):
        fb = LogisticHead(lam=lam, tol=tol).fit(X, y, n_classes, sample_weight=W[b], theta0=T[b])
        T[b] = fb.theta_
    return T, int(failed.sum())


def principal_components(X, k: int):
    """The training rows ``X`` (n, d) on their top-``k`` principal components, float32
    (n, k): (X - mean) V_k with V_k the k leading eigenvectors of the centred X^T X, each
    signed so its largest-magnitude loading is positive (a deterministic basis)."""
    Xc = np.asarray(X, dtype=np.float64)
    Xc = Xc - Xc.mean(axis=0)
    _, V = np.linalg.eigh(Xc.T @ Xc)  # ascending eigenvalues; d x d, so memory is d^2 whatever n is
    V = V[:, ::-1][:, :k]
    V *= np.sign(V[np.abs(V).argmax(axis=0), np.arange(V.shape[1])])
    return (Xc @ V).astype(np.float32)


def _one_tree(X, y, n_classes, learner, seed, b, score, max_depth):
    """Out-of-bag rows of tree ``b`` and their T (a 0/1 hit or p(y|x)). ``X`` is float32 and
    C-contiguous (the trees' own dtype; the valuer converts and checks it once), so
    scikit-learn's per-call checks, about 40 % of a 1000-row depth-8 fit, are skipped."""
    from sklearn import config_context
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    inbag, rng = bootstrap(len(y), seed, b)
    # the bootstrap as weights on its distinct rows: the same trees as on the repeated rows (the split
    # criteria are weighted counts; tests/test_valuers.py checks against the repeated rows), sorted over
    # ~63 % of the rows
    w = np.bincount(inbag, minlength=len(y))
    rows = np.flatnonzero(w == 0)
    if rows.size == 0:
        return rows, np.zeros(0, dtype=bool)
    u = np.flatnonzero(w)
    cls = ExtraTreeClassifier if learner == "extra-tree" else DecisionTreeClassifier
    model = cls(max_features="sqrt", max_depth=max_depth, random_state=int(rng.integers(2**31)))
    with config_context(assume_finite=True, skip_parameter_validation=True):
        model.fit(X[u], y[u], sample_weight=w[u].astype(np.float64), check_input=False)
        if score == "accuracy":
            return rows, model.predict(X[rows], check_input=False) == y[rows]
        P = np.zeros((rows.size, n_classes))
        P[:, model.classes_] = model.predict_proba(X[rows], check_input=False)
    return rows, P[np.arange(rows.size), y[rows]]


@VALUERS.register
class DataOOBValuer(Valuer):
    """Data-OOB values (see :mod:`ads.valuers.oob`).

    Parameters
    ----------
    n_estimators : int, default 50
        B, the bootstrap samples (the paper uses 800 full trees; see the module docstring
        for how 50 was chosen).
    learner : {"extra-tree", "tree", "logistic"}, default "extra-tree"
        ``tree`` with ``max_depth=None``, ``score="accuracy"`` and 200 estimators is the
        paper's setting. ``logistic`` with exact fits is slow for many classes and features
        (Fashion-MNIST embeddings, (d+1)(C-1) = 1,161 parameters: ~350 s); use ``steps=1``.
    max_depth : int or None, default 8 (tree learners only; None grows trees to purity)
    n_components : int or "auto", optional (tree learners only)
        Grow the trees on the training rows' top-k principal components instead of their
        coordinates (see the module docstring: better on sentence embeddings, worse on
        one-hot tabular features). None (the default): the coordinates. At most d.
        ``"auto"``: grow the B trees on both the coordinates and the top 16 components
        (twice the time) and keep the ensemble whose mean out-of-bag T of the given labels
        is higher (``oob_scores_``; the choice is ``n_components_``). It uses no clean labels.
    lam : float, default 1.0 (logistic: L2 penalty, scikit-learn's 1 / C)
    score : {"accuracy", "proba"}, default "proba"
        T: 1[y = f(x)] (the paper's) or p_f(y | x) (see the module docstring).
    steps : int, optional (logistic only)
        None (the default): every bagged head is the exact weighted minimiser. k >= 1: k
        chord-Newton steps from the full-data fit instead; ``steps=1`` is the one-step
        (infinitesimal-jackknife) approximation, about 20 x faster on UCI Adult at the same
        detection AUC (see the module docstring).
    n_jobs : int, default 1
        joblib workers (threads) over estimators (trees; the batched heads use BLAS threads).
    random_state : int, optional; progress : bool, default True
    """

    name = "data-oob"

    def __init__(self, n_estimators: int = 50, learner: str = "extra-tree", max_depth: int | None = 8, lam: float = 1.0,
                 score: str = "proba", steps: int | None = None, n_jobs: int | None = 1, random_state=None,
                 progress: bool = True, n_components: int | None = None):
        self.n_estimators = n_estimators
        self.learner = learner
        self.max_depth = max_depth
        self.n_components = n_components
        self.lam = lam
        self.score = score
        self.steps = steps
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.progress = progress

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        X, y, X_val, y_val, C = check_fit_inputs(X, y, X_val, y_val, n_classes, "DataOOBValuer")
        B = check_int(self.n_estimators, "n_estimators", "DataOOBValuer", min_value=1)
        check_choice(self.learner, ("extra-tree", "tree", "logistic"), "learner", "DataOOBValuer")
        depth = None if self.max_depth is None else check_int(self.max_depth, "max_depth", "DataOOBValuer", min_value=1)
        check_choice(self.score, ("accuracy", "proba"), "score", "DataOOBValuer")
        seed = resolve_seed(self.random_state, random_state, "DataOOBValuer")
        steps = None if self.steps is None else check_int(self.steps, "steps", "DataOOBValuer", min_value=1)
        if steps is not None and self.learner != "logistic":
            raise ParameterError(f"DataOOBValuer: steps applies to learner='logistic' only, not {self.learner!r}.")
        cands = [None]  # the inputs to grow trees on: None = the coordinates, k = the top-k principal components
        if self.n_components is not None:
            if self.learner == "logistic":
                raise ParameterError("DataOOBValuer: n_components applies to the tree learners only, not 'logistic'.")
            if isinstance(self.n_components, str) and self.n_components == "auto":
                cands = [None] + ([AUTO_COMPONENTS] if X.shape[1] > AUTO_COMPONENTS else [])
            elif isinstance(self.n_components, str):
                raise ParameterError(f"The 'n_components' parameter of DataOOBValuer must be an int in [1, {X.shape[1]}] "
                                     f"or 'auto'. Got {self.n_components!r}.")
            else:
                cands = [check_int(self.n_components, "n_components", "DataOOBValuer", min_value=1, max_value=X.shape[1])]
        hits, counts = np.zeros(len(y)), np.zeros(len(y))
        if self.learner == "logistic":
            from ads.influence import _proba

            check_positive_float(self.lam, "lam", "DataOOBValuer")
            self.refits_ = 0
            n = len(y)
            full = full_fit(X, y, C, self.lam)
            Xa = full[1]
            with progress_bar(B, "data-oob", self.progress, unit="est") as bar:
                for s in range(0, B, OOB_BLOCK):
                    bs = range(s, min(s + OOB_BLOCK, B))
                    W = np.stack([np.bincount(bootstrap(n, seed, b)[0], minlength=n) for b in bs]).astype(np.float64)
                    T, refits = bagged_logistic(X, y, C, W, lam=self.lam, steps=steps, full=full)
                    self.refits_ += refits
                    oob = W == 0
                    counts += oob.sum(axis=0)
                    if self.score == "accuracy":
                        Z = np.concatenate([np.zeros((len(bs), n, 1)), np.matmul(Xa[None], T)], axis=-1)  # (b, n, C)
                        hits += (oob & (Z.argmax(axis=-1) == y[None, :])).sum(axis=0)
                    else:
                        hits += (oob * _proba(Xa, T)[:, np.arange(n), y]).sum(axis=0)
                    bar.update(len(bs))
            return self._finish(hits, counts)
        self.oob_scores_, best = {}, None  # the mean out-of-bag T of the noisy labels, per input
        with progress_bar(B * len(cands), "data-oob", self.progress, unit="est") as bar:
            for k in cands:  # a later input replaces the kept one only when it scores strictly higher
                Xk = principal_components(X, k) if k is not None else X
                hits, counts = self._grow(np.ascontiguousarray(Xk, dtype=np.float32), y, C, seed, B, depth, bar)
                seen = counts > 0
                self.oob_scores_[k] = float((hits[seen] / counts[seen]).mean()) if seen.any() else 0.0
                if best is None or self.oob_scores_[k] > self.oob_scores_[best[0]]:
                    best = (k, hits, counts)
        self.n_components_ = best[0]
        return self._finish(best[1], best[2])

    def _grow(self, X, y, C, seed, B, depth, bar):
        """hits and out-of-bag counts of B trees on ``X`` (float32, C-contiguous: the trees' own
        dtype, converted once; see _one_tree)."""
        hits, counts = np.zeros(len(y)), np.zeros(len(y))
        step = 8 if self.n_jobs != 1 else 1
        for s in range(0, B, step):
            bs = range(s, min(s + step, B))
            if self.n_jobs == 1:
                results = [_one_tree(X, y, C, self.learner, seed, b, self.score, depth) for b in bs]
            else:
                from joblib import Parallel, delayed

                results = Parallel(n_jobs=self.n_jobs, prefer="threads")(
                    delayed(_one_tree)(X, y, C, self.learner, seed, b, self.score, depth) for b in bs)
            for rows, correct in results:
                counts[rows] += 1
                hits[rows] += correct
            bar.update(len(bs))
        return hits, counts

    def _finish(self, hits, counts):
        seen = counts > 0
        vals = np.full(len(counts), np.nan)
        vals[seen] = hits[seen] / counts[seen]
        vals[~seen] = vals[seen].mean() if seen.any() else 0.0
        self.values_ = vals
        self.oob_counts_ = counts
        return self
