"""``st.columns`` for a spec computed at run time: an empty spec draws nothing instead of raising.

``st.columns(0)`` and ``st.columns([])`` raise ``StreamlitInvalidColumnSpecError`` (the Model &
image page crashed for every ONNX model: its card had no headline facts). Every ``st.columns``
whose spec is not a literal goes through :func:`columns` (``tests/test_app_model_facts.py`` checks
the source of ``app/`` for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st


def columns(spec: int | Sequence[float], **kwargs: Any) -> list:
    """``st.columns(spec, **kwargs)``, or ``[]`` when ``spec`` is 0 or empty (nothing to lay out)."""
    if isinstance(spec, int):
        return list(st.columns(spec, **kwargs)) if spec > 0 else []
    widths = list(spec)
    return list(st.columns(widths, **kwargs)) if widths else []
