"""Long computations run under ``neuronviz.infra.budget.limit(settings.time_budget_s(), cancel=event)``
in a worker thread, with a Cancel button; a budget that runs out or a cancel is a message that
keeps the session's state, and is not started again by the next rerun until "Run again"
(issue 11.2, the dashboard's part).

``neuronviz.infra.budget`` is another branch's module (libsafe). These tests replace it with a small
local stand-in of the agreed interface (``limit(seconds, cancel)`` as a per-thread context
manager, ``check()`` raising TimeLimitError / CancelledError) through ``monkeypatch`` only: they
test the dashboard's wiring, not the library's budget.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from contextlib import contextmanager

import pytest
from apptest import MAIN, assert_healthy
from streamlit.testing.v1 import AppTest

import neuronviz
from app import runs as analysis
from neuronviz.infra import errors
from neuronviz.workflows import analysis as library_analysis  # compute_analysis calls run_attack there

CALLS = {"attack": 0, "work": 0}


class StubBudget(types.ModuleType):
    """The agreed interface of neuronviz.infra.budget, per thread (a stand-in: see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("neuronviz.infra.budget")
        self.local = threading.local()
        self.entered: list[tuple[float | None, threading.Event | None]] = []
        self.stopped: list[str] = []

    @contextmanager
    def limit(self, seconds=None, cancel=None):
        self.entered.append((seconds, cancel))
        frames = self.local.__dict__.setdefault("frames", [])
        frames.append((time.monotonic() + float(seconds), float(seconds), cancel))
        try:
            yield
        finally:
            frames.pop()

    def check(self) -> None:
        for deadline, seconds, cancel in getattr(self.local, "frames", []):
            if cancel is not None and cancel.is_set():
                self.stopped.append("cancelled")
                raise errors.CancelledError("the computation was cancelled")
            if time.monotonic() > deadline:
                self.stopped.append("time")
                raise errors.TimeLimitError(f"the attack ran out of time: it ran past its {seconds:g} s time budget")


@pytest.fixture()
def budget(monkeypatch):
    stub = StubBudget()
    if not hasattr(errors, "TimeLimitError"):  # before the libsafe branch is merged
        monkeypatch.setattr(errors, "TimeLimitError", type("TimeLimitError", (errors.NeuronvizError, TimeoutError), {}), raising=False)
        monkeypatch.setattr(errors, "CancelledError", type("CancelledError", (errors.NeuronvizError, RuntimeError), {}), raising=False)
    monkeypatch.setitem(sys.modules, "neuronviz.infra.budget", stub)
    monkeypatch.setattr(neuronviz.infra, "budget", stub, raising=False)
    settings = sys.modules.get("neuronviz.infra.settings")
    if settings is None:
        settings = types.ModuleType("neuronviz.infra.settings")
        monkeypatch.setitem(sys.modules, "neuronviz.infra.settings", settings)
        monkeypatch.setattr(neuronviz.infra, "settings", settings, raising=False)
    monkeypatch.setattr(settings, "time_budget_s", lambda: 0.4, raising=False)
    CALLS.update(attack=0, work=0)
    return stub


def _slow_attack(stub: StubBudget, real):
    """run_attack that first does 2 s of "model evaluations", each checking the budget."""

    def attack(*args, **kwargs):
        CALLS["attack"] += 1
        for _ in range(200):
            stub.check()
            time.sleep(0.01)
        return real(*args, **kwargs)

    return attack


def test_a_budget_that_runs_out_is_a_message_keeps_state_and_waits_for_run_again(budget, monkeypatch):
    monkeypatch.setattr(library_analysis, "run_attack", _slow_attack(budget, library_analysis.run_attack))
    at = AppTest.from_file(MAIN, default_timeout=240)
    at.switch_page("app_pages/model_image.py")
    at.run()
    at.button_group(key="sample_class").set_value(2).run()
    at.switch_page("app_pages/attack.py").run()
    assert_healthy(at)
    assert budget.entered and budget.entered[-1][0] == 0.4  # settings.time_budget_s()
    assert isinstance(budget.entered[-1][1], threading.Event)
    [message] = [e.value for e in at.error if "ran out of time" in e.value]
    assert "Your choices are kept" in message and "Run again" in message
    assert at.sidebar.button_group(key="sample_class").value == 2
    assert any("digit 2" in m.value for m in at.main.markdown)
    assert CALLS["attack"] == 1
    at.run()  # any rerun: the timed-out work is not started again
    assert CALLS["attack"] == 1 and any("ran out of time" in e.value for e in at.error)
    monkeypatch.setattr(budget, "check", lambda: None)  # as if the budget were raised
    [again] = [b for b in at.button if b.label == "Run again"]
    again.click().run()
    assert_healthy(at)
    assert CALLS["attack"] == 2
    assert not [e for e in at.error if "ran out of time" in e.value]
    assert any("Benign class" in m.value for m in [*at.main.markdown, *at.main.caption])  # the page is complete


def _work(x: int) -> int:
    CALLS["work"] += 1
    return x * 2


def _cancel_button_script():
    import streamlit as st
    import test_app_cancel as t

    from app import runs as analysis

    key = (f"{t._work.__module__}.{t._work.__qualname__}", analysis.digest(21))
    st.button("Cancel", on_click=analysis._cancel_clicked, args=(key, "the work"))
    value = analysis.attempt(analysis.memo, t._work, 21)
    st.markdown(f"value {value}")


def test_a_cancelled_computation_is_not_started_again_until_run_again(budget):
    at = AppTest.from_function(_cancel_button_script, default_timeout=60)
    at.run()
    assert CALLS["work"] == 1 and at.markdown[0].value == "value 42"
    analysis.clear_caches()  # a fresh start: the next run would compute it again ...
    at.session_state[analysis._SESSION_STORE].clear()
    at.button[0].click().run()  # ... but Cancel is pressed (its callback runs before the rerun)  # Cancel pressed (its callback runs before the rerun)
    assert_healthy(at)
    assert CALLS["work"] == 1
    [message] = [e.value for e in at.error]
    assert message == "The work was cancelled; nothing was kept from it. Your choices are kept; press Run again to start it again."
    assert at.markdown[0].value == "value None"
    at.run()
    assert CALLS["work"] == 1  # still cancelled
    [again] = [b for b in at.button if b.label == "Run again"]
    again.click().run()
    assert CALLS["work"] == 2 and at.markdown[0].value == "value 42" and not at.error


def _stopped_script():
    import time

    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    import neuronviz.infra.budget as budget
    from app import runs as analysis

    original = DeltaGenerator.caption
    calls = {"n": 0}

    def caption(self, *args, **kwargs):  # as Streamlit does when the user clicks: the next st call raises
        calls["n"] += 1
        if calls["n"] > 3:
            raise StopException()
        return original(self, *args, **kwargs)

    def endless():
        while True:
            budget.check()
            time.sleep(0.01)

    DeltaGenerator.caption = caption
    try:
        analysis.run_limited(endless, _what="an endless loop")
    finally:
        DeltaGenerator.caption = original
    st.markdown("not reached")


def test_a_script_run_that_is_stopped_cancels_its_worker(budget, monkeypatch):
    monkeypatch.setattr(sys.modules["neuronviz.infra.settings"], "time_budget_s", lambda: 60.0, raising=False)
    at = AppTest.from_function(_stopped_script, default_timeout=60)
    started = time.monotonic()
    at.run()
    assert not at.markdown  # the run was stopped while the worker ran
    [(seconds, cancel)] = budget.entered
    assert seconds == 60.0 and cancel.is_set()
    while not budget.stopped and time.monotonic() - started < 10:
        time.sleep(0.02)
    assert budget.stopped == ["cancelled"]  # the worker stopped at its next check
    assert time.monotonic() - started < 10


def test_messages_for_time_limit_and_cancel(budget):
    timed = errors.TimeLimitError("pgd ran out of time: it ran past its 120 s time budget")
    assert analysis.error_message(timed) == (
        "Pgd ran out of time: it ran past its 120 s time budget. Your choices are kept; press Run again to try "
        "once more (the same work takes as long)."
    )
    assert "press Run again to start it again" in analysis.error_message(errors.CancelledError("x was cancelled"))


def test_outside_streamlit_the_work_runs_in_this_thread_under_the_budget(budget):
    assert analysis.run_limited(_work, 4) == 8
    [(seconds, cancel)] = budget.entered
    assert seconds == 0.4 and not cancel.is_set()
