"""A seeded random walk over a running dashboard in chromium (used by test_monkey.py and bench/load.py).

Widgets are discovered generically, by Streamlit's ``data-testid`` attributes, in the sidebar and the
main area after every run, so a widget added to a page is walked without editing this file. Each
kind of widget has its own ways to be used (a select box: pick any option, clear it with its ×,
open its list and press Escape; a slider: Home, End, arrows; a number input: a value in range, out
of range, empty, the step buttons; a button: one click or two; an uploader: good and bad files...).

After every action the walker waits until the app has finished its script run
(``data-test-script-state="notRunning"``, with a timeout) and checks the page: no exception element
(``stException``), and the banner above the page agrees with the sidebar (the model in the banner is
the one in the Model box; the attack in the banner is the one in the Attack box once that choice was
submitted). A failed check raises :class:`WalkFailure`, which carries the action list so far.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCRIPT_DONE = '[data-testid="stApp"][data-test-script-state="notRunning"]'

#: Widget containers (data-testid) the walker knows how to use, in the sidebar and the main area.
WIDGET_KINDS = (
    "stSelectbox",
    "stMultiSelect",
    "stButtonGroup",
    "stRadio",
    "stCheckbox",
    "stToggle",
    "stSlider",
    "stNumberInput",
    "stTextInput",
    "stTextArea",
    "stButton",
    "stFormSubmitButton",
    "stDownloadButton",
    "stFileUploader",
    "stTabs",
    "stExpander",
)
#: Kinds whose use can start expensive work: used less often than cheap ones.
WEIGHTS = {"stFileUploader": 1.5, "stTabs": 0.7, "stExpander": 0.5, "stDownloadButton": 0.3}


class WalkFailure(AssertionError):
    """A check failed after an action; ``str()`` names the seed, the action and the actions so far."""


@dataclass
class Action:
    area: str  # "sidebar", "main" or "nav"
    kind: str
    label: str
    what: str
    seconds: float = 0.0

    def __str__(self) -> str:
        return f"{self.area} {self.kind} {self.label!r}: {self.what} ({self.seconds:.1f} s)"


@dataclass
class Walker:
    page: object  # playwright Page
    rng: random.Random
    files: Sequence[Path]  # files the uploaders get (good and bad)
    seed: int = 0
    run_timeout_ms: int = 90_000
    shots: Path | None = None
    actions: list[Action] = field(default_factory=list)
    attack_pending: bool = False  # the Attack box was changed and not yet submitted
    on_action: Callable[[Action], None] | None = None
    keep_going: bool = False  # record a failure, start a fresh session and walk on (exploration)
    url: str = ""
    failures: list[str] = field(default_factory=list)
    session_start: int = 0  # index in ``actions`` where the current browser session began
    in_a_row: int = 0
    slow_s: float = 8.0  # an action whose run took longer made the app slow (a big model, a long attack)
    slow_widget: tuple[str, str, str] | None = None  # (area, kind, label) of the last action that made it slow

    # -- waiting and checking -------------------------------------------------------------------

    def wait_for_run(self) -> None:
        """Until Streamlit has finished the run the last action started (if any)."""
        page = self.page
        page.wait_for_timeout(200)  # a rerun triggered by the last action starts within this
        try:
            page.wait_for_selector(SCRIPT_DONE, timeout=self.run_timeout_ms)
            page.wait_for_timeout(100)
            page.wait_for_selector(SCRIPT_DONE, timeout=self.run_timeout_ms)  # a second, chained run
        except Exception as error:  # playwright TimeoutError
            self.fail(f"the app was still running {self.run_timeout_ms / 1000:.0f} s after the action: {error}")

    def check(self) -> None:
        page = self.page
        exceptions = page.get_by_test_id("stException")
        if exceptions.count():
            texts = exceptions.all_inner_texts()
            self.fail("an exception is on the page:\n" + "\n---\n".join(t[:3000] for t in texts))
        problem = self.banner_problem()
        if problem:
            self.fail(problem)

    def banner(self) -> dict[str, str]:
        """The banner's model name and attack label ({} when the page shows no banner)."""
        main = self.page.get_by_test_id("stMain")
        found: dict[str, str] = {}
        for text in main.get_by_test_id("stMarkdownContainer").all_inner_texts()[:3]:  # the banner is on top
            text = text.strip()
            # One paragraph (components.banner_text): "Model <name> · … Image … Attack <label> · …"
            model = re.search(r"(?:^|\s)Model\s+(\S+)\s+·", text)
            if model and "model" not in found:
                found["model"] = model.group(1)
            attack = re.search(r"(?:^|\s)Attack\s+(.+)$", text, re.S)
            if attack and "attack" not in found:
                found["attack"] = attack.group(1).split(" · ")[0].strip()
        return found if "model" in found else {}

    def sidebar_value(self, label: str) -> str | None:
        """What the sidebar's select box labelled ``label`` shows ('' when cleared; None if absent)."""
        box = self.page.get_by_test_id("stSidebar").get_by_role("combobox", name=label, exact=True)
        if box.count() != 1:
            return None
        return box.input_value().strip()

    def sidebar_choice(self, label: str) -> str | None:
        """The pressed option of the sidebar's first segmented control labelled ``label``."""
        group = self.page.get_by_test_id("stSidebar").get_by_role("radiogroup", name=label, exact=True)
        if not group.count():
            return None
        checked = group.first.locator('[aria-checked="true"]')
        return checked.first.inner_text().strip() if checked.count() else ""

    def _model_failure_shown(self) -> bool:
        """An error on the page says the chosen model did not load (the last good one is shown)."""
        alerts = self.page.get_by_test_id("stMain").get_by_test_id("stAlertContentError").all_inner_texts()
        return any("Could not load the model" in text for text in alerts)

    def banner_problem(self) -> str | None:
        banner = self.banner()
        if not banner:
            return None  # nothing loaded (a message says why), or a page without the banner
        if self.sidebar_choice("Source") in (None, "Built-in"):
            model = self.sidebar_value("Model")
            if model is not None:
                if not model:
                    return f"the Model box is empty while the banner shows the model {banner.get('model')!r}"
                if model.split(" · ")[0] != banner.get("model") and not self._model_failure_shown():
                    return f"the banner shows the model {banner.get('model')!r}, the Model box {model!r}"
        attack = self.sidebar_value("Attack")
        if attack is not None:
            if not attack:
                return f"the Attack box is empty while the banner shows the attack {banner.get('attack')!r}"
            if attack == banner.get("attack"):
                self.attack_pending = False
            elif not self.attack_pending:
                return f"the banner shows the attack {banner.get('attack')!r}, the Attack box {attack!r} (submitted)"
        return None

    def fail(self, message: str) -> None:
        shot = None
        if self.shots is not None:
            self.shots.mkdir(parents=True, exist_ok=True)
            shot = self.shots / f"monkey-seed{self.seed}-step{len(self.actions):03d}.png"
            try:
                self.page.screenshot(path=shot, full_page=True)
            except Exception:  # noqa: BLE001 - the screenshot is a courtesy
                shot = None
        listing = "\n".join(
            f"  {i + 1:3d}. {a}" for i, a in enumerate(self.actions) if i >= self.session_start
        )
        fresh = f" (in the session begun after action {self.session_start})" if self.session_start else ""
        raise WalkFailure(
            f"{message}\n\nseed {self.seed} (rerun with NEURONVIZ_MONKEY_SEED={self.seed}), "
            f"after action {len(self.actions)}; screenshot: {shot}\nactions so far{fresh}:\n{listing}"
        )

    # -- the walk ---------------------------------------------------------------------------------

    def step(self) -> Action:
        """One random action, then the wait and the checks.

        With ``keep_going`` (exploration), a failure is recorded and the walk goes on: in the same
        session after an exception on the page (what a user would see next is part of the defect),
        in a fresh browser session after a timeout, a widget that could not be used, or three
        failures in a row."""
        try:
            action = self._step()
            self.in_a_row = 0
            return action
        except WalkFailure as failure:
            if not self.keep_going:
                raise
            self.failures.append(str(failure))
            self.in_a_row += 1
            print(f"monkey: failure {len(self.failures)} at action {len(self.actions)}: {signature(str(failure))}", flush=True)
            if self.in_a_row >= 3 or not str(failure).startswith("an exception is on the page"):
                self.page.goto("about:blank")
                open_app(self.page, self.url, timeout_ms=self.run_timeout_ms + 60_000)
                self.session_start = len(self.actions)
                self.attack_pending = False
                self.in_a_row = 0
            return self.actions[-1]

    def distinct_failures(self) -> dict[str, list[str]]:
        """The recorded failures by signature (the check and, for an exception, its type and line)."""
        found: dict[str, list[str]] = {}
        for failure in self.failures:
            found.setdefault(signature(failure), []).append(failure)
        return found

    def _step(self) -> Action:
        candidates = self.discover()
        weights = [w for w, _ in candidates]
        _, act = self.rng.choices(candidates, weights=weights, k=1)[0]
        start = time.monotonic()
        try:
            action = act()
        except WalkFailure:
            raise
        except Exception as error:  # noqa: BLE001 - a widget that could not be used is a finding too
            self.actions.append(Action("?", "?", "?", f"could not act: {type(error).__name__}: {str(error)[:400]}"))
            self.fail(f"the walker could not use a widget (a widget that vanished mid-run, or a driver bug): {error}")
        self.actions.append(action)
        self.wait_for_run()
        action.seconds = time.monotonic() - start
        if action.seconds > self.slow_s and action.area != "nav":
            self.slow_widget = (action.area, action.kind, action.label)
        elif action.seconds < self.slow_s / 4 and action.area != "nav":
            self.slow_widget = None
        if self.on_action is not None:
            self.on_action(action)
        self.check()
        return action

    def discover(self) -> list[tuple[float, Callable[[], Action]]]:
        page = self.page
        candidates: list[tuple[float, Callable[[], Action]]] = []
        links = page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink")
        for index in range(links.count()):
            candidates.append((6.0 / max(links.count(), 1), lambda i=index: self.switch_page(i)))
        # One round trip: the index of every visible widget of each known kind in each area.
        found = page.evaluate(
            """([areas, kinds]) => areas.map(([area, testid]) => {
                const root = document.querySelector(`[data-testid="${testid}"]`);
                const out = [];
                if (!root) return out;
                for (const kind of kinds) {
                    root.querySelectorAll(`[data-testid="${kind}"]`).forEach((e, i) => {
                        // checkVisibility: false inside a closed expander (content-visibility), display none...
                        const r = e.getBoundingClientRect();
                        if (r.width > 0 && r.height > 0 && e.checkVisibility({checkVisibilityCSS: true, checkOpacity: true}))
                            out.push([area, testid, kind, i]);
                    });
                }
                return out;
            }).flat()""",
            [[["sidebar", "stSidebarUserContent"], ["main", "stMain"]], list(WIDGET_KINDS)],
        )
        for area, testid, kind, index in found:
            widget = page.get_by_test_id(testid).get_by_test_id(kind).nth(index)
            weight = WEIGHTS.get(kind, 1.0) * (1.0 if area == "sidebar" else 0.8)
            if self.slow_widget is not None and self.slow_widget[:2] == (area, kind[2:]):
                # The widget that made the app slow (e.g. a big model picked in a select box) is used
                # again more often, so the walk leaves a slow state soon and fits in CI time.
                if _label_of(widget, kind) == self.slow_widget[2]:
                    weight *= 6.0
            candidates.append((weight, lambda w=widget, k=kind, a=area: self.use(a, k, w)))
        candidates.append((0.3, self.press_escape))
        return candidates

    def switch_page(self, index: int) -> Action:
        link = self.page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink").nth(index)
        title = link.inner_text().strip().split("\n")[-1]
        link.click()
        self.page.wait_for_timeout(300)
        return Action("nav", "page", title, "open")

    def press_escape(self) -> Action:
        self.page.keyboard.press("Escape")
        return Action("main", "keyboard", "", "Escape")

    def use(self, area: str, kind: str, widget) -> Action:
        label = _label_of(widget, kind)
        if _disabled(widget, kind):
            return Action(area, kind[2:], label, "(disabled: nothing to do)")
        handler = getattr(self, "_" + kind[2:].lower())
        what = handler(widget, label)
        return Action(area, kind[2:], label, what)

    # -- one method per kind of widget ---------------------------------------------------------------

    def _selectbox(self, widget, label: str) -> str:
        before = widget.get_by_role("combobox").input_value()
        clear = widget.get_by_role("button", name="Clear value")
        moves = ["pick", "pick", "pick", "escape"] + (["clear"] if clear.count() else [])
        move = self.rng.choice(moves)
        if move == "clear":
            clear.first.click()
            what = f"clear (was {before!r})"
        else:
            options = self._open_list(widget)
            if move == "escape":
                self.page.keyboard.press("Escape")
                what = f"open the list, Escape (was {before!r})"
            elif self.rng.random() < 0.5:
                texts = options.all_inner_texts()  # the rendered ones (a long list renders a window of it)
                choice = self.rng.randrange(len(texts))
                options.nth(choice).click()
                what = f"pick {texts[choice]!r} (was {before!r})"
            else:  # the keyboard reaches every option of a long list
                presses = self.rng.randrange(1, 30)
                for _ in range(presses):
                    self.page.keyboard.press("ArrowDown")
                focused = self.page.get_by_role("listbox").last.locator('[role="option"][data-focused="true"]')
                text = focused.first.inner_text() if focused.count() else "?"
                self.page.keyboard.press("Enter")
                what = f"ArrowDown ×{presses}, Enter on {text!r} (was {before!r})"
        if label == "Attack" and area_is_sidebar(widget):
            self.page.wait_for_timeout(150)
            if widget.get_by_role("combobox").input_value() != before:
                self.attack_pending = True
        return what

    def _open_list(self, widget):
        """Open a select box's list (its arrow button; the box itself as a fallback); the options."""
        opener = widget.get_by_role("button", name="Open")
        (opener.first if opener.count() else widget.get_by_role("combobox")).click()
        listbox = self.page.get_by_role("listbox")
        try:
            listbox.last.get_by_role("option").first.wait_for(timeout=3000)
        except Exception:  # noqa: BLE001 - try once more, on the box
            widget.get_by_role("combobox").click()
            listbox.last.get_by_role("option").first.wait_for(timeout=5000)
        return listbox.last.get_by_role("option")

    def _multiselect(self, widget, label: str) -> str:
        if self.rng.random() < 0.3 and widget.get_by_role("button", name=re.compile("Clear|Delete|Remove")).count():
            widget.get_by_role("button", name=re.compile("Clear|Delete|Remove")).first.click()
            return "clear"
        options = self._open_list(widget)
        if not options.count():
            self.page.keyboard.press("Escape")
            return "open (no options), Escape"
        texts = options.all_inner_texts()
        choice = self.rng.randrange(len(texts))
        options.nth(choice).click()
        self.page.keyboard.press("Escape")
        return f"add {texts[choice]!r}"

    def _buttongroup(self, widget, label: str) -> str:
        buttons = widget.locator("button")
        texts = buttons.all_inner_texts()
        choice = self.rng.randrange(len(texts))
        buttons.nth(choice).click()
        return f"press {texts[choice].strip()!r}"

    def _radio(self, widget, label: str) -> str:
        options = widget.locator("label")
        texts = [t.strip() for t in options.all_inner_texts()]
        choice = self.rng.randrange(len(texts))
        options.nth(choice).click()
        return f"choose {texts[choice]!r}"

    def _checkbox(self, widget, label: str) -> str:
        widget.locator("label").first.click()
        return "toggle"

    _toggle = _checkbox

    def _slider(self, widget, label: str) -> str:
        thumbs = widget.get_by_role("slider")
        thumb = thumbs.nth(self.rng.randrange(thumbs.count()))
        keys = self.rng.choice([["Home"], ["End"], ["End"], ["Home"], ["ArrowRight"], ["ArrowLeft"], ["ArrowRight"] * 3, ["PageUp"]])
        thumb.focus()
        for key in keys:
            thumb.press(key)
        thumb.blur() if hasattr(thumb, "blur") else None
        return "keys " + "+".join(keys)

    def _numberinput(self, widget, label: str) -> str:
        field_ = widget.get_by_test_id("stNumberInputField")
        move = self.rng.choice(["type", "type", "type", "up", "down"])
        if move in ("up", "down"):
            button = widget.get_by_test_id("stNumberInputStepUp" if move == "up" else "stNumberInputStepDown")
            if button.is_enabled():
                button.click()
                return f"step {move}"
            return f"step {move} (disabled)"
        low, high = field_.get_attribute("min"), field_.get_attribute("max")
        value = self._number_for(low, high, field_.get_attribute("step"))
        field_.fill(value)
        field_.press(self.rng.choice(["Enter", "Tab"]))
        return f"type {value!r} (min {low}, max {high})"

    def _number_for(self, low: str | None, high: str | None, step: str | None) -> str:
        lo = float(low) if low not in (None, "") else -10.0
        hi = float(high) if high not in (None, "") else 1000.0
        # An unbounded box (the attack form's: the schema refuses what is out of range) says
        # ±1.8e308; a person types numbers, not overflow: walk it as ±1e9.
        lo, hi = max(lo, -1e9), min(hi, 1e9)
        integer = step is not None and step not in ("", "any") and float(step) == int(float(step))
        kind = self.rng.choice(["in", "in", "in", "low", "high", "below", "above", "empty", "huge", "negative"])
        if kind == "in":
            value: float = self.rng.uniform(lo, min(hi, lo + 100 if integer else hi))
            # in-range values near the small end: the expensive end of steps and queries is walked by "high"
            if integer:
                value = round(lo + (min(hi, lo + 30) - lo) * self.rng.random())
        elif kind == "low":
            value = lo
        elif kind == "high":
            value = hi
        elif kind == "below":
            value = lo - (1 if integer else 0.5)
        elif kind == "above":
            value = hi + (1 if integer else 0.5)
        elif kind == "huge":
            value = 1e9
        elif kind == "negative":
            value = -1
        else:
            return ""
        if integer:
            return str(int(value))
        return f"{value:.4g}"

    def _textinput(self, widget, label: str) -> str:
        text = self.rng.choice(["", "x", "0", "-1", "ünïcødé ✓", "a" * 300, "<script>alert(1)</script>"])
        box = widget.locator("input, textarea").first
        box.fill(text)
        box.press("Enter")
        return f"type {text[:30]!r}"

    _textarea = _textinput

    def _button(self, widget, label: str) -> str:
        button = widget.locator("button").first
        if not button.is_enabled():
            return "press (disabled)"
        times = self.rng.choice([1, 1, 2])
        for _ in range(times):
            button.click(timeout=10_000)
            if times == 2:
                self.page.wait_for_timeout(60)
        if label == "Run attack" and times:
            self.attack_pending = False
        return "press" if times == 1 else "press twice"

    def _formsubmitbutton(self, widget, label: str) -> str:
        what = self._button(widget, label)
        if "Run attack" in label:
            self.page.wait_for_timeout(200)
            self.page.wait_for_selector(SCRIPT_DONE, timeout=self.run_timeout_ms)
            refused = self.page.get_by_test_id("stMain").get_by_text("The attack was not changed", exact=False)
            self.attack_pending = refused.count() > 0
        return what

    def _downloadbutton(self, widget, label: str) -> str:
        with self.page.expect_download(timeout=30_000):
            widget.locator("button").first.click()
        return "download"

    def _fileuploader(self, widget, label: str) -> str:
        delete = widget.get_by_test_id("stFileUploaderDeleteBtn")
        if delete.count() and self.rng.random() < 0.3:
            delete.first.locator("button").first.click() if delete.first.locator("button").count() else delete.first.click()
            return "remove the file"
        chosen = self.rng.choice(list(self.files))
        widget.locator('input[type="file"]').set_input_files(str(chosen))
        self.page.wait_for_timeout(300)
        return f"upload {chosen.name}"

    def _tabs(self, widget, label: str) -> str:
        tabs = widget.get_by_role("tab")
        texts = [t.strip() for t in tabs.all_inner_texts()]
        choice = self.rng.randrange(len(texts))
        tabs.nth(choice).click()
        return f"tab {texts[choice]!r}"

    def _expander(self, widget, label: str) -> str:
        widget.locator("summary").first.click()
        return "open/close"


