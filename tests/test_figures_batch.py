"""neuronviz.figures.batch: the bars hold the batch's numbers, in the palette's colours."""

from __future__ import annotations

import math

import plotly.io as pio
import pytest
import torch

from neuronviz.figures import PALETTE, TEMPLATE
from neuronviz.figures.batch import DEFENCE_PATTERNS, accuracy_figure, per_class_figure
from neuronviz.infra.errors import InputError
from neuronviz.workflows.batch import BatchResult

NAMES = ["zero", "one", "two", "three"]


def _t(values):
    return torch.tensor(values)


@pytest.fixture()
def result() -> BatchResult:
    """Six images by hand: classes 0, 0, 1, 1, 1, 2 (class 3 absent).

    clean: 5/6 correct (image 5 predicted 1 instead of 2); the attack fools images 0, 2, 3, 5
    (4/6); NIP brings back images 0 and 2 (2 of 4 fooled), PSSR images 0, 2, 3 (3 of 4)."""
    labels = _t([0, 0, 1, 1, 1, 2])
    clean = _t([0, 0, 1, 1, 1, 1])
    adv = _t([3, 0, 0, 2, 1, 0])
    return BatchResult(
        attack="pgd",
        params={"eps": 0.1},
        target=None,
        seed=0,
        defences=("nip-guided", "pssr"),
        ids=tuple(f"img-{i}" for i in range(6)),
        labels=labels,
        clean_pred=clean,
        adv_pred=adv,
        success=adv != clean,
        l0=_t([10, 0, 12, 9, 0, 4]),
        l2=_t([1.0, 0.0, 1.2, 0.9, 0.0, 0.4]),
        linf=_t([0.1, 0.0, 0.1, 0.1, 0.0, 0.1]),
        restored={"nip-guided": _t([0, 0, 1, 2, 1, 0]), "pssr": _t([0, 0, 1, 1, 1, 2])},
        restored_clean={"nip-guided": clean.clone(), "pssr": _t([0, 1, 1, 1, 1, 2])},
    )


def test_summary_by_hand(result):
    s = result.summary()
    assert s.attack_success == pytest.approx(4 / 6) and s.clean_accuracy == pytest.approx(5 / 6)
    assert s.adversarial_accuracy == pytest.approx(2 / 6)
    assert s.dsr == pytest.approx({"nip-guided": 2 / 4, "pssr": 3 / 4})
    assert s.accuracy_after == pytest.approx({"nip-guided": 4 / 6, "pssr": 6 / 6})
    assert s.clean_accuracy_after == pytest.approx({"nip-guided": 5 / 6, "pssr": 5 / 6})


def test_accuracy_figure_holds_the_summary_in_groups(result):
    s = result.summary()
    fig = accuracy_figure(s)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name) == ["clean images", "attacked, no defence", "attacked, after the defence"]
    groups = ["no defence", "NIP (guided)", "PSSR"]
    assert all(list(t.x) == groups for t in fig.data)
    assert list(by_name["clean images"].y) == pytest.approx([100 * 5 / 6, 100 * 5 / 6, 100 * 5 / 6])
    assert by_name["attacked, no defence"].y[0] == pytest.approx(100 * 2 / 6)
    assert by_name["attacked, no defence"].y[1:] == (None, None)
    assert by_name["attacked, after the defence"].y[0] is None
    assert list(by_name["attacked, after the defence"].y[1:]) == pytest.approx([100 * 4 / 6, 100.0])
    assert list(by_name["attacked, after the defence"].text) == ["", "67%", "100%"]
    # colours from the palette, by meaning
    assert by_name["clean images"].marker.color == PALETTE["clean"]
    assert by_name["attacked, no defence"].marker.color == PALETTE["adversarial"]
    assert by_name["attacked, after the defence"].marker.color == PALETTE["restored"]
    # the two attacked series share a slot: two bars per group, not three
    assert by_name["attacked, no defence"].offsetgroup == by_name["attacked, after the defence"].offsetgroup
    assert by_name["clean images"].offsetgroup != by_name["attacked, no defence"].offsetgroup
    assert fig.layout.barmode == "group" and fig.layout.showlegend
    assert fig.layout.yaxis.title.text == "Accuracy (% of images)" and "6 images" in fig.layout.xaxis.title.text
    assert fig.layout.template == pio.templates[TEMPLATE] and fig.layout.font.size >= 12
    assert fig.layout.title.text == "Accuracy with and without defences"


