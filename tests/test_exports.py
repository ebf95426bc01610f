"""app/export_controls.py: the numbers behind each chart (CSV, JSON) round-trip exactly, carry the right
provenance (model and image content hashes, attack, ε, target, seed), and equal the library's
results; a chart renders to SVG with its record inside."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from app import export_controls as exports
from app import state
from neuronviz.data.images import list_samples, load_sample
from neuronviz.methods.influence import influence_shift
from neuronviz.workflows import export
from neuronviz.workflows.analysis import AttackChoice, compute_analysis


@pytest.fixture(scope="module")
def analysed(digits_cnn):
    """One FGSM analysis of a sample digit (the cheapest attack: the tests read, never recompute)."""
    sample = list_samples(digits_cnn)[0]
    image = load_sample(sample.id, digits_cnn)
    choice = AttackChoice.make("fgsm", {"eps": 0.1}, target=None, seed=3)
    result = compute_analysis(digits_cnn, image, choice)
    selection = state.Selection(
        model=digits_cnn,
        model_request=state.ModelRequest(name=digits_cnn.name),
        image=image,
        image_request=state.ImageRequest.for_sample(sample),
        image_info=None,
        true_class=sample.true_class,
    )
    return selection, result


def test_csv_and_json_round_trip_exactly_with_their_record():
    frame = pd.DataFrame(
        {
            "layer": ["#1 conv, first", "fc"],  # a '#' and a comma inside values must survive
            "value": [1 / 3, float("nan")],
            "count": [3, 4],
            "flag": [True, False],
        }
    )
    record = {"model": {"name": "m", "architecture": "a", "content_hash": "abc"}, "attacks": [{"attack": "pgd", "params": {"eps": 0.1}}]}
    table, read = exports.read_csv(exports.csv_text(frame, "t", record))
    assert read == record
    assert table["layer"].tolist() == frame["layer"].tolist()
    assert table["value"][0] == 1 / 3 and math.isnan(table["value"][1])  # floats exactly, NaN kept
    assert table["count"].tolist() == [3, 4] and table["flag"].tolist() == [True, False]
    # pandas alone reads it with the skiprows the first line names
    text = exports.csv_text(frame, "t", record)
    skip = int(text.split("skiprows=")[1].split(")")[0])
    assert pd.read_csv(pd.io.common.StringIO(text), skiprows=skip)["count"].tolist() == [3, 4]

    document = json.loads(exports.json_text(frame, "t", record))
    assert document["provenance"] == record and document["name"] == "t"
    assert document["data"][0]["value"] == 1 / 3 and document["data"][1]["value"] is None
    table, read = exports.read_json(exports.json_text(frame, "t", record))
    assert read == record and table["layer"].tolist() == frame["layer"].tolist()


def test_mappings_become_tables():
    assert exports.as_frame({"a": [1, 2], "b": [3, 4]}).to_dict(orient="list") == {"a": [1, 2], "b": [3, 4]}
    scalars = exports.as_frame({"l2": 0.5, "linf": 0.1})
    assert scalars.to_dict(orient="list") == {"quantity": ["l2", "linf"], "value": [0.5, 0.1]}
    assert exports.as_frame([{"x": 1}, {"x": 2}])["x"].tolist() == [1, 2]


def test_analysis_record_names_the_model_image_and_attack(analysed, digits_cnn):
    selection, result = analysed
    record = exports.analysis_record(selection, result)
    assert record["model"]["content_hash"] == digits_cnn.content_hash
    assert record["image"]["content_hash"] == exports.image_entry(result.clean, "x")["content_hash"]
    assert record["image"]["name"] == selection.image_request.sample_id
    [attack] = record["attacks"]
    assert attack["attack"] == "fgsm" and attack["params"]["eps"] == pytest.approx(0.1) and attack["seed"] == 3
    assert {d["defence"] for d in record["defences"]} == set(result.restorations)
    # the model-and-image record names the same image hash
    assert exports.image_record(selection)["image"]["content_hash"] == record["image"]["content_hash"]
    lines = exports.header_lines("x", record)
    assert any(line.startswith("model: digits-cnn") and digits_cnn.content_hash in line for line in lines)
    assert any(line.startswith("attack: fgsm") and '"eps": 0.1' in line and "seed=3" in line for line in lines)


def test_influence_rows_are_the_layer_s_neurons(analysed):
    _, result = analysed
    layer = result.default_layer
    before, after = result.influence["clean"][layer], result.influence["adversarial"][layer]
    shift = influence_shift(before, after, front=0.2, tail=0.2)
    rows = exports.influence_rows(before, after, shift, "adversarial")
    assert len(rows) == before.neurons
    assert rows["influence_clean"].tolist() == before.values[0].double().tolist()
    assert rows["influence_adversarial"].tolist() == after.values[0].double().tolist()
    assert rows["influence_change"].tolist() == pytest.approx((after.values[0] - before.values[0]).double().tolist())
    front = set(shift.groups_before.front[0].tolist())
    assert set(rows.loc[rows["group_clean"] == "front", "neuron"]) == front
    assert rows.loc[rows["rank_clean"] == 1, "neuron"].item() == int(before.values[0].argmax())
    table, _ = exports.read_csv(exports.csv_text(rows, "influence", {}))
    assert table["influence_clean"].tolist() == rows["influence_clean"].tolist()  # exact round trip
    counts = exports.transition_rows(shift, "adversarial")
    assert sum(sum(v for k, v in row.items() if k != "group_clean") for row in counts) == before.neurons


def test_top_rows_trace_and_norms(analysed, digits_cnn):
    _, result = analysed
    probs = result.probabilities("adversarial")
    rows = exports.top_rows(probs, digits_cnn.class_names, condition="adversarial", true_class=3)
    assert [r["class"] for r in rows] == torch.argsort(probs, descending=True)[:5].tolist()
    assert rows[0]["probability"] == pytest.approx(float(probs.max()))
    assert sum(r["true_class"] for r in rows) == (3 in [r["class"] for r in rows])
    norms = exports.norm_rows(result)
    assert norms["linf"] == pytest.approx(float(result.report.linf[0])) and norms["pixels"] == 28 * 28
    trace = result.report.trace
    if trace is not None:
        steps = exports.trace_rows(trace, digits_cnn.class_names)
        assert [s["loss"] for s in steps] == pytest.approx(trace.loss[:, 0].tolist())


def test_attribution_rows_cover_every_pixel():
    values = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    rows = exports.attribution_rows(values)
    assert len(rows) == 24 and set(rows["image"]) == {"clean", "adversarial"}
    pick = rows[(rows["image"] == "adversarial") & (rows["y"] == 2) & (rows["x"] == 1)]
    assert pick["attribution"].item() == float(values[1, 2, 1])


def test_set_record_of_a_batch_names_model_attack_eps_target_and_seed(digits_cnn):
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    record = exports.set_record(
        digits_cnn, images, labels, "4 random images", "pgd", {"eps": 0.05, "steps": 10}, 7, 11,
        defences=[{"defence": "pssr", "params": {"alpha": 1.0}}], ids=["a", "b", "c", "d"],
    )
    text = exports.csv_text(pd.DataFrame({"image": ["a"]}), "batch", record)
    header = text.split("\nimage\n")[0]
    assert digits_cnn.content_hash in header and "attack: pgd" in header and '"eps": 0.05' in header
    assert "target=7" in header and "seed=11" in header and "pssr" in header
    assert record["dataset"]["images"] == 4 and len(record["dataset"]["digest"]) == 64


@pytest.mark.skipif(not export.available(), reason="no chromium here")
def test_a_chart_renders_to_svg_with_its_record(analysed, digits_cnn):
    import xml.etree.ElementTree as ElementTree

    from neuronviz.figures import attack as attack_figures

    selection, result = analysed
    fig = attack_figures.panel_bars(result.probabilities("clean"), digits_cnn.class_names, title="Top-5 export")
    record = exports.analysis_record(selection, result)
    width, height = exports.figure_size_mm(fig, exports.NARROW_MM)
    data = exports.chart_renderer(fig, "svg", width, height, 300, record)()  # what the SVG button's click runs
    ElementTree.fromstring(data)
    assert b"Top-5 export" in data
    assert export.read_provenance(data, "svg")["model"]["content_hash"] == digits_cnn.content_hash
