"""The fixture every real-browser test needs: Debian's chromium (constants in browser_setup.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_setup import CHROMIUM


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's chromium; a skip where it is missing, a failure in CI (which must install it)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return CHROMIUM
