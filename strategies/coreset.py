"""Greedy k-center (Core-set, Sener & Savarese 2018)."""

from __future__ import annotations

import numpy as np

from strategies.base import Strategy, register


def coreset_greedy(X, n, X_labeled=None) -> np.ndarray:
    """Greedy k-center: repeatedly take the candidate farthest from every chosen/labeled
    point (ties -> lowest index). Distances are Euclidean, computed in float64.

    Returns int64 indices in pick order.
    """
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    if X_labeled is not None and len(X_labeled):
        L = np.asarray(X_labeled, dtype=np.float64)
        mind = np.full(X.shape[0], np.inf)
        for s in range(0, L.shape[0], 4096):
            B = L[s : s + 4096]
            d = sq[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * X @ B.T
            np.minimum(mind, d.min(axis=1), out=mind)
        np.maximum(mind, 0.0, out=mind)
    else:
        mind = np.full(X.shape[0], np.inf)
    picks = np.empty(n, dtype=np.int64)
    for t in range(n):
        i = int(np.argmax(mind))  # first maximum: ties -> lowest index
        picks[t] = i
        d = sq + sq[i] - 2.0 * (X @ X[i])
        np.maximum(d, 0.0, out=d)
        np.minimum(mind, d, out=mind)
        mind[i] = -1.0  # never picked again
    return picks


@register
class Coreset(Strategy):
    """Greedy k-center starting from the labeled set's distances."""

    name = "coreset"
    needs_labeled = True

    def _select(self, X, n, *, X_labeled, proba, rng):
        return coreset_greedy(X, n, X_labeled)
