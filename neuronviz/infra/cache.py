"""The library's in-process caches: bounded, locked, and cleared by one call.

Some results are worth keeping between calls: a model's probe layers, NIP's class profiles, a
PSSR regenerator loaded from disk, a twin of a model without in-place modules. Each module that
keeps one asks this module for a :class:`Cache` (:func:`new_cache`) instead of a module-level
dict, so every cache

- is **bounded**: least recently used entries are dropped beyond ``max_entries`` and/or
  ``max_bytes`` (the bytes of the tensors, modules and models a value holds, :func:`nbytes`);
- is **thread-safe**: one lock per cache; :meth:`Cache.get_or_make` computes a missing value once
  even when several threads ask for it at the same time (the others wait for it);
- is **cleared by** :func:`clear`, which the dashboard's ``app.state.clear_caches`` calls (tests,
  weights changed on disk).

Keys are values, never ``id()`` of an object (an id is reused once the object is freed): a model
is keyed by its ``content_hash`` (architecture, normalisation and every weight byte) and device.

Hand-written rather than ``functools.lru_cache``: that one has no byte bound, cannot be listed or
cleared as a group, and computes a value twice when two threads miss at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from neuronviz.infra.errors import InputError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def nbytes(value: Any) -> int:
    """The bytes of the tensors a value holds: a tensor, an ``nn.Module`` (parameters and
    buffers), or tuples, lists and dicts of them (other values count 0)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, nn.Module):
        return sum(nbytes(t) for t in value.parameters()) + sum(nbytes(t) for t in value.buffers())
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    return 0


@dataclass(frozen=True)
class CacheInfo:
    """What a cache holds now and how it was used since it was made or cleared."""

    name: str
    entries: int
    bytes: int
    max_entries: int | None
    max_bytes: int | None
    hits: int
    misses: int


class Cache(Generic[K, V]):
    """A least-recently-used map with bounds and a lock. Make one with :func:`new_cache`."""

    def __init__(self, name: str, max_entries: int | None = None, max_bytes: int | None = None,
                 size: Callable[[V], int] = nbytes) -> None:
        if max_entries is None and max_bytes is None:
            raise InputError(f"cache {name!r}: give max_entries and/or max_bytes (a cache is bounded)")
        for bound in (max_entries, max_bytes):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 1):
                raise InputError(f"cache {name!r}: bounds are positive integers, got {bound!r}")
        self.name = name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._size = size
        self._lock = threading.RLock()
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._pending: dict[K, threading.Lock] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __getitem__(self, key: K) -> V:
        with self._lock:
            if key not in self._data:
                self._misses += 1
                raise KeyError(key)
            self._hits += 1
            self._data.move_to_end(key)
            return self._data[key][0]

    def __setitem__(self, key: K, value: V) -> None:
        self.put(key, value)

    def keys(self) -> Iterator[K]:
        """The keys, least recently used first (a copy: safe while others use the cache)."""
        with self._lock:
            return iter(list(self._data))

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            if key not in self._data:
                self._misses += 1
                return default
            self._hits += 1
            self._data.move_to_end(key)
            return self._data[key][0]

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` and drop the least recently used entries beyond the bounds.
        A value larger than ``max_bytes`` by itself is not kept (it is returned all the same)."""
        size = int(self._size(value))
        with self._lock:
            self._drop(key)
            if self.max_bytes is not None and size > self.max_bytes:
                return value
            self._data[key] = (value, size)
            self._bytes += size
            while self._data and (
                (self.max_entries is not None and len(self._data) > self.max_entries)
                or (self.max_bytes is not None and self._bytes > self.max_bytes)
            ):
                _, (_, dropped) = self._data.popitem(last=False)
                self._bytes -= dropped
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``; when it is missing, ``make()`` is called once (other threads asking
        for the same key meanwhile wait for it) and its value kept. An error of ``make`` is raised
        and nothing is kept."""
        with self._lock:
            if key in self._data:
                self._hits += 1
                self._data.move_to_end(key)
                return self._data[key][0]
            self._misses += 1
            pending = self._pending.setdefault(key, threading.Lock())
        try:
            with pending:
                with self._lock:
                    if key in self._data:
                        self._data.move_to_end(key)
                        return self._data[key][0]
                return self.put(key, make())
        finally:
            with self._lock:
                if self._pending.get(key) is pending:
                    del self._pending[key]

    def pop(self, key: K) -> None:
        with self._lock:
            self._drop(key)

    def clear(self) -> None:
        """Forget every entry (and the hit counts)."""
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self._hits = self._misses = 0

    def info(self) -> CacheInfo:
        with self._lock:
            return CacheInfo(self.name, len(self._data), self._bytes, self.max_entries, self.max_bytes, self._hits, self._misses)

    def _drop(self, key: K) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= old[1]


_registry_lock = threading.Lock()
_CACHES: dict[str, Cache] = {}


def new_cache(name: str, *, max_entries: int | None = None, max_bytes: int | None = None,
              size: Callable[[Any], int] = nbytes) -> Cache:
    """A new bounded cache, registered under ``name`` (e.g. ``"nip.class_profiles"``) so that
    :func:`clear` reaches it. Raises :class:`InputError` for a name already taken or no bound."""
    made: Cache = Cache(name, max_entries=max_entries, max_bytes=max_bytes, size=size)
    with _registry_lock:
        if name in _CACHES:
            raise InputError(f"a cache named {name!r} exists already")
        _CACHES[name] = made
    return made


def caches() -> list[CacheInfo]:
    """Every registered cache's :class:`CacheInfo`, in the order they were made."""
    with _registry_lock:
        registered = list(_CACHES.values())
    return [c.info() for c in registered]


def clear() -> None:
    """Forget the entries of every registered cache."""
    with _registry_lock:
        registered = list(_CACHES.values())
    for registered_cache in registered:
        registered_cache.clear()
