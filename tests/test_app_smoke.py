"""The fast tier's AppTest (issue 25.3): every page once, on the default (smallest) model.

One session visits the pages in turn, so the start-up analysis runs once; each page must run
without an exception or an error message and draw its own heading. The thorough page tests are in
the other tests/test_app_*.py modules (``make test``)."""

from __future__ import annotations

import re

import pytest
from apptest import ROOT, assert_healthy, errors, open_page

PAGES = sorted(p.name for p in (ROOT / "app" / "app_pages").glob("*.py") if not p.name.startswith("_"))


def _titles() -> dict[str, str]:
    """page file → its title in app/main.py's navigation (read, so that a new page is covered)."""
    text = (ROOT / "app" / "main.py").read_text()
    return dict(re.findall(r'st\.Page\("app_pages/(\w+\.py)", title="([^"]+)"', text))


def test_every_page_is_in_the_navigation():
    assert sorted(_titles()) == PAGES


@pytest.mark.fast
def test_every_page_runs_on_the_default_model():
    at = open_page()
    assert at.sidebar.selectbox  # the sidebar (model, image, attack) was drawn
    for page in PAGES:
        at.switch_page(f"app_pages/{page}")
        at.run()
        assert_healthy(at)
        assert not errors(at), (page, errors(at))
        assert [t.value for t in at.title], f"{page} drew no title"  # app/main.py draws it before the page runs
        drawn = [*at.header, *at.subheader, *at.markdown, *at.caption, *at.metric, *at.dataframe]
        assert drawn, f"{page} drew nothing of its own beside the title"
