"""The First-layer filters and Sensitivity pages under AppTest: figures hold the library's values.

Small evaluation sets keep the CPU cost low: the pages read the wanted image count from plain
session state (``filters.images_kept``, ``sensitivity.images_kept``), set here before the first run.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from apptest import MAIN, assert_healthy, errors, plotly_titles
from streamlit.testing.v1 import AppTest

from neuronviz.infra.errors import InputError

FILTERS, SENSITIVITY = "app_pages/filters.py", "app_pages/sensitivity.py"
FILTER_IMAGES, SENSITIVITY_IMAGES = 16, 8


def _open(page: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["filters.images_kept"] = FILTER_IMAGES
    at.session_state["sensitivity.images_kept"] = SENSITIVITY_IMAGES
    at.switch_page(page)
    at.run()
    assert_healthy(at)
    return at


def _decoded(value):
    """Plotly 7 sends numeric arrays as ``{"dtype", "bdata"[, "shape"]}`` (base64): decode them."""
    if isinstance(value, dict):
        if "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
            shape = value.get("shape")
            return array.reshape([int(n) for n in str(shape).split(",")]) if shape else array
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def _figure(at: AppTest, title_start: str) -> go.Figure:
    """The figure as the page sent it, with its arrays decoded."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if ((spec.get("layout") or {}).get("title") or {}).get("text", "").startswith(title_start):
            return go.Figure(_decoded(spec), skip_invalid=True)
    raise AssertionError(f"no figure titled {title_start!r}; figures: {plotly_titles(at)}")


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _library_report(name: str = "digits-cnn"):
    from neuronviz.core.models import load_model
    from neuronviz.data.labelled import evaluation_set
    from neuronviz.methods.fragility import first_layer_fragility

    model = load_model(name, device="cpu")
    data = evaluation_set(model, FILTER_IMAGES)
    return model, data, first_layer_fragility(model, data.images, data.labels, attack="fgsm", eps=0.1)


# -- first-layer filters ------------------------------------------------------------------------------------


def test_filters_page_shows_the_reports_fragile_filters_and_numbers():
    at = _open(FILTERS)
    assert [t.value for t in at.title] == ["First-layer filters"]
    assert not errors(at)
    titles = plotly_titles(at)
    assert titles[0] == "First-layer filters of features.0"
    assert titles[1].startswith("Nodal dropout and targeting (FGSM ε=0.1, 16 images)")
    assert titles[2].startswith("Compress/amplify over β")
    _, _, report = _library_report()
    grid = _figure(at, "First-layer filters")
    outlined = {s.name for s in grid.layout.shapes if s.name.startswith("filter ")}
    expected = {f"filter {i}: fragile" for i in report.indices("fragile")} | {f"filter {i}: robust" for i in report.indices("robust")}
    assert outlined == expected
    dropout = _figure(at, "Nodal dropout")
    bars = [t for t in dropout.data if t.showlegend is False]
    assert list(bars[1].y) == pytest.approx((100 * report.delta_adv).tolist(), abs=1e-4)
    assert list(bars[2].y) == pytest.approx((100 * report.targeting).tolist(), abs=1e-4)
    metrics = _metrics(at)
    assert metrics["Spearman ρ (dropout vs targeting)"] == f"{report.correlation:.3f}"
    assert metrics["Fragile / robust filters"] == f"{len(report.fragile)} / {len(report.robust)}"
    assert metrics["Accuracy under FGSM"] == f"{100 * report.adv_accuracy:.1f}%"
    captions = " ".join(c.value for c in at.caption)
    assert "the first 16 of the 360 digits test images" in captions and "as in the paper" in captions
    assert any("not reproduced" in i.value for i in at.info)


def test_beta_slider_changes_the_shown_numbers():
    at = _open(FILTERS)
    before = _metrics(at)
    assert "Adversarial, white-box (β = 0.2)" in before
    at.slider(key="filters.beta").set_value(0.9).run()
    assert_healthy(at)
    after = _metrics(at)
    assert "Adversarial, white-box (β = 0.9)" in after and "Adversarial, white-box (β = 0.2)" not in after
    from neuronviz.methods.fragility import evaluate_rescaled

    model, data, report = _library_report()
    expected = evaluate_rescaled(model, data.images, data.labels, report, beta=0.9, seed=0)
    assert after["Clean accuracy (β = 0.9)"] == f"{100 * expected.clean_after:.1f}%"
    assert after["Adversarial, white-box (β = 0.9)"] == f"{100 * expected.adv_after:.1f}%"
    assert after["Adversarial, transfer (β = 0.9)"] == f"{100 * expected.adv_transfer_after:.1f}%"
    assert after["Clean accuracy (β = 0.9)"] != before["Clean accuracy (β = 0.2)"] or after[
        "Adversarial, white-box (β = 0.9)"
    ] != before["Adversarial, white-box (β = 0.2)"]
    curve = _figure(at, "Compress/amplify")
    assert list(curve.data[0].x) == [0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 0.9, 1.0]


def test_filters_page_with_the_sidebars_attack_and_another_model():
    at = _open(FILTERS)
    at.radio(key="filters.attack").set_value("sidebar").run()
    assert_healthy(at)
    assert plotly_titles(at)[1].startswith("Nodal dropout and targeting (PGD ε=0.1, 16 images)")
    at.sidebar.selectbox(key="model_name").set_value("digits-resnet").run()
    assert_healthy(at)
    assert not errors(at)
    titles = plotly_titles(at)
    assert titles[0] == "First-layer filters of conv1" and len(titles) == 3


