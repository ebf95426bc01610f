"""The warm-up's start-up analysis (app/warmup.py, app/result_cache.py ``reserve``): a result claimed
by the warm-up is computed once, a page run that asks for it meanwhile waits and reads it, a failed
warm-up leaves the page to compute (and show) its own, and what the warm-up stores is what the page
would have computed: the first run of the default page after the warm-up computes nothing."""

from __future__ import annotations

import threading

import pytest
import streamlit as st
import torch

from app import result_cache, store, warmup

CALLS: list[int] = []
GATE = threading.Event()  # what _slow_double waits for before it returns


def _slow_double(x: int) -> int:
    CALLS.append(x)
    assert GATE.wait(60)
    return 2 * x


def _failing(x: int) -> int:
    CALLS.append(x)
    raise ValueError(f"computation {len(CALLS)} failed")


def _double(x: int) -> int:
    CALLS.append(x)
    return 2 * x


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    st.cache_data.clear()
    st.cache_resource.clear()
    CALLS.clear()
    GATE.clear()
    monkeypatch.setattr(warmup, "_thread", None)
    monkeypatch.setattr(warmup, "imported", {})
    monkeypatch.setattr(warmup, "failed", {})
    yield
    GATE.set()
    st.cache_data.clear()
    st.cache_resource.clear()


def _in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn(*args)
        except Exception as error:  # noqa: BLE001 - the test reads it
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_a_claimed_result_is_computed_once_and_the_page_waits_for_it():
    run = result_cache.reserve(_slow_double, 21)
    assert run is not None
    assert result_cache.reserve(_slow_double, 21) is None  # claimed already: nobody computes it twice
    warm, warm_outcome = _in_thread(run)
    page, page_outcome = _in_thread(result_cache.memo, _slow_double, 21)
    page.join(0.3)
    assert page.is_alive() and "value" not in page_outcome  # the page waits for the warm-up's result
    GATE.set()
    warm.join(60)
    page.join(60)
    assert warm_outcome == {"value": 42} and page_outcome == {"value": 42}
    assert CALLS == [21]  # computed once
    assert result_cache.reserve(_slow_double, 21) is None  # stored now
    assert result_cache.memo_key(_slow_double, 21) in store.results()


def test_another_key_is_not_held_up_by_a_claim():
    run = result_cache.reserve(_slow_double, 1)
    assert run is not None
    assert result_cache.memo(_double, 5) == 10  # no wait: GATE is never set before this returns
    GATE.set()
    assert run() == 2


def test_a_failed_warm_up_leaves_the_page_to_compute_and_raise_its_own_error():
    run = result_cache.reserve(_failing, 3)
    assert run is not None
    with pytest.raises(ValueError, match="computation 1 failed"):
        run()
    assert result_cache.memo_key(_failing, 3) not in store.results()
    with pytest.raises(ValueError, match="computation 2 failed"):  # the page's own computation and error
        result_cache.memo(_failing, 3)
    assert CALLS == [3, 3]


def test_a_page_waiting_on_a_failed_warm_up_computes_itself(monkeypatch):
    attempts = []
    original = result_cache.run_limited

    def fails_first(fn, *args, **kwargs):  # the warm-up's computation fails, the page's succeeds
        attempts.append(fn.__name__)
        if len(attempts) == 1:
            assert GATE.wait(60)
            raise RuntimeError("the warm-up's own failure")
        return original(fn, *args, **kwargs)

    monkeypatch.setattr(result_cache, "run_limited", fails_first)
    run = result_cache.reserve(_double, 4)
    warm, warm_outcome = _in_thread(run)
    page, page_outcome = _in_thread(result_cache.memo, _double, 4)
    page.join(0.3)
    assert page.is_alive()  # waiting for the claim
    GATE.set()
    warm.join(60)
    page.join(60)
    assert isinstance(warm_outcome["error"], RuntimeError)
    assert page_outcome == {"value": 8} and attempts == ["_double", "_double"] and CALLS == [4]


def _start_up_warm_up() -> None:
    """The server's warm-up as app.serve starts it (without waiting for a server), to its end."""
    thread = warmup.start(modules=warmup.MODULES, later=warmup.LATER, after_server_up=False)
    warmup.wait()
    thread.join(300)
    assert not thread.is_alive()


