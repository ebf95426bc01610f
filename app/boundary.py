"""The error boundary around the sidebar and every page body (used by :mod:`app.main`).

A page that raises (a bug, a figure builder that fails, a library error that no ``attempt``
caught) shows one message in place of the rest of the page; the sidebar, the banner and every
choice in ``st.session_state`` are kept, and the next page works. Streamlit's own control flow
(``st.stop``, ``st.rerun``, ``st.switch_page``: ``BaseException`` subclasses, not ``Exception``)
passes through untouched. The traceback goes to the server's log, not to the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from app import runs as analysis

T = TypeVar("T")
LOG = logging.getLogger("neuronviz.app")


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


def guard(where: str, fn: Callable[..., T], *args, **kwargs) -> T | None:
    """``fn(*args, **kwargs)``; on an error, log it, show :func:`failure_message` and return None."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the boundary: everything becomes a message
        LOG.exception("%s failed", where)
        analysis.show_error(error, failure_message(where, error))
        return None
