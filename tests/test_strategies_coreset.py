"""Coreset (greedy k-center) against the plain loop that updates every point per pick.

Integer-valued data make every float64 distance exact whatever the summation order, so
ties are real ties and the picks must agree bit for bit, tie-breaking included.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

import strategies
from reference import naive_coreset
from strategies import coreset as cs

SIZES = [1, 2, 5, 64, 2048]


def check_all_sizes(X, n, X_labeled=None):
    want = naive_coreset(X, n, X_labeled)
    for size in SIZES:
        got = cs.coreset_greedy(X, n, X_labeled, candidate_set_size=size)
        np.testing.assert_array_equal(got, want, err_msg=f"candidate_set_size={size}")
    return want


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    n_cand=st.integers(1, 40),
    d=st.integers(1, 4),
    n_lab=st.integers(0, 5),
    hi=st.integers(0, 3),
)
def test_matches_naive_on_small_integer_grids(data, n_cand, d, n_lab, hi):
    # Values in {0..hi}: heavy duplication and exact distance ties.
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    X = rng.integers(0, hi + 1, size=(n_cand, d)).astype(np.float64)
    L = rng.integers(0, hi + 1, size=(n_lab, d)) if n_lab else None
    n = data.draw(st.integers(1, n_cand))
    check_all_sizes(X, n, L)


@pytest.mark.parametrize("with_labeled", [False, True])
def test_matches_naive_on_digits(with_labeled):
    X = load_digits().data[:600]
    L = load_digits().data[1700:1760] if with_labeled else None
    check_all_sizes(X, 80, L)


def test_matches_naive_all_picked_with_duplicates():
    X = load_digits().data[:60]
    X = np.vstack([X, X[::3], X[:5]])  # exact duplicates
    check_all_sizes(X, X.shape[0], X[10:12])


def test_matches_naive_on_continuous_data():
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=5, size=(20, 8))
    X = centers[rng.integers(20, size=3000)] + rng.normal(size=(3000, 8))
    L = centers[:5] + rng.normal(size=(5, 8))
    check_all_sizes(X, 150, L)


def test_all_ties_no_labeled_picks_in_index_order_after_first():
    X = np.zeros((6, 3))  # every distance 0: first 0 (+inf tie), then lowest index each time
    np.testing.assert_array_equal(cs.coreset_greedy(X, 6), np.arange(6))


def test_candidate_equal_to_labeled_point_is_picked_last():
    rng = np.random.default_rng(2)
    X = rng.integers(0, 50, size=(40, 5)).astype(np.float64)
    L = rng.integers(0, 50, size=(3, 5)).astype(np.float64)
    X[17] = L[1]  # distance 0 from the start; every other candidate is away from L
    assert (naive_coreset(X, 40, L)[:-1] != 17).all()
    picks = strategies.get("coreset").select(X, 40, X_labeled=L)
    assert picks[-1] == 17


def test_small_blocks(monkeypatch):
    # Tiny scratch budget: many row and labeled blocks, same picks.
    X = load_digits().data[:300]
    L = load_digits().data[1500:1530]
    want = naive_coreset(X, 40, L)
    monkeypatch.setattr(cs, "_BLOCK_BYTES", 4096)
    np.testing.assert_array_equal(cs.coreset_greedy(X.astype(np.float32), 40, L, candidate_set_size=16), want)


def test_sq_norms_blocked(monkeypatch):
    X = np.random.default_rng(3).normal(size=(101, 7)).astype(np.float32)
    monkeypatch.setattr(cs, "_BLOCK_BYTES", 200)
    np.testing.assert_array_equal(cs.sq_norms(X), np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64)))


def test_labeled_distance_is_exact_min():
    rng = np.random.default_rng(4)
    X = rng.integers(-5, 5, size=(50, 3)).astype(np.float64)
    L = rng.integers(-5, 5, size=(9, 3)).astype(np.float64)
    want = ((X[:, None, :] - L[None]) ** 2).sum(-1).min(1)
    np.testing.assert_array_equal(cs._labeled_min_dist(X, cs.sq_norms(X), L), want)


def naive_weighted_coreset(X, n, X_labeled, w):
    """Textbook: argmax of w_i * min distance, full update after each pick."""
    X = np.asarray(X, dtype=np.float64)
    mind = np.array([min(((l - x) ** 2).sum() for l in X_labeled) for x in X]) if X_labeled is not None else np.full(len(X), np.inf)
    picks = []
    for _ in range(n):
        crit = np.where(np.isinf(mind) & (w == 0), 0.0, w * mind)
        crit[picks] = -np.inf
        i = int(np.argmax(crit))
        picks.append(i)
        mind = np.minimum(mind, ((X - X[i]) ** 2).sum(1))
    return np.array(picks)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_coreset_matches_naive_and_unit_weights_equal_coreset(seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 5, (80, 3)).astype(float)  # ties and duplicates
    L = rng.integers(0, 5, (6, 3)).astype(float)
    w = rng.choice([0.0, 0.25, 0.5, 1.0], size=80)
    got = strategies.get("coreset-weighted").select(X, 20, X_labeled=L, weights=w)
    np.testing.assert_array_equal(got, naive_weighted_coreset(X, 20, L, w))
    np.testing.assert_array_equal(strategies.get("coreset-weighted").select(X, 20, X_labeled=L),
                                  strategies.get("coreset").select(X, 20, X_labeled=L))
    with pytest.raises(Exception, match=r"weights of strategy 'coreset-weighted' must have shape \(80,\)"):
        strategies.get("coreset-weighted").select(X, 2, X_labeled=L, weights=w[:5])
