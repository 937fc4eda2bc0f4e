"""The selection pipeline: embed -> value -> regress -> score -> pre-select -> strategy."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ads.embed import EmbedConfig, EmbeddingCache, default_cache_root, embed_config_key, make_embedder
from ads.errors import DataError, ParameterError, StoreError, check_int
from ads.pool import Pool, open_pool
from ads.regress import ValueRegressor
from ads.shapley import knn_shapley


def _noop(*_a, **_k):
    return None


@dataclass
class LabeledData:
    """Labeled training part and validation part, in memory."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_source: str


def check_compatible(pool: Pool, other: Pool, role: str) -> None:
    """Same kind, item shape and classes, or one line saying which differs."""
    if other.kind != pool.kind:
        raise StoreError(f"{role} {str(other.path)!r} holds {other.kind}; pool {str(pool.path)!r} holds {pool.kind}.")
    if other.item_shape != pool.item_shape:
        what = "feature dimension" if pool.kind == "features" else "image shape"
        raise StoreError(
            f"{role} {str(other.path)!r} has {what} {other.item_shape}; pool {str(pool.path)!r} has {pool.item_shape}."
        )
    if other.classes != pool.classes and pool.classes:
        raise StoreError(
            f"{role} {str(other.path)!r} has classes {other.classes}; pool {str(pool.path)!r} has {pool.classes}."
        )


def labeled_arrays(store: Pool, role: str):
    """x, y, ids of the labeled rows (y >= 0) of a store; error if it has none."""
    y = store.y()
    if y is None:
        raise StoreError(f"{role} {str(store.path)!r} has no array 'y' (labels).")
    rows = np.flatnonzero(y >= 0)
    if rows.size == 0:
        raise StoreError(f"{role} {str(store.path)!r} has no labeled row (every y is -1).")
    x = store.read_x()
    return x[rows], y[rows], store.ids()[rows]


def holdout_split(y: np.ndarray, seed: int, share: float = 0.1, cap: int = 500):
    """Stratified hold-out: about ``share`` of each class (at most ``cap`` in all),
    never a class's last point. Returns (train_rows, val_rows)."""
    rng = np.random.default_rng(seed)
    n_val = min(cap, max(1, int(round(share * y.shape[0]))))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts / y.shape[0] * n_val
    want = np.floor(exact).astype(int)
    # Largest remainders get the points left over (ties -> lower class), as in apportionment.
    extra = np.argsort(-(exact - want), kind="stable")[: n_val - want.sum()]
    want[extra] += 1
    want = np.minimum(want, counts - 1)
    val = []
    for c, m in zip(classes, want):
        if m > 0:
            val.append(rng.choice(np.flatnonzero(y == c), size=m, replace=False))
    val = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    if val.size == 0:
        raise DataError(
            f"the labeled set ({y.shape[0]} points) is too small to hold out a validation set; pass --val."
        )
    return np.setdiff1d(np.arange(y.shape[0]), val), val


def load_labeled(labeled: Pool, val: Pool | None, seed: int, log=_noop) -> LabeledData:
    x, y, ids = labeled_arrays(labeled, "labeled store")
    if val is not None:
        xv, yv, _ = labeled_arrays(val, "validation store")
        return LabeledData(x, y, ids, xv, yv, f"store {val.path}")
    tr, va = holdout_split(y, seed)
    log(f"no --val given: holding out {va.size} of {y.size} labeled points (stratified) for validation")
    return LabeledData(x[tr], y[tr], ids[tr], x[va], y[va], f"held out {va.size} of {y.size} labeled points")


def check_classes_covered(y: np.ndarray, classes: list[str], where: str) -> None:
    present = np.bincount(y, minlength=len(classes))
    missing = [classes[c] for c in np.flatnonzero(present == 0)]
    if missing:
        raise DataError(
            f"{where}: class {missing[0]!r} has no labeled point"
            + (f" (also {', '.join(map(repr, missing[1:4]))})" if len(missing) > 1 else "")
            + "; every class needs at least one."
        )


@dataclass
class Embedded:
    emb: np.ndarray
    emb_val: np.ndarray
    emb_pool: np.ndarray | None
    proba_pool: np.ndarray | None
    val_accuracy: float
    arch: str
    cached: bool
    proba_test: np.ndarray | None = None


