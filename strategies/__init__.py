"""Pluggable diversity strategies for ``ads select``; see :mod:`strategies.base`."""

from strategies.base import ENTRY_POINT_GROUP, Strategy, available, get, register
from strategies import coreset  # noqa: F401  (registers "coreset")

__all__ = ["ENTRY_POINT_GROUP", "Strategy", "available", "get", "register"]
