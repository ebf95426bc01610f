"""Helpers for AppTest tests of the dashboard's pages (imported by tests/test_app*.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `app` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

MAIN = str(ROOT / "app" / "main.py")


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def open_page(page: str | None = None, timeout: float = 180) -> AppTest:
    """Run the app (default page), then switch to ``page`` (e.g. ``"app_pages/neurons.py"``).

    Asserts that neither run raised."""
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    at.run()
    assert_healthy(at)
    if page is not None:
        at.switch_page(page)
        at.run()
        assert_healthy(at)
    return at


def assert_healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def submit_attack(at: AppTest, attack: str | None = None, **params) -> AppTest:
    """Choose ``attack`` in the sidebar (optional), set parameters by label (``seed=3`` too),
    press "Run attack"."""
    if attack is not None:
        at.sidebar.selectbox(key="attack_name").set_value(attack)
        at.run()
    for name, value in params.items():
        label = name.replace("_", " ").lower()
        widgets = [w for w in at.sidebar.number_input if w.label.lower() == label] + [
            w for w in at.sidebar.checkbox if w.label.lower() == label
        ]
        assert widgets, f"no attack parameter {label!r} in the sidebar"
        widgets[0].set_value(value)
    [button] = [b for b in at.sidebar.button if b.label == "Run attack"]
    button.click()
    at.run()
    assert_healthy(at)
    return at


def plotly_titles(at: AppTest) -> list[str]:
    """The title text of every plotly chart on the page (to assert which figures are shown)."""
    import json

    titles = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        titles.append(((spec.get("layout") or {}).get("title") or {}).get("text", ""))
    return titles
