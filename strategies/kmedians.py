"""K-medians diversity: one representative candidate per L1 cluster.

Clusters the candidates into ``n`` groups under the L1 distance with Lloyd-style
alternation (assign each point to the nearest median; move each median to the
coordinate-wise median of its points, which minimises the summed L1 distance of the
group), seeded like k-means++ (Arthur & Vassilvitskii 2007) with the ``D^1`` weighting
that suits L1. The batch is, for each median, the nearest real candidate not already
taken.

Distances are float32 L1 from faiss's SIMD kernel. Every stage skips work that the
triangle inequality proves cannot change its result (the seeding's distance updates,
Hamerly-style bounds in the assignment, a per-cluster bound in the final nearest
search), with a safety margin far above float32 rounding, so the picks are those of
the plain algorithm (``tests/test_strategies_kmedians.py`` replays it by hand). The
skipping pays on clustered embeddings; on points spread evenly in high dimension little
can be skipped and the cost is that of the plain algorithm.
"""

from __future__ import annotations

import numpy as np

from ads.errors import check_int
from strategies.base import Strategy, register, weighted_draw

# Scratch bytes of one (block, n_medians) L1 distance block.
_BLOCK_BYTES = 32 * 2**20


def _l1(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """L1 distances (len(A), len(B)) in float32 (faiss's SIMD kernel; A, B float32).

    Every distance is computed pair by pair, so a pair gets the same number whatever
    else is in the call.
    """
    import faiss

    if A.shape[0] == 0 or B.shape[0] == 0:
        return np.zeros((A.shape[0], B.shape[0]), dtype=np.float32)
    return faiss.pairwise_distances(A, B, metric=faiss.METRIC_L1)


def _l1_to_one(X: np.ndarray, c: np.ndarray) -> np.ndarray:
    return _l1(X, c[None, :])[:, 0]


def _l1_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Row-wise L1 distances ``|A[i] - B[i]|_1`` (only used for bounds)."""
    return np.abs(A - B).sum(axis=1)


# Relative slack of every pruning test. A point (or cluster) is skipped only when the
# triangle inequality proves, with this margin, that the exact computation could not
# change the result; float32 rounding in the distances and the bounds (< 1e-5
# relative for d <= 2048) stays below it, so pruned and unpruned runs agree.
_SLACK = 1e-4

# The cluster-pruned nearest search is used when it scans at most this share of the
# (candidate, median) pairs; otherwise the blocked full scan is cheaper.
_PRUNE_MAX_WORK = 0.25


def _assign(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Nearest median (L1) of every row of X; ties -> lowest median index. Blocked."""
    return _assign_bounds(X, C)[0]


def _assign_bounds(X: np.ndarray, C: np.ndarray):
    """Nearest median, its distance and the distance to the second nearest (inf if
    there is one median), for every row of X; ties -> lowest median index."""
    N, k = X.shape[0], C.shape[0]
    labels = np.empty(N, dtype=np.int64)
    upper = np.empty(N)  # float64: the bounds add up shifts over the rounds
    lower = np.full(N, np.inf)
    step = max(1, _BLOCK_BYTES // (4 * k))
    for s in range(0, N, step):
        D = _l1(X[s : s + step], C)
        rows = np.arange(D.shape[0])
        lab = np.argmin(D, axis=1)
        labels[s : s + step] = lab
        upper[s : s + step] = D[rows, lab]
        if k > 1:
            D[rows, lab] = np.inf
            lower[s : s + step] = D.min(axis=1)
    return labels, upper, lower


def _seed(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++-style seeding with L1 weights.

    The first seed is ``rng.integers(n_candidates)``; each next one is drawn with
    probability proportional to its L1 distance to the nearest seed
    (:func:`strategies.base.weighted_draw`, one ``rng.random()``); if every distance is
    0, uniformly among the unseeded (``rng.integers``).

    A new seed ``c`` can only come closer to a point ``x`` than its nearest seed ``s``
    if ``|c - s| < 2 |x - s|`` (triangle inequality), so each step measures ``c``
    against the earlier seeds (``t x d``) and then only the points that pass that test,
    not the whole pool; the distances kept are the same numbers a full update gives.
    """
    N = X.shape[0]
    seeds = np.empty(n, dtype=np.int64)
    seeded = np.zeros(N, dtype=bool)
    seeds[0] = rng.integers(N)
    seeded[seeds[0]] = True
    mind = _l1_to_one(X, X[seeds[0]])
    owner = np.zeros(N, dtype=np.int64)  # position in `seeds` of the nearest seed
    S = np.empty((n, X.shape[1]), dtype=X.dtype)  # the seed rows, in order
    S[0] = X[seeds[0]]
    for t in range(1, n):
        i = weighted_draw(rng, mind)
        if i < 0:
            free = np.flatnonzero(~seeded)
            i = int(free[rng.integers(free.size)])
        seeds[t] = i
        seeded[i] = True
        S[t] = X[i]
        to_seeds = _l1(S[:t], S[t : t + 1])[:, 0]
        near = to_seeds[owner] <= 2.0 * mind * (1.0 + _SLACK)
        count = int(np.count_nonzero(near))
        if count > N // 4:  # gathering the rows would cost more than it saves
            d = _l1(X, S[t : t + 1])[:, 0]
            moved = np.flatnonzero(d < mind)
            mind[moved] = d[moved]
            owner[moved] = t
        elif count:
            near = np.flatnonzero(near)
            d = _l1(X[near], S[t : t + 1])[:, 0]
            closer = d < mind[near]
            moved = near[closer]
            mind[moved] = d[closer]
            owner[moved] = t
    return seeds


def _nearest_distinct(X: np.ndarray, C: np.ndarray, labels=None) -> np.ndarray:
    """For each median in order, the nearest (L1) candidate not taken by an earlier
    median; ties -> lowest candidate index.

    ``labels`` (a median per candidate, e.g. the last assignment) lets each median skip
    the clusters that cannot hold a point closer than the best one of its own cluster
    (see :func:`_nearest_by_cluster`); the answer is the same.
    """
    N, k = X.shape[0], C.shape[0]
    best_i = _nearest_by_cluster(X, C, labels) if labels is not None else None
    if best_i is None:
        best_i = np.zeros(k, dtype=np.int64)
        best_d = np.full(k, np.inf)
        step = max(1, _BLOCK_BYTES // (4 * k))
        for s in range(0, N, step):
            D = _l1(X[s : s + step], C)
            j = np.argmin(D, axis=0)
            dj = D[j, np.arange(k)]
            better = dj < best_d  # strict: an earlier block keeps ties (lower index)
            best_d[better] = dj[better]
            best_i[better] = j[better] + s
    out = np.empty(k, dtype=np.int64)
    used = np.zeros(N, dtype=bool)
    for m in range(k):
        i = int(best_i[m])
        if used[i]:
            # Collisions are rare; a full scan for this median only.
            d = _l1_to_one(X, C[m])
            d[used] = np.inf
            i = int(np.argmin(d))
        out[m] = i
        used[i] = True
    return out


def _nearest_by_cluster(X, C, labels):
    """The nearest candidate (ties -> lowest index) of every median, or None when the
    pruning would not save work.

    A point ``x`` of cluster ``a`` is at least ``|C[a] - C[m]| - |x - C[a]|`` away from
    median ``m`` (triangle inequality). With ``limit[m]`` the best distance inside
    cluster ``m`` and ``reach[a]`` the largest ``|x - C[a]|`` in cluster ``a``, cluster
    ``a`` is skipped for median ``m`` when ``|C[a] - C[m]| - reach[a] > limit[m]``.
    Clustered (real) embeddings skip almost every cluster; points spread evenly in
    high dimension skip few, and then the plain blocked scan is used.
    """
    N, k = X.shape[0], C.shape[0]
    own = _l1_rows(X, C[labels]).astype(np.float32)
    size = np.bincount(labels, minlength=k)
    reach = np.full(k, -np.inf, dtype=np.float32)
    np.maximum.at(reach, labels, own)
    limit = np.full(k, np.inf, dtype=np.float32)
    np.minimum.at(limit, labels, own)
    keep = np.empty((k, k), dtype=bool)
    work, weights = 0, size.astype(np.float64)
    rows = max(1, _BLOCK_BYTES // (16 * k))
    for s in range(0, k, rows):
        gap = _l1(C[s : s + rows], C)
        blk = keep[s : s + rows]
        np.less_equal(gap - reach[None, :], (limit[s : s + rows, None] + gap * _SLACK) * (1.0 + _SLACK), out=blk)
        work += int((blk @ weights).sum())  # points each median would scan
        if work > _PRUNE_MAX_WORK * N * k:
            return None
    best_i = np.empty(k, dtype=np.int64)
    for m in range(k):
        members = np.flatnonzero(keep[m][labels])  # in index order
        d = _l1_to_one(X[members], C[m])
        best_i[m] = members[int(np.argmin(d))]
    return best_i


def kmedians(X, n, rng, *, max_iter=20):
    """K-medians clustering under L1.

    Parameters
    ----------
    X : ndarray of shape (n_candidates, d)
        Points. Not modified.
    n : int
        Number of clusters, ``1 <= n <= n_candidates``.
    rng : numpy.random.Generator
        Used by the seeding only (:func:`_seed`).
    max_iter : int, default 20
        Maximum number of assign/update rounds; stops earlier when an assignment
        repeats the previous one.

    Returns
    -------
    medians : ndarray of shape (n, d), float32
    labels : ndarray of shape (n_candidates,), int64
        The last assignment (nearest median, ties -> lowest median index), made before
        the last update.
    seeds : ndarray of shape (n,), int64
        Indices of the seed points.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)  # every round reads all of X
    seeds = _seed(X, n, rng)
    C = X[seeds].copy()
    labels = upper = lower = None
    for _ in range(max_iter):
        if labels is None:
            new, upper, lower = _assign_bounds(X, C)
        else:
            new = labels.copy()
            _reassign(X, C, new, upper, lower)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        before = C.copy()
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n + 1))
        for m in range(n):
            a, b = bounds[m], bounds[m + 1]
            if b > a:  # an empty cluster keeps its median
                C[m] = np.median(X[order[a:b]], axis=0)
        # Hamerly's bounds follow the medians: a point's own median moved by shift[a],
        # any other by at most the largest other shift.
        shift = _l1_rows(before, C).astype(np.float64) * (1.0 + _SLACK)
        upper += shift[labels]
        if n > 1:
            top = int(np.argmax(shift))
            second = np.max(np.delete(shift, top))
            lower -= np.where(labels == top, second, shift[top])
    return C, labels, seeds


