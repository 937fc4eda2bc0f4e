"""Registries of pluggable parts by name, extended through entry-point groups.

``ads`` has one registry per kind of part (scorers, valuers); third-party packages add
their own through the entry-point groups ``ads.scorers`` and ``ads.valuers`` (each entry
point names a class; its key is the part's name). Strategies have the same mechanism in
the ``strategies`` package (group ``ads.strategies``). The pipeline never looks a part up
by name: the edge (CLI, service, a Python caller) does, once, and passes objects.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ads.errors import ParameterError


class Registry:
    """Classes registered by name, plus those of an entry-point group (loaded lazily)."""

    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Class decorator: register ``cls`` under ``cls.name``."""
        if not getattr(cls, "name", ""):
            raise ValueError(f"{cls.__name__} has no name")
        self._classes[cls.name] = cls
        return cls

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=self.group):
            if ep.name not in self._classes:
                self._classes[ep.name] = ep.load()

    def available(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._classes)

    def get_class(self, name: str) -> type:
        if name not in self._classes:  # scanning the installed distributions costs ~20 ms: only for a new name
            self._load_entry_points()
        try:
            return self._classes[name]
        except KeyError:
            raise ParameterError(f"Unknown {self.kind} {name!r}. Valid {self.kind}s: {', '.join(sorted(self._classes))}.") from None

    def make(self, name: str, **params):
        """An instance of the class registered as ``name``, built with ``params``."""
        cls = self.get_class(name)
        try:
            return cls(**params)
        except TypeError as exc:  # an unknown keyword: say which part, in one line
            raise ParameterError(f"Bad parameters for {self.kind} {name!r}: {exc}.") from None
