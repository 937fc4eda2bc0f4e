"""K-medians against a plain-python implementation with the same seeding draws.

On integer data (digits, small grids) L1 distances and medians (halves at worst) are
exact in float64, so both implementations see identical numbers, ties included.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from reference import naive_kmedians_select
from strategies import kmedians as km


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_on_digits(seed):
    X = load_digits().data[seed * 150 : seed * 150 + 150]
    want = naive_kmedians_select(X, 8, seed)
    got = km.kmedians_select(X, 8, np.random.default_rng(seed))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_matches_naive_on_small_grids_with_duplicates(seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(30, 2)).astype(np.float64)  # 9 distinct points at most
    n = int(rng.integers(1, 30))
    np.testing.assert_array_equal(
        km.kmedians_select(X, n, np.random.default_rng(seed)), naive_kmedians_select(X, n, seed)
    )


def test_matches_naive_with_max_iter_1_and_small_blocks(monkeypatch):
    X = load_digits().data[:120]
    want = naive_kmedians_select(X, 6, 5, max_iter=1)
    monkeypatch.setattr(km, "_BLOCK_BYTES", 256)
    np.testing.assert_array_equal(km.kmedians_select(X.astype(np.float32), 6, np.random.default_rng(5), max_iter=1), want)


def test_all_identical_points_fall_back_to_uniform_seeds():
    X = np.ones((10, 3))
    picks = km.kmedians_select(X, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(picks), np.arange(10))
    np.testing.assert_array_equal(picks, naive_kmedians_select(X, 10, 0))


def test_medians_are_coordinatewise_medians_of_final_clusters():
    X = load_digits().data[:200]
    C, labels, seeds = km.kmedians(X, 5, np.random.default_rng(0), max_iter=50)
    assert np.unique(seeds).size == 5
    for m in range(5):
        np.testing.assert_array_equal(C[m], np.median(X[labels == m], axis=0))
    # converged: reassigning changes nothing
    np.testing.assert_array_equal(km._assign(X, C), labels)


def test_two_separated_blobs_get_one_pick_each():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) + 100])
    picks = km.kmedians_select(X, 2, np.random.default_rng(0))
    assert sorted(p // 50 for p in picks) == [0, 1]


def _blobs(seed, n_blobs=30, per=12, d=4):
    """Integer points in well-separated blobs: exact in float32, and the triangle
    inequality prunes most clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 50, size=(n_blobs, d)) * 100
    X = np.repeat(centres, per, axis=0) + rng.integers(-3, 4, size=(n_blobs * per, d))
    return X[rng.permutation(len(X))].astype(np.float64)


@pytest.mark.parametrize("seed", range(3))
def test_pruned_nearest_search_equals_full_scan_on_clustered_points(seed):
    X = _blobs(seed).astype(np.float32)
    C, labels, _ = km.kmedians(X, 30, np.random.default_rng(seed))
    pruned = km._nearest_by_cluster(X, C, labels)
    assert pruned is not None  # the pruning is in use here
    full = km._nearest_distinct(X, C)  # no labels: blocked scan of every point
    np.testing.assert_array_equal(km._nearest_distinct(X, C, labels), full)
    D = np.abs(X[:, None, :] - C[None, :, :]).sum(-1)
    np.testing.assert_array_equal(pruned, np.argmin(D, axis=0))


@pytest.mark.parametrize("seed", range(3))
def test_matches_naive_on_clustered_points(seed):
    X = _blobs(seed, n_blobs=12, per=10)
    n = 15  # more medians than blobs: near-ties and empty clusters
    np.testing.assert_array_equal(
        km.kmedians_select(X, n, np.random.default_rng(seed)), naive_kmedians_select(X, n, seed)
    )


def test_pruned_nearest_search_steps_aside_when_it_would_not_save_work():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 64)).astype(np.float32)  # no cluster structure in 64-d
    C, labels, _ = km.kmedians(X, 20, np.random.default_rng(0), max_iter=2)
    assert km._nearest_by_cluster(X, C, labels) is None


@pytest.mark.parametrize("seed", range(4))
def test_pruned_nearest_search_finds_points_filed_under_another_median(seed, monkeypatch):
    # The bound holds for any labelling: with some points filed under a far median,
    # a median's nearest point often sits in another cluster.
    rng = np.random.default_rng(seed)
    X = _blobs(seed).astype(np.float32)
    C = X[rng.choice(len(X), 30, replace=False)] + 1
    labels = np.argmin(np.abs(X[:, None, :] - C[None, :, :]).sum(-1), axis=1)
    moved = rng.random(len(X)) < 0.05
    labels[moved] = rng.integers(0, 30, size=int(moved.sum()))
    monkeypatch.setattr(km, "_PRUNE_MAX_WORK", 1.0)  # prune even when it saves little
    pruned = km._nearest_by_cluster(X, C, labels)
    assert pruned is not None
    D = np.abs(X[:, None, :] - C[None, :, :]).sum(-1)
    np.testing.assert_array_equal(pruned, np.argmin(D, axis=0))


@pytest.mark.parametrize("seed", range(3))
def test_matches_naive_over_many_rounds(seed):
    # Long runs: the Hamerly bounds are carried over many median moves.
    X = load_digits().data[seed * 400 : seed * 400 + 400]
    want = naive_kmedians_select(X, 25, seed, max_iter=60)
    np.testing.assert_array_equal(km.kmedians_select(X, 25, np.random.default_rng(seed), max_iter=60), want)
