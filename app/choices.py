"""Choice widgets that never hand ``None`` (or a value that is not an option) to the code after them.

A select box, radio or segmented control can come back empty: a select box built without an
index can be cleared with its (x) or by Escape in the open list, a crafted client (or AppTest)
can send ``None`` or a stale option, and Streamlit forgets a widget's value on a run that does
not draw it (another page, the other image source, a run that failed half-way through the
sidebar). :func:`choose` draws such a widget so that

- it is never clearable (it is always drawn with its value as its default: a select box shows
  its clear (x) only when drawn without an index; a segmented control is ``required``);
- a value that is not an option is replaced, *before* the widget is drawn, by the last good
  choice of that widget in this session (then the given default, then the first option), so the
  widget shows what the code uses;
- a value that is forgotten comes back as the last good choice (not the first option);
- the value returned is always one of ``options``;
- a value the code changes (``set_to``, a write through session state in a callback, a
  replaced invalid value) goes through session state, so the browser shows it too (a new index
  of a widget that keeps its key is not sent to the browser: found by the monkey walk, where the
  Attack box went on showing the other kind of model's attack).

The last good choices are kept in ``st.session_state`` under :data:`PREFIX` + key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

PREFIX = "choices.last_good."


def last_good(key: str) -> Any:
    """The last value ``key``'s widget returned in this session (None when never drawn)."""
    return st.session_state.get(PREFIX + key)


def remember(key: str, value: Any) -> None:
    """Make ``value`` the last good choice of ``key`` (e.g. a page that sets the widget)."""
    st.session_state[PREFIX + key] = value


def fallback(key: str, options: Sequence[Any], default: Any = None) -> Any:
    """What an empty or invalid ``key`` falls back to: the last good choice, the default, the first option."""
    for candidate in (last_good(key), default):
        if _is_option(candidate, options):
            return candidate
    return options[0]


def _is_option(value: Any, options: Sequence[Any]) -> bool:
    if value is None and None not in options:
        return False
    try:
        return value in options
    except Exception:  # noqa: BLE001 - an unhashable/uncomparable value is not an option
        return False


def _set_this_run(key: str) -> bool:
    """Whether ``key`` was written through session state in this run (a callback, e.g. the tour's
    "open this example"): then the widget must take it from there, without an index or default
    (Streamlit warns about both, and sends only the session-state value to the browser)."""
    from streamlit.runtime.state import get_session_state  # Streamlit's own check (elements/lib/policies.py)

    return get_session_state().is_new_state_value(key)


def choose(
    widget: Callable[..., Any],
    label: str,
    options: Sequence[Any],
    *,
    key: str,
    default: Any = None,
    set_to: Any = None,
    **kwargs: Any,
) -> Any:
    """Draw ``widget`` (``st.selectbox``, ``st.radio`` or ``st.segmented_control``, or the same
    method of a container) over ``options`` and return its value, always one of ``options``.

    ``default`` is the choice of a first visit; afterwards the widget keeps the session's value,
    and when that is empty or not an option, the last good one (see the module's docstring).
    ``set_to`` changes the value now, also in the browser (e.g. the other kind of model's attack).
    ``options`` must not be empty."""
    options = list(options)
    if not options:
        raise ValueError(f"choose({label!r}): no options")
    good = fallback(key, options, default)
    name = getattr(widget, "__name__", "")
    if set_to is not None or _set_this_run(key) or (key in st.session_state and not _is_option(st.session_state[key], options)):
        # The value changes under the user (the caller's ``set_to``, or one that is not an option):
        # through session state, which Streamlit sends to the browser. A new index of a widget that
        # keeps its key is not shown there: the browser went on showing the other model's attack.
        held = st.session_state.get(key)
        st.session_state[key] = set_to if _is_option(set_to, options) else held if _is_option(held, options) else good
        if name == "segmented_control":
            value = widget(label, options, required=True, key=key, **kwargs)
        else:  # st.selectbox, st.radio
            value = widget(label, options, key=key, **kwargs)
    else:
        # The browser's value (or, when the widget was not drawn last run, the last good one) as
        # the widget's index/default: never drawn without one, so never clearable, and a cleared
        # value from a crafted client deserialises to this run's value.
        start = st.session_state[key] if key in st.session_state else good
        if name == "segmented_control":
            value = widget(label, options, default=start, required=True, key=key, **kwargs)
        else:
            value = widget(label, options, index=options.index(start), key=key, **kwargs)
    if not _is_option(value, options):
        # Only a client that bypasses the widget's own rules gets here (the value arrived after
        # the check above, e.g. inside a form): use the fallback; the next run shows it.
        value = good
    remember(key, value)
    return value
