"""The Neurons page under AppTest: figures present, and their numbers equal the library's."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from apptest import clear_caches, errors, open_page, plotly_titles

from neuronviz.methods.attacks import run_attack
from neuronviz.methods.attribution import input_attribution
from neuronviz.methods.defences import get_defense
from neuronviz.methods.influence import default_layer, neuron_influence, probe_layers

PAGE = "app_pages/neurons.py"
SCATTER = "neurons.scatter"


@pytest.fixture(scope="module")
def page():
    """One page for the read-only checks (the analysis of the default choice is computed once)."""
    clear_caches()
    return open_page(PAGE)


def _decode(value):
    """Plotly JSON arrays: plain lists, or typed arrays ``{"dtype", "bdata"}`` (plotly ≥ 6)."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return array.reshape(value["shape"]) if "shape" in value else array
    return value


def _spec(at, key: str) -> dict:
    for chart in at.get("plotly_chart"):
        if chart.proto.id.endswith(key) or key in chart.proto.id:
            return json.loads(chart.proto.spec)
    raise AssertionError(f"no chart {key!r}; charts: {[c.proto.id for c in at.get('plotly_chart')]}")


def _scatter_points(at) -> tuple[dict[int, float], dict[int, float], dict[int, str]]:
    """neuron → x (clean), neuron → y (after), neuron → group before, from the page's scatter."""
    xs, ys, groups = {}, {}, {}
    for trace in _spec(at, SCATTER)["data"][1:]:
        for neuron, x, y, row in zip(
            [row[0] for row in trace["customdata"]], _decode(trace["x"]), _decode(trace["y"]), trace["customdata"]
        ):
            xs[neuron], ys[neuron], groups[neuron] = float(x), float(y), row[2]
    return xs, ys, groups


def _selection(at):
    return at.session_state["state.selection"]


def _adversarial(selection) -> torch.Tensor:
    """The default attack of the sidebar (PGD-20, the model's ε, seed 0), run through the library."""
    from app.runs import AttackChoice

    model = selection.model
    choice = AttackChoice()  # untargeted: away from the clean prediction, as the app attacks
    return run_attack(model, selection.image, choice.attack, choice.params(model), seed=choice.seed)


def _assert_matches(points: dict[int, float], values: torch.Tensor) -> None:
    assert sorted(points) == list(range(values.shape[0]))
    np.testing.assert_allclose([points[j] for j in range(values.shape[0])], values.numpy(), rtol=1e-4, atol=1e-5)


# -- read-only checks on the default page --------------------------------------------------------


def test_page_renders_every_figure_and_the_numbers(page):
    assert not errors(page)
    titles = plotly_titles(page)
    layer = default_layer(_selection(page).model)
    assert f"{layer}: influence, clean vs adversarial" in titles
    assert "Group transition, clean → adversarial" in titles
    assert f"{layer}: the clean front and tail neurons" in titles
    assert f"Across the network: clean → adversarial ({layer} highlighted)" in titles
    assert f"Back to the clean ranking? ({layer} highlighted)" in titles
    assert any(t.startswith("Saliency toward the benign class") for t in titles)
    labels = [m.label for m in page.metric]
    assert labels == ["Front overlap", "Rank correlation ρ", "Front suppressed", "Tail lifted"]
    assert any(m.value.startswith(f"{layer}: ") and "front neurons lost influence" in m.value for m in page.markdown)
    assert any("is closest to the clean ranking" in m.value or "equally close" in m.value for m in page.markdown)


def test_layer_picker_lists_every_probe_layer_in_forward_order(page):
    model = _selection(page).model
    picker = page.selectbox(key="neurons.layer")
    names = [info.name for info in probe_layers(model)]
    assert picker.value == default_layer(model)
    assert len(picker.options) == len(names)
    for option, info in zip(picker.options, probe_layers(model)):
        assert option.startswith(f"#{info.index + 1} {info.name} · {info.kind} · {info.channels} ")


def test_scatter_transition_and_table_hold_the_analysis_numbers(page):
    selection = _selection(page)
    model = selection.model
    layer = default_layer(model)
    benign = int(model.predict(selection.image)[0][0])
    clean = neuron_influence(model, selection.image, layers=[layer], target=benign)[layer].values[0]
    xs, _, groups = _scatter_points(page)
    _assert_matches(xs, clean)
    # the front is the top DEFAULT_GROUP_FRACTION (at least one) of the clean influence
    from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION

    k = max(1, int(np.ceil(DEFAULT_GROUP_FRACTION * clean.shape[0] - 1e-9)))
    assert {j for j, g in groups.items() if g == "front"} == set(torch.argsort(clean, descending=True)[:k].tolist())
    transition = _spec(page, "neurons.transition")["data"][0]
    counts = np.array(_decode(transition["z"]))
    assert counts.sum() == clean.shape[0]
    assert [[int(t) for t in row] for row in transition["text"]] == counts.tolist()
    front_overlap = [m.value for m in page.metric if m.label == "Front overlap"][0]
    assert front_overlap == f"{counts[0, 0] / k:.0%}"
    [table] = page.dataframe
    assert list(table.value["layer"]) == [info.name for info in probe_layers(model)]


