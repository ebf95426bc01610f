"""The Figure page under AppTest, registered in a navigation of its own (app/main.py does not
list it yet): it renders the composed figure of the session's analysis with the same numbers,
offers every download, and turns a bad size into a message."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data.images import list_samples, load_sample  # noqa: E402
from neuronviz.figures import compose  # noqa: E402
from neuronviz.workflows import analysis, export  # noqa: E402

SCRIPT = f'''
import sys
sys.path.insert(0, {str(ROOT)!r})
import streamlit as st
from app import components, sidebar
st.set_page_config(page_title="neuronviz", layout="wide")
page = st.navigation([st.Page({str(ROOT / "app" / "app_pages" / "figure.py")!r}, title="Figure", default=True)])
selection, errors = sidebar.render()
components.current_choice(selection)
components.messages(errors)
page.run()
'''


@pytest.fixture
def at(tmp_path):
    main = tmp_path / "main.py"
    main.write_text(SCRIPT, encoding="utf-8")
    app = AppTest.from_file(str(main), default_timeout=240)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def _preview(app) -> dict:
    [chart] = [c for c in app.get("plotly_chart")]
    return json.loads(chart.proto.spec)


def _downloads(app) -> dict[str, object]:
    return {b.proto.label: b for b in app.get("download_button")}


def _page_analysis(app):
    """The library's analysis of the page's image (the command the page shows names it)."""
    model = load_model("digits-cnn", device="cpu")
    sample_id = re.search(r"--image (\S+)", app.code[0].value).group(1)
    assert sample_id in {s.id for s in list_samples(model)}
    return model, analysis.compute_analysis(model, load_sample(sample_id, model), analysis.default_choice())


def test_page_renders_the_analysis(at):
    model, result = _page_analysis(at)
    spec = json.loads(json.dumps(_preview(at)))
    texts = [a.get("text", "") for a in spec["layout"].get("annotations", [])]
    for condition in ("clean", "adversarial", "nip-guided", "pssr"):
        p = result.probabilities(condition)
        k = int(p.argmax())
        assert any(t.endswith(f"{model.class_names[k]} · {100 * float(p[k]):.1f}%") for t in texts), texts
    assert spec["layout"]["width"] == pytest.approx(export.mm_to_px(178.0))
    assert any(h.value.startswith("Preview: 178 × ") for h in at.subheader)
    labels = set(_downloads(at))
    assert {"Provenance", "Numbers (CSV)", "Numbers (JSON)"} <= labels
    if export.available():
        assert {"PDF", "SVG", "PNG 300 dpi"} <= labels
    else:
        assert any("No chromium" in w.value for w in at.warning)
    code = at.code[0].value
    assert "python -m neuronviz figure --model digits-cnn" in code and "--width 178mm" in code


def test_numbers_table_equals_the_library(at):
    model, result = _page_analysis(at)
    expected = compose.numbers_rows(compose.figure_numbers(result, model.class_names, compose.FigureSpec()))
    [table] = at.dataframe
    frame = table.value
    assert list(frame.columns) == list(compose.NUMBER_COLUMNS)
    assert len(frame) == len(expected)
    for row, want in zip(frame.to_dict(orient="records"), expected):
        assert row["section"] == want["section"] and row["metric"] == want["metric"]
        assert float(row["value"]) == pytest.approx(float(want["value"]))


def test_single_column_and_a_too_short_height(at):
    at.radio(key="figure.width_preset").set_value("single").run()
    assert not at.exception
    assert _preview(at)["layout"]["width"] == pytest.approx(export.mm_to_px(85.0))
    at.checkbox(key="figure.auto_height").set_value(False).run()
    at.number_input(key="figure.height_value.mm").set_value(25.0).run()
    assert not at.exception
    assert any("too short" in w.value for w in at.warning)