def signature(failure: str) -> str:
    """One line naming a failure: for an exception, its first line and the innermost app frame."""
    lines = [line.strip() for line in failure.splitlines() if line.strip()]
    if not lines:
        return "?"
    if lines[0].startswith("an exception is on the page") and len(lines) > 1:
        frames = [line for line in lines if line.startswith("File ") and "/site-packages/" not in line]
        return f"exception {lines[1][:160]} at {frames[-1] if frames else '?'}"
    if lines[0].startswith("the walker could not use"):
        return "walker: " + lines[0].split(": ", 1)[-1][:120]
    return lines[0][:200]


#: The control whose state says whether a widget of each kind can be used.
_CONTROL = {
    "stSelectbox": '[role="combobox"]',
    "stMultiSelect": '[role="combobox"]',
    "stCheckbox": "input, label",
    "stToggle": "input, label",
    "stSlider": '[role="slider"]',
    "stNumberInput": "input",
    "stTextInput": "input",
    "stTextArea": "textarea",
    "stButton": "button",
    "stFormSubmitButton": "button",
    "stDownloadButton": "button",
    "stFileUploader": 'input[type="file"]',
    "stButtonGroup": "button",
    "stRadio": "input",
}


def _disabled(widget, kind: str) -> bool:
    """A disabled widget (a greyed-out checkbox, a button while a form runs) is left alone."""
    selector = _CONTROL.get(kind)
    if selector is None:
        return False
    return bool(
        widget.evaluate(
            """(e, selector) => {
                const controls = Array.from(e.querySelectorAll(selector));
                if (!controls.length) return false;
                const off = c => c.disabled || c.getAttribute("data-disabled") === "true" || c.getAttribute("aria-disabled") === "true";
                return controls.every(off);
            }""",
            selector,
        )
    )


