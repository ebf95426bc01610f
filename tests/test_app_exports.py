"""Every page's "Data & export" controls under AppTest: they are there beside each chart and table,
and their CSV and JSON (built only when clicked: the test runs the deferred download as the
server would) hold the numbers the page shows, with the provenance of the session's model and
image. One app session visits the pages in turn, so the analysis is computed once."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from apptest import MAIN, assert_healthy
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest, app_test

from app import export_controls as exports
from neuronviz.workflows import export

FORMATS = ("csv", "json", "pdf", "svg", "png", "png600")


@pytest.fixture(scope="module")
def session():
    """One AppTest (small evaluation sets) and the media file managers of its runs."""
    managers: list[MediaFileManager] = []

    class Recording(MediaFileManager):
        def __init__(self, storage) -> None:
            super().__init__(storage)
            managers.append(self)

    patch = pytest.MonkeyPatch()
    patch.setattr(app_test, "MediaFileManager", Recording)
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["filters.images_kept"] = 12
    at.session_state["sensitivity.images_kept"] = 10
    at.run()
    assert_healthy(at)
    yield at, managers
    patch.undo()


def _open(session, page: str) -> AppTest:
    at, _ = session
    at.switch_page(page)
    at.run()
    assert_healthy(at)
    return at


def _buttons(at: AppTest, key: str) -> dict[str, object]:
    """The download buttons of one export control, by format."""
    found = {}
    for button in at.get("download_button"):
        for fmt in FORMATS:
            if button.proto.id.endswith(f"{key}.{fmt}"):
                found[fmt] = button
    return found


def _download(session, at: AppTest, key: str, fmt: str) -> str:
    """What clicking the control's ``fmt`` button downloads (its deferred builder, run here)."""
    _, managers = session
    button = _buttons(at, key)[fmt]
    file_id = button.proto.deferred_file_id
    assert file_id, f"{key}.{fmt} is not built lazily"
    url = managers[-1].execute_deferred(file_id)
    stored = managers[-1].read_file(url.rsplit("/", 1)[-1].split(".")[0])
    assert stored is not None
    return stored.content.decode()


def _check_controls(at: AppTest, key: str, chart: bool = True) -> None:
    found = _buttons(at, key)
    assert {"csv", "json"} <= set(found), (key, sorted(found))
    if chart and export.available():
        assert {"pdf", "svg", "png", "png600"} <= set(found), (key, sorted(found))
    if not chart:
        assert "pdf" not in found


def _provenance_of_session(at: AppTest, record: dict) -> None:
    selection = at.session_state["state.selection"]
    assert record["model"]["content_hash"] == selection.model.content_hash
    assert record["image"]["content_hash"] == exports.image_entry(selection.image, "x")["content_hash"]


def _decode(value):
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def _spec(at: AppTest, key: str) -> dict:
    [chart] = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key)]
    return json.loads(chart.proto.spec)


def test_attack_page(session):
    at = _open(session, "app_pages/attack.py")
    for key in ("clean", "adversarial", "nip-guided", "pssr", "sweep"):
        _check_controls(at, f"attack.export.bars.{key}")
    for key in ("perturbation", "trajectory", "sweep"):
        _check_controls(at, f"attack.export.{key}")
    top, record = exports.read_csv(_download(session, at, "attack.export.bars.adversarial", "csv"))
    _provenance_of_session(at, record)
    assert record["attacks"][0]["attack"] == "pgd"
    bars = _spec(at, "attack.bars.adversarial")["data"][0]
    shown = sorted(_decode(bars["x"]).tolist(), reverse=True)  # the bars' lengths, as drawn
    assert top["probability"].tolist() == pytest.approx(shown, abs=1e-6) or top["probability"].tolist() == pytest.approx(
        [v / 100 for v in shown], abs=1e-6
    )
    sweep, record = exports.read_json(_download(session, at, "attack.export.sweep", "json"))
    assert record["eps_sweep"]["values"] == sweep["eps"].tolist()
    assert sweep["success"].dtype == bool and len(sweep) >= 9


