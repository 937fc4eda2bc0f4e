"""The labeling task: which stores, which classes, and the labeled/validation arrays.

The labeled store's class list is the task's. An unlabeled pool may list no classes;
if it lists some, they must agree with the task's. Stores whose class names are the
default integers ("0", "1", ...) agree when one list is a prefix of the other (a
validation set whose labels happen to stop at class 1 was written with ['0', '1']).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from ads._validation import HOLDOUT_CAP, HOLDOUT_SHARE
from ads.errors import DataError, StoreError
from ads.pool import Pool, as_pool

logger = logging.getLogger(__name__)


@dataclass
class LabeledData:
    """Labeled training part and validation part, in memory."""

    x: np.ndarray
    y: np.ndarray
    ids: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    val_source: str


@dataclass
class Task:
    """Opened stores of one task, its classes and its labeled data."""

    kind: str
    classes: list[str]
    labeled: Pool
    val: Pool | None
    data: LabeledData
    pool: Pool | None = None
    test: Pool | None = None
    key_parts: list = field(default_factory=list)  # identifies labeled + validation data

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _default_names(classes) -> bool:
    return all(c == str(i) for i, c in enumerate(classes))


def task_classes(labeled: Pool, others) -> list[str]:
    """The task's class list (the labeled store's, or the longest of default integer
    lists), after checking every other store agrees with it."""
    classes = list(labeled.classes)
    stores = [(labeled, "labeled store")] + [(s, r) for s, r in others if s is not None]
    if _default_names(classes):
        for s, _ in stores:  # default names: the longest prefix-compatible list wins
            if s.classes and _default_names(s.classes) and len(s.classes) > len(classes):
                classes = list(s.classes)
    if not classes:
        raise StoreError(f"labeled store {str(labeled.path)!r} lists no classes (attribute 'classes' is empty).")
    for s, role in stores:
        if not s.classes:
            continue
        same = s.classes == classes or (
            _default_names(s.classes) and _default_names(classes) and classes[: len(s.classes)] == s.classes
        )
        if not same:
            raise StoreError(
                f"{role} {str(s.path)!r} has classes {s.classes}; the labeled store {str(labeled.path)!r} has {labeled.classes}."
            )
    return classes


def check_compatible(ref: Pool, other: Pool, role: str) -> None:
    """Same kind and item shape as ``ref``, or one line saying which differs."""
    if other.kind != ref.kind:
        raise StoreError(f"{role} {str(other.path)!r} holds {other.kind}; the labeled store {str(ref.path)!r} holds {ref.kind}.")
    if other.item_shape != ref.item_shape:
        what = "feature dimension" if ref.kind == "features" else "image shape"
        raise StoreError(f"{role} {str(other.path)!r} has {what} {other.item_shape}; the labeled store {str(ref.path)!r} has {ref.item_shape}.")


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


def holdout_split(y: np.ndarray, seed: int, share: float = HOLDOUT_SHARE, cap: int = HOLDOUT_CAP):
    """Stratified hold-out: about ``share`` of each class (at most ``cap`` in all),
    never a class's last point. Returns (train_rows, val_rows), both sorted."""
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
        raise DataError(f"the labeled set ({y.shape[0]} points) is too small to hold out a validation set; pass --val.")
    return np.setdiff1d(np.arange(y.shape[0]), val), val


def check_classes_covered(y: np.ndarray, classes: list[str], where: str) -> None:
    present = np.bincount(y, minlength=len(classes))
    missing = [classes[c] for c in np.flatnonzero(present == 0)]
    if missing:
        raise DataError(
            f"{where}: class {missing[0]!r} has no labeled point"
            + (f" (also {', '.join(map(repr, missing[1:4]))})" if len(missing) > 1 else "")
            + "; every class needs at least one."
        )


def load_task(pool, labeled, val=None, *, seed: int = 0, extra=()) -> Task:
    """Open the stores (paths or :class:`Pool` objects), check they belong to one task,
    and load the labeled and validation arrays.

    Without ``val``, a stratified ``HOLDOUT_SHARE`` (at most ``HOLDOUT_CAP``) of the
    labeled set is held out for validation. ``extra`` are more (store, role) pairs that
    must agree (e.g. a test store).
    """
    labeled = as_pool(labeled, "labeled store")
    pool = None if pool is None else as_pool(pool, "pool")
    val = None if val is None else as_pool(val, "validation store")
    others = [(val, "validation store"), (pool, "pool"), *extra]
    for store, role in others:
        if store is not None:
            check_compatible(labeled, store, role)
    classes = task_classes(labeled, others)
    x, y, ids = labeled_arrays(labeled, "labeled store")
    if val is not None:
        xv, yv, _ = labeled_arrays(val, "validation store")
        data = LabeledData(x, y, ids, xv, yv, f"store {val.path}")
        key_parts = [labeled.fingerprint(), val.fingerprint()]
    else:
        tr, va = holdout_split(y, seed)
        logger.info("no validation store given: holding out %d of %d labeled points (stratified) for validation",
                    va.size, y.size)
        data = LabeledData(x[tr], y[tr], ids[tr], x[va], y[va], f"held out {va.size} of {y.size} labeled points")
        key_parts = [labeled.fingerprint(), f"holdout-{seed}"]
    check_classes_covered(data.y, classes, f"labeled store {str(labeled.path)!r}")
    return Task(kind=labeled.kind, classes=classes, labeled=labeled, val=val, data=data, pool=pool, key_parts=key_parts)
