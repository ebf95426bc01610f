"""The dashboard's result cache: any library function's result, kept by the full content of its arguments.

:func:`memo` runs a library function through two byte-bounded levels: the process-wide store
(:func:`app.store.results`, pickled: each session gets its own copy and cannot change another's)
and the session's own recent results (unpickled: its reruns cost a digest and a lookup). The key
is a **full-content** digest of the arguments (:func:`neuronviz.workflows.analysis.content_key`: a
model's ``content_hash`` and device, the SHA-1 of every byte of a tensor, the values of numbers,
strings, mappings and sequences). Streamlit's own hashing of a large array looks at a sample of it
only (measured: a one-pixel change in a 3×512×512 array returned the stale result), so arguments
are never handed to it. A computation runs as a background run (:mod:`app.background`).
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from app import store
from app.background import _stopped_error, run_limited
from neuronviz.workflows.analysis import digest

T = TypeVar("T")



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
    name = f"{fn.__module__}.{fn.__qualname__}"
    key = (name, digest(*args, **kwargs))
    session = _session_store()
    if session is not None and key in session:
        session.move_to_end(key)
        return session[key][0]
    shared = store.results()
    pickled = shared.get(key)
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


def _short_name(fn: Callable) -> str:
    """How the progress line names ``fn``: its ``progress_label`` when it has one, else its name."""
    return getattr(fn, "progress_label", None) or fn.__name__.strip("_").replace("_", " ")


def clear_caches() -> None:
    """Forget every shared result, and this session's own copies."""
    store.results().clear()
    session = _session_store()
    if session is not None:
        session.clear()
