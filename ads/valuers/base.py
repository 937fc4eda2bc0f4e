"""The :class:`Valuer` contract, the ``ads.valuers`` registry and shared input checks."""

from __future__ import annotations

import sys

import numpy as np

from ads._validation import check_labels, check_matrix, check_random_state
from ads.errors import DataError
from ads.registry import Registry

VALUERS = Registry("valuer", "ads.valuers")


class Valuer:
    """Base class: subclasses set ``name`` and implement :meth:`fit`.

    scikit-learn style: ``__init__`` stores the parameters, ``fit`` computes ``values_``
    (float64, one per training point; higher = more useful to the model) and checks
    its inputs; a randomised valuer resolves its seed in ``fit``.
    """

    name: str = ""

    def fit(self, X, y, X_val, y_val, *, n_classes: int | None = None, random_state=None) -> Valuer:
        """Compute ``values_`` (n,) for the training points (X, y) against (X_val, y_val).

        ``random_state`` is used by randomised valuers whose own ``random_state`` is None.
        """
        raise NotImplementedError  # pragma: no cover

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


def make_valuer(name: str, **params) -> Valuer:
    """The valuer registered as ``name`` (see ``VALUERS.available()``, or a plug-in's)."""
    return VALUERS.make(name, **params)


def check_fit_inputs(X, y, X_val, y_val, n_classes, owner: str):
    """Finite float64 matrices of equal width, labels in [0, n_classes); returns them and C."""
    X = check_matrix(X, "X", owner)
    X_val = check_matrix(X_val, "X_val", owner, dim=X.shape[1])
    y = check_labels(y, "y", owner, n=X.shape[0])
    y_val = check_labels(y_val, "y_val", owner, n=X_val.shape[0])
    C = int(max(y.max(), y_val.max()) + 1) if n_classes is None else int(n_classes)
    if C < 2:
        raise DataError(f"{owner} needs at least 2 classes. Got {C}.")
    check_labels(y, "y", owner, n_classes=C)
    check_labels(y_val, "y_val", owner, n_classes=C)
    return X, y, X_val, y_val, C


def resolve_seed(own, fallback, owner: str) -> int:
    """An int seed from the valuer's ``random_state`` (or ``fit``'s when it is None)."""
    rs = check_random_state(own if own is not None else fallback, owner)
    if isinstance(rs, (int, np.integer)):
        return int(rs)
    return int(np.random.default_rng(rs).integers(2**32))


#: spawn-key tags of the valuers' random streams (one per valuer family)
STREAMS = {"montecarlo": 0x7C5, "data-oob": 0x00B}


def stream(seed: int, family: str, *key: int) -> np.random.Generator:
    """The Generator of stream ``key`` of a valuer ``family`` under ``seed``: a SeedSequence
    child with spawn key (tag, *key). Not ``default_rng([seed, *key])``: SeedSequence hashes
    trailing zero words away, so ``[seed, 0, 0]`` is ``default_rng(seed)`` itself, the stream
    a caller's own data shuffle (or label flip) with the same seed draws from. A valuer's first
    permutation would then be the caller's shuffle, e.g. the flipped labels first."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAMS[family], *key)))


def progress_bar(total, desc: str, enabled: bool, unit: str = "it"):
    """tqdm on stderr (silent when ``enabled`` is False)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled, leave=False, mininterval=1.0)
