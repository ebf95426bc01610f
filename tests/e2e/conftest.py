"""The fixtures every real-browser test needs: Debian's chromium and one browser per module
(constants in browser_setup.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_setup import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's chromium; a skip where it is missing, a failure in CI (which must install it)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path: Path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
