"""Pluggable diversity strategies for ``ads select``; see :mod:`strategies.base`."""

from strategies.base import ENTRY_POINT_GROUP, Strategy, available, get, register

# Importing a module registers its strategies.
from strategies import badge, baselines, coreset, kmedians  # noqa: F401,E402

__all__ = ["ENTRY_POINT_GROUP", "Strategy", "available", "get", "register"]
