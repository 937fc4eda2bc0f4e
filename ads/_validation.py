"""One check per fault, one wording per fault.

Every message names the parameter, its owner (a function, class or CLI command such as
``ads loop``), the rule and the value: "The 'k' parameter of knn_shapley must be an
int >= 1. Got 0."
"""

from __future__ import annotations

import numbers

import numpy as np

from ads.errors import DataError, ParameterError

#: Hold-out used when no validation store is given: this share of the labeled set ...
HOLDOUT_SHARE = 0.1
#: ... at most this many points.
HOLDOUT_CAP = 500
#: Rows per block when a pool's embeddings are scored in memory.
SCORE_BLOCK_ROWS = 65536


def check_int(value, name: str, owner: str, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """``value`` as an int (not a bool) in [min_value, max_value]."""
    rule = "an int" + (f" >= {min_value}" if min_value is not None else "")
    if max_value is not None:
        rule = f"an int in [{min_value}, {max_value}]" if min_value is not None else f"an int <= {max_value}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(f"The {name!r} parameter of {owner} must be {rule}. Got {value!r}.")
    if (min_value is not None and value < min_value) or (max_value is not None and value > max_value):
        raise ParameterError(f"The {name!r} parameter of {owner} must be {rule}. Got {value!r}.")
    return int(value)


def check_choice(value, choices, name: str, owner: str):
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ParameterError(f"The {name!r} parameter of {owner} must be one of {list(choices)}. Got {value!r}.")
    return value


def check_fraction(value, name: str, owner: str) -> float:
    """A number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 < float(value) <= 1.0):
        raise ParameterError(f"The {name!r} parameter of {owner} must be a number in (0, 1]. Got {value!r}.")
    return float(value)


def check_percent(value, name: str, owner: str) -> float:
    """A percentage in (0, 100)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 < float(value) < 100.0):
        raise ParameterError(f"The {name!r} parameter of {owner} must be a percentage in (0, 100), like 5%. Got {value!r}.")
    return float(value)


def check_positive_float(value, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ParameterError(f"The {name!r} parameter of {owner} must be a number > 0. Got {value!r}.")
    return float(value)


def check_budget(budget, n_available: int, owner: str, where: str) -> int:
    """An int >= 1 that is at most the ``n_available`` points of ``where``."""
    budget = check_int(budget, "budget", owner, min_value=1)
    if budget > n_available:
        raise ParameterError(f"The 'budget' parameter of {owner} ({budget}) is larger than {where} ({n_available} points).")
    return budget


def check_seed(value, name: str, owner: str) -> int:
    """A seed usable by numpy, torch and scikit-learn alike: an int in [0, 2**32 - 1]."""
    return check_int(value, name, owner, min_value=0, max_value=2**32 - 1)


def check_random_state(random_state, owner: str):
    """None, an int in [0, 2**32 - 1], a SeedSequence or a numpy Generator.

    Returned unchanged (a Generator is used as is; ``np.random.default_rng`` accepts
    every one of these)."""
    if random_state is None or isinstance(random_state, (np.random.Generator, np.random.SeedSequence)):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool) and 0 <= random_state < 2**32:
        return int(random_state)
    raise ParameterError(
        f"The 'random_state' parameter of {owner} must be None, an int in [0, 2**32 - 1], a SeedSequence "
        f"or a numpy Generator. Got {random_state!r}."
    )


def check_matrix(a, name: str, owner: str, *, dtype=np.float64, dim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """A finite 2-D numeric array as C-contiguous ``dtype``, with ``dim`` columns if given."""
    try:
        a = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} of {owner} is not a numeric array: {exc}") from None
    if a.ndim != 2:
        raise DataError(f"{name} of {owner} must be 2-D (n, d). Got shape {a.shape}.")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{name} of {owner} must be numeric. Got dtype {a.dtype}.")
    if a.shape[0] == 0 and not allow_empty:
        raise DataError(f"{name} of {owner} is empty.")
    if a.shape[1] == 0:
        raise DataError(f"{name} of {owner} has no columns: shape {a.shape}.")
    if dim is not None and a.shape[1] != dim:
        raise DataError(f"{name} of {owner} has {a.shape[1]} columns; expected {dim}.")
    a = np.ascontiguousarray(a, dtype=dtype)
    finite = np.isfinite(a).all(axis=1)
    if not finite.all():
        raise DataError(f"{name} of {owner} contains NaN or inf (first bad row {int(np.flatnonzero(~finite)[0])}).")
    return a


def check_labels(a, name: str, owner: str, *, n: int | None = None, n_classes: int | None = None) -> np.ndarray:
    """1-D integer class labels (integral floats accepted) >= 0, as int64."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise DataError(f"{name} of {owner} must be 1-D. Got shape {a.shape}.")
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "f" and np.isfinite(a).all() and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise DataError(f"{name} of {owner} must hold integer class labels. Got dtype {a.dtype}.")
    a = a.astype(np.int64, copy=False)
    if n is not None and a.shape[0] != n:
        raise DataError(f"{name} of {owner} has {a.shape[0]} labels; expected {n} (one per row).")
    if a.size and a.min() < 0:
        raise DataError(f"{name} of {owner} must hold class labels >= 0 (no unlabeled -1). Got {int(a.min())}.")
    if n_classes is not None and a.size and a.max() >= n_classes:
        raise DataError(f"{name} of {owner} must hold class labels < n_classes={n_classes}. Got {int(a.max())}.")
    return a
