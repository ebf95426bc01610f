"""End to end: the real app (`streamlit run app/main.py`) in a real browser (Debian's chromium).

Starts the server from the repository root on a free port, drives chromium with Playwright
through the main flow (default model and digit, another digit, a bad upload, the About page),
and saves a screenshot of each step to ``$NEURONVIZ_SCREENSHOTS`` (default ``out/screenshots``).
Without /usr/bin/chromium the test is skipped, except under CI (``$CI`` set), where it fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STARTUP_TIMEOUT_S = 90
RUN_TIMEOUT_MS = 60_000


def _screenshot_dir() -> Path:
    folder = Path(os.environ.get("NEURONVIZ_SCREENSHOTS") or ROOT / "out" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with code {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit was not healthy after {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must install it")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="module")
def server_url(chromium_path: Path) -> Iterator[str]:
    """`streamlit run app/main.py` from the repository root; always terminated afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp(prefix="neuronviz-e2e-")) / "streamlit.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app/main.py",
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--theme.base", "light",  # the flags of `make run`
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        _wait_until_healthy(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)


@pytest.fixture(scope="module")
def browser(chromium_path: Path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def _wait_for_run(page) -> None:
    """Until Streamlit has finished the current script run and plotly has drawn the charts."""
    page.wait_for_timeout(250)  # let a rerun triggered by the last action start
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=RUN_TIMEOUT_MS)
    for chart in page.locator(".js-plotly-plot").all():
        chart.locator(".main-svg").first.wait_for(timeout=RUN_TIMEOUT_MS)


def _metric_value(page, label: str) -> str:
    metric = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return metric.get_by_test_id("stMetricValue").inner_text().strip()


def _assert_no_exception(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.all_inner_texts()


def test_main_flow_in_chromium(server_url: str, browser):
    from playwright.sync_api import expect

    shots = _screenshot_dir()
    page = browser.new_page(viewport={"width": 1440, "height": 1600})
    try:
        page.goto(server_url, wait_until="domcontentloaded")
        expect(page.get_by_test_id("stMetricValue").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)

        # Default: digits-cnn and the first sample digit, predicted as 0 with its top-5 bars.
        _assert_no_exception(page)
        expect(page.get_by_text("digit 0 (#", exact=False).first).to_be_visible()
        assert _metric_value(page, "Prediction") == "0"
        assert page.locator(".js-plotly-plot").count() == 2
        expect(page.get_by_text("Top-5 prediction")).to_be_visible()
        page.screenshot(path=shots / "01-default.png")

        # Another sample digit: the banner, the image and the prediction follow.
        page.get_by_role("radiogroup", name="Digit").get_by_role("radio", name="7").click()
        expect(page.get_by_text("digit 7 (#", exact=False).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)
        _assert_no_exception(page)
        assert _metric_value(page, "Prediction") == "7"
        assert _metric_value(page, "True class") == "7"
        page.screenshot(path=shots / "02-digit-7.png")

        # A file that is not an image: a clear error, and digit 7 stays on screen.
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_role("radiogroup", name="Source").nth(1).get_by_role("radio", name="Upload").click()
        _wait_for_run(page)
        sidebar.locator('input[type="file"]').set_input_files(
            files=[{"name": "not-an-image.png", "mimeType": "image/png", "buffer": b"plain text"}]
        )
        error = page.get_by_test_id("stAlertContentError").filter(has_text="not-an-image.png")
        expect(error).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)
        _assert_no_exception(page)
        assert "Still showing digit 7" in error.inner_text()
        assert _metric_value(page, "Prediction") == "7"
        page.screenshot(path=shots / "03-bad-upload.png")

        # The About page: the embedded models' cards in a table.
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="About").click()
        expect(page.get_by_role("heading", name="About neuronviz")).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)
        _assert_no_exception(page)
        expect(page.get_by_test_id("stDataFrame").first).to_be_visible()
        page.screenshot(path=shots / "04-about.png")
    finally:
        page.close()
