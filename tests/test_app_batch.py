"""The Batch page under AppTest: nothing runs on load, a run shows the library's numbers, a rerun
comes from the cache, a bad setting becomes a message."""

from __future__ import annotations

import functools
import json

import pytest
from apptest import assert_healthy, errors, open_page, plotly_titles

from neuronviz.workflows import batch

PAGE = "app_pages/batch.py"


@pytest.fixture()
def counted(monkeypatch):
    """Counts the chunks the page really computes (cache hits do not call the function)."""
    calls = []
    original = batch.evaluate_chunk

    @functools.wraps(original)
    def counting(*args, **kwargs):
        calls.append(args[1].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(batch, "evaluate_chunk", counting)
    return calls


def _run(at, n: int | None = None):
    if n is not None:
        at.slider(key="batch.n").set_value(n)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    return at


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def test_page_renders_a_form_and_runs_nothing_on_load(counted):
    at = open_page(PAGE)
    assert [t.value for t in at.title] == ["Batch evaluation"]
    slider = at.slider(key="batch.n")
    assert (slider.value, slider.min, slider.max) == (50, 10, 360)
    assert {c.key for c in at.checkbox} >= {"batch.nip-oracle", "batch.nip-reactive"}
    assert any(b.label == "Run batch" for b in at.button)
    assert any(c.value.startswith("Images: the first 50 of the 360 digits test images") for c in at.caption)
    assert any("Run batch" in i.value for i in at.info)
    assert counted == [] and plotly_titles(at) == [] and len(at.dataframe) == 0 and errors(at) == []


def test_a_small_batch_shows_the_librarys_numbers(counted):
    at = _run(open_page(PAGE), n=10)
    assert errors(at) == [] and counted == [10]

    from neuronviz.core.models import load_model

    model = load_model("digits-cnn", device="cpu")
    images = batch.batch_images(model, 10)
    expected = batch.evaluate_batch(
        model, images.images, images.labels, "pgd", {}, seed=0, ids=images.ids
    )
    summary = expected.summary()
    metrics = _metrics(at)
    assert metrics["Images"] == "10"
    assert metrics["Attack success"] == _percent(summary.attack_success)
    assert metrics["Clean accuracy"] == _percent(summary.clean_accuracy)
    assert metrics["Adversarial accuracy"] == _percent(summary.adversarial_accuracy)
    for name, label in (("nip-guided", "NIP (guided)"), ("pssr", "PSSR")):
        assert metrics[f"DSR · {label}"] == _percent(summary.dsr[name])
        assert metrics[f"Accuracy after {label}"] == _percent(summary.accuracy_after[name])
        assert metrics[f"Clean accuracy after {label}"] == _percent(summary.clean_accuracy_after[name])

    [table] = at.dataframe
    frame = table.value
    assert len(frame) == 10
    assert frame.equals(expected.to_frame(model.class_names))
    assert plotly_titles(at) == ["Accuracy with and without defences", "Accuracy per true class"]
    accuracy = json.loads(at.get("plotly_chart")[0].proto.spec)
    restored = next(t for t in accuracy["data"] if t["name"] == "attacked, after the defence")
    assert restored["y"][1] == pytest.approx(100 * summary.accuracy_after["nip-guided"])
    assert any(b.proto.id.endswith("batch.export.table.csv") for b in at.get("download_button"))  # app/export_controls.py
    assert any("the first 10 of the 360 digits test images" in c.value for c in at.caption)


def test_a_rerun_does_not_recompute(counted):
    at = _run(open_page(PAGE), n=20)
    assert counted == [20]
    first = at.dataframe[0].value
    _run(at)  # the same settings again: every chunk comes from the cache
    at.run()  # and a plain rerun (any widget) computes nothing either
    assert counted == [20]
    assert at.dataframe[0].value.equals(first)
    at.segmented_control(key="batch.per_class_metric").set_value("attack_success").run()
    assert counted == [20] and "Attack success and defence success (DSR) per true class" in plotly_titles(at)
    _run(at, n=40)  # chunks of 32 images: 0..31 and 32..39, both new
    assert len(at.dataframe[0].value) == 40 and counted == [20, 32, 8]
    _run(at, n=50)  # images 0..31 are the same chunk as before: only 32..49 is computed
    assert len(at.dataframe[0].value) == 50 and counted == [20, 32, 8, 18]


def test_optional_defences_add_rows_and_metrics(counted):
    at = open_page(PAGE)
    at.checkbox(key="batch.nip-oracle").check()
    _run(at, n=10)
    assert errors(at) == []
    assert "DSR · NIP (oracle)" in _metrics(at)
    assert "nip-oracle" in at.dataframe[0].value.columns


def test_a_bad_setting_shows_an_error_and_keeps_the_page(counted):
    from app.runs import AttackChoice

    at = open_page(PAGE)
    # DeepFool has no targeted mode: a choice with a target cannot run (the library says so)
    at.session_state["analysis.attack_choice.1"] = AttackChoice.make("deepfool", {}, target=3)
    at.run()
    _run(at, n=10)
    messages = errors(at)
    assert any("no targeted mode" in m for m in messages), messages
    assert counted == [] and len(at.dataframe) == 0
    assert any(b.label == "Run batch" for b in at.button)  # the form is still there


def test_a_changed_attack_hides_the_stale_result(counted):
    at = _run(open_page(PAGE), n=10)
    assert len(at.dataframe) == 1
    from app.runs import AttackChoice

    at.session_state["analysis.attack_choice.1"] = AttackChoice.make("fgsm", {})
    at.run()
    assert len(at.dataframe) == 0 and any("changed since the last batch" in i.value for i in at.info)


def test_other_models_are_evaluated_on_the_samples_with_a_known_class(counted):
    from app.runs import AttackChoice

    at = open_page(PAGE)  # on this page: others would analyse resnet18 when it is chosen
    # no attack: the adversarial image is the clean one, so NIP stops at once (resnet18 is slow on a CPU)
    at.session_state["analysis.attack_choice.3"] = AttackChoice.make("none", {})
    at.selectbox(key="model_name").set_value("resnet18").run()  # random initialisation offline
    assert_healthy(at)
    assert len(at.slider) == 0
    count = at.number_input(key="batch.n")
    assert (count.value, count.min, count.max) == (1, 1, 1)
    assert any(c.value.startswith("Images: 1 sample photograph with a known class") for c in at.caption)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    assert errors(at) == [] and counted == [1]
    frame = at.dataframe[0].value
    assert frame["image"].tolist() == ["photo-chelsea"] and frame["label"].tolist() == ["tabby"]
    # this model has no trained regenerator: PSSR's numbers are labelled as the fallback's (issue 22.5)
    assert _metrics(at)["Attack success"] == "0.0%" and _metrics(at)["DSR · PSSR (inpainting fallback)"] == "n/a"
