"""Pages under AppTest: the matched control, the reference groups, "nothing to restore" (24.5/24.6)
and the trajectory's axis and caption (24.11)."""

from __future__ import annotations

import json

from apptest import errors, open_page, plotly_titles, submit_attack

from neuronviz.figures import captions


def _spec(at, key: str) -> dict:
    return next(json.loads(c.proto.spec) for c in at.get("plotly_chart") if key in c.proto.id)


def _subtitles(at) -> dict[str, str]:
    """Restoration panel title → its subtitle (the outcome), on the Attack page."""
    out = {}
    for condition in ("nip-guided", "pssr"):
        title = _spec(at, f"attack.image.{condition}")["layout"]["title"]
        out[title["text"]] = title["subtitle"]["text"]
    return out


def test_nothing_to_restore_when_the_attack_does_not_fool():
    at = open_page("app_pages/attack.py")
    submit_attack(at, "fgsm", eps=0.01)
    assert not at.exception and not errors(at)
    verdicts = [m.value for m in at.markdown if "· :" in m.value]
    assert any(":green[not fooled]" in v for v in verdicts), verdicts
    restored = [v for v in verdicts if "nothing to restore" in v]
    assert len(restored) == 2 and not any(":green[restored]" in v for v in verdicts)
    assert _subtitles(at) == {"NIP (guided)": "nothing to restore", "PSSR": "nothing to restore"}


def test_default_attack_page_titles_agree_with_verdicts_and_show_the_control():
    at = open_page("app_pages/attack.py")
    verdicts = [m.value for m in at.markdown if "· :" in m.value]
    subtitles = _subtitles(at)
    assert set(subtitles) == {"NIP (guided)", "PSSR"}
    for name, outcome in subtitles.items():
        assert any(f":green[{outcome}]" in v or f":red[{outcome}" in v for v in verdicts), (name, outcome, verdicts)
    [noise] = [c.value for c in at.caption if c.value.startswith("Matched noise (L∞")]
    assert "did not change the prediction" in noise or "changed the prediction" in noise


def test_trajectory_axis_and_caption_say_the_same():
    at = open_page("app_pages/attack.py")
    axis = _spec(at, "attack.trajectory")["layout"]["yaxis"]["title"]["text"]
    reference = captions.trajectory_reference(False, "7")
    assert axis == f"CE to {reference} (nats)"
    assert any(c.value.startswith(f"Top: cross-entropy to the {reference};") for c in at.caption)


def test_neurons_page_groups_from_the_evaluation_set_and_the_control_view():
    at = open_page("app_pages/neurons.py")
    at.radio(key="neurons.groups").set_value("reference")
    at.run()
    assert not at.exception and not errors(at)
    assert any("on the class's mean over the evaluation set" in c.value for c in at.caption)
    assert any("Groups from the evaluation set: the mean influence toward 7 over" in c.value for c in at.caption)
    at.radio(key="neurons.after").set_value("control")
    at.run()
    assert not at.exception and not errors(at)
    assert "features.7: influence, clean vs matched noise" in plotly_titles(at)
