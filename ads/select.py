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

from ads._validation import SCORE_BLOCK_ROWS, check_budget, check_choice, check_fraction, check_int, check_seed
from ads.embed import EmbedConfig, EmbeddingCache, Embeddings, embed_stores
from ads.errors import ParameterError
from ads.stream import CandidatePlan
from ads.task import LabeledData, load_task

logger = logging.getLogger(__name__)

__all__ = ["Selection", "Preselect", "score_stores", "preselect", "preselect_balanced", "score_pool", "rank_and_pick", "select"]


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
    preselect: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "picked": [{"id": str(i), "score": float(s)} for i, s in zip(self.ids, self.scores)],
            "n_pool": self.n_pool,
            "n_candidates": self.n_candidates,
            "strategy": self.strategy,
            "scorer": self.scorer,
            "fraction": self.fraction,
            "preselect": self.preselect,
            "validation": self.val_source,
            "validation_accuracy": self.val_accuracy,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


def preselect(scores: np.ndarray, budget: int, fraction: float, exclude=None) -> np.ndarray:
    """Indices of the top ``max(budget, ceil(fraction * N))`` scores (ties -> lower index),
    returned in ascending index order. ``exclude`` (bool mask) rows are never kept and do
    not count in N."""
    avail = _available(scores.shape[0], exclude)
    keep = min(avail.shape[0], max(budget, math.ceil(fraction * avail.shape[0])))
    return _top(scores, avail, keep)


def _available(n: int, exclude) -> np.ndarray:
    return np.arange(n) if exclude is None else np.flatnonzero(~np.asarray(exclude))


def _top(scores, rows, keep) -> np.ndarray:
    """The ``keep`` best of ``rows`` by (score descending, index ascending), sorted."""
    if keep >= rows.shape[0]:
        return np.sort(rows)
    return np.sort(rows[np.argsort(-scores[rows], kind="stable")[:keep]])


def quotas(shares, keep: int) -> np.ndarray:
    """Largest-remainder apportionment of ``keep`` over ``shares`` (ties -> lower class)."""
    shares = np.asarray(shares, dtype=np.float64)
    exact = shares / shares.sum() * keep
    q = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - q), kind="stable")[: keep - int(q.sum())]
    q[extra] += 1
    return q


def preselect_balanced(scores, predicted, shares, keep: int, exclude=None) -> np.ndarray:
    """``keep`` candidates with a quota per predicted class in proportion to ``shares``
    (largest remainders), the top scores within each class (ties -> lower index); a
    class with fewer points than its quota leaves the rest to the best remaining points
    of any class. Sorted indices."""
    avail = _available(scores.shape[0], exclude)
    keep = min(keep, avail.shape[0])
    chosen = []
    for c, q in enumerate(quotas(shares, keep)):
        rows = avail[predicted[avail] == c]
        chosen.append(_top(scores, rows, int(q)))
    chosen = np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)
    short = keep - chosen.shape[0]
    if short > 0:
        rest = np.setdiff1d(avail, chosen, assume_unique=True)
        chosen = np.concatenate([chosen, _top(scores, rest, short)])
    return np.sort(chosen)


PRESELECT_SHAPES = ("top", "balanced", "threshold")


