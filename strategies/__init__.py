"""Pluggable diversity strategies for ``ads select``; see :mod:`strategies.base`."""

# Importing a module registers its strategies.
from strategies import badge, baselines, coreset, kmedians  # noqa: F401,E402
from strategies.base import ENTRY_POINT_GROUP, Strategy, available, get, register

__all__ = ["ENTRY_POINT_GROUP", "Strategy", "available", "get", "register"]
