"""Background runs: a long computation in a worker thread, under the time budget, with a Cancel button.

:func:`run_limited` runs a library call under ``neuronviz.infra.budget.limit(settings.time_budget_s(),
cancel=...)``; in a Streamlit script run the work goes to a worker thread while the page shows the
elapsed time and a Cancel button. A cancelled or timed-out run is remembered per result key, so the
next rerun does not start it again until "Run again" (:func:`app.messages.show_error`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

T = TypeVar("T")

_STOPPED = "analysis.stopped"  # session_state: memo key -> message of a cancelled / timed-out run
POLL_SECONDS = 0.15  # how often the script thread looks at a computation in a worker (and can be stopped)

_worker = threading.local()  # .active: this thread is a memo worker (nested memo calls run inline)




def _budget_limit(cancel: threading.Event):
    """``neuronviz.infra.budget.limit`` with the server's time budget and this cancel flag."""
    from neuronviz.infra import budget, settings

    return budget.limit(settings.time_budget_s(), cancel=cancel)


def _stopped_error(key: tuple) -> BaseException | None:
    """The error of a cancelled or timed-out run of ``key`` in this session, if it is remembered."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    stopped = st.session_state.get(_STOPPED, {})
    if key not in stopped:
        return None
    kind, message = stopped[key]
    error = _error_class(kind)(message)
    error.memo_key = key  # type: ignore[attr-defined]
    return error


def _error_class(kind: str) -> type[BaseException]:
    from neuronviz.infra import errors

    return getattr(errors, kind)


def _remember_stopped(key: tuple | None, error: BaseException) -> None:
    if key is None or get_script_run_ctx(suppress_warning=True) is None:
        return
    st.session_state.setdefault(_STOPPED, {})[key] = (type(error).__name__, str(error))
    error.memo_key = key  # type: ignore[attr-defined]


def _forget_stopped(key: tuple) -> None:
    st.session_state.get(_STOPPED, {}).pop(key, None)


def _cancel_clicked(key: tuple, what: str) -> None:
    """The Cancel button's callback (runs before the rerun): the rerun stops the worker; remember
    that the user cancelled, so the rerun does not start the computation again."""
    from neuronviz.infra.errors import CancelledError

    _remember_stopped(key, CancelledError(f"{what} was cancelled; nothing was kept from it"))


def _is_stop(error: BaseException) -> bool:
    from neuronviz.infra import errors

    return isinstance(error, (errors.TimeLimitError, errors.CancelledError))


def run_limited(fn: Callable[..., T], *args: Any, _what: str = "the computation", _key: tuple | None = None, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` under ``neuronviz.infra.budget.limit(settings.time_budget_s(), cancel=...)``.

    In a Streamlit script run, the work runs in a worker thread while the script thread shows its
    elapsed time and a Cancel button, looking again every :data:`POLL_SECONDS`. Streamlit stops a
    script run (the user clicked something: Cancel, another page, a widget) by raising in the
    script thread at its next ``st`` call; the ``finally`` then sets the cancel flag, and the
    worker stops at its next model evaluation. Elsewhere (tests, a nested call inside a worker)
    the work runs in this thread, under the same budget.

    Raises what ``fn`` raises; TimeLimitError / CancelledError when the budget runs out or the
    work is cancelled (also remembered for ``_key``: see :func:`memo`)."""
    cancel = threading.Event()
    if getattr(_worker, "active", False) or get_script_run_ctx(suppress_warning=True) is None:
        try:
            with _budget_limit(cancel):
                return fn(*args, **kwargs)
        except Exception as error:
            if _is_stop(error):
                _remember_stopped(_key, error)
            raise
    outcome: dict[str, Any] = {}
    done = threading.Event()
    if getattr(fn, "progress_steps", None):  # the function reports its steps: the line counts them
        kwargs = {**kwargs, "progress": lambda index, count, name: outcome.update(step=(index, count, name))}

    def work() -> None:
        _worker.active = True
        try:
            with _budget_limit(cancel):
                outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the script thread
            outcome["error"] = error
        finally:
            done.set()

    worker = threading.Thread(target=work, name=f"neuronviz-{_what}", daemon=True)
    started = time.perf_counter()
    worker.start()
    try:
        if not done.wait(POLL_SECONDS * 2):  # short computations finish before anything is drawn
            panel = st.empty()
            with panel.container(horizontal=True, vertical_alignment="center"):
                status = st.empty()
                st.button(
                    "Cancel",
                    key=f"analysis.cancel.{_key[1][:16] if _key else id(worker)}",
                    icon=":material/cancel:",
                    on_click=_cancel_clicked,
                    args=(_key, _what),
                    disabled=_key is None,
                    help="Stop this computation; your choices are kept.",
                )
            while not done.wait(POLL_SECONDS):
                status.caption(progress_text(_what, time.perf_counter() - started, outcome.get("step")))
            panel.empty()
    finally:
        if not done.is_set():
            cancel.set()  # the script run is being stopped: stop the worker at its next forward
    if "error" in outcome:
        failure: BaseException = outcome["error"]
        if _is_stop(failure):
            _remember_stopped(_key, failure)
        raise failure
    return outcome["value"]


def progress_text(what: str, seconds: float, step: tuple[int, int, str] | None = None) -> str:
    """The long-run status line: ``Computing the attack, … — step 2 of 5 (matched control), 6 s``."""
    where = f" — step {step[0] + 1} of {step[1]} ({step[2]})" if step else ""
    return f":material/hourglass_top: Computing {what}{where}, {seconds:.0f} s"
