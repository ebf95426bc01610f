"""One small registry class for the method families whose entries are plain objects with a name.

Attribution methods (:mod:`neuronviz.methods.attribution`) and influence methods
(:mod:`neuronviz.methods.influence`) keep their entries in a :class:`Registry`; attacks, defences and
model sources have registries of their own because their entries carry more checks (schemas,
spellings, spec ownership). Written here rather than taken from a library: it is a checked,
ordered dict of a dozen lines, and no maintained package of the field offers one to depend on.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from neuronviz.infra.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one base class, in registration order (built-ins first, then plugins)."""

    def __init__(self, what: str, base: type[T]) -> None:
        self.what = what  # e.g. "attribution method", for messages
        self.base = base
        self._entries: dict[str, T] = {}
        self._lock = threading.Lock()

    def register(self, entry: T) -> T:
        """Add ``entry`` (an instance of the base class with a non-empty ``name``); returns it.
        Registering the same class again replaces it (a plugin reloaded); another class under a
        taken name is refused."""
        if not isinstance(entry, self.base):
            raise InputError(f"a {self.what} must be a {self.base.__name__}, got {type(entry).__name__}")
        name = getattr(entry, "name", None)
        if not name or not isinstance(name, str):
            raise InputError(f"a {self.what} needs a name")
        with self._lock:
            taken = self._entries.get(name)
            if taken is not None and type(taken) is not type(entry):
                raise InputError(f"a {self.what} named {name!r} is registered already")
            self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry ``name``; an :class:`InputError` listing the registered names if unknown."""
        try:
            return self._entries[name]
        except KeyError:
            raise InputError(f"method must be one of {tuple(self._entries)}, got {name!r}") from None

    def unregister(self, name: str) -> None:
        """Remove an entry (a test's, or a plugin's being reloaded); a missing name is no error."""
        with self._lock:
            self._entries.pop(name, None)

    def entries(self) -> list[T]:
        """Every registered entry, in registration order."""
        return list(self._entries.values())
