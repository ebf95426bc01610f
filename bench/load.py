"""Load bench: N browser sessions on one real server doing mixed work.

For each N (default 1, 4, 8) a fresh ``streamlit run app/main.py`` is started and one chromium opens
N browser contexts (N independent Streamlit sessions) that act at the same time, each following
its own seeded plan of ``--actions`` steps drawn from: switch page, run an attack (pick one in the
sidebar, a fresh seed, "Run attack"), pick a digit, upload an image and go back to the samples.
Every action is timed from the click until the app's run has finished
(``data-test-script-state="notRunning"``). An error is an exception element on the page or an
action that did not finish within the timeout.

Prints, per N: latency p50 / p90 / max per action kind, the number of errors, and the server's peak
RSS (sampled every 0.2 s from /proc) above its RSS after one warm-up session (the first run imports
torch and loads the default model; its "cold open" time is printed too).

    python bench/load.py                  # N = 1, 4, 8
    python bench/load.py -n 1 4 --actions 8 --port 8703

The numbers depend on the machine and on what else runs on it: report them with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT))

from monkey_driver import CHROMIUM, CHROMIUM_ARGS, SCRIPT_DONE, Server  # noqa: E402

PAGES = ["Attack", "Neurons", "First-layer filters", "Sensitivity", "Defences", "Model & image", "Guided tour & methods"]
ATTACKS = ["FGSM", "PGD (L∞)", "BIM / I-FGSM", "MI-FGSM", "DeepFool", "C&W (L2)"]
KINDS = ["page", "page", "attack", "attack", "digit", "upload"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def wait_run(page, timeout_ms: int) -> None:
    await page.wait_for_timeout(200)
    await page.wait_for_selector(SCRIPT_DONE, timeout=timeout_ms)
    await page.wait_for_timeout(100)
    await page.wait_for_selector(SCRIPT_DONE, timeout=timeout_ms)


async def session(context, url: str, index: int, actions: int, image: Path, timeout_ms: int, log: list) -> None:
    rng = random.Random(1000 + index)
    page = await context.new_page()
    page.set_default_timeout(timeout_ms)  # a click on a busy server may wait as long as a run

    async def timed(kind: str, act) -> None:
        start = time.monotonic()
        error = None
        try:
            await act()
            await wait_run(page, timeout_ms)
            if await page.get_by_test_id("stException").count():
                error = (await page.get_by_test_id("stException").first.inner_text())[:200]
        except Exception as failure:  # noqa: BLE001 - counted as an error of this action
            error = f"{type(failure).__name__}: {str(failure)[:200]}"
        log.append((kind, time.monotonic() - start, error, index))

    async def open_app():
        await page.goto(url, wait_until="domcontentloaded")
        await page.get_by_test_id("stSidebarNav").wait_for(timeout=timeout_ms)
        await page.get_by_test_id("stSidebarUserContent").get_by_test_id("stSelectbox").first.wait_for(timeout=timeout_ms)

    await timed("open", open_app)
    sidebar = page.get_by_test_id("stSidebar")
    uploaded = False
    for _ in range(actions):
        kind = rng.choice(KINDS)
        if kind == "page":
            title = rng.choice(PAGES)
            await timed("page", lambda title=title: page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click())
        elif kind == "attack":
            name, seed = rng.choice(ATTACKS), rng.randrange(1, 10_000)

            async def attack(name=name, seed=seed):
                box = sidebar.get_by_role("combobox", name="Attack", exact=True)
                await box.click()
                await box.fill("")  # then type the start of the name: the list filters to it (a long
                await box.press_sequentially(name[:3])  # list renders only a window of its options)
                await page.get_by_role("listbox").last.get_by_role("option", name=name, exact=True).click()
                await wait_run(page, timeout_ms)
                seed_box = sidebar.get_by_role("spinbutton", name="Seed")
                await seed_box.fill(str(seed))
                await seed_box.press("Tab")
                await sidebar.get_by_role("button", name="Run attack").click()

            await timed("attack", attack)
        elif kind == "digit":
            if uploaded:
                await timed("sample", lambda: sidebar.get_by_role("radiogroup", name="Source").nth(1).get_by_role("radio", name="Sample").click())
                uploaded = False
                continue
            digit = str(rng.randrange(10))
            await timed("digit", lambda digit=digit: sidebar.get_by_role("radiogroup", name="Digit").get_by_role("radio", name=digit, exact=True).click())
        else:

            async def upload(uploaded=uploaded):
                if not uploaded:
                    await sidebar.get_by_role("radiogroup", name="Source").nth(1).get_by_role("radio", name="Upload").click()
                    await wait_run(page, timeout_ms)
                await sidebar.locator('input[type="file"]').set_input_files(str(image))

            await timed("upload", upload)
            uploaded = True
    await page.close()


async def run_level(n: int, actions: int, port: int | None, timeout_ms: int, image: Path) -> dict:
    from playwright.async_api import async_playwright

    with Server(port=port) as server:
        bare = server.rss_bytes()
        stop = asyncio.Event()

        async def sample_rss():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, server.rss_bytes())
                await asyncio.sleep(0.2)

        log: list = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            # A warm-up session first: the server's first run imports torch and the app and loads the
            # default model; the baseline is the RSS after it (what N sessions add comes on top).
            warm = await browser.new_context(viewport={"width": 1400, "height": 1000})
            cold: list = []
            await session(warm, server.url, -1, 0, image, timeout_ms, cold)
            await warm.close()
            baseline = peak = server.rss_bytes()
            contexts = [await browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(n)]
            sampler = asyncio.create_task(sample_rss())
            start = time.monotonic()
            await asyncio.gather(*(session(c, server.url, i, actions, image, timeout_ms, log) for i, c in enumerate(contexts)))
            wall = time.monotonic() - start
            stop.set()
            await sampler
            await browser.close()
    return {
        "n": n, "log": log, "wall": wall, "bare_mb": bare / 2**20, "baseline_mb": baseline / 2**20,
        "peak_mb": peak / 2**20, "cold_open_s": cold[0][1], "cold_error": cold[0][2],
    }  # fmt: skip


def report(result: dict) -> None:
    log = result["log"]
    errors = [entry for entry in log if entry[2]]
    print(
        f"\nN = {result['n']}: {len(log)} actions in {result['wall']:.0f} s, {len(errors)} errors; server RSS "
        f"{result['bare_mb']:.0f} MB bare, {result['baseline_mb']:.0f} MB after a warm-up session "
        f"(cold first open {result['cold_open_s']:.1f} s{', ' + result['cold_error'] if result['cold_error'] else ''}), "
        f"peak {result['peak_mb']:.0f} MB with {result['n']} sessions (+{result['peak_mb'] - result['baseline_mb']:.0f} MB)"
    )
    print(f"  {'action':8s} {'count':>5s} {'p50 s':>7s} {'p90 s':>7s} {'max s':>7s}")
    for kind in ["open", "page", "attack", "digit", "upload", "sample"]:
        times = [t for k, t, e, _ in log if k == kind and not e]
        if times:
            print(f"  {kind:8s} {len(times):5d} {statistics.median(times):7.2f} {percentile(times, 0.9):7.2f} {max(times):7.2f}")
    by_type: dict[str, int] = {}
    for kind, _seconds, error, _index in errors:
        first = error.splitlines()[0][:90]
        by_type[f"{kind}: {first}"] = by_type.get(f"{kind}: {first}", 0) + 1
    for what, count in sorted(by_type.items(), key=lambda item: -item[1]):
        print(f"  errors: {count} × {what}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, nargs="+", default=[1, 4, 8], help="session counts (default 1 4 8)")
    parser.add_argument("--actions", type=int, default=10, help="actions per session (default 10)")
    parser.add_argument("--port", type=int, default=None, help="server port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds one action may take (default 180)")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from PIL import Image

    image = Path(tempfile.mkdtemp(prefix="neuronviz-load-")) / "digit-seven.png"
    pixels = Image.new("L", (28, 28), 0)
    for i in range(6, 22):
        pixels.putpixel((i, 6), 255)
        pixels.putpixel((21 - (i - 6) // 2, i), 255)
    pixels.save(image)
    print(f"load bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; {args.actions} actions per session")
    for n in args.n:
        result = asyncio.run(run_level(n, args.actions, args.port, int(args.timeout * 1000), image))
        report(result)
        print(f"  load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
