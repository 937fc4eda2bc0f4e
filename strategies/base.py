"""The strategy contract and the registry of strategies by name.

A strategy picks ``n`` distinct candidates. It gets the candidate embeddings ``X``
(float32 or float64, shape (n_candidates, d)) and, when it needs them, the labeled
embeddings ``X_labeled`` (n_labeled, d), class probabilities ``proba``
(n_candidates, n_classes) and a ``random_state``. It returns an int64 array of ``n``
distinct indices into the candidates, in pick order. Inputs are never modified.

Third-party packages add strategies through the entry-point group ``ads.strategies``:
each entry point names a :class:`Strategy` subclass; its key is the strategy's name.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np

from ads.errors import DataError, ParameterError, check_int

ENTRY_POINT_GROUP = "ads.strategies"

_REGISTRY: dict[str, type["Strategy"]] = {}


class Strategy:
    """Base class. Subclasses set ``name`` and implement :meth:`_select`.

    ``__init__`` only stores parameters (sklearn convention); ``random_state`` is
    resolved in :meth:`select`.
    """

    name: str = ""
    needs_labeled: bool = False
    needs_proba: bool = False

    def select(self, X, n, *, X_labeled=None, proba=None, random_state=None) -> np.ndarray:
        """Pick ``n`` distinct candidates; return their indices (int64) in pick order."""
        X = _check_matrix(X, "X", self.name)
        n = check_int(n, "n", f"strategy {self.name!r}", min_value=1)
        if n > X.shape[0]:
            raise ParameterError(
                f"The 'n' parameter of strategy {self.name!r} must be <= the number of "
                f"candidates ({X.shape[0]}). Got {n}."
            )
        if X_labeled is not None:
            X_labeled = _check_matrix(X_labeled, "X_labeled", self.name, allow_empty=True)
            if X_labeled.shape[1] != X.shape[1]:
                raise DataError(
                    f"X_labeled of strategy {self.name!r} has {X_labeled.shape[1]} columns; "
                    f"X has {X.shape[1]}."
                )
        if self.needs_proba:
            if proba is None:
                raise ParameterError(f"Strategy {self.name!r} needs class probabilities ('proba').")
            proba = _check_matrix(proba, "proba", self.name)
            if proba.shape[0] != X.shape[0]:
                raise DataError(
                    f"proba of strategy {self.name!r} has {proba.shape[0]} rows; X has {X.shape[0]}."
                )
        rng = np.random.default_rng(random_state)
        picks = self._select(X, n, X_labeled=X_labeled, proba=proba, rng=rng)
        return np.asarray(picks, dtype=np.int64)

    def _select(self, X, n, *, X_labeled, proba, rng) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def _check_matrix(a, what: str, owner: str, *, allow_empty: bool = False) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise DataError(f"{what} of strategy {owner!r} must be 2-D. Got shape {a.shape}.")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    if a.shape[0] == 0 and not allow_empty:
        raise DataError(f"{what} of strategy {owner!r} is empty.")
    if not np.isfinite(a).all():
        raise DataError(f"{what} of strategy {owner!r} contains NaN or inf.")
    return a


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_entry_points() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()


def available() -> list[str]:
    """Names of every registered strategy, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def get(name: str, **params) -> Strategy:
    """Instantiate the strategy registered as ``name``."""
    _load_entry_points()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ParameterError(
            f"Unknown strategy {name!r}. Valid strategies: {', '.join(sorted(_REGISTRY))}."
        ) from None
    return cls(**params)
