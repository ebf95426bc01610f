"""Issue 23: a baseline defence chosen in the Methods box (Neurons page) appears on the Attack page
(its own column, titled with its label and outcome) and on the Figure page (offered as a panel and
drawn). Runs on the embedded digits-cnn and its start-up digit."""

from __future__ import annotations

import json

from apptest import assert_healthy, errors, open_page, plotly_titles

from app import runs as analysis
from neuronviz.methods.defences import get_defence
from neuronviz.workflows.analysis import NOT_RESTORED, NOTHING_TO_RESTORE, RESTORED

BASELINE = "jpeg"
SHORT = get_defence(BASELINE).short  # "JPEG"


def _with_baseline(page: str):
    """Choose the baseline in the Methods box of the Neurons page, then open ``page``."""
    at = open_page("app_pages/neurons.py")
    box = at.multiselect(key=analysis.EXTRA_DEFENCES_KEY)
    assert BASELINE in box.options or SHORT in box.options
    box.set_value([BASELINE])
    at.run()
    assert_healthy(at)
    at.switch_page(page)
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    return at


def test_the_attack_page_shows_the_baselines_column():
    at = _with_baseline("app_pages/attack.py")
    titles = plotly_titles(at)
    # clean, perturbation, adversarial, NIP (guided), PSSR, then the baseline (wrapped into a second row)
    images = [t for t in titles if t in ("Clean", "Adversarial", "NIP (guided)", "PSSR", SHORT)]
    assert images == ["Clean", "Adversarial", "NIP (guided)", "PSSR", SHORT]
    # its image is subtitled with its outcome, and its verdict is under its bars
    [spec] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
              if (json.loads(c.proto.spec).get("layout", {}).get("title") or {}).get("text") == SHORT]
    outcome = spec["layout"]["title"]["subtitle"]["text"]
    assert outcome in (RESTORED, NOT_RESTORED, NOTHING_TO_RESTORE)
    verdicts = [m.value for m in at.main.markdown if m.value.startswith("**") and " · " in m.value]
    # clean, adversarial, the three restorations (then the ε sweep's adversarial verdict)
    assert len(verdicts) == 6
    baseline_verdict = verdicts[4]
    if outcome == NOT_RESTORED:
        assert ":red[not restored" in baseline_verdict
    elif outcome == RESTORED:
        assert ":green[restored]" in baseline_verdict
    else:
        assert "nothing to restore" in baseline_verdict
    assert any(f"({', '.join(['NIP (guided)', 'PSSR', SHORT])})" in c.value for c in at.caption)
    assert any("The last three images are" in c.value for c in at.caption)
    # a second run of the page (no Methods box on it) keeps the choice
    at.run()
    assert_healthy(at)
    assert SHORT in plotly_titles(at)


def test_the_figure_page_offers_and_draws_the_baselines_panel():
    at = _with_baseline("app_pages/figure.py")
    pills = at.get("button_group")
    [panels] = [p for p in pills if p.proto.id and "figure.panels" in p.proto.id]
    options = [o.content for o in panels.proto.options]
    [label] = [o for o in options if o.startswith(f"{SHORT} · ")]
    assert label.split(" · ")[1] in (RESTORED, NOT_RESTORED, NOTHING_TO_RESTORE)
    # choose it: the preview draws its panel, titled with its label
    at.session_state["figure.panels"] = ["clean", "adversarial", BASELINE]
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    [preview] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    texts = [a.get("text", "") for a in preview["layout"].get("annotations", [])]
    assert any(f"{SHORT}<br>" in t for t in texts), texts
    # its verdict under the preview, and the command draws it too
    assert any(m.value.startswith(f"**{SHORT}**: ") for m in at.main.markdown)
    assert any(f"--defences {BASELINE}" in c.value for c in at.code)