def test_the_warm_ups_start_up_analysis_is_the_pages_own(monkeypatch):
    """After the warm-up, the first run of the default page computes nothing (its analysis and ε sweep
    are the warm-up's, same keys) and draws the whole analysis; the stored analysis equals one
    computed afresh, tensor for tensor (the timings aside)."""
    from apptest import assert_healthy, open_page

    from app import runs, state

    _start_up_warm_up()
    assert warmup.failed == {}
    assert {"computing the start-up analysis", "computing the start-up ε sweep"} <= set(warmup.imported)
    computed = []
    original = result_cache.run_limited
    monkeypatch.setattr(result_cache, "run_limited", lambda fn, *a, **k: computed.append(fn.__name__) or original(fn, *a, **k))
    at = open_page()
    assert_healthy(at)
    assert computed == []  # every result of the page came from the warm-up
    assert at.error.len == 0 and len(at.get("plotly_chart")) >= 10

    model = state.load_checked_model(state.ModelRequest(device=state.default_device()))
    image, _ = state.load_requested_image(state.ImageRequest(sample_id=runs.DEFAULT_SAMPLE_ID), model)
    kwargs = {"defences": (*runs.RESTORATIONS, *runs.default_extras()), "influence_method": runs.DEFAULT_INFLUENCE_METHOD}
    stored = result_cache.memo(runs.compute_analysis, model, image, runs.default_choice(), **kwargs)
    fresh = runs.compute_analysis(model, image, runs.default_choice(), **kwargs)
    assert computed == []  # the memo above read the warm-up's result
    _assert_same(stored, fresh)


def _assert_same(a, b, path: str = "analysis") -> None:
    """Equal, tensor for tensor and field for field, except wall-clock timings (``seconds``)."""
    import dataclasses

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), path
        for field in dataclasses.fields(a):
            if field.name not in ("seconds",):
                _assert_same(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), path
        for key in a:
            if key != "seconds":
                _assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_a_failed_start_up_analysis_leaves_the_page_its_own(monkeypatch):
    """The warm-up's analysis fails: it is logged, nothing is stored, and the page computes the
    analysis itself and draws it."""
    from apptest import assert_healthy, open_page

    original = result_cache.run_limited
    calls = []

    def warm_up_fails(fn, *args, **kwargs):
        calls.append((threading.current_thread().name, fn.__name__))
        if threading.current_thread().name == "neuronviz-warmup":
            raise RuntimeError("the warm-up's analysis failed")
        return original(fn, *args, **kwargs)

    monkeypatch.setattr(result_cache, "run_limited", warm_up_fails)
    _start_up_warm_up()
    assert warmup.failed == {"computing the start-up analysis": "RuntimeError: the warm-up's analysis failed"}
    at = open_page()
    assert_healthy(at)
    assert at.error.len == 0 and len(at.get("plotly_chart")) >= 10
    assert [name for thread, name in calls if thread != "neuronviz-warmup"] == ["compute_analysis", "eps_sweep"]


def test_no_start_up_analysis_with_plugins_configured(monkeypatch):
    """A plugin may change the default methods: the warm-up computes nothing, the page does."""
    from neuronviz.infra import plugins

    monkeypatch.setattr(plugins, "plugin_modules", lambda: ["some_lab.defences"])
    assert warmup.start_up_analysis() is None


def test_only_the_warm_ups_missing_context_warning_is_dropped():
    import logging

    def record(thread: str, message: str) -> logging.LogRecord:
        made = logging.LogRecord("streamlit", logging.WARNING, __file__, 1, message, None, None)
        made.threadName = thread
        return made

    drop = warmup._NO_CONTEXT_WARNING.filter
    assert not drop(record("neuronviz-warmup", "Thread 'neuronviz-warmup': missing ScriptRunContext! ..."))
    assert drop(record("ScriptRunner.scriptThread", "Thread 'x': missing ScriptRunContext! ..."))
    assert drop(record("neuronviz-warmup", "something else"))


def _unpicklable(x: int):
    CALLS.append(x)
    return lambda: x  # a result the store cannot pickle


def test_a_result_that_cannot_be_stored_claims_nothing_after_it_and_releases_its_own():
    run = result_cache.reserve(_unpicklable, 5)
    assert run is not None
    then_claims: list = []
    with pytest.raises(Exception):  # noqa: B017 - pickle's own error, whatever its class
        run(then=lambda result: then_claims.append(result_cache.reserve(_double, 5)))
    assert then_claims == []  # no claim was made that nobody would run (a page would wait on it forever)
    assert result_cache.memo_key(_unpicklable, 5) not in store.results()
    assert result_cache.memo_key(_unpicklable, 5) not in result_cache._IN_FLIGHT  # its own claim released
    page, outcome = _in_thread(result_cache.memo, _double, 5)
    page.join(60)
    assert outcome == {"value": 10}  # a page asking for the next key computes it, unblocked
