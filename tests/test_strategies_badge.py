"""BADGE against an oracle that builds the gradient embeddings g = (p − e_ŷ) ⊗ h."""

from __future__ import annotations

import numpy as np
import pytest

import strategies
from reference import gradient_embeddings, naive_badge
from strategies import badge


def random_problem(seed, n=300, d=12, c=5):
    rng = np.random.default_rng(seed)
    H = rng.normal(size=(n, d))
    logits = rng.normal(scale=2.0, size=(n, c))
    P = np.exp(logits - logits.max(1, keepdims=True))
    return H, P / P.sum(1, keepdims=True)


def test_factorised_distances_match_materialised():
    H, P = random_problem(0)
    G = gradient_embeddings(H, P)
    U, uu, hh = badge._gradient_factors(H, P)
    gg = uu * hh
    np.testing.assert_allclose(gg, (G**2).sum(1), rtol=1e-12)
    for c in (0, 17, 299):
        want = ((G - G[c]) ** 2).sum(1)
        got = badge.gradient_sq_dists(H, U, gg, c)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * want.max())
        assert got[c] == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_matches_materialised_oracle(seed):
    H, P = random_problem(seed)
    got = strategies.get("badge").select(H, 40, proba=P, random_state=seed)
    np.testing.assert_array_equal(got, naive_badge(H, P, 40, seed))


def test_matches_oracle_float32_embeddings():
    H, P = random_problem(7, n=200, d=30, c=10)
    H32 = H.astype(np.float32)
    got = strategies.get("badge").select(H32, 25, proba=P, random_state=1)
    np.testing.assert_array_equal(got, naive_badge(H32, P, 25, 1))


def test_first_pick_is_largest_gradient_norm_lowest_index_on_ties():
    H, P = random_problem(3, n=50)
    G = gradient_embeddings(H, P)
    first = int(np.argmax((G**2).sum(1)))
    assert strategies.get("badge").select(H, 1, proba=P, random_state=0)[0] == first
    H2, P2 = np.vstack([H, H[first]]), np.vstack([P, P[first]])  # tie at the end
    H2, P2 = np.vstack([H2[-1:], H2]), np.vstack([P2[-1:], P2])  # and one at the start
    assert strategies.get("badge").select(H2, 1, proba=P2, random_state=0)[0] == 0


def test_confident_predictions_fall_back_to_uniform():
    # One-hot proba: every gradient embedding is 0, all D² weights vanish.
    H, _ = random_problem(4, n=20)
    P = np.eye(5)[np.arange(20) % 5]
    got = strategies.get("badge").select(H, 20, proba=P, random_state=2)
    np.testing.assert_array_equal(np.sort(got), np.arange(20))
    np.testing.assert_array_equal(got, naive_badge(H, P, 20, 2))


def test_duplicates_of_picks_are_not_drawn_while_others_remain():
    H, P = random_problem(5, n=30)
    H, P = np.vstack([H, H]), np.vstack([P, P])  # every point twice
    got = strategies.get("badge").select(H, 30, proba=P, random_state=0)
    assert np.unique(got % 30).size == 30
