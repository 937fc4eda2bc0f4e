"""Quick timing of the coreset and BADGE strategies (a script, not a test).

Synthetic clustered candidates (float32, like pool embeddings), a labeled set drawn from
the same clusters, softmax probabilities for BADGE. Prints wall seconds and peak extra
memory (tracemalloc: numpy allocations made during the call, inputs excluded).

    python benchmarks/strategies_speed.py                       # 200k x 128, n=1000, 5k labeled
    python benchmarks/strategies_speed.py --n-candidates 50000  # quicker
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import strategies  # noqa: E402


def make_data(n_candidates, d, n_labeled, n_classes, n_clusters, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(n_clusters, d))
    lab = rng.integers(n_clusters, size=n_candidates + n_labeled)
    Z = (centers[lab] + rng.normal(size=(lab.size, d))).astype(np.float32)
    W = rng.normal(scale=0.3, size=(d, n_classes))
    logits = Z[:n_candidates].astype(np.float64) @ W
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    return Z[:n_candidates], Z[n_candidates:], proba


def timed(label, fn):
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    picks = fn()
    sec = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    print(f"{label:<40s} {sec:8.2f} s   peak extra {peak / 2**20:8.1f} MiB   picks {len(picks)}")
    return picks


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-candidates", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--n-labeled", type=int, default=5000)
    p.add_argument("--n-classes", type=int, default=10)
    p.add_argument("--n-clusters", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--naive", action="store_true", help="also time the plain full-update coreset loop")
    a = p.parse_args(argv)

    X, XL, proba = make_data(a.n_candidates, a.dim, a.n_labeled, a.n_classes, a.n_clusters, a.seed)
    print(f"candidates {X.shape} float32, labeled {XL.shape}, n={a.n}, classes {a.n_classes}")
    fast = timed("coreset (lazy exact)", lambda: strategies.get("coreset").select(X, a.n, X_labeled=XL))
    if a.naive:
        from strategies.coreset import _labeled_min_dist, sq_norms

        def naive():
            X64 = X.astype(np.float64)
            sq = sq_norms(X64)
            mind = _labeled_min_dist(X64, sq, XL)
            picks = []
            for _ in range(a.n):
                i = int(np.argmax(mind))
                picks.append(i)
                dd = np.maximum((sq[i] - 2.0 * (X64 @ X64[i])) + sq, 0.0)
                np.minimum(mind, dd, out=mind)
                mind[i] = -np.inf
            return np.array(picks)

        slow = timed("coreset (plain full update per pick)", naive)
        print("same picks:", bool(np.array_equal(fast, slow)))
    timed("badge", lambda: strategies.get("badge").select(X, a.n, proba=proba, random_state=0))


if __name__ == "__main__":
    main()
