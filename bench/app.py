"""Benchmark: the dashboard's speed on digits-cnn (issue 7's targets).

    python bench/app.py [--repeats 5] [--no-browser] [--page attack]

Prints, all measured in this one run:

1. **Full analysis**: PGD-20 (the dashboard's default attack) + neuron influence of every probe
   layer + NIP (guided) + PSSR on one digit (``app.analysis.compute_analysis``), cold: median of
   ``--repeats`` runs. Target < 2 s on the 2-core CPU.
2. **Rerun that changes nothing ÷ full analysis**: the same request again in the same session
   (``app.analysis.full_analysis``: full-content digest of model, image and choice, then the
   session's own copy of the result) ÷ (1). Target < 5 %. Also the same request from another
   session (digest, then a pickled copy from ``st.cache_data``). Also, for context, the whole page script of
   a rerun (Streamlit's AppTest: sidebar, banner, every figure built and serialised) ÷ the first,
   cold run of that page.
3. **Cold start to first render**: ``streamlit run app/main.py`` (the flags of ``make run``) until
   its health endpoint answers (server up), then chromium (Playwright) from navigation until the
   default page has finished its script run and drawn every chart. Target < 10 s after the
   server is up. Skipped with ``--no-browser`` or without /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app/main.py sets it for the server

import streamlit as st  # noqa: E402
import torch  # noqa: E402

from app import analysis  # noqa: E402
from neuronviz.images import list_samples, load_sample  # noqa: E402
from neuronviz.models import load_model  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_analysis(repeats: int) -> tuple[float, float, float]:
    model = load_model("digits-cnn", device="cpu")
    sample = list_samples(model)[0]
    x = load_sample(sample.id, model)
    choice = analysis.AttackChoice()
    analysis.compute_analysis(model, x, choice)  # warm-up: imports, first kernels
    cold = _median_time(lambda: analysis.compute_analysis(model, x, choice), repeats)
    st.cache_data.clear()
    analysis.full_analysis(model, x, choice)  # fills the cache
    shared = _median_time(lambda: analysis.full_analysis(model, x, choice), repeats)
    # The same session again: its own store of results (what a browser session's rerun uses).
    from collections import OrderedDict

    store: OrderedDict = OrderedDict()
    original = analysis._session_store
    analysis._session_store = lambda: store
    try:
        analysis.full_analysis(model, x, choice)
        own = _median_time(lambda: analysis.full_analysis(model, x, choice), repeats)
    finally:
        analysis._session_store = original
    return cold, own, shared


def bench_page(page: str, repeats: int) -> tuple[float, float]:
    """(first run of a new session with no cached results, rerun that changes nothing), medians.

    The model stays loaded (``st.cache_resource``) as on a running server; cached results and
    figures are dropped before each first run."""
    from streamlit.testing.v1 import AppTest

    from app import components

    firsts, reruns = [], []
    warm = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    warm.run()  # imports and the model, once
    for _ in range(repeats):
        st.cache_data.clear()
        components._cached_figure.clear()
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
        if page != "attack":
            at.switch_page(f"app_pages/{page}.py")
        started = time.perf_counter()
        at.run()
        firsts.append(time.perf_counter() - started)
        started = time.perf_counter()
        at.run()
        reruns.append(time.perf_counter() - started)
        if at.exception:
            raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
    return statistics.median(firsts), statistics.median(reruns)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_browser() -> tuple[float, float] | None:
    if not CHROMIUM.exists():
        print(f"cold start: skipped ({CHROMIUM} is missing; apt-get install -y chromium)")
        return None
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.headless", "true",
        "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--theme.base", "light", "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    log = Path(tempfile.mkdtemp(prefix="neuronviz-bench-")) / "streamlit.log"
    started = time.perf_counter()
    with log.open("w") as output:
        server = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"streamlit exited:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        server_up = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=120_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)
            for chart in page.locator(".js-plotly-plot").all():
                chart.locator(".main-svg").first.wait_for(timeout=120_000)
            first_render = time.perf_counter() - started
            browser.close()
        return server_up, first_render
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--page", default="attack", help="page for the AppTest rerun measurement (file stem)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    cold, own, shared = bench_analysis(args.repeats)
    print(f"full analysis (PGD-20 + influence, all layers + NIP guided + PSSR), digits-cnn: {cold * 1000:.0f} ms   target < 2000 ms")
    print(f"rerun that changes nothing, same session: {own * 1000:.2f} ms = {100 * own / cold:.2f}% of the full analysis   target < 5%")
    print(f"the same request from another session (a pickled copy from st.cache_data): {shared * 1000:.1f} ms = {100 * shared / cold:.1f}%")

    first, rerun = bench_page(args.page, max(1, args.repeats // 2))
    print(
        f"whole {args.page} page script (AppTest: sidebar, analysis, every figure): first run of a session with "
        f"nothing cached {first * 1000:.0f} ms, rerun with nothing changed {rerun * 1000:.0f} ms = "
        f"{100 * rerun / first:.0f}% of the first"
    )

    if not args.no_browser:
        measured = bench_browser()
        if measured is not None:
            server_up, first_render = measured
            print(f"cold start: server up after {server_up:.1f} s; first render in chromium {first_render:.1f} s after that   target < 10 s")


if __name__ == "__main__":
    main()
