"""Greedy k-center (Core-set, Sener & Savarese 2018, Algorithm 1).

The greedy 2-approximation of the k-center problem: starting from the labeled set,
repeatedly add the candidate whose distance to the nearest chosen or labeled point is
largest (``u = argmax_i min_j Δ(x_i, x_j)``, Sener & Savarese, Alg. 1).

The picks are exactly those of the plain loop that updates every candidate after each
pick; only the order of the arithmetic work differs:

* the initial nearest-labeled distances are one GEMM, blocked over candidates;
* the greedy loop is lazy. A candidate's stored distance is an upper bound (it has seen
  the labeled set and a prefix of the picks), and distances only shrink as picks are
  added. A small set of the largest bounds is brought up to date in one GEMM, and picks
  are taken from it while its best exact value beats every bound outside it. Points
  whose bound is below the running maximum are left alone, so most of the
  n_candidates × n distance evaluations of the plain loop are skipped.

Squared distances are computed in float64 as ``(|x_c|² − 2 x_i·x_c) + |x_i|²``,
clipped at 0, in every code path.
"""

from __future__ import annotations

import numpy as np

from ads.errors import check_int
from strategies.base import Strategy, register

# Bound on the scratch memory of one GEMM block (bytes); keeps peak extra memory
# around 100 MB whatever the pool size.
_BLOCK_BYTES = 32 * 2**20


