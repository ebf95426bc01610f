"""End to end: the real app (`streamlit run app/main.py`) in a real browser (Debian's chromium).

Starts the server from the repository root on a free port and drives chromium with Playwright:
the Attack page's five images and charts, another attack from the sidebar form, an SVG download
from a chart's toolbar, the Neurons page, every other page, a bad upload; and two browser
sessions at once on a fresh server, whose numbers must equal one session's and the library's.
A screenshot of each step goes to ``$NEURONVIZ_SCREENSHOTS`` (default ``out/screenshots``).
Without /usr/bin/chromium the test is skipped, except under CI (``$CI`` set), where it fails.
"""

from __future__ import annotations

import os
import re
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
from browser_setup import ROOT, stop_server

pytestmark = pytest.mark.e2e

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
def server_url(chromium_path: Path) -> Iterator[str]:
    """`streamlit run app/main.py` from the repository root; always terminated afterwards."""
    yield from _serve()


def _serve() -> Iterator[str]:
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
        stop_server(server)



def _wait_for_run(page) -> None:
    """Until Streamlit has finished the current script run and plotly has drawn the charts."""
    page.wait_for_timeout(250)  # let a rerun triggered by the last action start
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=RUN_TIMEOUT_MS)
    for chart in page.locator(".js-plotly-plot").all():
        chart.locator(".main-svg").first.wait_for(state="attached", timeout=RUN_TIMEOUT_MS)  # charts in closed tabs are hidden


def _metric_value(page, label: str) -> str:
    metric = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True))
    return metric.get_by_test_id("stMetricValue").inner_text().strip()


