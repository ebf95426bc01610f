"""Process-wide stores bounded by bytes, not entries: uploads (kept once, by hash) and results.

:class:`ByteLRU` keeps values with their size, evicts the least recently used ones while the
total is over its cap, refuses a single value larger than the cap, and holds a lock around
every change (each browser session runs in its own thread).

:func:`uploads` and :func:`results` are the dashboard's two stores. Both live in
``st.cache_resource``, so ``st.cache_resource.clear()`` (the tests' fixture) empties them.

- **Uploads**: the bytes of uploaded files, by SHA-256, shared by every session (two sessions
  uploading the same file hold it once). A session keeps only the digest; when its bytes have
  been evicted and are needed again (a cache miss), the user is asked to upload the file again.
- **Results**: what :func:`app.runs.memo` computed, pickled (so every reader gets its own
  copy and cannot change another session's), counted by the pickle's length.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import streamlit as st

MiB = 1024 * 1024


def _megabytes(variable: str, default: int) -> int:
    """A cap in bytes from an environment variable in MiB (a positive integer), else ``default`` MiB."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default * MiB
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{variable} must be a whole number of MiB, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{variable} must be positive, got {value}")
    return value * MiB


#: Bytes of uploaded files the server keeps, all sessions together (env NEURONVIZ_UPLOAD_STORE_MB).
UPLOAD_STORE_BYTES = _megabytes("NEURONVIZ_UPLOAD_STORE_MB", 512)
#: Bytes of pickled results shared between sessions (env NEURONVIZ_RESULT_STORE_MB).
RESULT_STORE_BYTES = _megabytes("NEURONVIZ_RESULT_STORE_MB", 1024)


class TooLarge(ValueError):
    """A value larger than the whole store."""


class ByteLRU:
    """A thread-safe least-recently-used map whose values' sizes add up to at most ``capacity`` bytes."""

    def __init__(self, capacity: int, what: str = "entries") -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.what = what
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Keep ``value`` (of ``size`` bytes) under ``key``, evicting the oldest ones as needed."""
        size = int(size)
        if size > self.capacity:
            raise TooLarge(
                f"{size / MiB:.1f} MiB does not fit in the store of {self.what} ({self.capacity / MiB:.0f} MiB)"
            )
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._total -= old[1]
            self._items[key] = (value, size)
            self._total += size
            while self._total > self.capacity:
                _, (_, evicted) = self._items.popitem(last=False)
                self._total -= evicted

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return default
            self._items.move_to_end(key)
            return item[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def total(self) -> int:
        """Bytes held now."""
        with self._lock:
            return self._total

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._total = 0


@st.cache_resource(show_spinner=False)
def uploads() -> ByteLRU:
    """The uploaded files' bytes by SHA-256 (one store for the process)."""
    return ByteLRU(UPLOAD_STORE_BYTES, "uploaded files")


@st.cache_resource(show_spinner=False)
def results() -> ByteLRU:
    """Pickled results of :func:`app.runs.memo` by key (one store for the process)."""
    return ByteLRU(RESULT_STORE_BYTES, "results")
