"""neuronviz.figures: values in the figures, not just "no exception"."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from neuronviz import figures
from neuronviz.figures import PALETTE
from neuronviz.infra.errors import InputError

DIGITS = [str(i) for i in range(10)]


def _probs(values: list[float]) -> torch.Tensor:
    p = torch.tensor(values, dtype=torch.float32)
    return p / p.sum()


# -- palette and layout -----------------------------------------------------------------------


def test_palette_has_the_named_colours_all_distinct_hex():
    expected = {"front", "middle", "tail", "clean", "adversarial", "restored", "neutral"}
    assert expected <= set(PALETTE)
    assert all(re.fullmatch(r"#[0-9A-Fa-f]{6}", c) for c in PALETTE.values())
    assert len(set(c.lower() for c in PALETTE.values())) == len(PALETTE)


def test_apply_layout_sets_an_explicit_template_and_readable_font():
    import plotly.io as pio

    fig = figures.apply_layout(go.Figure(), title="T", height=300)
    assert fig.layout.template.layout.paper_bgcolor is not None  # a real template object is set
    assert fig.layout.template == pio.templates[figures.TEMPLATE]
    assert fig.layout.font.size >= 12
    assert fig.layout.title.text == "T"
    assert fig.layout.height == 300


def test_figures_do_not_depend_on_plotly_default_template():
    import plotly.io as pio

    previous = pio.templates.default
    pio.templates.default = "plotly_dark"  # what `import streamlit` does to the default, roughly
    try:
        fig = figures.prediction_bars(_probs([1, 2, 3]), ["a", "b", "c"])
    finally:
        pio.templates.default = previous
    assert fig.layout.template == pio.templates[figures.TEMPLATE]


def test_export_config_gives_svg_download_at_high_scale():
    config = figures.export_config("digits-top5")
    options = config["toImageButtonOptions"]
    assert options["format"] == "svg"
    assert options["filename"] == "digits-top5"
    assert options["scale"] >= 2
    assert config["displaylogo"] is False
    with pytest.raises(InputError):
        figures.export_config(scale=0)


# -- prediction_bars ------------------------------------------------------------------------------


def test_prediction_bars_top_k_order_labels_and_percent():
    probs = _probs([0.01, 0.02, 0.50, 0.05, 0.20, 0.03, 0.04, 0.06, 0.08, 0.01])
    fig = figures.prediction_bars(probs, DIGITS, k=5, title="Clean")
    bar = fig.data[0]
    assert bar.orientation == "h"
    assert list(fig.layout.yaxis.ticktext) == ["2", "4", "8", "7", "3"]
    np.testing.assert_allclose(bar.x, [50.0, 20.0, 8.0, 6.0, 5.0], atol=1e-4)
    assert list(bar.text) == ["50.0%", "20.0%", "8.0%", "6.0%", "5.0%"]
    assert fig.layout.yaxis.autorange == "reversed"  # the most probable bar is drawn on top
    assert fig.layout.title.text == "Clean"
    assert fig.layout.xaxis.title.text == "Probability (%)"


def test_prediction_bars_colours_come_from_the_palette():
    probs = _probs([0.1, 0.7, 0.2])
    fig = figures.prediction_bars(probs, ["a", "b", "c"], k=3, color_key="adversarial")
    assert list(fig.data[0].marker.color) == [PALETTE["adversarial"], PALETTE["neutral"], PALETTE["neutral"]]
    assert set(fig.data[0].marker.color) <= set(PALETTE.values())


def test_prediction_bars_marks_true_class_in_top_k():
    probs = _probs([0.1, 0.7, 0.2])
    fig = figures.prediction_bars(probs, ["a", "b", "c"], k=3, true_class=2)
    ticks = list(fig.layout.yaxis.ticktext)
    assert ticks[1] == "<b>c</b> (true)" and ticks[0] == "b"
    assert list(fig.data[0].marker.line.width) == [0, 2, 0]


def test_prediction_bars_appends_true_class_outside_top_k():
    probs = _probs([0.01, 0.02, 0.50, 0.05, 0.20, 0.03, 0.04, 0.06, 0.08, 0.01])
    fig = figures.prediction_bars(probs, DIGITS, k=3, true_class=0)
    assert list(fig.layout.yaxis.ticktext) == ["2", "4", "8", "<b>0</b> (true)"]
    np.testing.assert_allclose(fig.data[0].x[-1], 1.0, atol=1e-4)


def test_prediction_bars_keeps_duplicate_class_names_apart():
    fig = figures.prediction_bars(_probs([0.6, 0.4]), ["crane", "crane"], k=2)
    assert list(fig.data[0].y) == [0, 1]
    assert list(fig.layout.yaxis.ticktext) == ["crane", "crane"]


def test_prediction_bars_k_larger_than_classes_and_batch_of_one():
    fig = figures.prediction_bars(_probs([0.3, 0.7]).unsqueeze(0), ["x", "y"], k=5)
    assert list(fig.layout.yaxis.ticktext) == ["y", "x"]


@pytest.mark.parametrize(
    "probs, names, kwargs, match",
    [
        (torch.ones(3) / 3, ["a", "b"], {}, "3 entries"),
        (torch.tensor([2.0, -1.0]), ["a", "b"], {}, "softmax"),
        (torch.ones(2, 2) / 2, ["a", "b"], {}, r"\(K,\)"),
        (torch.ones(2) / 2, ["a", "b"], {"color_key": "pink"}, "color_key"),
        (torch.ones(2) / 2, ["a", "b"], {"true_class": 5}, "true_class"),
        (torch.ones(2) / 2, ["a", "b"], {"k": 0}, "k must"),
    ],
)
def test_prediction_bars_rejects_bad_input(probs, names, kwargs, match):
    with pytest.raises(InputError, match=match):
        figures.prediction_bars(probs, names, **kwargs)


# -- image_figure ---------------------------------------------------------------------------------


def test_image_figure_grayscale_is_exact_heatmap():
    x = torch.rand(1, 1, 28, 20)
    fig = figures.image_figure(x, title="digit")
    heatmap = fig.data[0]
    assert isinstance(heatmap, go.Heatmap)
    assert np.asarray(heatmap.z).shape == (28, 20)
    np.testing.assert_allclose(np.asarray(heatmap.z), x[0, 0].numpy())
    assert (heatmap.zmin, heatmap.zmax) == (0.0, 1.0)
    assert heatmap.showscale is False
    assert heatmap.colorscale[0][1].upper() == "#000000" and heatmap.colorscale[-1][1].upper() == "#FFFFFF"
    assert fig.layout.title.text == "digit"


def test_image_figure_pixels_are_square_and_axes_bare():
    fig = figures.image_figure(torch.rand(1, 12, 30))
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert list(fig.layout.yaxis.range) == [11.5, -0.5]  # row 0 on top
    assert list(fig.layout.xaxis.range) == [-0.5, 29.5]
    assert fig.layout.xaxis.showticklabels is False and fig.layout.yaxis.showticklabels is False


def test_image_figure_rgb_is_uint8_image():
    x = torch.zeros(3, 4, 5)
    x[0] = 1.0  # pure red
    x[2, 0, 0] = 0.5
    fig = figures.image_figure(x)
    image = fig.data[0]
    assert isinstance(image, go.Image)
    z = np.asarray(image.z)
    assert z.shape == (4, 5, 3) and z.dtype == np.uint8
    assert tuple(z[1, 1]) == (255, 0, 0)
    assert tuple(z[0, 0]) == (255, 0, 128)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(2, 1, 4, 4), "batch of 2"),
        (torch.rand(2, 4, 4), "C in"),
        (torch.rand(4, 4), "C in"),
        (torch.full((1, 4, 4), 1.5), r"\[0, 1\]"),
        (torch.full((1, 4, 4), float("nan")), "NaN"),
        (torch.zeros(1, 4, 4, dtype=torch.uint8), "floating"),
    ],
)
def test_image_figure_rejects_bad_input(x, match):
    with pytest.raises(InputError, match=match):
        figures.image_figure(x)


def test_figures_serialise_to_json():
    fig = figures.prediction_bars(_probs([1, 2]), ["a", "b"])
    assert '"type":"bar"' in fig.to_json().replace(" ", "")
    assert figures.image_figure(torch.rand(3, 8, 8)).to_json()


def test_importing_neuronviz_figures_does_not_import_streamlit():
    code = "import sys, neuronviz, neuronviz.figures; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
