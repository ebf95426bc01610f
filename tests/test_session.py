"""neuronviz.workflows.session_record: SessionRecord round-trips (query, JSON), invalid values → messages and
defaults (never an exception), checks against the loaded model, the Figure page's spec."""

from __future__ import annotations

import json

import pytest

from neuronviz.figures import compose
from neuronviz.infra.errors import InputError
from neuronviz.workflows import analysis
from neuronviz.workflows import session_record as session
from neuronviz.workflows.session_record import Control, SessionRecord

CONTROLS = {
    **session.figure_controls(),
    "neurons.layer": Control("layer"),
    "neurons.tail_rule": Control("choice", "bottom", options=("bottom", "next")),
}

FULL = SessionRecord(
    model="resnet18", weights="random", device="cuda", image="photo-cat", attack="fgsm", params={"eps": 0.05},
    target=3, seed=7, page={"neurons.layer": "layer3", "neurons.tail_rule": "next", "figure.charts": ["top5", "eps-sweep"],
                            "figure.font": 7.5, "figure.letters": False, "group_fraction": 0.3},
)


def test_the_defaults_are_the_dashboard_defaults():
    record = SessionRecord()
    assert (record.model, record.attack, record.seed, record.target) == ("digits-cnn", analysis.DEFAULT_ATTACK, 0, None)
    assert record.to_query(CONTROLS) == {}  # a fresh session's link has no query at all
    page_defaults = SessionRecord(page={k: v for k, v in session.FIGURE_DEFAULTS.items()})
    assert page_defaults.to_query(CONTROLS) == {}  # controls at their defaults are left out too


def test_query_round_trip():
    query = FULL.to_query(CONTROLS)
    assert query["model"] == "resnet18" and query["eps"] == "0.05" and query["figure.charts"] == "top5,eps-sweep"
    assert all(isinstance(v, str) for v in query.values())
    record, messages = session.from_query(query, CONTROLS)
    assert messages == []
    assert record == FULL


def test_query_round_trip_of_uploads_by_hash():
    digest, image_digest = "ab" * 32, "cd" * 32
    upload = SessionRecord(model="net.pt", weights="checkpoint", checkpoint_sha256=digest, options={"architecture": "digits-cnn"},
                           image="seven.png", image_sha256=image_digest, true_class=7)
    query = upload.to_query(CONTROLS)
    assert query == {"model": f"sha256:{digest}", "arch": "digits-cnn", "image": f"sha256:{image_digest}", "true_class": "7"}
    record, messages = session.from_query(query, CONTROLS)
    assert messages == []
    assert (record.weights, record.checkpoint_sha256, dict(record.options), record.image_sha256, record.true_class) == (
        "checkpoint", digest, {"architecture": "digits-cnn"}, image_digest, 7)
    onnx = SessionRecord(model="net.onnx", weights="checkpoint", checkpoint_sha256=digest, upload_source="onnx",
                         options={"mean": "0.5", "classes": "10"})
    query = onnx.to_query(CONTROLS)
    assert query == {"model": f"sha256:{digest}", "source": "onnx", "opt.classes": "10", "opt.mean": "0.5"}
    record, messages = session.from_query(query, CONTROLS)
    assert messages == [] and record.upload_source == "onnx" and dict(record.options) == {"mean": "0.5", "classes": "10"}
    again, messages = session.from_json(onnx.to_json(), CONTROLS)
    assert messages == [] and again == onnx


def test_json_round_trip_keeps_names_and_hashes():
    record = FULL.replace(model_hash="1" * 64, image_hash="2" * 40)
    text = record.to_json(extra={"resolved_params": {"eps": 0.05}})
    assert json.loads(text)["format"] == session.FORMAT
    again, messages = session.from_json(text, CONTROLS)
    assert messages == [] and again == record
    upload = SessionRecord(model="net.pt", weights="checkpoint", checkpoint_sha256="ab" * 32, image="seven.png",
                           image_sha256="cd" * 32)
    again, messages = session.from_json(upload.to_json(), CONTROLS)
    assert messages == [] and (again.model, again.image) == ("net.pt", "seven.png")


