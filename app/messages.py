"""Errors to messages: a failed computation becomes a sentence on the page, and the session keeps its state.

:func:`attempt` runs a computation and turns a library error, an unusable device, a CUDA
out-of-memory, a time-out or a cancel into a message (returning None); anything else is a bug and
is raised to the error boundary (:mod:`app.boundary`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st
import torch

from app.background import _forget_stopped, _is_stop
from neuronviz.infra.errors import NeuronvizError

T = TypeVar("T")



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
