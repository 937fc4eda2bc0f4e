"""The pool's chunk functions and the in-process runner.

Two chunk functions do all the work that touches the pool: :func:`embed_block` (a trained
embedder on one block of items) and :func:`summarize_block` (score one block, apply the
exclusions and the near-rejected rule, keep what pre-selection may still choose). The
in-process runner (:class:`InProcess`, the default) calls them block after block; the Dask
runner (:class:`ads.distributed.DaskRunner`) calls the very same functions as tasks, over
the same blocks (:func:`ads.stream.pool_blocks`), so both give identical picks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ads._validation import SCORE_BLOCK_ROWS
from ads.stream import CandidatePlan, PoolEmbeddings, Summary, pool_blocks


@dataclass
class NearRefs:
    """Embeddings of the accepted labeled points and of the rejected items: a pool point
    nearer to a rejected item than to every accepted point is dropped (ties -> kept)."""

    accepted: np.ndarray
    rejected: np.ndarray


def _nearest_sq(ref: np.ndarray, X: np.ndarray) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatL2(ref.shape[1])
    index.add(np.ascontiguousarray(ref, dtype=np.float32))
    return index.search(np.ascontiguousarray(X, dtype=np.float32), 1)[0][:, 0]


def embed_block(model, x: np.ndarray):
    """Embeddings (float32 (n, d)) and probabilities (float32 (n, C)) of one block."""
    emb, proba = model.transform(np.asarray(x))
    return np.asarray(emb, dtype=np.float32), np.asarray(proba, dtype=np.float32)


def score_rows(scorer, emb, proba) -> np.ndarray:
    """The scorer on one block, ``SCORE_BLOCK_ROWS`` rows at a time (float64)."""
    n = emb.shape[0]
    parts = [np.asarray(scorer.score(emb[s : s + SCORE_BLOCK_ROWS], proba[s : s + SCORE_BLOCK_ROWS]), dtype=np.float64)
             for s in range(0, n, SCORE_BLOCK_ROWS)]
    return np.concatenate(parts) if parts else np.empty(0)


def summarize_block(scorer, plan: CandidatePlan, start: int, emb, proba, excluded: np.ndarray,
                    near: NearRefs | None = None) -> Summary:
    """Score rows ``start..start+len(emb)`` and keep what pre-selection may choose.

    ``excluded``: sorted pool rows never to be chosen (labeled already).
    """
    emb = np.asarray(emb)
    proba = np.asarray(proba)
    n = emb.shape[0]
    scores = score_rows(scorer, emb, proba)
    avail = np.ones(n, dtype=bool)
    lo, hi = np.searchsorted(excluded, [start, start + n])
    avail[excluded[lo:hi] - start] = False
    near_mask = None
    if near is not None and near.rejected.shape[0]:
        near_mask = (_nearest_sq(near.rejected, emb) < _nearest_sq(near.accepted, emb)) & avail
        avail &= ~near_mask
    return plan.summarize(start, scores, proba.argmax(axis=1), avail, near_mask)


def _bar(total, desc, unit, progress):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not progress, leave=False)


class InProcess:
    """Runs the chunk functions in this process, block after block (no Dask)."""

    name = "in-process"

    def embed(self, model, pool, out: PoolEmbeddings, *, progress: bool = True, desc: str = "embed pool") -> None:
        from ads.pool import _reading

        with _bar(pool.n, desc, "pt", progress) as bar:
            x = pool.x
            for s, e in out.blocks:
                with _reading(pool.where, "x", f" rows {s}..{e - 1}"):
                    block = np.asarray(x[s:e])
                emb, proba = embed_block(model, block)
                out.write(s, emb, proba)
                bar.update(e - s)

    def summarize(self, scorer, source, plan: CandidatePlan, excluded, near=None, *, progress: bool = True) -> Summary:
        total = plan.new()
        n = sum(e - s for s, e in source.blocks)
        with _bar(n, "score pool", "pt", progress) as bar:
            for s, emb, proba in source.iter_blocks():
                total.merge(summarize_block(scorer, plan, s, emb, proba, excluded, near))
                bar.update(emb.shape[0])
        return total

    def close(self) -> None:
        pass


__all__ = ["NearRefs", "embed_block", "score_rows", "summarize_block", "InProcess", "pool_blocks"]