@dataclass
class Preselect:
    """How the pool is cut down before the strategy.

    shape : {"top", "balanced", "threshold"}
        ``top``: the top ``max(budget, ceil(fraction N))`` scores. ``balanced``: the same
        number, with a quota per predicted class in proportion to the labeled set's class
        shares. ``threshold``: drop the points scoring below the ``percentile``-th
        percentile of the validation points' scores (in-distribution points scored as if
        unlabeled); if more than ``max_candidates`` (default 10 x budget; 0 = no cap)
        remain, keep that many, class-balanced.
    max_candidates : int, optional
        At most this many candidates go to the strategy (at least the budget). ``top``,
        ``balanced``: no cap by default; ``threshold``: 10 x budget by default (0 = no
        cap). On a large pool this bounds the strategy's memory: only the candidates'
        embeddings are loaded.
    near_rejected : bool
        Before any shape, drop the pool points that lie nearer to an item the annotator
        rejected (belongs to no class) than to any accepted labeled point (1-NN in the
        embedding space): what was rejected once marks its neighbourhood as junk.
    """

    shape: str = "top"
    fraction: float = 1.0
    percentile: float = 5.0
    max_candidates: int | None = None
    near_rejected: bool = True

    def validate(self, owner: str = "ads select") -> Preselect:
        check_choice(self.shape, PRESELECT_SHAPES, "preselect", owner)
        self.fraction = check_fraction(self.fraction, "fraction", owner)
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)) or not 0 <= self.percentile < 100:
            raise ParameterError(f"The 'percentile' parameter of {owner} must be a number in [0, 100). Got {self.percentile!r}.")
        if self.max_candidates is not None:
            check_int(self.max_candidates, "max_candidates", owner, min_value=0)
        if not isinstance(self.near_rejected, (bool, np.bool_)):
            raise ParameterError(f"The 'near_rejected' parameter of {owner} must be a bool. Got {self.near_rejected!r}.")
        return self

    def plan(self, *, budget: int, class_shares, n_prior: int, n_pool: int, calibration=None) -> CandidatePlan:
        """The streaming form of :meth:`apply` (:class:`ads.stream.CandidatePlan`):
        ``n_prior`` pool rows are not excluded before scoring, of ``n_pool``."""
        shares = np.asarray(class_shares, dtype=np.float64)
        if self.shape == "threshold":
            cap = 10 * budget if self.max_candidates is None else (self.max_candidates or n_pool)
            return CandidatePlan("threshold", budget, self.fraction, shares, n_prior,
                                 threshold=float(np.percentile(calibration, self.percentile)), cap=cap,
                                 percentile=self.percentile)
        return CandidatePlan(self.shape, budget, self.fraction, shares, n_prior, cap=self.max_candidates or None)

    def apply(self, scores, *, budget: int, proba, class_shares, calibration=None, exclude=None):
        """Candidate indices (sorted) and a dict describing the cut."""
        n_avail = _available(scores.shape[0], exclude).shape[0]
        predicted = np.asarray(proba).argmax(axis=1)
        cap = {"max_candidates": self.max_candidates} if self.max_candidates else {}
        if self.shape in ("top", "balanced"):
            keep = min(n_avail, max(budget, math.ceil(self.fraction * n_avail)))
            if self.max_candidates:
                keep = min(keep, max(budget, self.max_candidates))
            if self.shape == "top":
                cand = _top(scores, _available(scores.shape[0], exclude), keep)
            else:
                cand = preselect_balanced(scores, predicted, class_shares, keep, exclude)
            return cand, {"shape": self.shape, "fraction": self.fraction, **cap}
        threshold = float(np.percentile(calibration, self.percentile))
        below = scores < threshold
        drop = below if exclude is None else (below | np.asarray(exclude))
        n_kept = int((~drop).sum())
        cap = 10 * budget if self.max_candidates is None else (self.max_candidates or scores.shape[0])
        info = {"shape": "threshold", "percentile": self.percentile, "threshold": threshold,
                "dropped": int(n_avail - n_kept), "max_candidates": cap}
        if n_kept < budget:  # the threshold left too few: top up with the best of the rest
            logger.warning("threshold %.4g kept %d points, fewer than the budget %d: topping up with the best of the rest",
                           threshold, n_kept, budget)
            return preselect(scores, budget, 0.0, exclude), {**info, "topped_up": True}
        return preselect_balanced(scores, predicted, class_shares, min(cap, n_kept), drop), info


def _fit_scorer(scorer, em: Embeddings, data: LabeledData, n_classes: int, seed: int, seconds: dict) -> float:
    """Fit ``scorer`` on the labeled embeddings (on the client: labeled and validation
    sets only); fills ``seconds['value']``. Returns the start time."""
    t = time.perf_counter()
    scorer.fit(em.emb, data.y, em.emb_val, data.y_val, n_classes=n_classes, random_state=seed)
    fit_seconds = dict(getattr(scorer, "seconds_", {}))
    seconds.update(fit_seconds)
    if "value" not in fit_seconds:
        seconds["value"] = time.perf_counter() - t
    return t


def score_pool(scorer, em: Embeddings, data: LabeledData, n_classes: int, *, seed: int = 0, seconds=None) -> np.ndarray:
    """Fit ``scorer`` on the labeled embeddings and score the whole pool, block by block,
    into one array (N,) (``ads score``; ``select`` keeps only the candidates)."""
    from ads.stages import score_rows

    seconds = {} if seconds is None else seconds
    t = _fit_scorer(scorer, em, data, n_classes, seed, seconds)
    scores = np.concatenate([score_rows(scorer, e, p) for _s, e, p in em.pool_blocks().iter_blocks()])
    # The regressors' fit counts as scoring, as before the parts became objects.
    seconds["score"] = time.perf_counter() - t - seconds["value"]
    return scores