# -- widgets driven -----------------------------------------------------------------------------------


def test_switching_the_layer_changes_the_scatter_to_that_layers_influence():
    at = open_page(PAGE)
    selection = _selection(at)
    model = selection.model
    layer = "features.3"
    assert layer != default_layer(model)
    before_xs, _, _ = _scatter_points(at)
    at.selectbox(key="neurons.layer").set_value(layer)
    at.run()
    assert not at.exception and not errors(at)
    xs, ys, _ = _scatter_points(at)
    assert len(xs) == 32 != len(before_xs)
    benign = int(model.predict(selection.image)[0][0])
    report = _adversarial(selection)
    maps = neuron_influence(model, torch.cat([selection.image, report.adversarial]), layers=[layer], target=benign)
    _assert_matches(xs, maps[layer].values[0])
    _assert_matches(ys, maps[layer].values[1])
    assert f"{layer}: influence, clean vs adversarial" in plotly_titles(at)


def test_changing_the_after_condition_compares_with_the_restored_image():
    at = open_page(PAGE)
    selection = _selection(at)
    model = selection.model
    layer = default_layer(model)
    _, adversarial_ys, _ = _scatter_points(at)
    at.radio(key="neurons.after").set_value("pssr")
    at.run()
    assert not at.exception and not errors(at)
    titles = plotly_titles(at)
    assert f"{layer}: influence, clean vs PSSR" in titles and "Group transition, clean → PSSR" in titles
    spec = _spec(at, SCATTER)
    assert spec["layout"]["yaxis"]["title"]["text"].startswith("PSSR: influence toward class")
    xs, ys, _ = _scatter_points(at)
    benign = int(model.predict(selection.image)[0][0])
    restored = get_defense("pssr").restore(model, _adversarial(selection).adversarial).restored
    _assert_matches(ys, neuron_influence(model, restored, layers=[layer], target=benign)[layer].values[0])
    assert ys != adversarial_ys
    bars = _spec(at, "neurons.bars")["data"]
    assert bars[1]["name"] == "PSSR" and bars[1]["marker"]["color"] == "#CC79A7"  # PALETTE["restored"]


def test_front_size_and_tail_rule_drive_the_groups():
    at = open_page(PAGE)
    at.select_slider(key="group_fraction").set_value(0.2)
    at.radio(key="neurons.tail_rule").set_value("next")
    at.run()
    assert not at.exception and not errors(at)
    # features.7 of digits-cnn has 64 channels: 20% is 13 neurons
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Front suppressed"].endswith("of 13") and metrics["Tail lifted"].endswith("of 13")
    panels = [a["text"] for a in _spec(at, "neurons.bars")["layout"]["annotations"]]
    assert panels == ["Front: the 13 most influential", "Tail: ranks 14–26"]


def test_attribution_method_switch_and_the_adversarial_class():
    at = open_page(PAGE)
    selection = _selection(at)
    model = selection.model
    at.radio(key="neurons.attribution_method").set_value("grad_cam")
    at.run()
    assert not at.exception and not errors(at)
    benign = int(model.predict(selection.image)[0][0])
    spec = _spec(at, "neurons.attribution.benign")
    assert spec["layout"]["title"]["text"] == f"Grad-CAM toward the benign class {model.class_names[benign]}"
    pair = torch.cat([selection.image, _adversarial(selection).adversarial])
    expected = input_attribution(model, pair, "grad_cam", target=benign, layer=default_layer(model)).values
    for trace, values in zip(spec["data"], expected):
        np.testing.assert_allclose(np.array(_decode(trace["z"]), dtype=float), values.numpy(), rtol=1e-4, atol=1e-6)
    assert spec["layout"]["coloraxis"]["cmax"] == pytest.approx(float(expected.abs().max()), rel=1e-5)
    checkbox = at.checkbox(key="neurons.attribution_adversarial")
    if checkbox.disabled:  # the attack failed on this image: no adversarial class to explain
        pytest.skip("the default attack did not change the prediction")
    checkbox.check()
    at.run()
    assert not at.exception and not errors(at)
    titles = plotly_titles(at)
    assert sum(t.startswith("Grad-CAM toward the") for t in titles) == 2
    assert any(t.startswith("Grad-CAM toward the adversarial class") for t in titles)


def test_another_model_renders_with_its_own_layers():
    at = open_page(PAGE)
    at.selectbox(key="neurons.layer").set_value("features.3")  # a digits-cnn layer the ResNet lacks
    at.run()
    at.sidebar.selectbox(key="model_name").set_value("digits-resnet")
    at.run()
    assert not at.exception and not errors(at)
    model = _selection(at).model
    assert model.name == "digits-resnet"
    picker = at.selectbox(key="neurons.layer")
    layers = probe_layers(model)
    assert len(picker.options) == len(layers) > 40
    assert picker.value == default_layer(model)
    xs, _, _ = _scatter_points(at)
    assert len(xs) == next(info.channels for info in layers if info.name == picker.value)
    [table] = at.dataframe
    assert list(table.value["layer"]) == [info.name for info in layers]
    assert len(_spec(at, "neurons.layers")["data"][0]["x"]) == len(layers)