def test_invalid_values_give_messages_and_defaults():
    query = {"attack": "nope", "eps": "abc", "seed": "-1", "device": "tpu", "figure.font": "99", "bogus": "1",
             "model": "sha256:xyz", "target": "cat", "neurons.tail_rule": "sideways", "figure.charts": "top5,pie",
             "weights": "heavy"}
    record, messages = session.from_query(query, CONTROLS)
    assert record.attack == analysis.DEFAULT_ATTACK and record.params == {} and record.seed == 0
    assert record.device == "cpu" and record.target is None and record.model == "digits-cnn" and record.weights == "default"
    assert record.page == {}
    text = "\n".join(messages)
    for key in ("attack", "eps", "seed", "device", "figure.font", "bogus", "model", "target", "neurons.tail_rule", "figure.charts", "weights"):
        assert f"{key}=" in text or f"'{key}'" in text, key
    assert len(messages) == 11  # one each (eps is a parameter of pgd, the attack used instead)
    assert "using the default attack pgd instead" in text and "using seed 0 instead" in text


def test_a_bad_attack_parameter_keeps_the_rest():
    record, messages = session.from_query({"attack": "fgsm", "eps": "2", "seed": "4"}, CONTROLS)
    assert record.attack == "fgsm" and record.seed == 4 and record.params == {}
    [message] = messages
    assert "eps='2'" in message and "fgsm's eps" in message and "the attack's default" in message


@pytest.mark.parametrize("value", ["", " ", "nan", "inf", "-inf", "1e999", "0x10", "%00", "☃", "[]", "{}", "1/0", "a" * 5000])
def test_no_value_raises(value):
    keys = ["model", "weights", "arch", "device", "image", "true_class", "attack", "target", "seed", "eps", "steps",
            "figure.panels", "figure.font", "figure.letters", "figure.layer", "neurons.layer", "x", "a.b"]
    record, messages = session.from_query({key: value for key in keys}, CONTROLS)
    assert isinstance(record, SessionRecord)
    record, messages = session.from_query({key: [value, value] for key in keys}, CONTROLS)
    assert isinstance(record, SessionRecord)


def test_eps_as_k_over_255():
    record, messages = session.from_query({"attack": "fgsm", "eps": "8/255"}, CONTROLS)
    assert messages == [] and record.params["eps"] == pytest.approx(8 / 255)


def test_check_for_model(digits_cnn):
    record = SessionRecord(attack="fgsm", target=12, image="photo-cat", page={"neurons.layer": "nope", "neurons.tail_rule": "next"})
    ids = ["digit-test-1", analysis.DEFAULT_SAMPLE_ID]
    checked, messages = session.check_for_model(record, digits_cnn, ids, ["features.0"], CONTROLS)
    assert checked.target is None and checked.image == analysis.DEFAULT_SAMPLE_ID
    assert checked.page == {"neurons.tail_rule": "next"}
    text = "\n".join(messages)
    assert "target=12" in text and "photo-cat" in text and "neurons.layer='nope'" in text
    targeted = SessionRecord(attack="pgd", target=3)
    checked, messages = session.check_for_model(targeted, digits_cnn, ids, None, CONTROLS)
    assert checked.target == 3 and messages == []


def test_not_a_session_file():
    for text in ("not json", "[1, 2]", json.dumps({"format": "something-else"}), "x" * (session.MAX_SESSION_BYTES + 1)):
        with pytest.raises(InputError, match="session file"):
            session.from_json(text, CONTROLS)


def test_figure_spec_from_controls():
    spec = session.figure_spec({})
    assert spec.panels == compose.PANELS and spec.charts == compose.DEFAULT_CHARTS and spec.width_mm == 178.0
    spec = session.figure_spec({"figure.width_preset": "custom", "figure.unit": "in", "figure.width_value.in": 3.5,
                                "figure.auto_height": False, "figure.height_value.in": 2.0, "figure.charts": ["filters"],
                                "figure.layer": "features.3", "group_fraction": 0.2})
    assert spec.width_mm == pytest.approx(88.9) and spec.height_mm == pytest.approx(50.8)
    assert spec.charts == ("filters",) and spec.layer == "features.3" and spec.group_size == 0.2
