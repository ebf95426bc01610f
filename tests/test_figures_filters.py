"""neuronviz.figures.filters: values in the figures (filters, dropout, compress/amplify)."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from neuronviz.figures import PALETTE
from neuronviz.figures import filters as figs
from neuronviz.infra.errors import InputError
from neuronviz.methods.fragility import (
    FirstLayerMaps,
    FragilityReport,
    RescaleEvaluation,
    first_layer_fragility,
    first_layer_maps,
)

LABELS = ("fragile", "robust", "neutral", "fragile", "robust")


def _report(labels=LABELS) -> FragilityReport:
    count = len(labels)
    delta_clean = torch.tensor([-0.10, 0.0, -0.02, -0.30, 0.005])[:count]
    delta_adv = torch.tensor([0.15, 0.0, 0.03, 0.05, -0.005])[:count]
    raw = torch.tensor([0.4, 0.1, 0.2, 0.3, 0.1])[:count]
    score = torch.tensor([0.9, 0.1, 0.3, 0.6, 0.2])[:count]
    return FragilityReport(
        model_name="hand", model_hash="h", layer="features.0", attack="fgsm", params={"eps": 0.1}, seed=0,
        images=40, clean_accuracy=0.95, adv_accuracy=0.1,
        clean_accuracy_dropped=0.95 + delta_clean, adv_accuracy_dropped=0.1 + delta_adv,
        delta_clean=delta_clean, delta_adv=delta_adv, targeting=raw / raw.sum(), targeting_raw=raw,
        score=score, strength=score, labels=tuple(labels), correlation=0.7, tolerance=0.01, fragile_threshold=0.5,
        adversarial=torch.zeros(1, 1, 4, 4), sweep_path="dummy-input",
    )


def _maps(count: int = 5, in_channels: int = 1) -> FirstLayerMaps:
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(count, 6, 6, generator=g)
    adversarial = clean + 0.5 * torch.randn(count, 6, 6, generator=g)
    return FirstLayerMaps(
        layer="features.0",
        weights=torch.randn(count, in_channels, 3, 3, generator=g),
        clean=clean,
        adversarial=adversarial,
        shift=torch.linspace(0.1, 0.5, count),
        mean_shift=torch.zeros(count),
    )


def _heatmaps(fig: go.Figure, name: str) -> list[go.Heatmap]:
    return [t for t in fig.data if isinstance(t, go.Heatmap) and t.name == name]


# -- filter grid --------------------------------------------------------------------------------------


def test_grid_outlines_exactly_the_fragile_and_robust_filters():
    report, maps = _report(), _maps()
    fig = figs.filter_grid(maps, report.labels)
    assert figs.outlined_filters(fig, "fragile") == sorted(report.indices("fragile")) == [0, 3]
    assert figs.outlined_filters(fig, "robust") == sorted(report.indices("robust")) == [1, 4]
    assert figs.outlined_filters(fig, "neutral") == []
    colours = {shape.name: shape.line.color for shape in fig.layout.shapes if shape.name != "frame"}
    assert sum(shape.name == "frame" for shape in fig.layout.shapes) == 3 * 5
    assert colours == {
        "filter 0: fragile": PALETTE["adversarial"],
        "filter 3: fragile": PALETTE["adversarial"],
        "filter 1: robust": PALETTE["front"],
        "filter 4: robust": PALETTE["front"],
    }
    titles = [a for a in fig.layout.annotations if a.text.startswith("<b>f")]
    assert titles[0].text == "<b>f0</b> · fragile · shift 0.10" and titles[4].text == "<b>f4</b> · robust · shift 0.50"
    assert [a.font.color for a in titles][:3] == [PALETTE["adversarial"], PALETTE["front"], figs.INK]
    assert [a.text for a in fig.layout.annotations if not a.text.startswith("<b>f")] == ["weights", "clean", "adv."] * 5


def test_grid_heatmaps_hold_the_weights_and_maps_on_shared_centred_scales():
    maps = _maps()
    fig = figs.filter_grid(maps)
    assert len(fig.data) == 3 * 5 and {s.name for s in fig.layout.shapes} == {"frame"}  # no labels: nothing outlined
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.range[0] > fig.layout.yaxis.range[1]  # square, row 0 on top
    np.testing.assert_allclose(_heatmaps(fig, "filter 2 weights")[0].z, maps.weights[2, 0].numpy())
    np.testing.assert_allclose(_heatmaps(fig, "filter 2 clean")[0].z, maps.clean[2].numpy())
    np.testing.assert_allclose(_heatmaps(fig, "filter 2 adv.")[0].z, maps.adversarial[2].numpy())
    assert {t.coloraxis for t in fig.data} == {"coloraxis", "coloraxis2"}
    w = float(maps.weights.abs().max())
    m = float(torch.cat([maps.clean, maps.adversarial]).abs().max())
    assert fig.layout.coloraxis.cmin == pytest.approx(-w) and fig.layout.coloraxis.cmax == pytest.approx(w)
    assert fig.layout.coloraxis2.cmin == pytest.approx(-m) and fig.layout.coloraxis2.cmax == pytest.approx(m)
    assert fig.layout.coloraxis.colorscale[0][1] == PALETTE["front"]
    assert fig.layout.coloraxis.colorbar.title.text == "weight"
    assert fig.layout.font.size >= 12 and fig.layout.template.layout.paper_bgcolor is not None


def test_grid_subset_and_multichannel_weights():
    maps = _maps(in_channels=3)
    fig = figs.filter_grid(maps, filters=[4, 1], per_row=1)
    assert [t.name for t in fig.data][::3] == ["filter 4 weights", "filter 1 weights"]
    np.testing.assert_allclose(_heatmaps(fig, "filter 4 weights")[0].z, maps.weights[4].mean(0).numpy(), rtol=1e-6)
    assert "mean over the 3 input channels" in fig.layout.title.text
    fig = figs.filter_grid(maps, input_channel=2)
    np.testing.assert_allclose(_heatmaps(fig, "filter 0 weights")[0].z, maps.weights[0, 2].numpy())
    assert "input channel 2" in fig.layout.title.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": ("fragile",)},
        {"labels": ("fragile", "weird", "neutral", "neutral", "neutral")},
        {"filters": [5]},
        {"filters": []},
        {"per_row": 0},
        {"input_channel": 1},
    ],
)
def test_grid_refuses_bad_inputs(kwargs):
    with pytest.raises(InputError):
        figs.filter_grid(_maps(), **kwargs)


def test_large_maps_are_pooled_for_display_only():
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(2, 112, 112, generator=g)
    maps = FirstLayerMaps(
        layer="conv1", weights=torch.randn(2, 3, 7, 7, generator=g), clean=clean, adversarial=clean.flip(-1),
        shift=torch.tensor([0.25, 0.5]), mean_shift=torch.zeros(2),
    )
    fig = figs.filter_grid(maps)
    shown = _heatmaps(fig, "filter 1 clean")[0].z
    assert np.asarray(shown).shape == (56, 56)
    np.testing.assert_allclose(np.asarray(shown)[0, 0], clean[1, :2, :2].mean().item(), rtol=1e-5)
    assert "maps shown at 1/2 resolution" in fig.layout.title.text
    assert np.asarray(_heatmaps(fig, "filter 1 weights")[0].z).shape == (7, 7)  # weights never pooled
    assert "shift 0.50" in [a.text for a in fig.layout.annotations if a.text.startswith("<b>f1")][0]
    pooled, factor = figs.display_size(torch.ones(57, 30), 56)
    assert factor == 2 and tuple(pooled.shape) == (29, 15)
    with pytest.raises(InputError):
        figs.filter_grid(maps, max_side=0)


def test_grid_refuses_a_non_maps_input():
    with pytest.raises(InputError):
        figs.filter_grid(torch.zeros(3))  # type: ignore[arg-type]


def test_image_grid_outline_encloses_its_group_panels():
    panel = figs.Panel(z=torch.zeros(4, 4), coloraxis="coloraxis", name="p", label="x")
    groups = [figs.Group(panels=(panel, panel), title="a", outline=PALETTE["front"], outline_name="a"), figs.Group(panels=(panel,), title="b")]
    fig = figs.image_grid(groups, per_row=2)
    [shape] = [s for s in fig.layout.shapes if s.name != "frame"]
    first_two = fig.data[:2]
    for trace in first_two:  # each panel is a unit box inside the outline
        left, right = trace.x0 - trace.dx / 2, trace.x0 - trace.dx / 2 + 4 * trace.dx
        top, bottom = trace.y0 - trace.dy / 2, trace.y0 - trace.dy / 2 + 4 * trace.dy
        assert shape.x0 < left < right < shape.x1 and shape.y0 < top < bottom < shape.y1
        assert right - left == pytest.approx(1.0) and bottom - top == pytest.approx(1.0)
    assert fig.data[2].x0 - fig.data[2].dx / 2 > shape.x1  # the next group is outside
    with pytest.raises(InputError):
        figs.image_grid([], per_row=1)


def test_grid_on_digits_cnn_highlights_the_reports_fragile_filters(digits_cnn, digits_test):
    x, y = digits_test[0][:24], digits_test[1][:24]
    report = first_layer_fragility(digits_cnn, x, y, attack="fgsm", eps=0.1)
    maps = first_layer_maps(digits_cnn, x[:1], report.adversarial[:1])
    fig = figs.filter_grid(maps, report.labels)
    assert figs.outlined_filters(fig, "fragile") == sorted(report.indices("fragile"))
    assert figs.outlined_filters(fig, "robust") == sorted(report.indices("robust"))
    assert len(fig.data) == 3 * report.filters == 48
    json.loads(fig.to_json())  # serialisable as Streamlit sends it


# -- dropout chart --------------------------------------------------------------------------------------


def test_dropout_bars_hold_the_reports_deltas_and_targeting_coloured_by_label():
    report = _report()
    fig = figs.dropout_chart(report)
    bars = [t for t in fig.data if t.showlegend is False]
    assert len(bars) == 3
    for bar, values in zip(bars, (report.delta_clean, report.delta_adv, report.targeting)):
        assert list(bar.x) == list(range(5))
        np.testing.assert_allclose(bar.y, 100 * values.numpy(), rtol=1e-6)
        assert list(bar.marker.color) == [figs.label_color(label) for label in report.labels]
    assert list(bars[0].marker.color)[:2] == [PALETTE["adversarial"], PALETTE["front"]]
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend == ["fragile", "neutral", "robust"]
    assert fig.layout.yaxis.title.text == "Δ clean acc. (pp)"
    assert fig.layout.yaxis2.title.text == "Δ adv. acc. (pp)"
    assert fig.layout.yaxis3.title.text == "targeting (%)"
    assert fig.layout.xaxis3.title.text == "filter of features.0 (index)"
    assert "FGSM ε=0.1, 40 images" in fig.layout.title.text


def test_dropout_legend_lists_only_present_labels_and_refuses_other_input():
    fig = figs.dropout_chart(_report(("fragile", "fragile", "neutral", "neutral", "neutral")))
    assert [t.name for t in fig.data if t.showlegend] == ["fragile", "neutral"]
    with pytest.raises(InputError):
        figs.dropout_chart({"delta_clean": [0.1]})  # type: ignore[arg-type]


# -- compress / amplify ------------------------------------------------------------------------------------


def _evaluation(beta: float, clean: float, adv: float, transfer: float) -> RescaleEvaluation:
    return RescaleEvaluation(
        beta=beta, attack="fgsm", params={"eps": 0.1}, images=40, clean_before=0.95, clean_after=clean,
        adv_before=0.10, adv_after=adv, adv_transfer_after=transfer, factors=torch.ones(4),
    )


def test_rescale_curve_starts_at_the_unchanged_model_and_marks_beta():
    points = [_evaluation(0.5, 0.90, 0.05, 0.15), _evaluation(0.2, 0.925, 0.075, 0.125)]
    fig = figs.rescale_curve(points, beta=0.2)
    clean, white, transfer = fig.data
    assert list(clean.x) == [0.0, 0.2, 0.5]
    np.testing.assert_allclose(clean.y, [95.0, 92.5, 90.0])
    np.testing.assert_allclose(white.y, [10.0, 7.5, 5.0])
    np.testing.assert_allclose(transfer.y, [10.0, 12.5, 15.0])
    assert clean.line.color == PALETTE["clean"] and white.line.color == PALETTE["adversarial"]
    assert transfer.line.dash == "dot"
    assert [s.x0 for s in fig.layout.shapes] == [0.2]
    assert fig.layout.yaxis.title.text == "accuracy (%)" and "β" in fig.layout.xaxis.title.text


def test_rescale_curve_refusals_and_table():
    with pytest.raises(InputError):
        figs.rescale_curve([])
    other = RescaleEvaluation(
        beta=0.3, attack="pgd", params={}, images=40, clean_before=0.95, clean_after=0.9, adv_before=0.1,
        adv_after=0.1, adv_transfer_after=0.1, factors=torch.ones(4),
    )
    with pytest.raises(InputError):
        figs.rescale_curve([_evaluation(0.2, 0.9, 0.1, 0.1), other])
    with pytest.raises(InputError):
        figs.rescale_curve([_evaluation(0.2, 0.9, 0.1, 0.1)], beta=2.0)
    rows = figs.rescale_table(_evaluation(0.2, 0.925, 0.075, 0.125))
    assert [r["after (%)"] for r in rows] == [92.5, 7.5, 12.5]
    assert [r["change (pp)"] for r in rows] == [-2.5, -2.5, 2.5]