def _assert_no_exception(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    assert exceptions.count() == 0, exceptions.all_inner_texts()


def _go_to(page, title: str, heading: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    _wait_for_run(page)
    _assert_no_exception(page)


def _chart_titles(page) -> list[str]:
    return [(t or "").strip() for t in page.locator(".js-plotly-plot .gtitle").all_text_contents()]


def _verdicts(page) -> list[str]:
    """The verdict lines under the Attack page's clean, adversarial, NIP and PSSR panels
    ("8 · 91.2% · fooled", ...)."""
    texts = page.get_by_test_id("stMarkdownContainer").all_inner_texts()
    return [t.strip() for t in texts if t.count(" · ") == 2 and "%" in t][:4]


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_main_flow_in_chromium(server_url: str, browser):
    shots = _screenshot_dir()
    page = browser.new_page(viewport={"width": 1600, "height": 1800})
    try:
        # The default page: Attack, on digits-cnn, the start-up digit (a 7) and PGD at its defaults.
        page.goto(server_url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Attack").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
        expect(page.locator(".js-plotly-plot .gtitle").filter(has_text=re.compile(r"^PSSR$"))).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)
        _assert_no_exception(page)
        titles = _chart_titles(page)
        for wanted in ("Clean", "Perturbation ×", "Adversarial", "NIP (guided)", "PSSR"):
            assert any(t.startswith(wanted) for t in titles), (wanted, titles)
        assert titles.count("Top-5") >= 4  # clean, adversarial and both restorations (the perturbation has none)
        assert "PGD (L∞)" in page.get_by_test_id("stMain").inner_text()
        verdicts = _verdicts(page)
        assert len(verdicts) == 4 and verdicts[0].startswith("7 · ") and verdicts[1].endswith("· fooled")
        page.screenshot(path=shots / "01-attack.png", full_page=True)

        # Another attack from the sidebar form: nothing runs until "Run attack" is pressed.
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_test_id("stSelectbox").filter(has_text="Attack").click()
        page.get_by_role("option", name="FGSM", exact=True).click()
        _wait_for_run(page)
        eps = sidebar.get_by_role("spinbutton", name="eps")
        eps.fill("0.2")
        assert "FGSM" not in page.get_by_test_id("stMain").inner_text().split("\n")[0]
        sidebar.get_by_role("button", name="Run attack").click()
        expect(page.get_by_text("FGSM · eps 0.2", exact=False).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)
        _assert_no_exception(page)
        assert len(_verdicts(page)) == 4 and _verdicts(page) != verdicts
        page.screenshot(path=shots / "02-attack-fgsm.png", full_page=True)

        # Every chart's toolbar downloads an SVG.
        first_chart = page.locator(".js-plotly-plot").first
        first_chart.hover()
        with page.expect_download(timeout=RUN_TIMEOUT_MS) as download_info:
            first_chart.locator('.modebar-btn[data-title^="Download plot"]').click()
        download = download_info.value
        assert download.suggested_filename.endswith(".svg"), download.suggested_filename
        svg_path = shots / download.suggested_filename
        download.save_as(svg_path)
        svg = svg_path.read_text()
        assert svg.lstrip().startswith("<svg") and "</svg>" in svg and len(svg) > 1000

        # The Neurons page: before/after scatter, transition, per-layer overview.
        _go_to(page, "Neurons", "Neurons")
        titles = _chart_titles(page)
        assert any("influence before" in t.lower() or "clean vs" in t for t in titles), titles
        assert len(titles) >= 5
        page.screenshot(path=shots / "03-neurons.png", full_page=True)

        # Every other page renders without an exception.
        for number, (title, heading) in enumerate(
            [
                ("First-layer filters", "First-layer filters"),
                ("Sensitivity", "Sensitivity"),
                ("Defences", "Defences"),
                ("Batch", "Batch"),
                ("Guided tour & methods", "Learn"),
                ("About", "About neuronviz"),
                ("Model & image", "Model & image"),
            ],
            start=4,
        ):
            _go_to(page, title, heading)
            page.screenshot(path=shots / f"{number:02d}-{title.lower().replace(' ', '-').replace('&', 'and')}.png", full_page=True)

        # A file that is not an image (Model & image page): a clear error, the digit stays.
        assert _metric_value(page, "Prediction") == "7"
        sidebar.get_by_role("radiogroup", name="Source").nth(1).get_by_role("radio", name="Upload").click()
        _wait_for_run(page)
        # The image uploader (the sidebar's Session expander, drawn after it, has an uploader too).
        sidebar.get_by_test_id("stFileUploader").filter(has_text="Image").locator('input[type="file"]').first.set_input_files(
            files=[{"name": "not-an-image.png", "mimeType": "image/png", "buffer": b"plain text"}]
        )
        error = page.get_by_test_id("stAlertContentError").filter(has_text="not-an-image.png")
        expect(error).to_be_visible(timeout=RUN_TIMEOUT_MS)
        _wait_for_run(page)
        _assert_no_exception(page)
        assert "Still showing digit 7" in error.inner_text()
        assert _metric_value(page, "Prediction") == "7"
        page.screenshot(path=shots / "11-bad-upload.png")
    finally:
        page.close()


def test_two_sessions_at_once_give_the_numbers_of_one(chromium_path: Path, browser):
    """Two browser sessions on a fresh server compute the same analysis at the same time."""
    from neuronviz.core.models import load_model
    from neuronviz.data.images import load_sample
    from neuronviz.methods.attacks import run_attack
    from neuronviz.workflows.analysis import DEFAULT_SAMPLE_ID, default_choice

    model = load_model("digits-cnn", device="cpu")
    choice = default_choice()  # the start-up example, as a new session gets it
    x = load_sample(DEFAULT_SAMPLE_ID, model)
    report = run_attack(model, x, choice.attack, choice.params(model), seed=choice.seed)  # away from the clean prediction
    adversarial = int(report.adv_pred[0])
    expected = f"{model.class_names[adversarial]} · {100 * float(report.adv_probs[0, adversarial]):.1f}% · fooled"

    server = _serve()
    url = next(server)
    try:
        contexts = [browser.new_context(viewport={"width": 1600, "height": 1200}) for _ in range(2)]
        pages = [context.new_page() for context in contexts]
        for page in pages:  # both requests are in flight before either is answered
            page.goto(url, wait_until="commit")
        results = []
        for index, page in enumerate(pages):
            expect(page.locator(".js-plotly-plot .gtitle").filter(has_text=re.compile(r"^PSSR$"))).to_be_visible(timeout=RUN_TIMEOUT_MS)
            _wait_for_run(page)
            _assert_no_exception(page)
            results.append(_verdicts(page))
            page.screenshot(path=_screenshot_dir() / f"12-session-{index + 1}.png")
        assert results[0] == results[1] and len(results[0]) == 4
        assert results[0][1] == expected
        for context in contexts:
            context.close()
    finally:
        server.close()
