"""The dashboard's result cache: any library function's result, kept by the full content of its arguments.

:func:`memo` runs a library function through two byte-bounded levels: the process-wide store
(:func:`app.store.results`, pickled: each session gets its own copy and cannot change another's)
and the session's own recent results (unpickled: its reruns cost a digest and a lookup). The key
is a **full-content** digest of the arguments (:func:`neuronviz.workflows.analysis.content_key`: a
model's ``content_hash`` and device, the SHA-1 of every byte of a tensor, the values of numbers,
strings, mappings and sequences). Streamlit's own hashing of a large array looks at a sample of it
only (measured: a one-pixel change in a 3×512×512 array returned the stale result), so arguments
are never handed to it. A computation runs as a background run (:mod:`app.background`).

:func:`reserve` claims a result for a computation ahead of any page run (the warm-up of a fresh
server computes the start-up analysis, :mod:`app.warmup`). While it is claimed, a :func:`memo` call
for the same key waits for it and reads its result instead of computing it a second time; when the
precomputation fails, the waiting call computes the result itself (and shows its own error).
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from app import store
from app.background import _stopped_error, run_limited
from neuronviz.workflows.analysis import digest

T = TypeVar("T")

#: Keys claimed by :func:`reserve` and not yet released, each with the event set at the release.
_IN_FLIGHT: dict[tuple, threading.Event] = {}
_IN_FLIGHT_LOCK = threading.Lock()  # held to look up the store and _IN_FLIGHT together, and to leave _IN_FLIGHT

SESSION_ENTRIES = 32  # results a session keeps unpickled, most recently used first ...
SESSION_BYTES = 128 * store.MiB  # ... and at most this many bytes of them (by their pickles' size)
_SESSION_STORE = "analysis.session_results"


def _session_store() -> OrderedDict | None:
    """This session's own results (None outside a Streamlit script run: tests, benchmarks).
    Values are (result, size in bytes)."""
    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return st.session_state.setdefault(_SESSION_STORE, OrderedDict())


def _keep_in_session(store_: OrderedDict, key: tuple, result: Any, size: int) -> None:
    store_[key] = (result, size)
    store_.move_to_end(key)
    total = sum(item[1] for item in store_.values())
    while store_ and (len(store_) > SESSION_ENTRIES or total > SESSION_BYTES):
        _, (_, evicted) = store_.popitem(last=False)
        total -= evicted


def memo(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, cached across reruns and sessions by the full content of the
    arguments (see :func:`content_key`). ``fn`` must be a module-level function whose result can
    be pickled (tensors, dataclasses of tensors, frames; not a model).

    Two levels, both bounded by bytes: the process-wide store (:func:`app.store.results`,
    :data:`app.store.RESULT_STORE_BYTES`) keeps results pickled, so each session gets its own
    copy; a session keeps its last results unpickled (:data:`SESSION_ENTRIES`, at most
    :data:`SESSION_BYTES`), so its own reruns cost a digest and a lookup.

    A computation runs under the time budget (:func:`run_limited`): in a Streamlit run, in a
    worker thread with a Cancel button, stopped when the user cancels, clicks anything else, or
    the budget runs out. A cancelled or timed-out computation is not started again by the next
    rerun: it raises the same error until "Run again" (:func:`attempt`) is pressed.
    """
    key = memo_key(fn, *args, **kwargs)
    session = _session_store()
    if session is not None and key in session:
        session.move_to_end(key)
        return session[key][0]
    shared = store.results()
    pickled = _stored_or_precomputed(shared, key)
    if pickled is not None:
        result = pickle.loads(pickled)
    else:
        stopped = _stopped_error(key)
        if stopped is not None:
            raise stopped
        result = run_limited(fn, *args, _what=_short_name(fn), _key=key, **kwargs)
        pickled = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            shared.put(key, pickled, len(pickled))
        except store.TooLarge:
            pass  # larger than the whole store: used now, computed again next time
    if session is not None:
        _keep_in_session(session, key, result, len(pickled))
    return result


def memo_key(fn: Callable, *args: Any, **kwargs: Any) -> tuple:
    """The key :func:`memo` keeps ``fn(*args, **kwargs)`` under: its qualified name and the full-content digest."""
    return (f"{fn.__module__}.{fn.__qualname__}", digest(*args, **kwargs))


def _stored_or_precomputed(shared: store.ByteLRU, key: tuple) -> bytes | None:
    """The pickled result of ``key`` in the shared store; while a :func:`reserve` claim on it is held,
    after waiting for that (None when it failed: the caller computes it)."""
    with _IN_FLIGHT_LOCK:
        pickled = shared.get(key)
        pending = _IN_FLIGHT.get(key) if pickled is None else None
    if pending is None:
        return pickled
    pending.wait()  # bounded: the precomputation runs under the server's time budget
    return shared.get(key)


def reserve(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., Any] | None:
    """Claim the computation of ``fn(*args, **kwargs)`` for a precomputation outside any page run
    (app/warmup.py: a fresh server's start-up analysis); None when it is stored or claimed already.

    Returns ``run(then=None)``, which must be called once: it computes the result in the calling
    thread under the server's time budget, calls ``then(result)`` (which may claim the next
    computation), stores the result as :func:`memo` would and releases the claim; it raises what
    ``fn`` raises (nothing is stored then). From the claim to its release, :func:`memo` calls for
    the same key wait and then read the stored result, or compute it themselves if there is none."""
    key = memo_key(fn, *args, **kwargs)
    shared = store.results()
    with _IN_FLIGHT_LOCK:
        if key in _IN_FLIGHT or key in shared:
            return None
        done = _IN_FLIGHT[key] = threading.Event()

    def run(then: Callable[[Any], Any] | None = None) -> Any:
        pickled = None
        try:
            result = run_limited(fn, *args, _what=_short_name(fn), **kwargs)
            pickled = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            if then is not None:  # after the last step that can fail: a claim ``then`` makes is always run
                then(result)
        finally:
            with _IN_FLIGHT_LOCK:
                if pickled is not None:
                    try:
                        shared.put(key, pickled, len(pickled))
                    except store.TooLarge:
                        pass  # larger than the whole store: the page computes it itself
                del _IN_FLIGHT[key]
            done.set()
        return result

    return run


def _short_name(fn: Callable) -> str:
    """How the progress line names ``fn``: its ``progress_label`` when it has one, else its name."""
    return getattr(fn, "progress_label", None) or fn.__name__.strip("_").replace("_", " ")


def clear_caches() -> None:
    """Forget every shared result, and this session's own copies."""
    store.results().clear()
    session = _session_store()
    if session is not None:
        session.clear()
