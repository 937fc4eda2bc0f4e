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
