"""Independent, deliberately simple reference implementations (oracles).

Shared by the tests and the benchmarks: nothing here is fast, everything here is easy to
check by reading. Distances are computed row by row in float64, which is exact for the
small-integer data the tests use.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def knn_utility(subset, order_key, y_train, yv, k):
    """Jia et al. 2019 KNN utility of a subset for one validation point: the number of
    the subset's min(K, |S|) nearest members (nearest *within the subset*) that share the
    label, divided by K."""
    if not subset:
        return 0.0
    members = sorted(subset, key=order_key)[:k]
    return sum(1.0 for j in members if y_train[j] == yv) / k


def brute_force_shapley(x_train, y_train, x_val, y_val, k):
    """Shapley values by enumerating every subset (n <= 10), averaged over val points.

    Ties in distance are broken by training index (the order ``knn_shapley`` uses).
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    n = len(x_train)
    total = np.zeros(n)
    for xv, yv in zip(np.asarray(x_val, dtype=np.float64), y_val):
        dist = ((x_train - xv) ** 2).sum(axis=1)

        def key(j, dist=dist):
            return (dist[j], j)

        for i in range(n):
            others = [j for j in range(n) if j != i]
            phi = 0.0
            for size in range(n):
                w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                for s in itertools.combinations(others, size):
                    phi += w * (knn_utility(list(s) + [i], key, y_train, yv, k) - knn_utility(list(s), key, y_train, yv, k))
            total[i] += phi
    return total / len(x_val)


