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

from ads._validation import check_random_state
from ads.errors import DataError, ParameterError, check_int

ENTRY_POINT_GROUP = "ads.strategies"

_REGISTRY: dict[str, type[Strategy]] = {}


class Strategy:
    """Base class. Subclasses set ``name`` and implement :meth:`_select`.

    ``__init__`` only stores parameters (sklearn convention); ``random_state`` is
    resolved in :meth:`select`.
    """

    name: str = ""
    needs_labeled: bool = False
    needs_proba: bool = False
    needs_weights: bool = False  # takes per-candidate weights (e.g. an in-distribution probability)

    def select(self, X, n, *, X_labeled=None, proba=None, random_state=None, weights=None) -> np.ndarray:
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
            _check_proba(proba, self.name)
        rng = _check_random_state(random_state, self.name)
        extra = {}
        if self.needs_weights:
            extra["weights"] = None if weights is None else _check_weights(weights, X.shape[0], self.name)
        picks = self._select(X, n, X_labeled=X_labeled, proba=proba, rng=rng, **extra)
        return np.asarray(picks, dtype=np.int64)

    def _select(self, X, n, *, X_labeled, proba, rng) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def _check_matrix(a, what: str, owner: str, *, allow_empty: bool = False) -> np.ndarray:
    try:
        a = np.asarray(a)
    except (TypeError, ValueError) as exc:  # ragged lists and the like
        raise DataError(f"{what} of strategy {owner!r} is not a numeric array: {exc}") from None
    if a.ndim != 2:
        raise DataError(f"{what} of strategy {owner!r} must be 2-D. Got shape {a.shape}.")
    if a.dtype.kind not in "biuf":
        raise DataError(
            f"{what} of strategy {owner!r} must have a real numeric dtype. Got {a.dtype}."
        )
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    if a.shape[0] == 0 and not allow_empty:
        raise DataError(f"{what} of strategy {owner!r} is empty.")
    if not np.isfinite(a).all():
        raise DataError(f"{what} of strategy {owner!r} contains NaN or inf.")
    return a


def _check_weights(weights, n: int, owner: str) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise DataError(f"weights of strategy {owner!r} must have shape ({n},), one per candidate. Got {w.shape}.")
    if not np.isfinite(w).all() or (w < 0).any():
        raise DataError(f"weights of strategy {owner!r} must be finite and >= 0.")
    return w


# Rows of proba may come from a float32 softmax; this only catches logits or garbage.
_PROBA_SUM_TOL = 1e-3


def _check_proba(proba: np.ndarray, owner: str) -> None:
    if (proba < 0).any() or (proba > 1 + _PROBA_SUM_TOL).any():
        raise DataError(
            f"proba of strategy {owner!r} must hold probabilities in [0, 1]. "
            f"Got values in [{proba.min():.6g}, {proba.max():.6g}]."
        )
    sums = proba.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _PROBA_SUM_TOL)
    if bad.size:
        raise DataError(
            f"Rows of proba of strategy {owner!r} must sum to 1 (tolerance {_PROBA_SUM_TOL}). "
            f"Got {sums[bad[0]]:.6g} in row {bad[0]}."
        )


def _check_random_state(random_state, owner: str) -> np.random.Generator:
    """None, an int in [0, 2**32 - 1], a SeedSequence or a Generator (used as is) -> Generator."""
    return np.random.default_rng(check_random_state(random_state, f"strategy {owner!r}"))


def weighted_draw(rng: np.random.Generator, weights: np.ndarray) -> int:
    """Draw one index with probability proportional to ``weights`` (>= 0).

    The procedure is fixed so that oracles can replay it: ``u = rng.random() * total``
    with ``total = cumsum(weights)[-1]``, then the first index whose cumulative sum
    exceeds ``u``. That index always has a positive weight. Returns -1 (and draws
    nothing) when every weight is 0, so the caller chooses its own fallback.
    """
    cs = np.cumsum(weights, dtype=np.float64)
    total = cs[-1]
    if not total > 0:
        return -1
    i = int(np.searchsorted(cs, rng.random() * total, side="right"))
    if i >= cs.size:  # u rounded up to total: take the last positive weight
        i = int(np.flatnonzero(weights > 0)[-1])
    return i


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
    try:
        return cls(**params)
    except TypeError as exc:  # unknown keyword: say which strategy, in one line
        raise ParameterError(f"Bad parameters for strategy {name!r}: {exc}.") from None