def embed_all(kind, n_classes, data: LabeledData, pool: Pool | None, config: EmbedConfig, *,
              cache_root=None, key_parts=(), progress=True, log=_noop, test_x=None) -> Embedded:
    """Train the embedding model on the labeled data and embed labeled, val and pool.

    ``test_x``, when given, is classified by the same model (``Embedded.proba_test``);
    such calls are not cached.
    """
    from tqdm.auto import tqdm
    import sys

    cache = EmbeddingCache(cache_root)
    key = EmbeddingCache.key(embed_config_key(config), n_classes, list(key_parts),
                             pool.fingerprint() if pool is not None else None)
    hit = cache.load(key) if test_x is None else None
    if hit is not None:
        log(f"embeddings: reusing cache {cache.root / key}")
        return Embedded(hit["emb"], hit["emb_val"], hit.get("emb_pool"), hit.get("proba_pool"),
                        float(hit["val_accuracy"]), str(hit["arch"]), True)
    model = make_embedder(kind, config).fit(data.x, data.y, data.x_val, data.y_val, n_classes, progress=progress)
    log(f"embedding model {model.arch_}: validation accuracy {model.val_accuracy_:.4f}")
    emb, _ = model.transform(data.x)
    emb_val, _ = model.transform(data.x_val)
    emb_pool = proba_pool = None
    if pool is not None:
        parts_e, parts_p = [], []
        with tqdm(total=pool.n, desc="embed pool", unit="pt", file=sys.stderr, disable=not progress, leave=False) as bar:
            for _s, block in pool.blocks():
                e, p = model.transform(block)
                parts_e.append(e)
                parts_p.append(p)
                bar.update(block.shape[0])
        emb_pool, proba_pool = np.concatenate(parts_e), np.concatenate(parts_p)
    proba_test = model.transform(test_x)[1] if test_x is not None else None
    if test_x is not None:
        return Embedded(emb, emb_val, emb_pool, proba_pool, float(model.val_accuracy_), model.arch_, False, proba_test)
    arrays = {"emb": emb, "emb_val": emb_val, "val_accuracy": np.array(model.val_accuracy_), "arch": np.array(model.arch_)}
    if pool is not None:
        arrays.update(emb_pool=emb_pool, proba_pool=proba_pool)
    cache.save(key, arrays)
    return Embedded(emb, emb_val, emb_pool, proba_pool, float(model.val_accuracy_), model.arch_, False)


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


def check_select_params(budget, fraction, n_pool, pool_path):
    budget = check_int(budget, "budget", "ads select", min_value=1)
    if budget > n_pool:
        raise ParameterError(f"The 'budget' parameter ({budget}) is larger than the pool {str(pool_path)!r} ({n_pool} points).")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not (0.0 < fraction <= 1.0):
        raise ParameterError(f"The 'fraction' parameter of ads select must be a number in (0, 1]. Got {fraction!r}.")
    return budget, float(fraction)


