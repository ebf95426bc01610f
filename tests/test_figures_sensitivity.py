"""neuronviz.figures.sensitivity: values in the figures (per layer, per channel, maps, comparison)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from neuronviz.figures import PALETTE
from neuronviz.figures import sensitivity as figs
from neuronviz.infra.errors import InputError
from neuronviz.methods.feature_maps import ChannelMaps
from neuronviz.methods.influence import probe_layers
from neuronviz.methods.sensitivity import SensitivityComparison, SensitivityMap, neuron_sensitivity


def _smap(layer: str, values: list[float], scale: float = 2.0, top: list[int] | None = None, shape=(4, 3, 3)) -> SensitivityMap:
    v = torch.tensor(values)
    return SensitivityMap(
        layer=layer,
        values=v,
        per_pair=v.unsqueeze(0).repeat(3, 1),
        top=torch.tensor(top if top is not None else [int(v.argmax())]),
        top_fraction=0.25,
        shape=(len(values), *shape[1:]),
        scale=torch.full_like(v, scale),
    )


def _profile(offset: float = 0.0) -> dict[str, SensitivityMap]:
    return {
        "conv1": _smap("conv1", [0.1 + offset, 0.3, 0.2, 0.4]),
        "relu": _smap("relu", [0.5, 0.5 + offset, 0.1, 0.3], scale=1.0),
        "fc": _smap("fc", [1.0, 2.0], scale=4.0, shape=(2,)),
    }


# -- per layer ----------------------------------------------------------------------------------------


def test_profile_chart_holds_mean_and_relative_sigma_in_the_given_layer_order():
    profiles = {"this image": _profile(), "set": _profile(0.4)}
    fig = figs.layer_profile_chart(profiles, colors={"this image": "adversarial", "set": "front"})
    assert figs.profile_layers(fig) == ["conv1", "relu", "fc"]
    image_mean, image_relative, set_mean, set_relative = fig.data
    np.testing.assert_allclose(image_mean.y, [0.25, 0.35, 1.5], rtol=1e-6)
    np.testing.assert_allclose(image_relative.y, [0.125, 0.35, 0.375], rtol=1e-6)
    np.testing.assert_allclose(set_mean.y, [0.35, 0.45, 1.5], rtol=1e-6)
    assert list(image_mean.customdata) == ["conv1", "relu", "fc"]
    assert image_mean.line.color == PALETTE["adversarial"] and set_relative.line.color == PALETTE["front"]
    assert [t.showlegend for t in fig.data] == [True, False, True, False]
    assert fig.layout.yaxis.title.text == "mean σ (act. units)"
    assert fig.layout.yaxis2.title.text == "relative σ (ratio)"
    assert fig.layout.xaxis2.title.text == "layer (forward order)"


def test_profile_chart_without_relative_row_and_default_colours():
    fig = figs.layer_profile_chart({"a": _profile(), "b": _profile()}, relative=False)
    assert len(fig.data) == 2
    assert [t.line.color for t in fig.data] == [PALETTE[k] for k in figs.SERIES_KEYS[:2]]


def test_profile_chart_refusals():
    with pytest.raises(InputError):
        figs.layer_profile_chart({})
    reordered = dict(reversed(list(_profile().items())))
    with pytest.raises(InputError, match="other layers"):
        figs.layer_profile_chart({"a": _profile(), "b": reordered})
    with pytest.raises(InputError):
        figs.layer_profile_chart({"a": {"conv1": [0.1]}})  # type: ignore[dict-item]
    with pytest.raises(InputError, match="PALETTE"):
        figs.layer_profile_chart({"a": _profile()}, colors={"a": "#123456"})


def test_profile_chart_on_digits_cnn_is_in_forward_order(digits_cnn, digits_test):
    x = digits_test[0][:2]
    x_adv = (x + 0.1).clamp(0, 1)
    maps = neuron_sensitivity(digits_cnn, x, x_adv)
    fig = figs.layer_profile_chart({"pair": maps})
    forward = [info.name for info in probe_layers(digits_cnn)]
    assert figs.profile_layers(fig) == forward
    np.testing.assert_allclose(fig.data[0].y, [maps[name].mean for name in forward], rtol=1e-6)
    np.testing.assert_allclose(fig.data[1].y, [maps[name].relative_mean for name in forward], rtol=1e-6)


# -- per channel ---------------------------------------------------------------------------------------


def test_channel_bars_sorted_with_the_top_channels_highlighted():
    smap = _smap("relu", [0.2, 0.9, 0.1, 0.5, 0.7], top=[1, 4])
    fig = figs.channel_bars(smap)
    bar = fig.data[0]
    np.testing.assert_allclose(bar.y, [0.9, 0.7, 0.5, 0.2, 0.1], rtol=1e-6)
    assert figs.bar_channels(fig) == ["ch 1", "ch 4", "ch 3", "ch 0", "ch 2"]
    assert list(bar.marker.color) == [PALETTE["adversarial"]] * 2 + [PALETTE["neutral"]] * 3
    assert list(fig.layout.xaxis.ticktext) == ["ch 1", "ch 4", "ch 3", "ch 0", "ch 2"]
    assert fig.layout.yaxis.title.text == "σ (mean |Δ activation|)"
    assert "relu" in fig.layout.title.text and "3 pairs" in fig.layout.title.text


def test_channel_bars_truncate_and_name_units_of_linear_layers():
    smap = _smap("fc", list(np.linspace(0, 1, 10)), shape=(10,), top=[9])
    fig = figs.channel_bars(smap, max_bars=4)
    assert figs.bar_channels(fig) == ["unit 9", "unit 8", "unit 7", "unit 6"]
    assert "top 4 of 10" in fig.layout.title.text
    with pytest.raises(InputError):
        figs.channel_bars(smap, max_bars=0)
    with pytest.raises(InputError):
        figs.channel_bars([0.1, 0.2])  # type: ignore[arg-type]


# -- feature maps -----------------------------------------------------------------------------------------


def _maps(clean_sign: float = 1.0) -> ChannelMaps:
    g = torch.Generator().manual_seed(1)
    clean = clean_sign * torch.rand(3, 5, 5, generator=g)
    return ChannelMaps(layer="relu", channels=(2, 0, 3), clean=clean, adversarial=clean + 0.3 * torch.randn(3, 5, 5, generator=g).abs())


def test_channel_maps_figure_holds_clean_adversarial_and_difference():
    maps = _maps()
    smap = _smap("relu", [0.1, 0.2, 0.3, 0.4])
    fig = figs.channel_maps_figure(maps, smap)
    by_name = {t.name: t for t in fig.data if isinstance(t, go.Heatmap)}
    assert len(by_name) == 9
    np.testing.assert_allclose(by_name["ch 0 clean"].z, maps.clean[1].numpy())
    np.testing.assert_allclose(by_name["ch 3 adversarial"].z, maps.adversarial[2].numpy())
    np.testing.assert_allclose(by_name["ch 2 difference"].z, maps.difference[0].numpy())
    assert by_name["ch 2 clean"].coloraxis == by_name["ch 2 adversarial"].coloraxis == "coloraxis"
    assert by_name["ch 2 difference"].coloraxis == "coloraxis2"
    top = float(maps.difference.abs().max())
    assert fig.layout.coloraxis2.cmin == pytest.approx(-top) and fig.layout.coloraxis2.cmax == pytest.approx(top)
    assert fig.layout.coloraxis.cmin == 0.0  # non-negative maps: a sequential scale from 0
    headings = [a.text for a in fig.layout.annotations if a.text.startswith("<b>ch")]
    assert headings == ["<b>ch 2</b> · σ 0.3", "<b>ch 0</b> · σ 0.1", "<b>ch 3</b> · σ 0.4"]


def test_channel_maps_figure_signed_scale_and_refusals():
    fig = figs.channel_maps_figure(_maps(clean_sign=-1.0))
    assert fig.layout.coloraxis.cmin == pytest.approx(-fig.layout.coloraxis.cmax)
    flat = ChannelMaps(layer="fc", channels=(0,), clean=torch.zeros(1), adversarial=torch.ones(1))
    with pytest.raises(InputError, match="no spatial"):
        figs.channel_maps_figure(flat)
    with pytest.raises(InputError):
        figs.channel_maps_figure(_maps(), _smap("conv1", [0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(InputError):
        figs.channel_maps_figure(_maps(), per_row=0)
    assert len(figs.channel_maps_figure(_maps(), per_row=1).data) == 9


# -- comparison -------------------------------------------------------------------------------------------


def test_accuracy_rows_one_per_model():
    comparison = SensitivityComparison(
        attack="pgd", params={"eps": 0.1}, profiles={"standard": _profile(), "robust": _profile(0.4)},
        clean_accuracy={"standard": 0.986, "robust": 0.997}, adv_accuracy={"standard": 0.0167, "robust": 0.7389},
        images=360,
    )
    rows = figs.accuracy_rows(comparison)
    assert [r["model"] for r in rows] == ["standard", "robust"]
    assert [r["clean accuracy (%)"] for r in rows] == [98.6, 99.7]
    assert [r["accuracy under PGD (%)"] for r in rows] == [1.7, 73.9]
    assert rows[0]["mean σ over layers"] == pytest.approx((0.25 + 0.35 + 1.5) / 3, abs=1e-4)
    with pytest.raises(InputError):
        figs.accuracy_rows({"standard": 1})  # type: ignore[arg-type]
