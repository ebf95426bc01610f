"""Soak: 200 reruns of the dashboard (AppTest) switching pages and attacks; memory stays flat.

One session walks a fixed cycle of pages (Attack, Neurons, Defences, Model & image, About) and
submits a cycle of attack choices (a few attacks and seeds), so every rerun either draws a page
from cached results or adds one analysis that the cycle meets again later. After a warm-up that
has met every (page, choice) combination, the resident memory of this process is the flat level;
the remaining reruns only repeat what is cached.

The bound: after the warm-up (60 reruns) the remaining 140 reruns may grow RSS, after a garbage
collection, by at most ``MAX_GROWTH_MB`` = 25 MB, about 0.18 MB a rerun. Measured here
(Streamlit 1.67, 2 shared cores): the flat level is about 1,090 MB at rerun 60 and the growth over
the next 140 reruns about 13 MB (the caches taking their last entries). A page's output is 0.08 to
0.14 MB of figure JSON (Neurons, Attack, Defences, measured with AppTest): a leak of the order of
one page's output per rerun adds at least 140 × 0.1 = 14 MB, which on top of the measured growth
exceeds the bound, while the measured growth alone stays well under it.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest
from apptest import MAIN, assert_healthy, clear_caches
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow

RERUNS = 200
WARMUP = 60  # reruns before the flat level is read: every (page, choice) pair has been met by then
MAX_GROWTH_MB = 25.0
TIME_LIMIT_S = 90.0

PAGES = ["app_pages/attack.py", "app_pages/neurons.py", "app_pages/defences.py", "app_pages/model_image.py", "app_pages/about.py"]
CHOICES = [("fgsm", 0), ("pgd", 0), ("none", 0), ("bim", 1)]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _submit(at: AppTest, attack: str, seed: int) -> None:
    at.sidebar.selectbox(key="attack_name").set_value(attack)
    at.run()
    [seed_box] = [n for n in at.sidebar.number_input if n.label == "Seed"]  # its key changes with the choice
    seed_box.set_value(seed)
    [button] = [b for b in at.sidebar.button if b.label == "Run attack"]
    button.click()


def test_two_hundred_reruns_keep_memory_flat():
    clear_caches()
    start = time.monotonic()
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    assert_healthy(at)
    reruns = 1
    samples: list[tuple[int, float]] = []
    flat = None
    step = 0
    while reruns < RERUNS:
        page = PAGES[step % len(PAGES)]
        if step % 3 == 0:  # a new attack choice every third step (the choice cycle meets every page)
            attack, seed = CHOICES[(step // 3) % len(CHOICES)]
            _submit(at, attack, seed)
            reruns += 1  # the selectbox change
        at.switch_page(page)
        at.run()
        reruns += 1
        assert_healthy(at)
        assert not at.error, [e.value for e in at.error]
        step += 1
        if reruns >= WARMUP and flat is None:
            gc.collect()
            flat = _rss_mb()
        if step % 10 == 0:
            samples.append((reruns, _rss_mb()))
    gc.collect()
    final = _rss_mb()
    elapsed = time.monotonic() - start
    trace = ", ".join(f"{n}: {mb:.0f}" for n, mb in samples)
    print(f"soak: {reruns} reruns in {elapsed:.0f} s; RSS flat {flat:.0f} MB after {WARMUP}, final {final:.0f} MB; {trace}")
    assert final - flat <= MAX_GROWTH_MB, f"RSS grew {final - flat:.0f} MB after the warm-up ({trace})"
    # 57 s measured on 2 shared cores; twice the CI budget means reruns got much slower (a cache that stopped working)
    assert elapsed < 2 * TIME_LIMIT_S, f"the soak took {elapsed:.0f} s (budget {TIME_LIMIT_S:.0f} s on 2 cores)"
    clear_caches()
