"""K-medians diversity: one representative candidate per L1 cluster.

Clusters the candidates into ``n`` groups under the L1 distance with Lloyd-style
alternation (assign each point to the nearest median; move each median to the
coordinate-wise median of its points, which minimises the summed L1 distance of the
group), seeded like k-means++ (Arthur & Vassilvitskii 2007) with the ``D^1`` weighting
that suits L1. The batch is, for each median, the nearest real candidate not already
taken.
"""

from __future__ import annotations

import numpy as np

from ads.errors import check_int
from strategies.base import Strategy, register, weighted_draw

# Scratch bytes of one (block, n_medians) L1 distance block.
_BLOCK_BYTES = 32 * 2**20


def _l1(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """L1 distances (len(A), len(B)) in float64; torch's kernel avoids a 3-D temporary."""
    import torch

    return torch.cdist(torch.from_numpy(A), torch.from_numpy(B), p=1).numpy()


def _l1_to_one(X: np.ndarray, c: np.ndarray) -> np.ndarray:
    return _l1(X, c[None, :])[:, 0]


def _assign(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Nearest median (L1) of every row of X; ties -> lowest median index. Blocked."""
    labels = np.empty(X.shape[0], dtype=np.int64)
    step = max(1, _BLOCK_BYTES // (8 * C.shape[0]))
    for s in range(0, X.shape[0], step):
        labels[s : s + step] = np.argmin(_l1(X[s : s + step], C), axis=1)
    return labels


def _seed(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++-style seeding with L1 weights.

    The first seed is ``rng.integers(n_candidates)``; each next one is drawn with
    probability proportional to its L1 distance to the nearest seed
    (:func:`strategies.base.weighted_draw`, one ``rng.random()``); if every distance is
    0, uniformly among the unseeded (``rng.integers``).
    """
    N = X.shape[0]
    seeds = np.empty(n, dtype=np.int64)
    seeded = np.zeros(N, dtype=bool)
    seeds[0] = rng.integers(N)
    seeded[seeds[0]] = True
    mind = _l1_to_one(X, X[seeds[0]])
    for t in range(1, n):
        i = weighted_draw(rng, mind)
        if i < 0:
            free = np.flatnonzero(~seeded)
            i = int(free[rng.integers(free.size)])
        seeds[t] = i
        seeded[i] = True
        np.minimum(mind, _l1_to_one(X, X[i]), out=mind)
    return seeds


def _nearest_distinct(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """For each median in order, the nearest (L1) candidate not taken by an earlier
    median; ties -> lowest candidate index."""
    N, k = X.shape[0], C.shape[0]
    best_d = np.full(k, np.inf)
    best_i = np.zeros(k, dtype=np.int64)
    step = max(1, _BLOCK_BYTES // (8 * k))
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
    medians : ndarray of shape (n, d), float64
    labels : ndarray of shape (n_candidates,), int64
        The last assignment (nearest median, ties -> lowest median index), made before
        the last update.
    seeds : ndarray of shape (n,), int64
        Indices of the seed points.
    """
    X = np.asarray(X, dtype=np.float64)  # every round reads all of X
    seeds = _seed(X, n, rng)
    C = X[seeds].copy()
    labels = None
    for _ in range(max_iter):
        new = _assign(X, C)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n + 1))
        for m in range(n):
            a, b = bounds[m], bounds[m + 1]
            if b > a:  # an empty cluster keeps its median
                C[m] = np.median(X[order[a:b]], axis=0)
    return C, labels, seeds


def kmedians_select(X, n, rng, *, max_iter=20) -> np.ndarray:
    """The candidate nearest (L1) to each k-medians median, distinct, in median order.

    Returns
    -------
    ndarray of shape (n,), int64
        Median ``m``'s pick is its nearest candidate not picked for medians ``< m``
        (ties -> lowest index). Deterministic for a given ``rng`` state.
    """
    X = np.asarray(X, dtype=np.float64)
    C, _, _ = kmedians(X, n, rng, max_iter=max_iter)
    return _nearest_distinct(X, C)


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