def test_accuracy_figure_shows_nan_as_no_bar(result):
    from dataclasses import replace

    s = replace(result.summary(), clean_accuracy_after={"nip-guided": float("nan"), "pssr": 0.5})
    clean = accuracy_figure(s).data[0]
    assert clean.y[1] is None and clean.text[1] == "" and clean.y[2] == pytest.approx(50.0)


def test_per_class_accuracy_has_one_group_per_class_present(result):
    fig = per_class_figure(result, NAMES)
    assert [t.name for t in fig.data] == ["clean", "attacked", "after NIP (guided)", "after PSSR"]
    for trace in fig.data:
        assert list(trace.x) == ["zero", "one", "two"]  # class "three" has no image
        assert list(trace.customdata) == [2, 3, 1]
    clean, attacked, nip, pssr = fig.data
    assert list(clean.y) == pytest.approx([100.0, 100.0, 0.0])
    assert list(attacked.y) == pytest.approx([50.0, 100 / 3, 0.0])
    assert list(nip.y) == pytest.approx([100.0, 200 / 3, 0.0])
    assert list(pssr.y) == pytest.approx([100.0, 100.0, 100.0])
    assert clean.marker.color == PALETTE["clean"] and attacked.marker.color == PALETTE["adversarial"]
    assert nip.marker.color == pssr.marker.color == PALETTE["restored"]
    assert nip.marker.pattern.shape == DEFENCE_PATTERNS[0] and pssr.marker.pattern.shape == DEFENCE_PATTERNS[1]
    assert nip.marker.pattern.shape != pssr.marker.pattern.shape
    assert fig.layout.xaxis.title.text == "True class" and "%" in fig.layout.yaxis.title.text
    assert fig.layout.title.text == "Accuracy per true class"


def test_per_class_attack_success_and_dsr(result):
    fig = per_class_figure(result, NAMES, metric="attack_success")
    success, nip, pssr = fig.data
    assert success.name == "attack success" and success.marker.color == PALETTE["adversarial"]
    assert list(success.y) == pytest.approx([50.0, 200 / 3, 100.0])
    # class 0: image 0 fooled, both restore it; class 1: images 2, 3 fooled, NIP restores 2, PSSR both;
    # class 2: image 5 fooled (clean prediction 1), NIP leaves 0, PSSR gives 2: neither returns to 1
    assert list(nip.y) == pytest.approx([100.0, 50.0, 0.0])
    assert list(pssr.y) == pytest.approx([100.0, 100.0, 0.0])
    assert nip.name == "DSR NIP (guided)" and pssr.marker.color == PALETTE["restored"]
    assert fig.layout.yaxis.title.text == "Rate (%)"


def test_per_class_dsr_is_no_bar_where_nothing_was_fooled(result):
    from dataclasses import replace

    untouched = replace(result, adv_pred=result.clean_pred.clone(), success=torch.zeros(6, dtype=torch.bool))
    fig = per_class_figure(untouched, NAMES, metric="attack_success")
    assert list(fig.data[0].y) == [0.0, 0.0, 0.0]
    assert all(v is None for t in fig.data[1:] for v in t.y)
    assert all(not math.isnan(v) for v in fig.data[0].y)


def test_bad_inputs_raise(result):
    with pytest.raises(InputError, match="BatchSummary"):
        accuracy_figure(result)
    with pytest.raises(InputError, match="BatchResult"):
        per_class_figure(result.summary(), NAMES)
    with pytest.raises(InputError, match="metric"):
        per_class_figure(result, NAMES, metric="dsr")
    with pytest.raises(InputError, match="class names"):
        per_class_figure(result, NAMES[:2])


def test_module_does_not_import_streamlit():
    import subprocess
    import sys

    code = "import sys, neuronviz.figures.batch; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