def select(
    pool,
    labeled,
    val=None,
    *,
    budget: int,
    fraction: float = 0.1,
    strategy: str = "coreset",
    k: int = 10,
    seed: int = 0,
    n_neighbors: int = 10,
    top_m: int = 10,
    aggregate: str = "max",
    scorer: str = "knn-shapley",
    dvrl_params: dict | None = None,
    embed: EmbedConfig | None = None,
    cache_dir=None,
    use_cache: bool = True,
    progress: bool = True,
    log=_noop,
) -> Selection:
    """Pick ``budget`` pool points: value the labeled set with exact KNN-Shapley, regress
    the values onto the pool, keep the top ``fraction``, and let ``strategy`` pick.

    ``pool``, ``labeled`` and ``val`` are store paths (or opened :class:`Pool` objects).
    """
    import strategies

    seconds = {}
    t0 = time.perf_counter()
    pool = pool if isinstance(pool, Pool) else open_pool(pool, role="pool")
    labeled = labeled if isinstance(labeled, Pool) else open_pool(labeled, role="labeled store")
    val = val if (val is None or isinstance(val, Pool)) else open_pool(val, role="validation store")
    budget, fraction = check_select_params(budget, fraction, pool.n, pool.path)
    k = check_int(k, "k", "ads select", min_value=1)
    if scorer not in SCORERS:
        raise ParameterError(f"The 'scorer' parameter of ads select must be one of {list(SCORERS)}. Got {scorer!r}.")
    strat = strategies.get(strategy)
    check_compatible(pool, labeled, "labeled store")
    if val is not None:
        check_compatible(pool, val, "validation store")
    n_classes = len(pool.classes)
    if n_classes == 0:
        raise StoreError(f"pool {str(pool.path)!r} lists no classes (attribute 'classes' is empty).")
    data = load_labeled(labeled, val, seed, log)
    check_classes_covered(data.y, pool.classes, f"labeled store {str(labeled.path)!r}")
    seconds["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    config = embed or EmbedConfig(seed=seed)
    cache_root = (Path(cache_dir) if cache_dir else default_cache_root()) if use_cache else None
    key_parts = [labeled.fingerprint(), val.fingerprint() if val is not None else f"holdout-{seed}"]
    em = embed_all(pool.kind, n_classes, data, pool, config, cache_root=cache_root, key_parts=key_parts,
                   progress=progress, log=log)
    seconds["embed"] = time.perf_counter() - t

    idx, scores, n_cand = rank_and_pick(
        em, data, budget=budget, fraction=fraction, strategy=strat, k=k, seed=seed, n_neighbors=n_neighbors,
        top_m=top_m, aggregate=aggregate, scorer=scorer, dvrl_params=dvrl_params,
        labeled_emb=np.concatenate([em.emb, em.emb_val]) if val is None else em.emb, seconds=seconds, progress=progress, log=log)
    seconds["total"] = time.perf_counter() - t0
    return Selection(
        ids=pool.ids()[idx], indices=idx, scores=scores[idx], n_pool=pool.n, n_candidates=n_cand,
        strategy=strategy, fraction=fraction, val_source=data.val_source, scorer=scorer, val_accuracy=em.val_accuracy, seconds=seconds,
    )


SCORERS = ("knn-shapley", "dvrl")


def pool_scores(em: Embedded, data: LabeledData, *, k=10, n_neighbors=10, top_m=10, aggregate="max",
                scorer="knn-shapley", dvrl_params=None, seed=0, progress=False, seconds=None) -> np.ndarray:
    """ADS scores of the pool.

    ``knn-shapley``: exact KNN-Shapley values of the labeled points, regressed per class
    onto the pool. ``dvrl``: a DVRL value estimator trained on the labeled embeddings,
    evaluated at each pool point for its candidate classes. Both aggregate over the top-m
    classes by probability (``aggregate``).
    """
    seconds = {} if seconds is None else seconds
    n_classes = em.proba_pool.shape[1]
    n = em.emb_pool.shape[0]
    t = time.perf_counter()
    if scorer == "knn-shapley":
        values = knn_shapley(em.emb, data.y, em.emb_val, data.y_val, k=k)
        seconds["value"] = time.perf_counter() - t
        t = time.perf_counter()
        model = ValueRegressor(n_neighbors=n_neighbors, top_m=top_m, aggregate=aggregate).fit(em.emb, data.y, values, n_classes)
    elif scorer == "dvrl":
        from ads.dvrl import DVRL

        params = {"random_state": seed, "progress": progress, **(dvrl_params or {})}
        model = DVRL(top_m=top_m, aggregate=aggregate, **params).fit(em.emb, data.y, em.emb_val, data.y_val, n_classes=n_classes)
        seconds["value"] = time.perf_counter() - t
        t = time.perf_counter()
    else:
        raise ParameterError(f"The 'scorer' parameter must be one of {list(SCORERS)}. Got {scorer!r}.")
    scores = np.concatenate([model.predict(em.emb_pool[s : s + 65536], em.proba_pool[s : s + 65536]) for s in range(0, n, 65536)])
    seconds["score"] = time.perf_counter() - t
    return scores


def rank_and_pick(em: Embedded, data: LabeledData, *, budget, fraction, strategy, k=10, seed=0, n_neighbors=10,
                  top_m=10, aggregate="max", scorer="knn-shapley", dvrl_params=None, labeled_emb=None, exclude=None,
                  seconds=None, progress=False, log=_noop):
    """Score the pool, pre-select the top fraction (without ``exclude`` rows) and let the
    strategy pick ``budget`` of them. Returns (pool indices in pick order, all scores,
    number of candidates)."""
    seconds = {} if seconds is None else seconds
    scores = pool_scores(em, data, k=k, n_neighbors=n_neighbors, top_m=top_m, aggregate=aggregate, scorer=scorer,
                         dvrl_params=dvrl_params, seed=seed, progress=progress, seconds=seconds)
    t = time.perf_counter()
    cand = preselect(scores, budget, fraction, exclude)
    log(f"pre-selection: {cand.size} of {scores.shape[0]} pool points kept (fraction {fraction:g})")
    if cand.size < budget:
        raise ParameterError(f"The 'budget' parameter ({budget}) is larger than the unlabeled pool left ({cand.size} points).")
    picks = strategy.select(em.emb_pool[cand], budget, X_labeled=em.emb if labeled_emb is None else labeled_emb,
                            proba=em.proba_pool[cand], random_state=seed)
    seconds["strategy"] = time.perf_counter() - t
    return cand[picks], scores, int(cand.size)
