"""The error boundary around the sidebar and every page body (used by :mod:`app.main`).

A page that raises (a bug, a figure builder that fails, a library error that no ``attempt``
caught) shows one message in place of the rest of the page; the sidebar, the banner and every
choice in ``st.session_state`` are kept, and the next page works. Streamlit's own control flow
(``st.stop``, ``st.rerun``, ``st.switch_page``: ``BaseException`` subclasses, not ``Exception``)
passes through untouched. The traceback goes to the server's log (standard error, through the
``neuronviz.app`` logger, which :func:`configure_logging` gives a handler; the library's
``neuronviz`` logger stays handler-free), with the session's settings (its link's query), not to
the page.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from app import runs as analysis

T = TypeVar("T")
LOG = logging.getLogger("neuronviz.app")
#: The format of the server's log lines of the dashboard.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(stream=None) -> logging.Handler:
    """Give the dashboard's logger (``neuronviz.app``) one handler to standard error (idempotent).

    The library never configures logging (its ``neuronviz`` logger has a NullHandler only); the
    app is the program, so it does. Messages do not propagate to the root logger as well, so a
    server whose root logger also prints shows each traceback once."""
    for handler in LOG.handlers:
        if getattr(handler, "_neuronviz_app", False):
            return handler
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._neuronviz_app = True  # type: ignore[attr-defined]
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    return handler


configure_logging()


def failure_message(where: str, error: BaseException) -> str:
    """What the page says when ``where`` failed with ``error``."""
    known = analysis.error_message(error)
    if known is not None:
        return f"{where} stopped: {known}"
    detail = str(error).strip() or "no message"
    return (
        f"{where} failed with an unexpected error ({type(error).__name__}: {detail[:300]}). Your model, "
        "image and attack choices are kept: try another page, or change a choice in the sidebar. "
        "The details are in the server's log."
    )


def session_settings() -> dict[str, Any]:
    """The session's settings for the log: the page, its link's query (what reopens it) and the
    model and image in use. Never raises (it runs while handling an error)."""
    settings: dict[str, Any] = {}
    try:
        from app import state
        from app import url_state as session

        record = st.session_state.get(session.RECORD)
        settings["query"] = session.query_of(record) if record is not None else dict(st.query_params.to_dict())
        selection = state.selection()
        if selection is not None:
            settings["model"] = selection.model_request.label
            settings["image"] = selection.image_request.label
            settings["attack"] = analysis.attack_choice(selection.model).describe(selection.model)
    except Exception as error:  # noqa: BLE001 - the log line must still be written
        settings["unavailable"] = f"{type(error).__name__}: {error}"
    return settings


def guard(where: str, fn: Callable[..., T], *args, **kwargs) -> T | None:
    """``fn(*args, **kwargs)``; on an error, log it (traceback and the session's settings), show
    :func:`failure_message` and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the boundary: everything becomes a message
        LOG.exception("%s failed; session settings: %s", where, session_settings())
        analysis.show_error(error, failure_message(where, error))
        return None