def near_rejected_mask(emb_pool, emb_accepted, emb_rejected) -> np.ndarray:
    """True for pool points nearer to a rejected item than to every accepted labeled
    point (exact squared Euclidean 1-NN, ties -> accepted)."""
    from ads.stages import _nearest_sq

    emb_pool = np.asarray(emb_pool)
    return _nearest_sq(emb_rejected, emb_pool) < _nearest_sq(emb_accepted, emb_pool)


def rank_and_pick(em: Embeddings, data: LabeledData, n_classes: int, *, budget: int, scorer, strategy,
                  preselect: Preselect | None = None, fraction: float = 1.0, seed: int = 0, labeled_emb=None,
                  exclude=None, rejected=None, seconds=None, info=None, runner=None, progress: bool = False):
    """Score the pool, pre-select (without ``exclude`` rows) and let the strategy pick
    ``budget`` of the candidates. ``rejected``: pool rows the annotator rejected (for
    ``near_rejected``).

    The pool is scored block by block by ``runner`` (:class:`ads.stages.InProcess` by
    default, or :class:`ads.distributed.DaskRunner`), and only what pre-selection can still
    choose is kept (:class:`ads.stream.CandidatePlan`, exactly :meth:`Preselect.apply`);
    then only the candidates' embeddings are read for the strategy. Returns (pool indices
    in pick order, their scores, number of candidates); ``info`` (a dict) receives the
    pre-selection's description.
    """
    from ads.stages import InProcess, NearRefs

    runner = runner or InProcess()
    seconds = {} if seconds is None else seconds
    pre = preselect or Preselect(fraction=fraction)
    t = _fit_scorer(scorer, em, data, n_classes, seed, seconds)
    n = int(em.emb_pool.shape[0])
    calibration = None
    needs_weights = getattr(strategy, "needs_weights", False)
    if pre.shape == "threshold" or needs_weights:
        if em.proba_val is None:
            raise ParameterError("threshold pre-selection needs the validation points' class probabilities.")
        calibration = np.asarray(scorer.calibration_scores(em.emb_val, em.proba_val), dtype=np.float64)
    shares = np.bincount(data.y, minlength=n_classes) / data.y.shape[0]
    excluded = np.empty(0, dtype=np.int64) if exclude is None else np.flatnonzero(np.asarray(exclude))
    near = None
    if pre.near_rejected and rejected is not None and len(rejected):
        near = NearRefs(np.asarray(em.emb, dtype=np.float32), np.asarray(em.emb_pool[np.asarray(rejected)], dtype=np.float32))
    plan = pre.plan(budget=budget, class_shares=shares, n_prior=n - excluded.size, n_pool=n, calibration=calibration)
    summary = runner.summarize(scorer, em.pool_blocks(), plan, excluded, near, progress=progress)
    cand, cand_scores, pinfo = plan.finalize(summary)
    if info is not None:
        if near is not None:
            info["dropped_near_rejected"] = summary.dropped_near
        info.update(pinfo)
    t_strategy = time.perf_counter()
    seconds["score"] = t_strategy - t - seconds["value"]
    logger.info("pre-selection (%s): %d of %d pool points kept%s", pre.shape, cand.size, n,
                f", threshold {pinfo['threshold']:.4g} dropped {pinfo['dropped']}" if "threshold" in pinfo else "")
    if cand.size < budget:
        raise ParameterError(f"The 'budget' parameter ({budget}) is larger than the unlabeled pool left ({cand.size} points).")
    extra = {}
    if needs_weights:  # in-distribution probability: the share of validation points scoring at most as high
        extra["weights"] = np.searchsorted(np.sort(calibration), cand_scores, side="right") / calibration.shape[0]
    labeled_emb = em.emb if labeled_emb is None else labeled_emb
    if getattr(strategy, "lazy_candidates", False):  # e.g. coreset --distributed: reads its partitions itself
        from ads.stream import CandidateRows

        strategy.map_fn = getattr(runner, "map", None)
        try:
            picks = strategy.select(CandidateRows(em.pool_blocks(), cand), budget, X_labeled=labeled_emb, proba=None,
                                    random_state=seed, **extra)
        finally:
            strategy.map_fn = None
    else:
        picks = strategy.select(np.asarray(em.emb_pool[cand]), budget, X_labeled=labeled_emb,
                                proba=np.asarray(em.proba_pool[cand]), random_state=seed, **extra)
    seconds["strategy"] = time.perf_counter() - t_strategy
    picks = np.asarray(picks, dtype=np.int64)
    return cand[picks], cand_scores[picks], int(cand.size)


