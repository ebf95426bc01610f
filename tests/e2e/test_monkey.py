"""A monkey test: a seeded random walk over every page and every widget of the real app in chromium.

Against `streamlit run app/main.py`, the walker (tests/e2e/monkey_driver.py) takes
``$NEURONVIZ_MONKEY_STEPS`` (default 150) random actions: it picks any option of any select box,
clears a clearable box, presses Escape in an open list, moves sliders to their ends, types into
number inputs (out of range too), switches pages mid-run, uploads good and bad files (images, a
corrupt image, a tiny checkpoint, a real one, a code pickle), presses buttons twice. Widgets are
found by their ``data-testid`` in the sidebar and the main area after every run, so new widgets
are walked without editing this file. After each action, once the app's run has finished, no
exception may be on the page and the banner must agree with the sidebar (model and attack), and
the run must end within ``RUN_TIMEOUT_S``: the server gets ``NEURONVIZ_TIME_BUDGET_S`` (default
10 s here), the app's own per-computation time limit, so no action may keep it busy for minutes.

The seed is fixed (``$NEURONVIZ_MONKEY_SEED``, default 20261201, changes it); a failure prints the
seed, the failed check and the action list so far, and saves a screenshot under
``out/monkey/`` (or ``$NEURONVIZ_SCREENSHOTS``). ``$NEURONVIZ_MONKEY_PORT`` pins the server's port.
``NEURONVIZ_MONKEY_KEEP_GOING=1`` (exploration) records each failure, walks on (in a fresh browser
session when the page cannot be used) and reports the distinct ones at the end; ``NEURONVIZ_MONKEY_VERBOSE=1`` prints each action.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from browser_setup import CHROMIUM_ARGS, ROOT
from monkey_driver import Server, Walker, open_app, write_upload_files

pytestmark = pytest.mark.e2e

DEFAULT_SEED = 20261201
DEFAULT_STEPS = 150
#: The server's wall-clock budget per computation (``NEURONVIZ_TIME_BUDGET_S``, neuronviz.infra.settings):
#: a big model or a long attack stops with a message instead of holding the walk for minutes.
TIME_BUDGET_S = float(os.environ.get("NEURONVIZ_TIME_BUDGET_S") or 10)
#: An action's run may take a few budgets (a page runs several computations) plus loading a model.
RUN_TIMEOUT_S = 4 * TIME_BUDGET_S + 30


def _shots() -> Path:
    return Path(os.environ.get("NEURONVIZ_SCREENSHOTS") or ROOT / "out") / "monkey"


@pytest.fixture(scope="module")
def monkey_server(chromium_path: Path):
    port = int(os.environ["NEURONVIZ_MONKEY_PORT"]) if os.environ.get("NEURONVIZ_MONKEY_PORT") else None
    root = os.environ.get("NEURONVIZ_MONKEY_APP_ROOT") or None  # walk another checkout's app (e.g. a branch)
    with Server(port=port, extra_env={"NEURONVIZ_TIME_BUDGET_S": f"{TIME_BUDGET_S:g}"}, root=root) as server:
        yield server


def test_random_walk_never_shows_an_exception(monkey_server: Server, chromium_path: Path, tmp_path: Path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    seed = int(os.environ.get("NEURONVIZ_MONKEY_SEED") or DEFAULT_SEED)
    steps = int(os.environ.get("NEURONVIZ_MONKEY_STEPS") or DEFAULT_STEPS)
    files = write_upload_files(tmp_path / "uploads")
    print(f"monkey: seed {seed}, {steps} steps, server {monkey_server.url}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(30_000)
            start = time.monotonic()
            open_app(page, monkey_server.url)
            keep_going = os.environ.get("NEURONVIZ_MONKEY_KEEP_GOING") == "1"
            walker = Walker(
                page=page, rng=random.Random(seed), files=files, seed=seed, shots=_shots(),
                keep_going=keep_going, url=monkey_server.url, run_timeout_ms=int(RUN_TIMEOUT_S * 1000),
            )  # fmt: skip
            if os.environ.get("NEURONVIZ_MONKEY_VERBOSE") == "1":
                walker.on_action = lambda a: print(f"monkey: {len(walker.actions):3d}. {a}", flush=True)
            walker.check()  # the first page, before any action
            kinds: dict[str, int] = {}
            for _ in range(steps):
                action = walker.step()
                kinds[action.kind] = kinds.get(action.kind, 0) + 1
            elapsed = time.monotonic() - start
            slowest = sorted(walker.actions, key=lambda a: -a.seconds)[:5]
            print(f"monkey: {steps} actions in {elapsed:.0f} s; by kind {kinds}")
            print("monkey: slowest\n" + "\n".join(f"  {a}" for a in slowest))
        finally:
            browser.close()
    if walker.failures:
        distinct = walker.distinct_failures()
        print("monkey: distinct failures\n" + "\n".join(f"  {len(v)} × {k}" for k, v in distinct.items()))
        first = [v[0] for v in distinct.values()]
        pytest.fail(f"{len(walker.failures)} failures, {len(distinct)} distinct:\n\n" + "\n\n=====\n\n".join(first))
    # Every kind of widget the app has today was used at least once (the walk is not stuck on one page).
    assert len(walker.actions) == steps
    assert {"page", "Selectbox", "ButtonGroup", "NumberInput"} <= set(kinds), kinds
