"""``value()``: value every labeled point of a store (the library call behind ``ads value``)."""

from __future__ import annotations

import inspect

import numpy as np

from ads.valuers.base import VALUERS, Valuer, make_valuer


def accepts(name: str, param: str) -> bool:
    """Whether the valuer registered as ``name`` takes the constructor parameter ``param``."""
    init = VALUERS.get_class(name).__init__
    if init is object.__init__:
        return False
    try:
        sig = inspect.signature(init)
    except (TypeError, ValueError):
        return False
    return param in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def value(labeled, val=None, *, valuer: Valuer | None = None, method: str = "knn-shapley", embed=None,
          cache=None, seed: int = 0, progress: bool = True, **params):
    """Value every labeled point of a store.

    Parameters
    ----------
    labeled, val : path or :class:`ads.pool.Pool`
        Labeled and validation stores (without ``val``, a stratified hold-out of the
        labeled set is used and not valued).
    valuer : Valuer, optional
        A built valuer; otherwise ``make_valuer(method, **params)`` (with ``progress``
        passed on when the valuer takes it and ``params`` does not set it).
    embed : :class:`ads.embed.EmbedConfig`, optional
        Network of image stores (features stores are valued on their features).
    cache : :class:`ads.embed.EmbeddingCache` or None
        Embedding cache, shared with ``ads select`` (same stores + network = no retraining).

    Returns
    -------
    ids : ndarray of str, values : ndarray of float64, info : dict
    """
    from ads.embed import EmbedConfig, embed_stores
    from ads.pool import as_pool
    from ads.select import load_task

    if valuer is None:
        if "progress" not in params and method != "dvrl" and accepts(method, "progress"):
            params["progress"] = progress
        valuer = make_valuer(method, **params)
    task = load_task(None, labeled, val, seed=seed)
    em = embed_stores(task, None, embed or EmbedConfig(seed=seed), cache=cache, progress=progress)
    valuer.fit(em.emb, task.data.y, em.emb_val, task.data.y_val, n_classes=len(task.classes), random_state=seed)
    info = {"valuer": valuer.name, "validation": task.data.val_source, "validation_accuracy": em.val_accuracy,
            "labeled": str(as_pool(labeled, "labeled store").path)}
    return task.data.ids, np.asarray(valuer.values_, dtype=np.float64), info