def area_is_sidebar(widget) -> bool:
    return bool(widget.evaluate("e => !!e.closest('[data-testid=\"stSidebar\"]')"))


def _label_of(widget, kind: str) -> str:
    try:
        if kind in ("stButton", "stFormSubmitButton", "stDownloadButton"):
            text = widget.inner_text(timeout=2000)
        elif kind == "stTabs":
            return "tabs"
        elif kind == "stExpander":
            text = widget.locator("summary").first.inner_text(timeout=2000)
        else:
            labels = widget.get_by_test_id("stWidgetLabel")
            text = labels.first.inner_text(timeout=2000) if labels.count() else ""
    except Exception:  # noqa: BLE001 - a label is for the log only
        return "?"
    # icons are ligature text (":material/bolt:" renders "bolt"): keep the last line
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:60] if lines else ""


# -- a server and test files ------------------------------------------------------------------------

from browser_setup import CHROMIUM, CHROMIUM_ARGS, ROOT  # noqa: E402, F401 - one place for the browser set-up


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``streamlit run app/main.py`` (the flags of ``make run``) on 127.0.0.1; a context manager."""

    def __init__(self, port: int | None = None, startup_timeout_s: float = 120, extra_env: dict | None = None, root: Path | None = None):
        import os
        import sys
        import tempfile

        self.root = Path(root) if root else ROOT  # the checkout whose app is served

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkdtemp(prefix="neuronviz-monkey-")) / "streamlit.log"
        self.startup_timeout_s = startup_timeout_s
        self.command = [
            sys.executable, "-m", "streamlit", "run", "app/main.py",
            "--server.headless", "true",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--theme.base", "light",
            "--client.toolbarMode", "viewer",
        ]  # fmt: skip
        self.env = {**os.environ, **(extra_env or {})}
        self.process = None

    def __enter__(self) -> Server:
        import subprocess
        import urllib.error
        import urllib.request

        with self.log.open("w") as output:
            self.process = subprocess.Popen(self.command, cwd=self.root, stdout=output, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {self.process.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"streamlit was not healthy after {self.startup_timeout_s} s:\n{self.log.read_text()[-4000:]}")

    def __exit__(self, *exc) -> None:
        import subprocess

        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0


def open_app(page, url: str, timeout_ms: int = 120_000) -> None:
    """Load the app and wait for its first full run (the sidebar's widgets are drawn)."""
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_test_id("stSidebarNav").wait_for(timeout=timeout_ms)
    page.get_by_test_id("stSidebarUserContent").get_by_test_id("stSelectbox").first.wait_for(timeout=timeout_ms)
    page.wait_for_selector(SCRIPT_DONE, timeout=timeout_ms)


def write_upload_files(folder: Path) -> list[Path]:
    """Good and bad files for the uploaders: images, a corrupt image, a text file named .png, a tiny
    checkpoint of no known architecture, a real checkpoint (digits-cnn's weights), a code pickle."""
    import pickle

    import numpy as np
    import torch
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 12:16] = 255  # a "1"
    Image.fromarray(digit, mode="L").save(folder / "digit-one.png")
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), mode="RGB").save(folder / "noise-rgb.png")
    Image.fromarray(rng.integers(0, 255, (1, 1, 3), dtype=np.uint8), mode="RGB").save(folder / "one-pixel.png")
    good = (folder / "digit-one.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "not-an-image.png").write_text("plain text, not a picture")
    (folder / "empty.jpg").write_bytes(b"")
    torch.save({"weight": torch.zeros(2, 2)}, folder / "tiny.pt")
    from neuronviz.core.models import load_model

    torch.save(load_model("digits-cnn", device="cpu").state_dict(), folder / "digits-cnn-copy.pt")

    class _Runs:  # unpickling this calls print: a file that runs code when loaded
        def __reduce__(self):
            return (print, ("this pickle ran code",))

    (folder / "runs-code.pth").write_bytes(pickle.dumps({"state_dict": _Runs()}))
    (folder / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    return sorted(folder.iterdir())
