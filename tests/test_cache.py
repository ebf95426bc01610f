"""neuronviz.infra.cache: bounded by entries and bytes (least recently used first out), one value made
once under concurrent misses, and one clear() for every registered cache."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import torch
from torch import nn

from neuronviz.infra import cache
from neuronviz.infra.errors import InputError


def _fresh(name: str, **bounds) -> cache.Cache:
    return cache.new_cache(f"{name}.{uuid.uuid4().hex[:8]}", **bounds)  # a name of its own on every run


def test_entries_bound_drops_least_recently_used():
    c = _fresh("test.entries", max_entries=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recently used
    c.put("c", 3)
    assert list(c.keys()) == ["a", "c"] and "b" not in c
    assert c.info().hits == 1 and c.info().entries == 2


def test_bytes_bound_counts_tensors_and_modules():
    assert cache.nbytes(torch.zeros(10, dtype=torch.float32)) == 40
    assert cache.nbytes(nn.Linear(3, 2)) == (6 + 2) * 4
    assert cache.nbytes((torch.zeros(2, dtype=torch.float64), {"x": torch.zeros(3, dtype=torch.int8)}, "text")) == 19
    c = _fresh("test.bytes", max_bytes=100)
    c.put("a", torch.zeros(10))  # 40 bytes
    c.put("b", torch.zeros(10))  # 80
    c.put("c", torch.zeros(10))  # 120 > 100: a goes
    assert list(c.keys()) == ["b", "c"] and c.info().bytes == 80
    big = torch.zeros(30)  # 120 bytes alone: returned, not kept, nothing else dropped
    assert c.put("big", big) is big and "big" not in c and len(c) == 2


def test_get_or_make_makes_once_under_concurrent_misses():
    c = _fresh("test.once", max_entries=4)
    calls = []

    def make():
        calls.append(threading.get_ident())
        time.sleep(0.05)
        return len(calls)

    results = []
    threads = [threading.Thread(target=lambda: results.append(c.get_or_make("k", make))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [1] * 6


def test_failed_make_keeps_nothing():
    c = _fresh("test.fail", max_entries=2)

    def boom():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        c.get_or_make("k", boom)
    assert "k" not in c and c.get_or_make("k", lambda: 7) == 7


def test_clear_reaches_every_registered_cache_and_the_library_ones():
    import neuronviz.methods.defences  # noqa: F401  (NIP and PSSR make their caches on import)

    names = {info.name for info in cache.caches()}
    assert {"nip.class_profiles", "pssr.regenerators"} <= names
    mine = _fresh("test.clear", max_entries=3)
    mine["x"] = 1
    cache.clear()
    assert len(mine) == 0 and all(info.entries == 0 for info in cache.caches())


def test_bad_caches_are_refused():
    with pytest.raises(InputError, match="bounded"):
        cache.Cache("unbounded")
    with pytest.raises(InputError, match="positive"):
        cache.Cache("zero", max_entries=0)
    taken = _fresh("test.twice", max_entries=1)
    with pytest.raises(InputError, match="exists already"):
        cache.new_cache(taken.name, max_entries=1)


def test_regenerator_is_loaded_once_per_model_and_device(digits_cnn):
    from neuronviz.methods.defences.pssr import load_regenerator

    def info() -> cache.CacheInfo:
        return next(i for i in cache.caches() if i.name == "pssr.regenerators")

    cache.clear()
    first = load_regenerator(digits_cnn)
    assert first is not None and info().entries == 1 and info().bytes == cache.nbytes(first[0]) > 0
    assert load_regenerator(digits_cnn) is first and info().hits == 1
