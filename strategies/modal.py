"""Use any registered strategy as a modAL ``query_strategy``.

>>> from modAL.models import ActiveLearner
>>> learner = ActiveLearner(estimator=clf, query_strategy=modal_query("badge"))  # doctest: +SKIP
>>> idx, rows = learner.query(X_pool, n_instances=10)                           # doctest: +SKIP

modAL 0.4.2.1's ``BaseLearner.query`` calls ``query_strategy(learner, X_pool, **kwargs)``
and unpacks a 2-tuple from it (its own strategies return ``(indices, scores)``); the
learner then returns ``(indices, X_pool[indices])``. The callable made here returns
``(indices, X_pool[indices])``, the shape older modAL strategies had, which that
unpacking accepts. Returning bare indices would be wrong there: with ``n_instances=2``
the unpacking would split the two indices.
"""

from __future__ import annotations

import numpy as np

from ads.errors import ParameterError
from strategies.base import get


def _rows(X, idx):
    """``X[idx]`` for arrays, sparse matrices, data frames and lists (as modAL does)."""
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, list):
        return [X[i] for i in idx]
    return X[idx]


def modal_query(name, *, embed=None, random_state=None, **params):
    """Wrap the strategy registered as ``name`` as a modAL query strategy.

    Parameters
    ----------
    name : str
        A registered strategy (see :func:`strategies.available`).
    embed : callable or None
        ``embed(X) -> ndarray (n, d)`` giving the embeddings the strategy works on (for
        BADGE, the pre-logit features). None: the pool's own features. Applied to the
        pool and to the labeled inputs alike.
    random_state : None, int or numpy Generator
        Passed to every :meth:`~strategies.base.Strategy.select` call; an int makes
        each query deterministic.
    **params
        Parameters of the strategy (e.g. ``max_iter`` for ``kmedians``).

    Returns
    -------
    callable
        ``query(classifier, X_pool, n_instances=1, *, X_labeled=None)`` returning
        ``(indices, X_pool[indices])``, indices int64 in pick order. Class probabilities
        come from ``classifier.predict_proba(X_pool)`` when the strategy needs them.
        For strategies that use a labeled set (coreset), labeled inputs come from
        ``X_labeled`` or else ``classifier.X_training`` (set by modAL learners).
    """
    strategy = get(name, **params)
    if embed is not None and not callable(embed):
        raise ParameterError(
            f"The 'embed' parameter of modal_query must be callable or None. Got {embed!r}."
        )

    def query(classifier, X_pool, n_instances=1, *, X_labeled=None):
        Z = np.asarray(embed(X_pool) if embed is not None else X_pool)
        proba = classifier.predict_proba(X_pool) if strategy.needs_proba else None
        Z_labeled = None
        if strategy.needs_labeled and X_labeled is None:
            X_labeled = getattr(classifier, "X_training", None)
        if strategy.needs_labeled and X_labeled is not None:
            Z_labeled = np.asarray(embed(X_labeled) if embed is not None else X_labeled)
        idx = strategy.select(
            Z, n_instances, X_labeled=Z_labeled, proba=proba, random_state=random_state
        )
        return idx, _rows(X_pool, idx)

    query.__name__ = f"{name}_query"
    query.__doc__ = f"modAL query strategy running ads strategy {name!r}."
    return query