def _reassign(X, C, labels, upper, lower):
    """Nearest median of every point, in place, given Hamerly bounds ``upper`` >= the
    distance to the point's median and ``lower`` <= the distance to any other median.

    A point whose upper bound stays below its lower bound keeps its median (no other
    can be as close, so no tie either); the rest get their upper bound tightened and,
    if that does not settle them, a full row of distances.
    """
    unsure = np.flatnonzero(upper * (1.0 + _SLACK) >= lower)
    if unsure.size:
        upper[unsure] = _l1_rows(X[unsure], C[labels[unsure]])
        unsure = unsure[upper[unsure] * (1.0 + _SLACK) >= lower[unsure]]
    if unsure.size:
        lab, up, low = _assign_bounds(X[unsure], C)
        labels[unsure], upper[unsure], lower[unsure] = lab, up, low


def kmedians_select(X, n, rng, *, max_iter=20) -> np.ndarray:
    """The candidate nearest (L1) to each k-medians median, distinct, in median order.

    Returns
    -------
    ndarray of shape (n,), int64
        Median ``m``'s pick is its nearest candidate not picked for medians ``< m``
        (ties -> lowest index). Deterministic for a given ``rng`` state.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    C, labels, _ = kmedians(X, n, rng, max_iter=max_iter)
    return _nearest_distinct(X, C, labels)


@register
class KMedians(Strategy):
    """K-medians (L1) of the candidates; picks the candidate nearest each median.

    Parameters
    ----------
    max_iter : int, default 20
        Maximum number of assign/update rounds.
    """

    name = "kmedians"

    def __init__(self, max_iter=20):
        self.max_iter = max_iter

    def _select(self, X, n, *, X_labeled, proba, rng):
        max_iter = check_int(self.max_iter, "max_iter", f"strategy {self.name!r}", min_value=1)
        return kmedians_select(X, n, rng, max_iter=max_iter)