def _rows64(X: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` as float64 (a view when X already is float64)."""
    return np.asarray(X[start:stop], dtype=np.float64)


def _block_rows(n_cols: int, d: int) -> int:
    """Rows per block so that a (rows, n_cols) float64 product plus the float64
    copy of the rows stay within ``_BLOCK_BYTES``."""
    return max(1, _BLOCK_BYTES // (8 * (n_cols + d)))


def sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared Euclidean norms of the rows of ``X`` in float64, shape (n,)."""
    out = np.empty(X.shape[0], dtype=np.float64)
    step = _block_rows(0, X.shape[1])
    for s in range(0, X.shape[0], step):
        B = _rows64(X, s, s + step)
        out[s : s + step] = np.einsum("ij,ij->i", B, B)
    return out


def _min_sq_dist(X, sq, C, sqC, out) -> None:
    """``out = min(out, min_c d(x_i, c))`` over the rows C, blocked over rows of X.

    Because rounding is monotone, ``min_c fl(fl(|c|² − 2x·c) + |x|²)`` equals
    ``fl(min_c fl(|c|² − 2x·c) + |x|²)``: adding ``|x|²`` after the min gives bit-for-bit
    the distances of the per-center formula, with one pass less over the block.
    """
    step = _block_rows(C.shape[0], X.shape[1])
    for s in range(0, X.shape[0], step):
        G = _rows64(X, s, s + step) @ C.T
        G *= -2.0
        G += sqC
        m = G.min(axis=1)
        m += sq[s : s + step]
        np.maximum(m, 0.0, out=m)
        np.minimum(out[s : s + step], m, out=out[s : s + step])


def _labeled_min_dist(X, sq, X_labeled) -> np.ndarray:
    """Squared distance from each candidate to its nearest labeled point (float64);
    blocked over labeled points too, so a large labeled set does not blow the block."""
    mind = np.full(X.shape[0], np.inf)
    if X_labeled is None or X_labeled.shape[0] == 0:
        return mind
    sqL = sq_norms(X_labeled)
    lstep = max(1, _BLOCK_BYTES // (8 * 1024))  # columns per labeled block
    for s in range(0, X_labeled.shape[0], lstep):
        _min_sq_dist(X, sq, _rows64(X_labeled, s, s + lstep), sqL[s : s + lstep], mind)
    return mind


def _top_set(ub: np.ndarray, size: int):
    """The ``size`` largest bounds among unpicked points, ties to the lowest indices.

    Returns ``(idx, tau, tau_idx)``: sorted member indices, the largest bound outside
    the set (-inf when none) and the lowest outside index attaining it. Taking tied
    points lowest-index-first makes a set whose values are all exact always able to
    yield a pick, so the loop cannot stall.
    """
    N = ub.shape[0]
    n_left = int(np.count_nonzero(ub > -np.inf))
    if size >= n_left:
        return np.flatnonzero(ub > -np.inf), -np.inf, N
    thr = -np.partition(-ub, size - 1)[size - 1]  # the size-th largest bound (>= 0)
    gt = np.flatnonzero(ub > thr)
    eq = np.flatnonzero(ub == thr)
    k = size - gt.size
    idx = np.sort(np.concatenate([gt, eq[:k]]))
    if eq.size > k:
        return idx, float(thr), int(eq[k])
    below = ub < thr
    tau = float(ub[below].max()) if below.any() else -np.inf
    if tau == -np.inf:
        return idx, tau, N
    return idx, tau, int(np.flatnonzero(ub == tau)[0])


def _catch_up(XS, sqS, vals, seen, C, sqC, k) -> None:
    """Bring ``vals`` (bounds of the rows XS) up to date with centers ``C[:k]``.

    Row i has already seen centers ``C[:seen[i]]``; only ``C[seen[i]:k]`` are applied,
    so every (point, center) distance is computed once in the whole run. Blocked over
    centers to bound the (rows, centers) scratch.
    """
    rows = np.flatnonzero(seen < k)
    if rows.size == 0:
        return
    Xr, sqr, seen_r = XS[rows], sqS[rows], seen[rows]
    cstep = max(1, _BLOCK_BYTES // (8 * rows.size))
    acc = np.full(rows.size, np.inf)
    for s in range(int(seen_r.min()), k, cstep):
        e = min(k, s + cstep)
        G = Xr @ C[s:e].T
        G *= -2.0
        G += sqC[s:e]
        G[np.arange(s, e)[None, :] < seen_r[:, None]] = np.inf  # already applied
        np.minimum(acc, G.min(axis=1), out=acc)
    acc += sqr  # see _min_sq_dist: adding |x|² after the min is exact
    np.maximum(acc, 0.0, out=acc)
    vals[rows] = np.minimum(vals[rows], acc)


def coreset_greedy(X, n, X_labeled=None, *, candidate_set_size=2048) -> np.ndarray:
    """Greedy k-center selection, exact and lazily updated.

    Parameters
    ----------
    X : ndarray of shape (n_candidates, d), float32 or float64
        Candidate embeddings. Not modified.
    n : int
        Number of picks, ``1 <= n <= n_candidates``.
    X_labeled : ndarray of shape (n_labeled, d) or None
        Already-labeled embeddings; each candidate's distance starts at its distance to
        the nearest of them. When None or empty every distance starts at +inf, so the
        first pick is index 0.
    candidate_set_size : int, default 2048
        Number of points tracked exactly between refreshes. Changes speed only, never
        the picks.

    Returns
    -------
    ndarray of shape (n,), int64
        Indices in pick order. Each pick is the candidate with the largest squared
        distance ``max((|x_c|² − 2 x_i·x_c) + |x_i|², 0)`` (float64) to the nearest
        labeled or already-picked point; ties go to the lowest index.

    Notes
    -----
    ``ub[i]`` is the distance of point i to the labeled set and to the first
    ``seen[i]`` picks, an upper bound of its current distance, which only shrinks as
    picks are added. A refresh takes the ``candidate_set_size`` largest bounds, brings
    them up to date (:func:`_catch_up`) and then picks from that set for as long as its
    best exact value beats every bound outside it (``tau``; on equality the lower index
    must be inside). Points whose bound falls below the running maximum are never
    touched again, which is where the time goes in the plain algorithm.
    """
    N, d = X.shape
    sq = sq_norms(X)
    ub = _labeled_min_dist(X, sq, X_labeled)
    seen = np.zeros(N, dtype=np.int64)
    C = np.empty((n, d), dtype=np.float64)  # picked points, in pick order
    sqC = np.empty(n, dtype=np.float64)
    picks = np.empty(n, dtype=np.int64)
    k = 0

    def take(c):
        nonlocal k
        picks[k], C[k], sqC[k] = c, X[c], sq[c]
        ub[c] = -np.inf
        k += 1

    if not np.isfinite(ub).any():
        # No labeled set: every distance is +inf, the first (lowest) index wins; one
        # full pass then makes every bound finite.
        take(0)
        _min_sq_dist(X, sq, C[:1], sqC[:1], ub)
        ub[0] = -np.inf
        seen[:] = 1

    base = min(N, max(int(candidate_set_size), 1))
    size = base
    while k < n:
        idx, tau, tau_idx = _top_set(ub, size)
        XS = np.asarray(X[idx], dtype=np.float64)
        sqS = sq[idx]
        vals = ub[idx]
        _catch_up(XS, sqS, vals, seen[idx], C, sqC, k)
        k0 = k
        while k < n:
            j = int(np.argmax(vals))  # idx is sorted: ties -> lowest index
            v = vals[j]
            if v == -np.inf or not (v > tau or (v == tau and idx[j] < tau_idx)):
                break
            take(int(idx[j]))
            vals[j] = -np.inf
            # einsum, not BLAS: a multithreaded GEMV this small costs more in thread
            # hand-off than in arithmetic, badly so on a busy machine.
            dj = sqC[k - 1] - 2.0 * np.einsum("ij,j->i", XS, C[k - 1])
            dj += sqS
            np.maximum(dj, 0.0, out=dj)
            np.minimum(vals, dj, out=vals)
        ub[idx] = vals
        seen[idx] = k
        # A refresh without a pick means the stale bounds at the top were far off:
        # widen the set (up to 16x, which bounds its float64 copy) so the next refresh
        # clears them faster; shrink back after a pick.
        size = base if k > k0 else min(N, 2 * size, 16 * base)
    return picks


def _partition_greedy(X, start: int, stop: int, n: int, X_labeled, candidate_set_size: int) -> np.ndarray:
    """Stage 1 of :func:`composable_coreset` on rows ``start:stop`` (a task: ``X`` may be
    a lazy row source, read here); returns global row numbers in pick order."""
    from strategies.base import _check_matrix

    Xp = _check_matrix(X[start:stop], "X", "coreset")
    return start + coreset_greedy(Xp, min(n, stop - start), X_labeled, candidate_set_size=candidate_set_size)


def composable_coreset(X, n, X_labeled=None, *, partition_rows=100_000, map_fn=None, candidate_set_size=2048):
    """Greedy k-center over partitions, then over the union of their picks (GREEDY-MR).

    Stage 1: each partition of ``partition_rows`` candidates runs :func:`coreset_greedy`
    for ``n`` picks (or all its rows), with the labeled points as pre-chosen centers;
    stage 2 runs it again on the union of those picks. Malkomes, Kusner, Chen, Weinberger
    & Moseley (2015), "Fast distributed k-center clustering with outliers on massive data"
    (NeurIPS), show this composable coreset is a 4-approximation of the k-center radius:
    every point is within 2 OPT of its partition's picks (Gonzalez's greedy bound, which
    holds with fixed labeled centers too: k+1 points farther than 2 OPT from the labeled
    set and from each other would need k+1 free optimal centers), and every union point
    within 2 OPT of the final picks. The exact greedy is a 2-approximation; this trades a
    factor 2 in the guarantee for memory and parallelism: one partition plus the union
    (partitions x n rows) is in memory at a time, and the partitions are independent.

    ``X``: array or lazy row source (``X[s:e]`` and ``X[rows]`` read rows; ``X.shape``).
    ``map_fn(f, *iterables)``: how stage 1 runs (default: the builtin ``map``, one after
    another; :class:`ads.distributed.DaskRunner` passes Dask's). With one partition this
    is :func:`coreset_greedy` exactly. Returns row numbers in pick order.
    """
    N = int(X.shape[0])
    parts = [(s, min(N, s + partition_rows)) for s in range(0, N, partition_rows)]
    if len(parts) <= 1:
        return _partition_greedy(X, 0, N, n, X_labeled, candidate_set_size)
    map_fn = map_fn or map
    k = len(parts)
    local = list(map_fn(_partition_greedy, [X] * k, [p[0] for p in parts], [p[1] for p in parts], [n] * k,
                        [X_labeled] * k, [candidate_set_size] * k))
    union = np.sort(np.concatenate([np.asarray(p, dtype=np.int64) for p in local]))  # ties -> lower row, as one pass
    final = coreset_greedy(np.asarray(X[union]), n, X_labeled, candidate_set_size=candidate_set_size)
    return union[final]


@register
class Coreset(Strategy):
    """Greedy k-center (Core-set) starting from the labeled set's distances.

    Parameters
    ----------
    candidate_set_size : int, default 2048
        Tuning knob of the lazy update; does not change the picks.
    distributed : bool, default False
        Candidates too many for one machine: :func:`composable_coreset` over partitions
        of ``partition_rows`` (a 4-approximation instead of the greedy's 2; other picks).
        ``ads select`` then hands it the candidates lazily (read partition by partition
        from the embeddings on disk) and, with ``--scheduler``, runs the partitions on
        the Dask workers.
    partition_rows : int, default 100000
    """

    name = "coreset"
    needs_labeled = True

    def __init__(self, candidate_set_size=2048, distributed=False, partition_rows=100_000):
        self.candidate_set_size = candidate_set_size
        self.distributed = distributed
        self.partition_rows = partition_rows
        self.map_fn = None  # set by the pipeline for a Dask runner

    @property
    def lazy_candidates(self) -> bool:
        return bool(self.distributed)

    def select(self, X, n, *, X_labeled=None, proba=None, random_state=None, weights=None) -> np.ndarray:
        if not self.distributed or isinstance(X, np.ndarray):
            return super().select(np.asarray(X), n, X_labeled=X_labeled, proba=None, random_state=random_state)
        # a lazy row source: every check of Strategy.select but the contents, which each
        # partition checks when it reads its rows
        from ads.errors import DataError, ParameterError
        from strategies.base import _check_matrix, _check_random_state

        owner = f"strategy {self.name!r}"
        n = check_int(n, "n", owner, min_value=1)
        if len(X.shape) != 2 or X.shape[0] == 0:
            raise DataError(f"X of {owner} must be 2-D and non-empty. Got shape {tuple(X.shape)}.")
        if n > X.shape[0]:
            raise ParameterError(f"The 'n' parameter of {owner} must be <= the number of candidates ({X.shape[0]}). Got {n}.")
        if X_labeled is not None:
            X_labeled = _check_matrix(X_labeled, "X_labeled", self.name, allow_empty=True)
            if X_labeled.shape[1] != X.shape[1]:
                raise DataError(f"X_labeled of {owner} has {X_labeled.shape[1]} columns; X has {X.shape[1]}.")
        _check_random_state(random_state, self.name)
        return np.asarray(self._select(X, n, X_labeled=X_labeled, proba=None, rng=None), dtype=np.int64)

    def _select(self, X, n, *, X_labeled, proba, rng):
        owner = f"strategy {self.name!r}"
        size = check_int(self.candidate_set_size, "candidate_set_size", owner, min_value=1)
        if self.distributed:
            rows = check_int(self.partition_rows, "partition_rows", owner, min_value=1)
            return composable_coreset(X, n, X_labeled, partition_rows=rows, map_fn=self.map_fn, candidate_set_size=size)
        return coreset_greedy(X, n, X_labeled, candidate_set_size=size)


def weighted_coreset_greedy(X, n, X_labeled=None, weights=None) -> np.ndarray:
    """Greedy k-center on weighted distances: repeatedly pick ``argmax_i w_i min_j Δ(x_i, x_j)``
    (ties -> lowest index), then update every candidate's distance to the new pick.

    With all weights 1 this is exactly :func:`coreset_greedy`. A weight is the chance that
    the candidate is worth labeling at all (e.g. in-distribution): farthest-first no
    longer runs to the outliers a filter let through, unless nothing closer is left.
    """
    X = np.asarray(X)
    sq = sq_norms(X)
    mind = _labeled_min_dist(X, sq, X_labeled)
    w = np.ones(X.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    picks = []
    for _ in range(n):
        crit = w * mind
        crit[np.isnan(crit)] = 0.0  # 0 * inf: a zero-weight point far from everything
        if picks:
            crit[picks] = -np.inf
        i = int(np.argmax(crit))
        picks.append(i)
        c = _rows64(X, i, i + 1)
        _min_sq_dist(X, sq, c, sq[i : i + 1], mind)
    return np.array(picks, dtype=np.int64)


@register
class WeightedCoreset(Strategy):
    """Greedy k-center whose farthest-first criterion is scaled by a per-candidate weight
    (the pipeline passes each candidate's in-distribution probability: the share of
    validation points scoring at most as high). Without weights: plain Coreset."""

    name = "coreset-weighted"
    needs_labeled = True
    needs_weights = True

    def _select(self, X, n, *, X_labeled, proba, rng, weights=None):
        return weighted_coreset_greedy(X, n, X_labeled, weights)
