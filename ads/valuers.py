"""Valuers: the value of every labeled point, from its embeddings and a validation set.

A valuer follows the scikit-learn convention: ``__init__`` stores its parameters, ``fit``
computes ``values_`` (float64, one per training point). Built-in valuers:

- ``knn-shapley``: exact KNN-Shapley (Jia et al. 2019, Theorem 1), :mod:`ads.shapley`;
- ``dvrl``: DVRL (Yoon, Arik, Pfister 2020), :mod:`ads.dvrl`.

Third-party valuers register through the entry-point group ``ads.valuers``.
:func:`value` is the library call behind ``ads value``.
"""

from __future__ import annotations

import logging

import numpy as np

from ads._validation import check_int, check_random_state
from ads.registry import Registry

logger = logging.getLogger(__name__)

VALUERS = Registry("valuer", "ads.valuers")


class Valuer:
    """Base class: subclasses set ``name`` and implement :meth:`fit`."""

    name: str = ""

    def fit(self, X, y, X_val, y_val, *, n_classes: int | None = None, random_state=None) -> Valuer:
        """Compute ``values_`` (n,) for the training points (X, y) against (X_val, y_val).

        ``random_state`` is used by randomised valuers whose own ``random_state`` is None.
        """
        raise NotImplementedError  # pragma: no cover

    def get_params(self) -> dict:
        return dict(vars(self))


@VALUERS.register
class KNNShapleyValuer(Valuer):
    """Exact KNN-Shapley values; see :func:`ads.shapley.knn_shapley`.

    Parameters
    ----------
    k : int, default 10
        K of the KNN classifier whose utility is valued.
    """

    name = "knn-shapley"

    def __init__(self, k: int = 10):
        self.k = k

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        from ads.shapley import knn_shapley

        check_int(self.k, "k", "KNNShapleyValuer", min_value=1)
        self.values_ = knn_shapley(X, y, X_val, y_val, k=self.k)
        return self


@VALUERS.register
class DVRLValuer(Valuer):
    """DVRL values of the training points; ``params`` go to :class:`ads.dvrl.DVRL`."""

    name = "dvrl"

    def __init__(self, **params):
        self.params = params

    def fit(self, X, y, X_val, y_val, *, n_classes=None, random_state=None):
        from ads.dvrl import DVRL

        params = dict(self.params)
        if params.get("random_state") is None:
            params["random_state"] = check_random_state(random_state, "DVRLValuer")
        self.model_ = DVRL(**params).fit(X, y, X_val, y_val, n_classes=n_classes)
        self.values_ = self.model_.values_
        return self

    def get_params(self) -> dict:
        return dict(self.params)


def make_valuer(name: str, **params) -> Valuer:
    """The valuer registered as ``name`` (``knn-shapley``, ``dvrl``, or a plug-in's)."""
    return VALUERS.make(name, **params)


def value(labeled, val=None, *, valuer: Valuer | None = None, method: str = "knn-shapley", embed=None,
          cache=None, seed: int = 0, progress: bool = True, **params):
    """Value every labeled point of a store.

    Parameters
    ----------
    labeled, val : path or :class:`ads.pool.Pool`
        Labeled and validation stores (without ``val``, a stratified hold-out of the
        labeled set is used and not valued).
    valuer : Valuer, optional
        A built valuer; otherwise ``make_valuer(method, **params)``.
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

    valuer = valuer if valuer is not None else make_valuer(method, **params)
    task = load_task(None, labeled, val, seed=seed)
    em = embed_stores(task, None, embed or EmbedConfig(seed=seed), cache=cache, progress=progress)
    valuer.fit(em.emb, task.data.y, em.emb_val, task.data.y_val, n_classes=len(task.classes), random_state=seed)
    info = {"valuer": valuer.name, "validation": task.data.val_source, "validation_accuracy": em.val_accuracy,
            "labeled": str(as_pool(labeled, "labeled store").path)}
    return task.data.ids, np.asarray(valuer.values_, dtype=np.float64), info
