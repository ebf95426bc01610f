"""Benchmark: the dashboard's speed on digits-cnn (issue 7's targets) and the full analysis ÷ its floor.

    python bench/app.py [--repeats 5] [--no-browser] [--browser-only] [--page attack] [--floor-only] [--device cpu]
                        [--floor-models digits-cnn,resnet18] [--launcher serve|streamlit|both] [--browser-repeats 1]
                        [--phases] [--baseline PATH ...] [--navigate-after 0]

Prints, all measured in this one run:

0. **Full analysis ÷ its floor** (issue 14), for digits-cnn and a random-init resnet18 at
   224×224: ``app.runs.compute_analysis`` (PGD-20 + NIP guided + PSSR + influence of the
   four images) ÷ the model passes it needs, each timed alone and summed: the attack's clean
   and adversarial forward passes and one forward + input-gradient backward per PGD step; per
   NIP step one forward + input-gradient backward (the steps it took, from its trace; the
   second, partial backward to the feature layer is not counted, so this floor is a lower
   bound); PSSR's saliency forward + backward, its regenerator's forward (or, without one, its
   inpainting) and the classification of each restored image; one forward + backward on the
   batch of four for the influence. Interleaved: every repetition runs the analysis and then
   the floor passes, and the median of the per-repetition ratios is printed. Target ≤ 1.3.

1. **Full analysis**: PGD-20 (the dashboard's default attack) + neuron influence of every probe
   layer + NIP (guided) + PSSR on one digit (``app.runs.compute_analysis``), cold: median of
   ``--repeats`` runs. Target < 2 s on the 2-core CPU.
2. **Rerun that changes nothing ÷ full analysis**: the same request again in the same session
   (``app.runs.full_analysis``: full-content digest of model, image and choice, then the
   session's own copy of the result) ÷ (1). Target < 5 %. Also the same request from another
   session (digest, then a pickled copy from ``st.cache_data``). Also, for context, the whole page script of
   a rerun (Streamlit's AppTest: sidebar, banner, every figure built and serialised) ÷ the first,
   cold run of that page.
3. **Cold start to first render**: the server started as ``make run`` starts it (``python -m
   app.serve``: ``streamlit run app/main.py`` whose warm-up, app/warmup.py, imports the heavy
   modules and computes the start-up analysis in the background once the server is up) and as
   plain ``streamlit run app/main.py``, interleaved (``--launcher both``, the default;
   ``--browser-repeats N`` cold starts of each, medians; ``--baseline PATH``, repeatable, also
   cold-starts the server of another checkout, e.g. a worktree of main, in the same loop). Chromium
   (Playwright) is already running when the server is started; it navigates the moment the health
   endpoint answers (server up), and every time is counted from then: the first visible content
   (the page title or a sidebar widget's label; target <= 2 s) and the default page's script run
   finished with every chart drawn (the start-up analysis; target <= 4 s after the server is up, on
   a quiet 2-core machine); also when the title, the sidebar and the first chart (the empty chart
   drawn with the loading note counts: it is the chart library loaded) first appeared.
   ``--navigate-after S`` navigates S seconds after the server is up instead (a user who opens the
   page a while after ``make run``; the times still count from the server being up).
   ``--browser-only`` measures only this. Skipped with ``--no-browser`` or without /usr/bin/chromium.
4. **The first page run's phases** (``--phases``, bench/first_run.py in a fresh process): the
   imports, model, analysis (its parts), ε sweep, figure building and serialisation of the default
   page, one after another: less sensitive to the machine's load than the browser's numbers.
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

from app import runs as analysis  # noqa: E402
from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data.images import list_samples, load_sample  # noqa: E402

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


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def floor_passes(model, image, result) -> list[tuple[str, int, object]]:
    """The passes the analysis needs: (what, how many times, function), each run alone."""
    from neuronviz.methods.defences.pssr import inpaint, load_regenerator, salient_mask

    target = torch.tensor([result.benign_class], device=model.device)
    x1 = image.to(model.device)
    batch = torch.cat([x1] * 4)

    def forward(x):
        with torch.no_grad():
            model(x)

    def forward_backward(x, t):
        xg = x.detach().clone().requires_grad_(True)
        torch.autograd.grad(model(xg).gather(1, t[:, None]).sum(), xg)

    steps = int(result.params.get("steps", 0))
    nip_steps = int(result.restorations["nip-guided"].trace["objective"].shape[0])
    pssr = result.restorations["pssr"]
    alpha = float(pssr.params["alpha"])
    found = load_regenerator(model) if pssr.params.get("use_regenerator", True) else None
    surgery_x = x1 * (1.0 - pssr.extras["mask"].to(model.device)[:, None])
    mask = pssr.extras["mask"].to(model.device)[:, None]
    if found is not None:
        net = found[0]

        def regenerate():
            with torch.no_grad():
                net(surgery_x, mask)
    else:

        def regenerate():
            inpaint(surgery_x, mask)

    def saliency():
        with torch.enable_grad():
            salient_mask(model, x1, alpha)

    return [
        ("attack: clean + adversarial forward", 2, lambda: forward(x1)),
        (f"attack: {steps} x forward+backward", steps, lambda: forward_backward(x1, target)),
        (f"NIP: {nip_steps} x forward+backward", nip_steps, lambda: forward_backward(x1, target)),
        ("PSSR: saliency forward+backward", 1, saliency),
        ("PSSR: regenerator" if found is not None else "PSSR: inpainting (no regenerator)", 1, regenerate),
        ("restorations: 2 x classification", 2, lambda: forward(x1)),
        ("influence: forward+backward, batch 4", 1, lambda: forward_backward(batch, target.expand(4))),
    ]


def bench_floor(name: str, weights, repeats: int, device: str = "cpu") -> dict:
    """Full analysis ÷ the sum of the passes it needs, interleaved, medians of per-repetition ratios."""
    model = load_model(name, weights=weights, device=device)
    samples = list_samples(model)
    if samples:
        image = load_sample(samples[0].id, model)
    else:  # a 3-channel model without the sample photographs: a fixed random image
        image = torch.rand(1, model.channels, *model.input_size, generator=torch.Generator().manual_seed(0))
    choice = analysis.AttackChoice()
    result = analysis.compute_analysis(model, image, choice)  # warm-up, and the counts (NIP steps)
    passes = floor_passes(model, image, result)
    for _, _, fn in passes:
        fn()  # warm-up
    totals, floors, ratios = [], [], []
    for _ in range(repeats):
        total = timed(lambda: analysis.compute_analysis(model, image, choice), model.device)
        floor = sum(timed(fn, model.device) for _, count, fn in passes for _ in range(count))
        totals.append(total)
        floors.append(floor)
        ratios.append(total / floor)
    return {
        "model": name,
        "analysis_s": statistics.median(totals),
        "floor_s": statistics.median(floors),
        "ratio": statistics.median(ratios),
        "passes": [(what, count) for what, count, _ in passes],
        "seconds": result.seconds,
    }


FLOOR_MODELS = {"digits-cnn": "default", "resnet18": None}


def print_floor(rows: list[dict], out=print) -> None:
    out(f"{'model':12s} {'analysis s':>10s} {'floor s':>8s} {'analysis/floor':>14s}   passes in the floor")
    for r in rows:
        passes = "; ".join(what for what, count in r["passes"] if count)
        out(f"{r['model']:12s} {r['analysis_s']:10.3f} {r['floor_s']:8.3f} {r['ratio']:14.2f}   {passes}")
        out(f"{'':12s} analysis parts (s, warm-up run): " + ", ".join(f"{k} {v:.3f}" for k, v in r["seconds"].items()))
    out("target: analysis/floor <= 1.3")


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


#: How the server is started: ``make run``'s launcher (heavy imports start in the background once the
#: server is up, app/warmup.py) or plain ``streamlit run`` (everything imported in the first page run).
LAUNCHERS = {"serve": ["-m", "app.serve"], "streamlit": ["-m", "streamlit", "run", "app/main.py"]}
SERVER_FLAGS = [
    "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
    "--server.fileWatcherType", "none", "--theme.base", "light", "--client.toolbarMode", "viewer",
]  # fmt: skip
#: What the page shows, in the order it should appear: (name, CSS selector). The first element of
#: each is timed by a MutationObserver in the page (ms after navigation), so one visit gives them all.
MILESTONES = {
    "title": '[data-testid="stMain"] h1',
    "sidebar": '[data-testid="stSidebar"] [data-testid="stWidgetLabel"]',
    "first chart": ".js-plotly-plot .main-svg",
}
_OBSERVER = """
window.__milestones = {};
const wanted = %s;
const check = () => {
  for (const [name, selector] of Object.entries(wanted)) {
    if (!(name in window.__milestones)) {
      const element = document.querySelector(selector);
      if (element && element.offsetParent !== null) window.__milestones[name] = performance.now();
    }
  }
};
new MutationObserver(check).observe(document, {subtree: true, childList: true, attributes: true});
"""


def bench_browser(launcher: str = "streamlit", root: Path = ROOT, navigate_after: float = 0.0) -> dict[str, float] | None:
    """One cold start: the server (``launcher``, run from the checkout at ``root``) from nothing, then
    chromium (already running) from navigation, which begins when the server's health endpoint answers
    (or ``navigate_after`` seconds later: a user who opens the page a while after ``make run``).

    Returns seconds: ``server up`` (after launch), then after navigation ``first content`` (the page
    title or a sidebar widget's label, whichever is first), each of :data:`MILESTONES`, ``script
    done`` (the run finished) and ``every chart`` (each chart of the page drawn)."""
    if not CHROMIUM.exists():
        print(f"cold start: skipped ({CHROMIUM} is missing; apt-get install -y chromium)")
        return None
    import json

    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, *LAUNCHERS[launcher], *SERVER_FLAGS, "--server.port", str(port)]
    log = Path(tempfile.mkdtemp(prefix="neuronviz-bench-")) / "streamlit.log"
    with sync_playwright() as playwright:
        # The browser is running before the server starts (as a user's is): navigation begins the
        # moment the health endpoint answers, so every time below counts from the server being up.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.add_init_script(_OBSERVER % json.dumps(MILESTONES))
        launched = time.perf_counter()
        with log.open("w") as output:
            server = subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            _wait_until_up(server, url, log)
            started = time.perf_counter()
            times = {"server up": started - launched}
            time.sleep(navigate_after)  # every time below still counts from the server being up
            navigated = time.perf_counter() - started
            page.goto(url)
            # first visible content: the page's own text (the sidebar's model box or the page title), not Streamlit's skeleton
            page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stWidgetLabel"], [data-testid="stMain"] h1', timeout=120_000, state="visible")
            times["first content"] = time.perf_counter() - started
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=120_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)
            times["script done"] = time.perf_counter() - started
            for chart in page.locator(".js-plotly-plot").all():
                chart.locator(".main-svg").first.wait_for(timeout=120_000)
            times["every chart"] = time.perf_counter() - started
            # the observer's clock starts at navigation (performance.timeOrigin)
            for name, ms in page.evaluate("window.__milestones").items():
                times[name] = navigated + ms / 1000
            browser.close()
            return times
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


def _wait_until_up(server: subprocess.Popen, url: str, log: Path) -> None:
    """Poll the server's health endpoint every 20 ms until it answers (SystemExit if it exits)."""
    while True:
        if server.poll() is not None:
            raise SystemExit(f"streamlit exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)


def bench_browsers(launchers: list[str], repeats: int, baselines: list[Path] | None = None,
                   navigate_after: float = 0.0) -> dict[str, list[dict[str, float]]]:
    """``repeats`` cold starts of each launcher, interleaved (A B A B ...), so that the machine's
    load changes affect both alike; with ``baselines`` (other checkouts, e.g. a worktree of main),
    each launcher is also run from each of them, in the same loop (labelled ``<launcher>@<folder>``)."""
    variants = [(f"{name}@{root.name}", name, root) for name in launchers for root in baselines or []]
    variants += [(name, name, ROOT) for name in launchers]
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in variants}
    for _ in range(repeats):
        for label, name, root in variants:
            measured = bench_browser(name, root, navigate_after)
            if measured is None:
                return runs
            runs[label].append(measured)
    return runs


def print_browsers(runs: dict[str, list[dict[str, float]]]) -> None:
    for label, measured in runs.items():
        if not measured:
            continue
        name = label.split("@")[0]
        if len(measured) == 1:
            print_browser(measured[0], name)
            continue
        keys = list(measured[0])
        parts = ", ".join(f"{key} {statistics.median(m[key] for m in measured):.1f}" for key in keys)
        ranges = ", ".join(f"{key} {min(m[key] for m in measured):.1f}-{max(m[key] for m in measured):.1f}" for key in ("first content", "every chart"))
        print(f"cold start, {label} ({' '.join(LAUNCHERS[name][1:])}), median of {len(measured)} (s): {parts}; range {ranges}")
        each = ", ".join(f"{m['every chart']:.2f}" for m in measured)
        print(f"  every chart, each run (s): {each}")
    print(f"targets: first content <= 2 s, every chart <= 4 s after the server is up; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def print_browser(times: dict[str, float], launcher: str = "streamlit") -> None:
    milestones = ", ".join(f"{name} {times[name]:.1f} s" for name in MILESTONES if name in times)
    print(
        f"cold start ({' '.join(LAUNCHERS[launcher][1:])}): server up after {times['server up']:.1f} s; after that (chromium navigates then): "
        f"first visible content {times['first content']:.1f} s (target <= 2 s), the start-up analysis drawn (every chart) "
        f"{times['every chart']:.1f} s (target <= 4 s); script run done {times['script done']:.1f} s; first of each: "
        f"{milestones}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--page", default="attack", help="page for the AppTest rerun measurement (file stem)")
    parser.add_argument("--floor-only", action="store_true", help="only the full analysis ÷ its floor")
    parser.add_argument("--floor-models", default=",".join(FLOOR_MODELS))
    parser.add_argument("--device", default="cpu", help="device of the floor measurement")
    parser.add_argument("--browser-only", action="store_true", help="only the cold start in chromium (first content, start-up analysis)")
    parser.add_argument("--launcher", choices=[*LAUNCHERS, "both"], default="both",
                        help="how the server starts for the cold start: make run's launcher (serve), streamlit run, or both interleaved")
    parser.add_argument("--browser-repeats", type=int, default=1, help="cold starts of each launcher (interleaved; medians)")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="another checkout (e.g. a worktree of main) whose server is also cold-started, interleaved (repeatable)")
    parser.add_argument("--navigate-after", type=float, default=0.0,
                        help="seconds after the server is up before chromium navigates (times still count from server up)")
    parser.add_argument("--phases", action="store_true", help="only the first page run's phases (bench/first_run.py, a fresh process)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    launchers = list(LAUNCHERS) if args.launcher == "both" else [args.launcher]
    if args.phases:
        subprocess.run([sys.executable, str(ROOT / "bench" / "first_run.py")], cwd=ROOT, check=True)
    if args.browser_only:
        print_browsers(bench_browsers(launchers, args.browser_repeats, args.baseline, args.navigate_after))
    if args.browser_only or args.phases:
        return

    rows = [bench_floor(n, FLOOR_MODELS.get(n, "default"), max(3, args.repeats), args.device) for n in args.floor_models.split(",")]
    print(f"full analysis (PGD-20 + NIP guided + PSSR + influence of 4 images) ÷ its floor, median of {max(3, args.repeats)} interleaved repetitions:")
    print_floor(rows)
    if args.floor_only:
        return

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
        print_browsers(bench_browsers(launchers, args.browser_repeats, args.baseline, args.navigate_after))


if __name__ == "__main__":
    main()