def recursion_shapley(x_train, y_train, x_val, y_val, k):
    """Theorem 1 of Jia et al. 2019, one validation point at a time, in plain Python.

    Sort by (distance, index); s_N = a_N / max(N, K);
    s_i = s_{i+1} + (a_i - a_{i+1}) / K * min(K, i) / i. Mean over validation points.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    n = len(x_train)
    total = np.zeros(n)
    for xv, yv in zip(np.asarray(x_val, dtype=np.float64), y_val):
        dist = [float(((x_train[j] - xv) ** 2).sum()) for j in range(n)]
        order = sorted(range(n), key=lambda j: (dist[j], j))
        a = [1.0 if y_train[j] == yv else 0.0 for j in order]
        s = [0.0] * n
        s[n - 1] = a[n - 1] / max(n, k)
        for i in range(n - 1, 0, -1):  # 1-based rank i, 0-based position i-1
            s[i - 1] = s[i] + (a[i - 1] - a[i]) / k * min(k, i) / i
        for pos, j in enumerate(order):
            total[j] += s[pos]
    return total / len(x_val)


# ---------------------------------------------------------------- diversity strategies


def naive_coreset(X, n, X_labeled=None):
    """Greedy k-center, textbook: full update after each pick, ties -> lowest index."""
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    mind = np.full(X.shape[0], np.inf)
    if X_labeled is not None:
        L = np.asarray(X_labeled, dtype=np.float64)
        for l in L:
            d = np.maximum((l @ l - 2.0 * (X @ l)) + sq, 0.0)
            mind = np.minimum(mind, d)
    picks = []
    for _ in range(n):
        i = int(np.argmax(mind))
        picks.append(i)
        d = np.maximum((sq[i] - 2.0 * (X @ X[i])) + sq, 0.0)
        mind = np.minimum(mind, d)
        mind[i] = -1.0
    return np.array(picks, dtype=np.int64)


def gradient_embeddings(H, proba):
    """Materialised g_i, shape (n, C * d) (Ash et al. 2020, Sec. 3)."""
    U = np.array(proba, dtype=np.float64)
    U[np.arange(len(U)), U.argmax(1)] -= 1.0
    return (U[:, :, None] * np.asarray(H, dtype=np.float64)[:, None, :]).reshape(len(U), -1)


def naive_badge(H, proba, n, seed):
    """k-means++ on materialised g; D² draws replay strategies.base.weighted_draw."""
    G = gradient_embeddings(H, proba)
    rng = np.random.default_rng(seed)
    picks = [int(np.argmax((G**2).sum(1)))]
    mind = np.full(len(G), np.inf)
    while len(picks) < n:
        mind = np.minimum(mind, ((G - G[picks[-1]]) ** 2).sum(1))
        mind[picks] = 0.0
        cum = np.cumsum(mind)
        if cum[-1] > 0:
            i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        else:
            free = np.setdiff1d(np.arange(len(G)), picks)
            i = int(free[rng.integers(free.size)])
        picks.append(i)
    return np.array(picks)


def naive_kmedians_select(X, n, seed, max_iter=20):
    """Textbook k-medians; draws replay strategies.base.weighted_draw by hand."""
    X = np.asarray(X, dtype=np.float64)
    N = X.shape[0]
    rng = np.random.default_rng(seed)
    l1 = lambda c: np.abs(X - c).sum(axis=1)  # noqa: E731

    seeds = [int(rng.integers(N))]
    mind = l1(X[seeds[0]])
    for _ in range(1, n):
        cum = np.cumsum(mind)
        if cum[-1] > 0:
            i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        else:
            free = [j for j in range(N) if j not in seeds]
            i = free[int(rng.integers(len(free)))]
        seeds.append(i)
        mind = np.minimum(mind, l1(X[i]))

    C = X[seeds].copy()
    labels = None
    for _ in range(max_iter):
        new = np.array([int(np.argmin([np.abs(x - c).sum() for c in C])) for x in X])
        if labels is not None and (new == labels).all():
            break
        labels = new
        for m in range(n):
            if (labels == m).any():
                C[m] = np.median(X[labels == m], axis=0)

    picks = []
    for m in range(n):
        d = l1(C[m])
        d[picks] = np.inf
        picks.append(int(np.argmin(d)))
    return np.array(picks)


# ---------------------------------------------------------------- generic semivalues (valuers)


def enumerate_semivalue(n, utility, alpha=1.0, beta=1.0, max_size=None):
    """Semivalues of ``utility`` (a function of a tuple of indices) by enumerating every
    subset (n <= 10): phi(i) = sum_{S not containing i} omega(|S|) (U(S + i) - U(S)) with
    Beta Shapley's omega(s) = B(s + beta, n-1-s + alpha) / B(alpha, beta) (Kwon & Zou 2022);
    alpha = beta = 1 is the Shapley value, omega(s) = s! (n-1-s)! / n!. With ``max_size``
    only subsets of fewer than ``max_size`` points count (omega = 0 from there on)."""

    def log_beta(a, b):
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    cache = {}

    def u(s):
        key = tuple(sorted(s))
        if key not in cache:
            cache[key] = utility(key)
        return cache[key]

    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n if max_size is None else min(n, max_size)):
            if alpha == 1.0 and beta == 1.0:
                w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            else:
                w = math.exp(log_beta(size + beta, n - 1 - size + alpha) - log_beta(alpha, beta))
            for s in itertools.combinations(others, size):
                phi[i] += w * (u(s + (i,)) - u(s))
    return phi


def knn_utility_mean(x_train, y_train, x_val, y_val, k):
    """U(S) = mean over validation points of :func:`knn_utility`, as a function of S."""
    x_train = np.asarray(x_train, dtype=np.float64)
    keys = []
    for xv in np.asarray(x_val, dtype=np.float64):
        dist = [float(((x_train[j] - xv) ** 2).sum()) for j in range(len(x_train))]
        keys.append(lambda j, dist=dist: (dist[j], j))

    def utility(subset):
        return sum(knn_utility(list(subset), key, y_train, yv, k) for key, yv in zip(keys, y_val)) / len(y_val)

    return utility


def brute_force_loo(n, utility):
    """U(D) - U(D minus i) for every i, by calling ``utility`` n + 1 times."""
    full = utility(tuple(range(n)))
    return np.array([full - utility(tuple(j for j in range(n) if j != i)) for i in range(n)])
