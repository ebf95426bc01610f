"""neuronviz.figures.neurons: the values in the Neurons page's figures, on hand-made influence maps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
import torch

from neuronviz import figures
from neuronviz.figures import PALETTE
from neuronviz.figures import neurons as nf
from neuronviz.infra.errors import InputError
from neuronviz.methods.influence import GROUP_NAMES, InfluenceMap, influence_shift, layer_shift_table, partition

# Ten channels of a conv layer (shape 10×2×2): clean influence falls from 9 to 0; the "attack"
# suppresses the top three and lifts the bottom two, so front/tail membership changes.
BEFORE = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
AFTER = torch.tensor([[1.5, 8.5, 0.5, 6.0, 5.5, 4.0, 3.5, 2.0, 7.0, 9.5]])


def _map(values: torch.Tensor, layer: str = "features.3", shape=(10, 2, 2), granularity: str = "channel") -> InfluenceMap:
    return InfluenceMap(
        layer=layer,
        method="grad_x_act",
        granularity=granularity,
        target=torch.tensor([3] * values.shape[0]),
        values=values.clone(),
        activations=values.abs().clone(),
        shape=shape,
    )


@pytest.fixture()
def pair():
    before, after = _map(BEFORE), _map(AFTER)
    shift = influence_shift(before, after, front=0.2, tail=0.2)  # 2 front, 2 tail of 10
    return before, after, shift


def _common_look(fig) -> None:
    assert fig.layout.template == pio.templates[figures.TEMPLATE]
    assert fig.layout.font.size >= 12
    assert fig.layout.title.text


# -- influence_scatter ----------------------------------------------------------------------------


def test_scatter_points_are_coloured_by_the_partition_labels(pair):
    before, after, shift = pair
    fig = nf.influence_scatter(before, after, shift, "3")
    diagonal, *groups = fig.data
    assert [t.name for t in groups] == ["front (clean)", "middle (clean)", "tail (clean)"]
    labels = partition(before, 0.2, 0.2).labels[0].numpy()
    for index, (trace, key) in enumerate(zip(groups, GROUP_NAMES)):
        assert trace.marker.color == PALETTE[key]
        members = [row[0] for row in trace.customdata]
        assert members == np.flatnonzero(labels == index).tolist()
        np.testing.assert_allclose(trace.x, BEFORE[0, members].numpy())
        np.testing.assert_allclose(trace.y, AFTER[0, members].numpy())
    assert [row[0] for row in groups[0].customdata] == [0, 1]  # the two highest clean values
    assert [row[0] for row in groups[2].customdata] == [8, 9]  # the two lowest
    # the diagonal y = x spans every point
    assert list(diagonal.x) == list(diagonal.y)
    assert diagonal.x[0] <= float(min(BEFORE.min(), AFTER.min())) and diagonal.x[1] >= float(max(BEFORE.max(), AFTER.max()))
    _common_look(fig)


def test_scatter_hover_names_the_neuron_and_both_groups(pair):
    before, after, shift = pair
    fig = nf.influence_scatter(before, after, shift, "3", after_label="PSSR")
    after_labels = shift.groups_after.labels[0].numpy()
    for trace in fig.data[1:]:
        for index, label, group_before, group_after in trace.customdata:
            assert label == f"ch {index}" == before.neuron_label(index)
            assert group_after == GROUP_NAMES[after_labels[index]]
            assert group_before in trace.name
        assert "%{customdata[1]}" in trace.hovertemplate and "PSSR" in trace.hovertemplate
        assert "%{customdata[3]}" in trace.hovertemplate
    # neuron 0 (front, clean) fell to 1.5: no longer front; neuron 9 (tail) rose to 9.5: now front
    front = {row[0]: row[3] for row in fig.data[1].customdata}
    tail = {row[0]: row[3] for row in fig.data[3].customdata}
    assert front[0] != "front" and tail[9] == "front"


def test_scatter_hover_names_units_for_unit_granularity():
    values = torch.arange(12, dtype=torch.float32)[None]
    before = _map(values, shape=(3, 2, 2), granularity="unit")
    after = _map(values.flip(1), shape=(3, 2, 2), granularity="unit")
    shift = influence_shift(before, after, front=1, tail=1)
    fig = nf.influence_scatter(before, after, shift, "3")
    labels = {row[0]: row[1] for trace in fig.data[1:] for row in trace.customdata}
    assert labels[11] == "(2, 1, 1)" and labels[0] == "(0, 0, 0)"


def test_scatter_axis_titles_name_class_method_and_units(pair):
    before, after, shift = pair
    fig = nf.influence_scatter(before, after, shift, "seven", after_label="adversarial")
    x_title, y_title = fig.layout.xaxis.title.text, fig.layout.yaxis.title.text
    assert x_title.startswith("clean image: influence toward class seven")
    assert y_title.startswith("adversarial: influence toward class seven")
    for title in (x_title, y_title):
        assert "activation × gradient, logit units" in title
    assert list(fig.layout.xaxis.range) == list(fig.layout.yaxis.range)  # same scale: the diagonal is 45°


def test_scatter_refuses_mismatched_inputs(pair):
    before, after, shift = pair
    with pytest.raises(InputError, match="layer"):
        nf.influence_scatter(before, _map(AFTER, layer="features.6"), shift, "3")
    with pytest.raises(InputError, match="shape"):
        nf.influence_scatter(before, _map(AFTER[:, :5], shape=(5, 2, 2)), shift, "3")
    with pytest.raises(InputError, match="InfluenceShift"):
        nf.influence_scatter(before, after, shift.groups_before, "3")
    with pytest.raises(InputError, match="NaN"):
        nf.influence_scatter(before, _map(torch.full_like(AFTER, float("nan"))), shift, "3")
    with pytest.raises(InputError, match="image"):
        nf.influence_scatter(before, after, shift, "3", image=1)
    other = influence_shift(_map(BEFORE, layer="x"), _map(AFTER, layer="x"), front=1, tail=1)
    with pytest.raises(InputError, match="shift is of layer"):
        nf.influence_scatter(before, after, other, "3")


# -- group_bars -------------------------------------------------------------------------------------


def test_group_bars_show_clean_and_after_for_front_and_tail(pair):
    before, after, shift = pair
    fig = nf.group_bars(before, after, shift.groups_before, "3", after_label="NIP (guided)", after_color="restored")
    clean_front, after_front, clean_tail, after_tail = fig.data
    assert list(clean_front.x) == ["ch 0", "ch 1"] == list(after_front.x)  # decreasing clean influence
    assert list(clean_tail.x) == ["ch 9", "ch 8"] == list(after_tail.x)  # increasing clean influence
    np.testing.assert_allclose(clean_front.y, [9.0, 8.0])
    np.testing.assert_allclose(after_front.y, [1.5, 8.5])
    np.testing.assert_allclose(clean_tail.y, [0.0, 1.0])
    np.testing.assert_allclose(after_tail.y, [9.5, 7.0])
    assert clean_front.marker.color == PALETTE["clean"] == clean_tail.marker.color
    assert after_front.marker.color == PALETTE["restored"] == after_tail.marker.color
    assert after_front.name == "NIP (guided)"
    assert fig.layout.barmode == "group"
    assert "logit units" in fig.layout.yaxis.title.text and "class 3" in fig.layout.yaxis.title.text
    assert fig.layout.xaxis.title.text == "neuron"
    panels = [a.text for a in fig.layout.annotations]
    assert panels == ["Front: the 2 most influential", "Tail: the 2 least influential"]
    _common_look(fig)


def test_group_bars_name_the_next_tail_rule_and_refuse_bad_colour(pair):
    before, after, _ = pair
    groups = partition(before, 2, 3, tail_rule="next")
    fig = nf.group_bars(before, after, groups, "3")
    assert fig.layout.annotations[1].text == "Tail: ranks 3–5"
    assert list(fig.data[2].x) == ["ch 2", "ch 3", "ch 4"]
    assert fig.data[1].marker.color == PALETTE["adversarial"]
    with pytest.raises(InputError, match="color key"):
        nf.group_bars(before, after, groups, "3", after_color="red")
    with pytest.raises(InputError, match="NeuronGroups"):
        nf.group_bars(before, after, groups.labels, "3")


# -- transition_heatmap --------------------------------------------------------------------------


def test_transition_annotations_equal_the_counts(pair):
    _, _, shift = pair
    fig = nf.transition_heatmap(shift.transition, after_label="adversarial")
    heat = fig.data[0]
    counts = shift.transition[0].tolist()
    assert heat.z == tuple(tuple(row) for row in counts) or [list(r) for r in heat.z] == counts
    assert [list(r) for r in heat.text] == [[str(v) for v in row] for row in counts]
    assert heat.texttemplate == "%{text}"
    assert list(heat.x) == list(heat.y) == ["front", "middle", "tail"]
    assert sum(map(sum, counts)) == 10
    # rows are the clean groups: 2 front, 6 middle, 2 tail neurons
    assert [sum(row) for row in counts] == [2, 6, 2]
    np.testing.assert_allclose(np.array(heat.customdata).sum(1), [1.0, 1.0, 1.0])  # row shares
    assert fig.layout.yaxis.title.text == "group on the clean image"
    assert fig.layout.xaxis.title.text == "group after (adversarial)"
    assert fig.layout.yaxis.autorange == "reversed"  # front on top
    assert heat.colorscale[-1][1] == PALETTE["front"]
    _common_look(fig)


def test_transition_heatmap_picks_an_image_and_validates():
    batch = torch.tensor([[[1, 0, 0], [0, 5, 0], [0, 0, 1]], [[0, 1, 0], [1, 4, 1], [0, 1, 0]]])
    fig = nf.transition_heatmap(batch, image=1)
    assert [list(r) for r in fig.data[0].text] == [["0", "1", "0"], ["1", "4", "1"], ["0", "1", "0"]]
    with pytest.raises(InputError, match="image"):
        nf.transition_heatmap(batch, image=2)
    with pytest.raises(InputError, match=r"\(3, 3\)"):
        nf.transition_heatmap(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(InputError, match="negative"):
        nf.transition_heatmap(-batch[0])
    with pytest.raises(InputError, match="whole counts"):
        nf.transition_heatmap(batch[0].float() + 0.5)


# -- the whole network ----------------------------------------------------------------------------


def _network(before_rows: dict[str, torch.Tensor], after_rows: dict[str, torch.Tensor]):
    before = {name: _map(v, layer=name, shape=(v.shape[1], 1, 1)) for name, v in before_rows.items()}
    after = {name: _map(v, layer=name, shape=(v.shape[1], 1, 1)) for name, v in after_rows.items()}
    return before, after


@pytest.fixture()
def frame():
    before, after = _network(
        {"conv1": BEFORE, "conv2": BEFORE * 2, "fc": BEFORE[:, :5]},
        {"conv1": BEFORE + 0.1, "conv2": AFTER, "fc": BEFORE[:, :5].flip(1)},
    )
    return layer_shift_table(before, after, front=0.2, tail=0.2, image=0)


def test_layer_overview_plots_the_table_in_forward_order_and_highlights_the_layer(frame):
    fig = nf.layer_overview(frame, "conv2", after_label="adversarial")
    rho, overlap, suppressed, lifted = fig.data
    for trace in fig.data:
        assert list(trace.x) == ["conv1", "conv2", "fc"]
    np.testing.assert_allclose(rho.y, frame["spearman"])
    np.testing.assert_allclose(overlap.y, 100 * frame["front_overlap"])
    np.testing.assert_allclose(suppressed.y, 100 * frame["front_suppressed_share"])
    np.testing.assert_allclose(lifted.y, 100 * frame["tail_lifted_share"])
    assert rho.y[0] == pytest.approx(1.0) and rho.y[2] == pytest.approx(-1.0)  # unchanged; reversed
    assert rho.line.color == PALETTE["adversarial"] == overlap.line.color
    assert suppressed.line.color == PALETTE["front"] and lifted.line.color == PALETTE["tail"]
    for trace in fig.data:  # the selected layer's markers are the large ones
        assert list(trace.marker.size).index(max(trace.marker.size)) == 1
    bands = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(bands) == 3 and all((s.x0, s.x1) == (0.5, 1.5) for s in bands)
    assert fig.layout.yaxis.title.text == "Spearman ρ"
    assert fig.layout.yaxis.range[0] <= -1.0 and fig.layout.yaxis.range[1] >= 1.0
    assert fig.layout.yaxis2.title.text == "front overlap (%)"
    assert fig.layout.yaxis3.title.text == "share of group (%)"
    assert fig.layout.xaxis3.title.text == "layer (forward order)"
    assert fig.layout.xaxis3.categoryarray == ("conv1", "conv2", "fc")
    _common_look(fig)


def test_layer_overview_leaves_a_gap_for_undefined_rho_and_validates(frame):
    frame = frame.copy()
    frame.loc[0, "spearman"] = float("nan")  # a constant layer
    fig = nf.layer_overview(frame, "fc", after_label="PSSR", after_color="restored")
    assert fig.data[0].y[0] is None
    assert fig.data[0].line.color == PALETTE["restored"]
    with pytest.raises(InputError, match="selected layer"):
        nf.layer_overview(frame, "conv9")
    with pytest.raises(InputError, match="columns"):
        nf.layer_overview(frame.drop(columns=["front_overlap"]), "fc")
    with pytest.raises(InputError, match="DataFrame"):
        nf.layer_overview(frame.to_dict(), "fc")


def test_rho_range_zooms_in_but_keeps_one_and_the_lowest_value():
    low, high = nf.rho_range([0.95, 0.99, None, 1.0])
    assert 0.9 < low < 0.95 and high >= 1.0
    low, high = nf.rho_range([-1.0, 0.2])
    assert low == pytest.approx(-1.05) and high > 1.0


def _frames():
    layers = ["conv1", "conv2", "fc"]

    def table(rho, overlap):
        return pd.DataFrame(
            {
                "layer": layers,
                "spearman": rho,
                "front_overlap": overlap,
                "front_suppressed_share": [0.0] * 3,
                "tail_lifted_share": [0.0] * 3,
            }
        )

    return {
        "adversarial": table([0.5, 0.2, 0.9], [0.5, 0.0, 1.0]),
        "nip-guided": table([0.7, 0.9, 0.9], [0.5, 1.0, 1.0]),
        "pssr": table([0.9, 0.4, 0.9], [1.0, 0.5, 1.0]),
    }


LABELS = {"adversarial": "adversarial", "nip-guided": "NIP (guided)", "pssr": "PSSR"}


def test_restoration_overview_has_one_line_per_condition_in_its_colours():
    frames = _frames()
    fig = nf.restoration_overview(frames, "conv2", labels=LABELS)
    names = [t.name for t in fig.data]
    assert names == ["adversarial", "adversarial", "NIP (guided)", "NIP (guided)", "PSSR", "PSSR"]
    adv_rho, adv_overlap, nip_rho, nip_overlap, pssr_rho, pssr_overlap = fig.data
    np.testing.assert_allclose(nip_rho.y, [0.7, 0.9, 0.9])
    np.testing.assert_allclose(pssr_overlap.y, [100.0, 50.0, 100.0])
    assert adv_rho.line.color == PALETTE["adversarial"]
    assert nip_rho.line.color == PALETTE["restored"] == pssr_rho.line.color
    assert nip_rho.line.dash != pssr_rho.line.dash and nip_rho.marker.symbol != pssr_rho.marker.symbol
    assert adv_rho.line.width > nip_rho.line.width  # visible under a restoration with equal values
    assert [t.showlegend for t in fig.data] == [True, False] * 3
    assert fig.layout.yaxis.title.text == "Spearman ρ with clean"
    assert fig.layout.yaxis2.title.text == "front overlap (%)"
    assert [(s.x0, s.x1) for s in fig.layout.shapes] == [(0.5, 1.5), (0.5, 1.5)]
    _common_look(fig)


def test_restoration_overview_refuses_frames_of_other_layers():
    frames = _frames()
    frames["pssr"] = frames["pssr"].iloc[::-1].reset_index(drop=True)
    with pytest.raises(InputError, match="other layers"):
        nf.restoration_overview(frames, "conv2")
    with pytest.raises(InputError, match="non-empty"):
        nf.restoration_overview({}, "conv2")


def test_restoration_sentence_names_the_condition_closest_to_clean():
    frames = _frames()
    assert nf.restoration_sentence(frames, "conv2", LABELS).startswith(
        "At conv2, NIP (guided) is closest to the clean ranking: adversarial ρ = 0.20 (front overlap 0%); "
        "NIP (guided) ρ = 0.90 (front overlap 100%); PSSR ρ = 0.40 (front overlap 50%)"
    )
    assert nf.restoration_sentence(frames, "conv1", LABELS).startswith("At conv1, PSSR is closest")
    assert "adversarial and NIP (guided) and PSSR are equally close" in nf.restoration_sentence(frames, "fc", LABELS)
    for frame in frames.values():
        frame.loc[0, "spearman"] = math.nan
    assert "undefined" in nf.restoration_sentence(frames, "conv1", LABELS)
    with pytest.raises(InputError):
        nf.restoration_sentence(frames, "conv7", LABELS)


# -- attribution_pair ---------------------------------------------------------------------------


def test_attribution_pair_shares_one_scale_from_zero_for_positive_maps():
    clean = torch.tensor([[0.0, 1.0], [2.0, 0.5]])
    adversarial = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    fig = nf.attribution_pair(clean, adversarial, "saliency", "3")
    left, right = fig.data
    assert left.coloraxis == right.coloraxis == "coloraxis"
    np.testing.assert_allclose(left.z, clean.numpy())
    np.testing.assert_allclose(right.z, adversarial.numpy())
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == (0.0, 4.0)
    assert axis.colorscale[0][1].upper() == "#FFFFFF" and axis.colorscale[-1][1] == PALETTE["adversarial"]
    assert "Saliency" in axis.colorbar.title.text
    assert [a.text for a in fig.layout.annotations] == ["clean image", "adversarial image"]
    assert fig.layout.title.text == "Saliency toward class 3"
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis2.scaleanchor == "x2"  # square pixels
    assert fig.layout.yaxis.range[0] > fig.layout.yaxis.range[1]  # row 0 on top
    _common_look(fig)


def test_attribution_pair_signed_maps_get_a_symmetric_diverging_scale():
    clean = torch.tensor([[-0.5, 1.0], [0.2, 0.0]])
    adversarial = torch.tensor([[0.1, -3.0], [0.0, 0.0]])
    fig = nf.attribution_pair(clean[None], adversarial[None], "integrated_gradients", "3")
    axis = fig.layout.coloraxis
    assert (axis.cmin, axis.cmax) == (-3.0, 3.0)
    assert [c[1] for c in axis.colorscale] == [PALETTE["front"], "#FFFFFF", PALETTE["adversarial"]]


def test_attribution_pair_validates():
    good = torch.zeros(2, 2)
    with pytest.raises(InputError, match="method"):
        nf.attribution_pair(good, good, "lime", "3")
    with pytest.raises(InputError, match="differ in shape"):
        nf.attribution_pair(good, torch.zeros(3, 3), "saliency", "3")
    with pytest.raises(InputError, match="NaN"):
        nf.attribution_pair(good, torch.full((2, 2), float("inf")), "saliency", "3")
    with pytest.raises(InputError, match="one map"):
        nf.attribution_pair(torch.zeros(2, 2, 2), good, "saliency", "3")
    # an all-zero pair still draws (a scale of [0, 1] rather than a division by zero)
    assert nf.attribution_pair(good, good, "grad_cam", "3").layout.coloraxis.cmax == 1.0
