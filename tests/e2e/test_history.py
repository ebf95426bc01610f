"""In chromium: a setting changed on a page replaces the browser's history entry (Back needs one
press to leave the page, issue 24.4), and the tour's "open this example" lands on the Attack page's
top through the ``st.html`` script (issue 24.14; ``components.v1.html`` is deprecated)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from monkey_driver import SCRIPT_DONE, Server, open_app

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(chromium_path: Path):
    with Server() as running:
        yield running


def _settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector(SCRIPT_DONE, timeout=120_000)
    page.wait_for_timeout(200)
    page.wait_for_selector(SCRIPT_DONE, timeout=120_000)


def _digit(group, text: str):
    return group.locator("button").filter(has_text=re.compile(rf"^\s*{text}\s*$")).first


def _nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_test_id("stSidebarNavLink").filter(has_text=title).first.click()
    _settle(page)


def test_a_query_only_change_adds_no_history_entry_and_back_leaves_the_page(server: Server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(page, server.url)
        _nav(page, "Model & image")
        assert page.url.split("?")[0].endswith("/model_image")
        entries = page.evaluate("history.length")
        digits = page.get_by_test_id("stSidebar").get_by_test_id("stButtonGroup").filter(has_text="Digit").first
        _digit(digits, "4").click()  # another image: only the query changes
        _settle(page)
        assert "image=digit-test-" in page.url, page.url
        _digit(digits, "2").click()
        _settle(page)
        assert page.evaluate("history.length") == entries  # replaced, not pushed
        page.go_back()  # one press leaves the page
        _settle(page)
        assert not page.url.split("?")[0].endswith("/model_image"), page.url
    finally:
        page.close()


def test_the_tours_button_opens_the_attack_page_at_its_top(server: Server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        open_app(page, server.url)
        _nav(page, "Guided tour")
        button = page.get_by_test_id("stMain").get_by_role("button").filter(has_text="Attack page").first
        if not button.count():
            button = page.get_by_test_id("stMain").locator(".st-key-learn-load_example button").first
        button.scroll_into_view_if_needed()
        assert page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollTop") > 0
        button.click()
        _settle(page)
        page.wait_for_timeout(500)
        assert page.get_by_test_id("stMain").locator("h1").first.inner_text().startswith("Attack")
        assert page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollTop") == 0
        assert page.locator("iframe").count() == 0  # no components.v1 iframe
    finally:
        page.close()
