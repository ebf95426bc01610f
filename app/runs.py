"""The dashboard's side of the analysis: the session's attack choice, caching, time budgets, errors.

The story itself (:class:`AttackChoice`, :class:`Analysis`, :func:`compute_analysis`,
:func:`content_key`, :func:`digest`) lives in :mod:`neuronviz.workflows.analysis`, so a notebook and the CLI
get the same numbers without Streamlit; it is re-exported here for the pages.

- :class:`AttackChoice` is what the sidebar's attack form submitted (attack, parameter
  overrides, target, seed); :func:`attack_choice` returns the session's current one.
- :func:`memo` runs any library function through ``st.cache_data`` keyed by a **full-content**
  digest of its arguments (:func:`content_key`: a model's ``content_hash`` and device, the
  SHA-1 of every byte of a tensor, the values of numbers, strings, mappings and sequences).
  Streamlit's own hashing of a large array looks at a sample of it only (see
  ``../shared/ENVIRONMENT.md``), so the arguments are never handed to it: they travel as
  ``_``-prefixed (unhashed) arguments next to the digest. Results are pickled by
  ``st.cache_data``: a session gets its own copy and cannot change another session's; the
  session keeps its recent copies, so its own reruns do not unpickle again.
- :func:`full_analysis` is one image's whole story under one attack choice: the attack, the
  NIP (guided) and PSSR restorations, and the neuron influence of every probe layer for the
  clean, adversarial and restored images, all toward the benign (clean) prediction, in one
  forward and one backward pass over the four images.
- :func:`attempt` runs a computation and turns a library error, an unusable device or a CUDA
  out-of-memory into a message on the page (returning None): the session keeps its state and
  the server stays up.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx

from app import store
from neuronviz.core.models import PixelModel
from neuronviz.infra.errors import NeuronvizError
from neuronviz.workflows.analysis import (  # noqa: F401 - the story lives in the library; pages reach it through here
    CONDITION_LABELS,
    CONDITIONS,
    DEFAULT_ATTACK,
    DEFAULT_OVERRIDES,
    DEFAULT_SAMPLE_ID,
    RESTORATIONS,
    Analysis,
    AttackChoice,
    compute_analysis,
    content_key,
    default_choice,
    digest,
)

T = TypeVar("T")

_CHOICE = "analysis.attack_choice"  # session_state key prefix (one choice per input channel count)


# -- the attack choice -----------------------------------------------------------------------------


def attack_choice(model: PixelModel) -> AttackChoice:
    """The session's submitted attack choice for models with this many input channels."""
    return st.session_state.get(f"{_CHOICE}.{model.channels}", default_choice())


def set_attack_choice(model: PixelModel, choice: AttackChoice) -> None:
    st.session_state[f"{_CHOICE}.{model.channels}"] = choice


# -- the results memo ------------------------------------------------------------------------------


SESSION_ENTRIES = 32  # results a session keeps unpickled, most recently used first ...
SESSION_BYTES = 128 * store.MiB  # ... and at most this many bytes of them (by their pickles' size)
_SESSION_STORE = "analysis.session_results"
_STOPPED = "analysis.stopped"  # session_state: memo key -> message of a cancelled / timed-out run
POLL_SECONDS = 0.15  # how often the script thread looks at a computation in a worker (and can be stopped)

_worker = threading.local()  # .active: this thread is a memo worker (nested memo calls run inline)


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
    return fn.__name__.strip("_").replace("_", " ")


def clear_caches() -> None:
    """Forget every shared result, and this session's own copies."""
    store.results().clear()
    session = _session_store()
    if session is not None:
        session.clear()


# -- time budget and cancel ---------------------------------------------------------------------------


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
                status.caption(f":material/hourglass_top: Computing {_what}… {time.perf_counter() - started:.0f} s")
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


# -- errors on the page ------------------------------------------------------------------------------


def error_message(error: BaseException) -> str | None:
    """The message a page shows for a failed computation; None for errors that are bugs."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return (
            "The GPU ran out of memory for this computation. Choose the CPU in the sidebar, fewer "
            "images, or a cheaper attack (fewer steps); your other choices are kept."
        )
    if _is_stop(error):
        from neuronviz.infra.errors import CancelledError

        text = str(error).rstrip(". ")
        if isinstance(error, CancelledError):
            return f"{text[:1].upper()}{text[1:]}. Your choices are kept; press Run again to start it again."
        return (
            f"{text[:1].upper()}{text[1:]}. Your choices are kept; press Run again to try once more "
            "(the same work takes as long)."
        )
    if isinstance(error, NeuronvizError):
        text = str(error)
        return text[:1].upper() + text[1:]
    if isinstance(error, RuntimeError) and "CUDA" in str(error):
        return f"The GPU failed: {error}. Choose the CPU in the sidebar; your other choices are kept."
    return None


def attempt(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``; on a user-facing failure show it with ``st.error`` and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - sorted below: only known kinds become messages
        message = error_message(error)
        if message is None:
            raise
        if isinstance(error, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        show_error(error, message)
        return None


def show_error(error: BaseException, message: str) -> None:
    """``message`` as an error on the page; for a cancelled or timed-out computation, a "Run
    again" button that lets the next run compute it once more."""
    st.error(message, icon=":material/error:")
    key = getattr(error, "memo_key", None)
    if key is not None and _is_stop(error):
        st.button(
            "Run again",
            key=f"analysis.run_again.{key[1][:16]}",
            icon=":material/replay:",
            on_click=_forget_stopped,
            args=(key,),
        )


# -- the analysis of one image ---------------------------------------------------------------------


def full_analysis(model: PixelModel, image: torch.Tensor, choice: AttackChoice) -> Analysis:
    """:func:`compute_analysis`, cached by the model's weights, the image's bytes and the choice."""
    return memo(compute_analysis, model, image, choice)