def select(pool, labeled, val=None, *, budget: int, scorer, strategy, fraction: float = 1.0,
           preselect: Preselect | None = None, seed: int = 0, embed: EmbedConfig | None = None,
           cache: EmbeddingCache | None = None, progress: bool = True, owner: str = "ads select",
           runner=None, save_model=None) -> Selection:
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
        Used when ``preselect`` is None.
    preselect : Preselect, optional
        The pre-selection's shape (``top``, ``balanced``, ``threshold``) and settings.
    embed : EmbedConfig, optional
        The network of image stores (default ``EmbedConfig(seed=seed)``).
    cache : EmbeddingCache, optional
        Embedding cache (None: the pool's embeddings go to a temporary directory).
    runner : optional
        Where the pool's blocks are embedded and scored: :class:`ads.stages.InProcess`
        (default) or a :class:`ads.distributed.DaskRunner` (same picks).
    save_model : path, optional
        Also write a logistic-regression head fitted on the labeled embeddings, with those
        embeddings (:func:`ads.patch.save_model`), for ``ads patch``.
    """
    seconds = {}
    t0 = time.perf_counter()
    seed = check_seed(seed, "seed", owner)
    pre = (preselect or Preselect(fraction=fraction)).validate(owner)
    task = load_task(pool, labeled, val, seed=seed)
    pool = task.pool
    budget = check_budget(budget, pool.n, owner, f"the pool {str(pool.path)!r}")
    seconds["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    em = embed_stores(task, pool, embed or EmbedConfig(seed=seed), cache=cache, progress=progress, runner=runner)
    seconds["embed"] = time.perf_counter() - t
    if save_model is not None:
        from ads.patch import HeadModel
        from ads.patch import save_model as write_model

        write_model(save_model, HeadModel.fit(em.emb, task.data.y, task.data.ids, em.emb_val, task.data.y_val, task.classes,
                                              meta={"arch": em.arch, "labeled": str(task.labeled.path),
                                                    "validation": task.data.val_source}))

    # Held-out validation points are labeled too: the strategy sees them as covered.
    labeled_emb = np.concatenate([em.emb, em.emb_val]) if task.val is None else em.emb
    info = {}
    idx, scores, n_cand = rank_and_pick(em, task.data, task.n_classes, budget=budget, preselect=pre, scorer=scorer,
                                        strategy=strategy, seed=seed, labeled_emb=labeled_emb, seconds=seconds, info=info,
                                        runner=runner, progress=progress)
    seconds["total"] = time.perf_counter() - t0
    return Selection(
        ids=pool.ids_at(idx), indices=idx, scores=scores, n_pool=pool.n, n_candidates=n_cand,
        strategy=getattr(strategy, "name", type(strategy).__name__), fraction=pre.fraction, val_source=task.data.val_source,
        scorer=getattr(scorer, "name", type(scorer).__name__), val_accuracy=em.val_accuracy, seconds=seconds,
        preselect=info,
    )


def score_stores(pool, labeled, val=None, *, scorer, per_class: bool = False, seed: int = 0,
                 embed: EmbedConfig | None = None, cache: EmbeddingCache | None = None, progress: bool = True,
                 owner: str = "ads score") -> dict:
    """Every pool point's score (and, with ``per_class``, its per-class values before
    aggregation): ``{"ids", "scores", "class_values" (n, C) or None, "classes", "seconds"}``."""
    seconds = {}
    seed = check_seed(seed, "seed", owner)
    task = load_task(pool, labeled, val, seed=seed)
    t = time.perf_counter()
    em = embed_stores(task, task.pool, embed or EmbedConfig(seed=seed), cache=cache, progress=progress)
    seconds["embed"] = time.perf_counter() - t
    scores = score_pool(scorer, em, task.data, task.n_classes, seed=seed, seconds=seconds)
    class_values = None
    if per_class:
        class_values = np.concatenate([np.asarray(scorer.class_values(e[s : s + SCORE_BLOCK_ROWS]), dtype=np.float64)
                                       for _b, e, _p in em.pool_blocks().iter_blocks()
                                       for s in range(0, e.shape[0], SCORE_BLOCK_ROWS)])
    return {"ids": task.pool.ids(), "scores": scores, "class_values": class_values, "classes": task.classes,
            "seconds": {k: round(v, 4) for k, v in seconds.items()}}
