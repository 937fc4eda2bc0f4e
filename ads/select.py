"""The one-round pipeline: embed → score (value + carry over) → pre-select → strategy.

The parts are objects built at the edge (the CLI, the service, a Python caller) and passed
in: a :class:`ads.score.Scorer`, a strategy (any object with
``select(X, n, *, X_labeled, proba, random_state)``, e.g. ``strategies.get("coreset")``)
and an :class:`ads.embed.EmbedConfig`. This module never looks a part up by name.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ads._validation import SCORE_BLOCK_ROWS, check_budget, check_fraction, check_seed
from ads.embed import EmbedConfig, EmbeddingCache, Embeddings, embed_stores
from ads.errors import ParameterError
from ads.task import LabeledData, load_task

logger = logging.getLogger(__name__)

__all__ = ["Selection", "preselect", "score_pool", "rank_and_pick", "select"]


@dataclass
class Selection:
    """Result of :func:`select`: picks in pick order, with their ADS scores."""

    ids: np.ndarray
    indices: np.ndarray
    scores: np.ndarray
    n_pool: int
    n_candidates: int
    strategy: str
    fraction: float
    val_source: str
    scorer: str
    val_accuracy: float
    seconds: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "picked": [{"id": str(i), "score": float(s)} for i, s in zip(self.ids, self.scores)],
            "n_pool": self.n_pool,
            "n_candidates": self.n_candidates,
            "strategy": self.strategy,
            "scorer": self.scorer,
            "fraction": self.fraction,
            "validation": self.val_source,
            "validation_accuracy": self.val_accuracy,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


def preselect(scores: np.ndarray, budget: int, fraction: float, exclude=None) -> np.ndarray:
    """Indices of the top ``max(budget, ceil(fraction * N))`` scores (ties -> lower index),
    returned in ascending index order. ``exclude`` (bool mask) rows are never kept and do
    not count in N."""
    avail = np.arange(scores.shape[0]) if exclude is None else np.flatnonzero(~np.asarray(exclude))
    n = avail.shape[0]
    keep = min(n, max(budget, math.ceil(fraction * n)))
    if keep == n:
        return avail
    return np.sort(avail[np.argsort(-scores[avail], kind="stable")[:keep]])


def score_pool(scorer, em: Embeddings, data: LabeledData, n_classes: int, *, seed: int = 0, seconds=None) -> np.ndarray:
    """Fit ``scorer`` on the labeled embeddings and score the pool block by block."""
    seconds = {} if seconds is None else seconds
    t = time.perf_counter()
    scorer.fit(em.emb, data.y, em.emb_val, data.y_val, n_classes=n_classes, random_state=seed)
    fit_seconds = dict(getattr(scorer, "seconds_", {}))
    seconds.update(fit_seconds)
    t_score = time.perf_counter()
    if "value" not in fit_seconds:
        seconds["value"] = t_score - t
    n = em.emb_pool.shape[0]
    scores = np.concatenate([
        np.asarray(scorer.score(em.emb_pool[s : s + SCORE_BLOCK_ROWS], em.proba_pool[s : s + SCORE_BLOCK_ROWS]),
                   dtype=np.float64)
        for s in range(0, n, SCORE_BLOCK_ROWS)
    ])
    # The regressors' fit counts as scoring, as before the parts became objects.
    seconds["score"] = time.perf_counter() - t - seconds["value"]
    return scores


def rank_and_pick(em: Embeddings, data: LabeledData, n_classes: int, *, budget: int, fraction: float, scorer, strategy,
                  seed: int = 0, labeled_emb=None, exclude=None, seconds=None):
    """Score the pool, pre-select the top fraction (without ``exclude`` rows) and let the
    strategy pick ``budget`` of them. Returns (pool indices in pick order, all scores,
    number of candidates)."""
    seconds = {} if seconds is None else seconds
    scores = score_pool(scorer, em, data, n_classes, seed=seed, seconds=seconds)
    t = time.perf_counter()
    cand = preselect(scores, budget, fraction, exclude)
    logger.info("pre-selection: %d of %d pool points kept (fraction %g)", cand.size, scores.shape[0], fraction)
    if cand.size < budget:
        raise ParameterError(f"The 'budget' parameter ({budget}) is larger than the unlabeled pool left ({cand.size} points).")
    picks = strategy.select(em.emb_pool[cand], budget, X_labeled=em.emb if labeled_emb is None else labeled_emb,
                            proba=em.proba_pool[cand], random_state=seed)
    seconds["strategy"] = time.perf_counter() - t
    return cand[picks], scores, int(cand.size)


def select(pool, labeled, val=None, *, budget: int, scorer, strategy, fraction: float = 0.1, seed: int = 0,
           embed: EmbedConfig | None = None, cache: EmbeddingCache | None = None, progress: bool = True,
           owner: str = "ads select") -> Selection:
    """Pick ``budget`` pool points: embed, score with ``scorer``, keep the top ``fraction``
    and let ``strategy`` pick.

    Parameters
    ----------
    pool, labeled, val : path or :class:`ads.pool.Pool`
        Stores; without ``val`` a stratified hold-out of the labeled set validates.
    scorer : :class:`ads.score.Scorer`
        e.g. ``make_scorer("knn-shapley", k=10)``.
    strategy : strategy object
        e.g. ``strategies.get("coreset")``.
    fraction : float in (0, 1]
        Share of the pool kept for the strategy (at least ``budget``); 1 = no pre-selection.
    embed : EmbedConfig, optional
        The network of image stores (default ``EmbedConfig(seed=seed)``).
    cache : EmbeddingCache, optional
        Embedding cache (None: none).
    """
    seconds = {}
    t0 = time.perf_counter()
    seed = check_seed(seed, "seed", owner)
    fraction = check_fraction(fraction, "fraction", owner)
    task = load_task(pool, labeled, val, seed=seed)
    pool = task.pool
    budget = check_budget(budget, pool.n, owner, f"the pool {str(pool.path)!r}")
    seconds["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    em = embed_stores(task, pool, embed or EmbedConfig(seed=seed), cache=cache, progress=progress)
    seconds["embed"] = time.perf_counter() - t

    # Held-out validation points are labeled too: the strategy sees them as covered.
    labeled_emb = np.concatenate([em.emb, em.emb_val]) if task.val is None else em.emb
    idx, scores, n_cand = rank_and_pick(em, task.data, task.n_classes, budget=budget, fraction=fraction, scorer=scorer,
                                        strategy=strategy, seed=seed, labeled_emb=labeled_emb, seconds=seconds)
    seconds["total"] = time.perf_counter() - t0
    return Selection(
        ids=pool.ids()[idx], indices=idx, scores=scores[idx], n_pool=pool.n, n_candidates=n_cand,
        strategy=getattr(strategy, "name", type(strategy).__name__), fraction=fraction, val_source=task.data.val_source,
        scorer=getattr(scorer, "name", type(scorer).__name__), val_accuracy=em.val_accuracy, seconds=seconds,
    )