def test_filters_page_shows_a_failed_dropout_as_a_message(monkeypatch):
    import neuronviz.methods.fragility

    def broken(*args, **kwargs):
        raise InputError("the sweep broke")

    monkeypatch.setattr(neuronviz.methods.fragility, "first_layer_fragility", broken)
    at = _open(FILTERS)
    assert "The sweep broke" in errors(at)
    assert plotly_titles(at) == ["First-layer filters of features.0"]  # the grid still shows, unlabelled
    assert any("No dropout result" in i.value for i in at.info)


# -- sensitivity -----------------------------------------------------------------------------------------------


def test_sensitivity_page_shows_every_figure_in_forward_order():
    at = _open(SENSITIVITY)
    assert [t.value for t in at.title] == ["Neuron sensitivity"]
    assert not errors(at)
    titles = plotly_titles(at)
    assert titles == [
        "Sensitivity per layer of digits-cnn",
        "Sensitivity of the channels of features.7 (64 channels; 1 pair)",
        "Most sensitive channels of features.7: clean vs adversarial",
        "Sensitivity per layer: digits-cnn, digits-cnn-robust, digits-cnn-sns",
    ]
    from neuronviz.core.models import load_model
    from neuronviz.methods.influence import probe_layers

    forward = [info.name for info in probe_layers(load_model("digits-cnn"))]
    per_layer = _figure(at, "Sensitivity per layer of")
    assert list(per_layer.layout.xaxis.ticktext) == forward
    assert [t.name for t in per_layer.data if t.showlegend] == ["this image (1 pair)", f"evaluation set ({SENSITIVITY_IMAGES} pairs)"]
    assert at.selectbox(key="sensitivity.layer").options == [f"{i + 1}. {name}" for i, name in enumerate(forward)]
    [table] = at.dataframe
    assert list(table.value["model"]) == ["digits-cnn", "digits-cnn-robust", "digits-cnn-sns"]
    assert _metrics(at)["Evaluation pairs"] == str(SENSITIVITY_IMAGES)
    # the comparison, assembled from one cached call per model, equals one library call over all three
    from neuronviz.data.labelled import evaluation_set
    from neuronviz.figures.sensitivity import accuracy_rows
    from neuronviz.methods.sensitivity import compare_models

    models = {name: load_model(name) for name in ("digits-cnn", "digits-cnn-robust", "digits-cnn-sns")}
    data = evaluation_set(models["digits-cnn"], SENSITIVITY_IMAGES)
    from app import runs as analysis

    params = analysis.default_choice().params(models["digits-cnn"])  # the start-up attack (PGD at its schema defaults)
    expected = compare_models(models, data.images, data.labels, attack="pgd", params=params, seed=0)
    assert table.value.to_dict("records") == accuracy_rows(expected)
    comparison = _figure(at, "Sensitivity per layer: ")
    assert list(comparison.data[2].y) == pytest.approx([m.mean for m in expected.profiles["digits-cnn-robust"].values()], rel=1e-5)
    own_set = [t for t in per_layer.data if t.name.startswith("evaluation set")][0]
    assert list(own_set.y) == pytest.approx([m.mean for m in expected.profiles["digits-cnn"].values()], rel=1e-5)


def test_layer_picker_and_source_switch():
    at = _open(SENSITIVITY)
    at.selectbox(key="sensitivity.layer").set_value("features.3").run()
    assert_healthy(at)
    titles = plotly_titles(at)
    assert titles[1] == "Sensitivity of the channels of features.3 (32 channels; 1 pair)"
    assert titles[2] == "Most sensitive channels of features.3: clean vs adversarial"
    at.segmented_control(key="sensitivity.source").set_value("set").run()
    assert_healthy(at)
    assert plotly_titles(at)[1] == f"Sensitivity of the channels of features.3 (32 channels; {SENSITIVITY_IMAGES} pairs)"
    at.selectbox(key="sensitivity.layer").set_value("classifier.0").run()  # a linear layer: numbers, no maps
    assert_healthy(at)
    assert not any(t.startswith("Most sensitive channels") for t in plotly_titles(at))
    assert len(at.dataframe) == 2


def test_sensitivity_page_on_another_model_keeps_the_comparison():
    at = _open(SENSITIVITY)
    at.sidebar.selectbox(key="model_name").set_value("digits-resnet").run()
    assert_healthy(at)
    assert not errors(at)
    titles = plotly_titles(at)
    assert titles[0] == "Sensitivity per layer of digits-resnet"
    assert titles[-1] == "Sensitivity per layer: digits-cnn, digits-cnn-robust, digits-cnn-sns"


def test_sensitivity_page_shows_a_failed_comparison_as_a_message(monkeypatch):
    import neuronviz.methods.sensitivity

    def broken(*args, **kwargs):
        raise InputError("the comparison broke")

    monkeypatch.setattr(neuronviz.methods.sensitivity, "compare_models", broken)
    at = _open(SENSITIVITY)
    assert errors(at) == ["The comparison broke", "The comparison broke"]  # the set and the model comparison
    titles = plotly_titles(at)
    assert titles[0] == "Sensitivity per layer of digits-cnn"  # the image pair's sensitivity still shows
    assert "Most sensitive channels of features.7: clean vs adversarial" in titles
