"""The composed paper figure at print sizes (issue 24.10): top-5 bars that stay readable at 85 mm
(they wrap onto rows instead of shrinking to a few pixels, value labels never reach the next
chart), a colour scale under the perturbation, every character in the one print font (a glyph
the font lacks makes chromium embed a second family: checked with pdffonts in the slow test)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import plotly.graph_objects as go
import pytest

from neuronviz.figures import compose
from neuronviz.workflows import analysis

LIBERATION = Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


@pytest.fixture(scope="module")
def result(digits_cnn):
    from neuronviz.data.images import load_sample

    return analysis.compute_analysis(digits_cnn, load_sample("digit-test-43", digits_cnn), analysis.AttackChoice.make("pgd", {}))


def _bar_charts(fig: go.Figure) -> list[tuple[tuple[float, float], tuple[float, float], go.Bar]]:
    """(x domain, y domain, trace) of each top-5 chart (horizontal bars)."""
    layout = fig.layout.to_plotly_json()
    found = []
    for trace in fig.data:
        if isinstance(trace, go.Bar) and trace.orientation == "h":
            xa, ya = "xaxis" + (trace.xaxis or "x")[1:], "yaxis" + (trace.yaxis or "y")[1:]
            found.append((tuple(layout[xa]["domain"]), tuple(layout[ya]["domain"]), trace, layout[xa]))
    return found


@pytest.mark.parametrize("width", [85.0, 120.0, 178.0])
def test_top5_bars_keep_a_readable_length_and_their_labels_stay_in_their_chart(result, digits_cnn, width):
    spec = compose.FigureSpec(charts=("top5", "front-tail"), width_mm=width)
    fig = compose.compose_figure(result, digits_cnn.class_names, spec, true_class=9)
    charts = _bar_charts(fig)
    assert len(charts) == 4  # clean, adversarial, NIP, PSSR
    fs_mm = spec.font_pt / 72 * 25.4
    rows = sorted({y for _, y, _, _ in charts})
    for (x0, x1), y, trace, axis in charts:
        area_mm = (x1 - x0) * width
        longest = max(float(v) for v in trace.x)
        bar_mm = area_mm * longest / axis["range"][1]
        assert bar_mm >= 0.6 * compose._MIN_BAR_FS * fs_mm, (width, bar_mm)  # not "a few pixels"
        # the value label of the longest bar ends inside this chart's cell (the axis range leaves it room)
        label_mm = compose._VALUE_LABEL_FS * fs_mm
        assert bar_mm + label_mm <= area_mm + 0.5, (width, bar_mm, label_mm, area_mm)
        others = [(ox, oy) for ox, oy, t, _ in charts if t is not trace and oy == y]
        for (ox0, ox1), _ in others:  # in one row, the cells (with their class labels) do not overlap
            assert x1 <= ox0 + 1e-9 or ox1 <= x0 + 1e-9
    if width == 85.0:
        assert len(rows) == 2  # wrapped: two charts a row, each headed by its condition
        headings = {a.text for a in fig.layout.annotations}
        assert {"Clean", "Adversarial", "NIP (guided)", "PSSR"} <= headings
    if width == 178.0:
        assert len(rows) == 1  # under their images


def test_the_perturbation_has_its_colour_scale(result, digits_cnn):
    fig = compose.compose_figure(result, digits_cnn.class_names, compose.FigureSpec(width_mm=85))
    [heatmap] = [t for t in fig.data if isinstance(t, go.Heatmap) and t.showscale]
    bar = heatmap.colorbar
    assert bar.orientation == "h" and list(bar.tickvals) == [heatmap.zmin, 0.0, heatmap.zmax]
    assert bar.ticktext[0].startswith("−") and bar.ticktext[2].startswith("+")
    assert bar.tickfont.family == compose.PRINT_FONT
    # under the perturbation's image, inside the page
    image_bottom = min(
        fig.layout[f"yaxis{(heatmap.yaxis or 'y')[1:]}"].domain
    )
    assert 0 < bar.y <= image_bottom


def _texts(fig: go.Figure) -> list[str]:
    texts: list[str] = []

    def walk(value):
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if key in ("text", "ticktext", "name", "title") or isinstance(item, (dict, list)):
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(fig.to_plotly_json())
    return texts


@pytest.mark.skipif(not LIBERATION.exists(), reason="Liberation Sans is not installed")
def test_every_character_is_in_the_print_font(result, digits_cnn):
    from fontTools.ttLib import TTFont

    cmap = TTFont(str(LIBERATION)).getBestCmap()
    spec = compose.FigureSpec(charts=("top5", "front-tail", "layers", "restoration"), width_mm=85)
    fig = compose.compose_figure(result, digits_cnn.class_names, spec, true_class=9)
    text = "".join(re.sub(r"<[^>]+>", "", t) for t in _texts(fig))
    missing = sorted({c for c in text if ord(c) not in cmap and not c.isspace()})
    assert missing == [], f"characters Liberation Sans lacks (a second font would be embedded): {missing}"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdffonts") is None, reason="pdffonts (poppler-utils) is missing")
def test_the_pdf_embeds_one_font_family(result, digits_cnn):
    from neuronviz.workflows import export

    if not export.available():
        pytest.skip("no chromium for the export")
    spec = compose.FigureSpec(charts=("top5", "front-tail"), width_mm=85)
    fig = compose.compose_figure(result, digits_cnn.class_names, spec, true_class=9)
    w, h = compose.size_mm(fig)
    pdf = export.export_figure(fig, "pdf", w, h)
    listing = subprocess.run(["pdffonts", "-"], input=pdf, capture_output=True, check=False).stdout.decode()
    if not listing.strip():  # older pdffonts read no stdin
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
            handle.write(pdf)
            handle.flush()
            listing = subprocess.run(["pdffonts", handle.name], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0].split("+")[-1] for line in listing.splitlines()[2:] if line.strip()]
    families = {name.split("-")[0] for name in names}
    assert families == {"LiberationSans"}, names