def test_neurons_page(session):
    at = _open(session, "app_pages/neurons.py")
    for key in ("scatter", "transition", "bars", "layers", "restoration", "attribution.benign"):
        _check_controls(at, f"neurons.export.{key}")
    _check_controls(at, "neurons.export.table", chart=False)
    neurons, record = exports.read_csv(_download(session, at, "neurons.export.scatter", "csv"))
    _provenance_of_session(at, record)
    assert record["extra"]["view"]["layer"] == at.session_state["neurons.layer"]
    xs, ys = {}, {}
    for trace in _spec(at, "neurons.scatter")["data"][1:]:  # the page's points: neuron → (clean, after)
        for row, x, y in zip(trace["customdata"], _decode(trace["x"]), _decode(trace["y"])):
            xs[row[0]], ys[row[0]] = float(x), float(y)
    assert len(xs) == len(neurons)
    assert [xs[n] for n in neurons["neuron"]] == pytest.approx(neurons["influence_clean"].tolist(), rel=1e-6)
    assert [ys[n] for n in neurons["neuron"]] == pytest.approx(neurons["influence_adversarial"].tolist(), rel=1e-6)
    assert (neurons["influence_change"] == neurons["influence_adversarial"] - neurons["influence_clean"]).all()
    # the per-layer table: the same numbers as the page's dataframe
    table, _ = exports.read_json(_download(session, at, "neurons.export.table", "json"))
    [shown] = [d for d in at.dataframe if "kendall" in d.value.columns]  # the per-layer table
    assert table["layer"].tolist() == shown.value["layer"].tolist()
    assert table["spearman"].tolist() == pytest.approx(shown.value["spearman"].tolist(), nan_ok=True)


def test_defences_and_model_pages(session):
    at = _open(session, "app_pages/defences.py")
    _check_controls(at, "defences.export.numbers", chart=False)
    _check_controls(at, "defences.export.nip.steps")
    for name in ("nip-guided", "nip-oracle", "nip-reactive", "pssr"):
        _check_controls(at, f"defences.export.bars.{name}")
    metrics, record = exports.read_csv(_download(session, at, "defences.export.numbers", "csv"))
    _provenance_of_session(at, record)
    [shown] = [d for d in at.dataframe if "L2 to clean" in d.value.columns]
    assert metrics["image"].tolist() == shown.value["image"].tolist()
    assert metrics["L2 to clean"].tolist() == pytest.approx(shown.value["L2 to clean"].tolist(), nan_ok=True)

    at = _open(session, "app_pages/model_image.py")
    _check_controls(at, "model_image.export.bars")
    top, record = exports.read_csv(_download(session, at, "model_image.export.bars", "csv"))
    _provenance_of_session(at, record)
    assert record["attacks"] == [] and len(top) == 5 and top["probability"].is_monotonic_decreasing


def test_filters_and_sensitivity_pages(session):
    at = _open(session, "app_pages/filters.py")
    for key in ("grid", "dropout", "curve"):
        _check_controls(at, f"filters.export.{key}")
    dropout, record = exports.read_csv(_download(session, at, "filters.export.dropout", "csv"))
    assert record["model"]["content_hash"] == at.session_state["state.selection"].model.content_hash
    assert record["dataset"]["images"] == 12 and record["attacks"][0]["attack"] == "fgsm"
    [shown] = [d for d in at.dataframe if "targeting" in d.value.columns]  # the page's numbers per filter
    assert dropout["filter"].tolist() == shown.value["filter"].tolist()
    assert dropout["score"].tolist() == pytest.approx(shown.value["score"].tolist(), rel=1e-6)
    assert dropout["label"].tolist() == shown.value["label"].tolist()
    at = _open(session, "app_pages/sensitivity.py")
    for key in ("layers", "channels"):
        _check_controls(at, f"sensitivity.export.{key}")
    profile, record = exports.read_csv(_download(session, at, "sensitivity.export.layers", "csv"))
    _provenance_of_session(at, record)
    assert (profile["mean_sensitivity"] >= 0).all() and len(set(profile["profile"])) == 2  # this image, the set
    layers = _spec(at, "sensitivity.layers")["data"][0]  # the first profile's mean σ per layer, as drawn
    first = profile[profile["profile"] == profile["profile"].iloc[0]]
    assert _decode(layers["y"]).tolist() == pytest.approx(first["mean_sensitivity"].tolist(), rel=1e-6)


def test_batch_page_records_model_attack_eps_target_and_seed(session):
    at = _open(session, "app_pages/batch.py")
    at.slider(key="batch.n").set_value(10)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    _check_controls(at, "batch.export.table", chart=False)
    _check_controls(at, "batch.export.accuracy")
    _check_controls(at, "batch.export.per_class")
    text = _download(session, at, "batch.export.table", "csv")
    table, record = exports.read_csv(text)
    [shown] = at.dataframe
    assert table["image"].tolist() == shown.value["image"].tolist()
    assert table["l2"].tolist() == pytest.approx(shown.value["l2"].tolist())
    header = [line for line in text.splitlines() if line.startswith("# ")]
    selection = at.session_state["state.selection"]
    assert any(line.startswith("# model: digits-cnn") and selection.model.content_hash in line for line in header)
    [attack] = record["attacks"]
    assert attack["attack"] == "pgd" and "eps" in attack["params"] and attack["target"] is None and attack["seed"] == 0
    assert any(f'"eps": {attack["params"]["eps"]}' in line and "target=None" in line and "seed=0" in line for line in header)
    assert record["dataset"]["images"] == 10
