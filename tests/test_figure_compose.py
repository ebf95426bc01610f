"""neuronviz/figures/compose.py: the composed paper figure draws exactly the Analysis' numbers."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import plotly.graph_objects as go
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from neuronviz.figures import compose  # noqa: E402
from neuronviz.infra.errors import InputError  # noqa: E402
from neuronviz.methods.influence import influence_shift, layer_shift_table  # noqa: E402
from neuronviz.workflows import analysis  # noqa: E402

ALL_CHARTS = ("top5", "front-tail", "layers", "restoration")


@pytest.fixture(scope="module")
def result(digits_cnn, digits_test):
    images, _ = digits_test
    return analysis.compute_analysis(digits_cnn, images[:1].clone(), analysis.AttackChoice.make("fgsm", {"eps": 0.2}))


def _domain_boxes(fig: go.Figure):
    layout = fig.layout.to_plotly_json()
    boxes = {}
    for trace in fig.data:
        xa = "xaxis" + (trace.xaxis or "x")[1:]
        ya = "yaxis" + (trace.yaxis or "y")[1:]
        boxes[(trace.xaxis, trace.yaxis)] = (tuple(layout[xa]["domain"]), tuple(layout[ya]["domain"]))
    return boxes


@pytest.mark.parametrize("width", [85.0, 178.0])
def test_size_and_cells_inside_the_page_without_overlap(result, digits_cnn, width):
    spec = compose.FigureSpec(charts=ALL_CHARTS, width_mm=width)
    fig = compose.compose_figure(result, digits_cnn.class_names, spec)
    w, h = compose.size_mm(fig)
    assert w == pytest.approx(width)
    assert h == pytest.approx(fig.layout.meta["height_mm"]) and h > 40
    boxes = list(_domain_boxes(fig).values())
    for (x0, x1), (y0, y1) in boxes:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    for i, a in enumerate(boxes):  # distinct cells never overlap
        for b in boxes[i + 1:]:
            if a == b:
                continue
            overlap_x = min(a[0][1], b[0][1]) - max(a[0][0], b[0][0])
            overlap_y = min(a[1][1], b[1][1]) - max(a[1][0], b[1][0])
            assert overlap_x <= 1e-9 or overlap_y <= 1e-9, (a, b)
    letters = [a.text for a in fig.layout.annotations if a.name == "panel-letter"]
    titled = [a.text for a in fig.layout.annotations if re.match(r"<b>[a-e]</b> ", a.text or "")]
    assert len(titled) == 5  # a–e are in the image titles
    assert letters == ["<b>f</b>", "<b>g</b>", "<b>h</b>", "<b>i</b>"]


def test_height_is_honoured_and_too_short_is_refused(result, digits_cnn):
    fig = compose.compose_figure(result, digits_cnn.class_names, compose.FigureSpec(width_mm=85, height_mm=120))
    assert compose.size_mm(fig) == pytest.approx((85.0, 120.0))
    with pytest.raises(InputError, match="too short"):
        compose.compose_figure(result, digits_cnn.class_names, compose.FigureSpec(charts=ALL_CHARTS, width_mm=85, height_mm=25))


def test_titles_say_each_panels_prediction_and_confidence(result, digits_cnn):
    names = digits_cnn.class_names
    fig = compose.compose_figure(result, names, compose.FigureSpec(charts=(), width_mm=178))
    texts = [a.text for a in fig.layout.annotations]
    for condition in ("clean", "adversarial", "nip-guided", "pssr"):
        p = result.probabilities(condition)
        k = int(p.argmax())
        expected = f"{compose.PANEL_LABELS[condition]}<br>{names[k]} · {100 * float(p[k]):.1f}%"
        assert any(t.endswith(expected) for t in texts), (expected, texts)
    linf = float(result.report.linf[0])
    assert any(f"L∞ {linf:.3g}" in t for t in texts)


def test_top5_bars_are_the_probabilities(result, digits_cnn):
    spec = compose.FigureSpec(panels=("clean", "adversarial"), charts=("top5",), width_mm=178)
    fig = compose.compose_figure(result, digits_cnn.class_names, spec)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 2
    for trace, condition in zip(bars, ("clean", "adversarial")):
        p = result.probabilities(condition)
        top = p.argsort(descending=True)[:5]
        assert list(trace.x) == pytest.approx([100 * float(p[i]) for i in top])
        assert list(trace.customdata) == [digits_cnn.class_names[int(i)] for i in top]


def test_front_tail_and_layer_charts_are_the_shift(result, digits_cnn):
    spec = compose.FigureSpec(panels=("clean",), charts=("front-tail", "layers", "restoration"), after="pssr", width_mm=178)
    fig = compose.compose_figure(result, digits_cnn.class_names, spec)
    layer = result.default_layer
    shift = influence_shift(result.influence["clean"][layer], result.influence["pssr"][layer], front=spec.group_size, tail=spec.group_size)
    front = shift.groups_before.front[0].tolist()
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    clean_front = next(t for t in bars if t.name == "clean")
    after_front = next(t for t in bars if t.name == "PSSR")
    assert list(clean_front.y) == pytest.approx([float(result.influence["clean"][layer].values[0, j]) for j in front])
    assert list(after_front.y) == pytest.approx([float(result.influence["pssr"][layer].values[0, j]) for j in front])
    table = layer_shift_table(result.influence["clean"], result.influence["pssr"], front=spec.group_size, tail=spec.group_size, image=0)
    rho = next(t for t in fig.data if isinstance(t, go.Scatter) and t.name == "ρ (clean vs PSSR)")
    assert list(rho.x) == list(table["layer"]) and list(rho.y) == pytest.approx(list(table["spearman"]))
    numbers = compose.figure_numbers(result, digits_cnn.class_names, spec)
    assert numbers["layers"]["pssr"][0]["spearman"] == pytest.approx(float(table["spearman"][0]))
    assert [r["neuron"] for r in numbers["front_tail"] if r["group"] == "front"] == front
    assert set(numbers["restoration"]) == {"adversarial", "nip-guided", "pssr"}


def test_numbers_equal_the_analysis(result, digits_cnn):
    numbers = compose.figure_numbers(result, digits_cnn.class_names, compose.FigureSpec())
    assert numbers["benign_class"] == result.benign_class
    for condition in ("clean", "adversarial", "nip-guided", "pssr"):
        entry = numbers["panels"][condition]
        assert entry["prediction"] == result.prediction(condition)
        assert entry["confidence"] == pytest.approx(float(result.probabilities(condition).max()))
    assert numbers["panels"]["perturbation"]["linf"] == pytest.approx(float(result.report.linf[0]))


def test_print_theme(result, digits_cnn):
    fig = compose.compose_figure(result, digits_cnn.class_names, compose.FigureSpec(font_pt=9, width_mm=178))
    assert fig.layout.paper_bgcolor == "white" and fig.layout.plot_bgcolor == "white"
    assert fig.layout.font.family == compose.PRINT_FONT
    sizes = {a.font.size for a in fig.layout.annotations if a.name != "panel-letter"}
    assert len(sizes) == 1 and sizes.pop() == pytest.approx(9 * 96 / 72)
    colors = {t.marker.color for t in fig.data if isinstance(t, go.Bar)}
    assert colors <= set(compose.PALETTE.values())


def test_bad_specs(result, digits_cnn):
    names = digits_cnn.class_names
    for spec in (
        compose.FigureSpec(panels=("nope",)),
        compose.FigureSpec(charts=("pie",)),
        compose.FigureSpec(panels=(), charts=()),
        compose.FigureSpec(panels=("perturbation",), charts=("top5",)),
        compose.FigureSpec(layer="no.such.layer"),
        compose.FigureSpec(after="clean"),
        compose.FigureSpec(font_pt=1),
    ):
        with pytest.raises(InputError):
            compose.compose_figure(result, names, spec)
    with pytest.raises(InputError):
        compose.compose_figure(result, names[:5], compose.FigureSpec())


def test_numbers_csv_round_trips(result, digits_cnn):
    import csv
    import io

    numbers = compose.figure_numbers(result, digits_cnn.class_names, compose.FigureSpec(charts=ALL_CHARTS))
    rows = list(csv.DictReader(io.StringIO(compose.numbers_csv(numbers))))
    expected = compose.numbers_rows(numbers)
    assert len(rows) == len(expected) > 50
    for row, want in zip(rows, expected):
        assert row["section"] == want["section"] and row["condition"] == want["condition"] and row["metric"] == want["metric"]
        assert float(row["value"]) == pytest.approx(float(want["value"]), rel=1e-12)
    clean = next(r for r in rows if r["section"] == "panel" and r["condition"] == "clean")
    assert float(clean["value"]) == pytest.approx(float(result.probabilities("clean").max()))


def test_embed_an_rgb_image_and_a_two_panel_chart():
    import torch

    from neuronviz.figures.base import image_figure

    canvas = compose._Canvas()
    rgb = image_figure(torch.rand(1, 3, 8, 6))
    mapping = compose.embed(canvas, rgb, (0.1, 0.4, 0.5, 0.9))
    two = go.Figure(go.Bar(x=["a"], y=[1], name="left"))
    two.add_trace(go.Bar(x=["b"], y=[2], name="right", xaxis="x2", yaxis="y2"))
    two.update_layout(xaxis=dict(domain=[0, 0.45]), xaxis2=dict(domain=[0.55, 1.0]), yaxis2=dict(anchor="x2"),
                      annotations=[dict(text="B", x=0.5, y=1.0, xref="paper", yref="paper")])
    second = compose.embed(canvas, two, (0.0, 1.0, 0.0, 0.4), legend=dict(x=0.5, y=0.45))
    canvas.fig.update_layout(**canvas.layout)
    fig = canvas.fig
    assert mapping == {"x": "x", "y": "y"} and second == {"x": "x2", "x2": "x3", "y": "y2", "y2": "y3"}
    assert fig.data[0].type == "image" and fig.layout.yaxis.scaleanchor == "x"
    assert list(fig.layout.xaxis.domain) == pytest.approx([0.1, 0.4])
    assert list(fig.layout.xaxis3.domain) == pytest.approx([0.55, 1.0])
    assert list(fig.layout.yaxis3.domain) == pytest.approx([0.0, 0.4]) and fig.layout.yaxis3.anchor == "x3"
    assert (fig.data[2].xaxis, fig.data[2].yaxis, fig.data[2].legend) == ("x3", "y3", "legend")
    assert canvas.annotations[0]["x"] == pytest.approx(0.5) and canvas.annotations[0]["y"] == pytest.approx(0.4)
