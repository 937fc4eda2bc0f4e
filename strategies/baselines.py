"""Baselines: uniform random, maximum entropy and smallest margin.

Scoring is separate from selection (``entropy_scores``, ``margin_scores``); selection
takes the top ``n`` by score with ties broken towards the lowest index, so the picks do
not depend on the sort algorithm.
"""

from __future__ import annotations

import numpy as np

from strategies.base import Strategy, register


def entropy_scores(proba) -> np.ndarray:
    """Predictive entropy ``−Σ_c p_c log p_c`` per row (float64, ``0 log 0 = 0``)."""
    P = np.asarray(proba, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = P * np.log(P)
    t[P == 0] = 0.0
    return -t.sum(axis=1)


def margin_scores(proba) -> np.ndarray:
    """``p_(1) − p_(2)``, the gap between the two most likely classes (float64).

    With a single class the runner-up probability is taken as 0.
    """
    P = np.asarray(proba, dtype=np.float64)
    if P.shape[1] == 1:
        return P[:, 0].copy()
    top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def top_n(scores, n, *, largest=True) -> np.ndarray:
    """Indices of the ``n`` largest (or smallest) scores, best first, ties -> lowest index."""
    s = np.asarray(scores, dtype=np.float64)
    key = -s if largest else s
    return np.argsort(key, kind="stable")[:n].astype(np.int64)


def random_select(n_candidates, n, rng) -> np.ndarray:
    """``n`` distinct indices drawn uniformly without replacement."""
    return rng.choice(n_candidates, size=n, replace=False).astype(np.int64)


@register
class Random(Strategy):
    """Uniform random sample without replacement."""

    name = "random"

    def _select(self, X, n, *, X_labeled, proba, rng):
        return random_select(X.shape[0], n, rng)


@register
class Entropy(Strategy):
    """The ``n`` candidates with the largest predictive entropy."""

    name = "entropy"
    needs_proba = True

    def _select(self, X, n, *, X_labeled, proba, rng):
        return top_n(entropy_scores(proba), n, largest=True)


@register
class Margin(Strategy):
    """The ``n`` candidates with the smallest top-1 − top-2 probability margin."""

    name = "margin"
    needs_proba = True

    def _select(self, X, n, *, X_labeled, proba, rng):
        return top_n(margin_scores(proba), n, largest=False)
