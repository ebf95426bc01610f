"""The Learn page under AppTest: the guided tour's numbers come from the library; the methods list the papers."""

from __future__ import annotations

import pytest
import torch
from apptest import assert_healthy, errors, open_page, plotly_titles, submit_attack


@pytest.fixture(scope="module")
def tour_truth():
    """The tour's example computed directly with the library (no app code)."""
    from neuronviz.core.models import load_model
    from neuronviz.data.images import list_samples, load_sample
    from neuronviz.methods.attacks import run_attack
    from neuronviz.methods.defences import restore
    from neuronviz.methods.influence import influence_shift, neuron_influence

    model = load_model("digits-cnn", device="cpu")
    from app import runs as analysis

    [sample] = [s for s in list_samples(model) if s.id == analysis.DEFAULT_SAMPLE_ID]
    x = load_sample(sample.id, model)
    report = run_attack(model, x, "pgd", dict(analysis.default_choice().overrides), seed=0)  # away from the clean prediction, as the app
    benign = int(report.clean_pred[0])
    nip = restore(model, report.adversarial, "nip-guided", target=benign)
    maps = neuron_influence(model, torch.cat([x, report.adversarial]), layers="features.7", target=[benign, benign])
    layer = maps["features.7"]
    import dataclasses

    rows = [dataclasses.replace(layer, target=layer.target[i : i + 1], values=layer.values[i : i + 1], activations=layer.activations[i : i + 1]) for i in (0, 1)]
    from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION

    shift = influence_shift(rows[0], rows[1], front=DEFAULT_GROUP_FRACTION, tail=DEFAULT_GROUP_FRACTION)
    return {
        "clean": model.class_names[benign],
        "adversarial": model.class_names[int(report.adv_pred[0])],
        "nip": model.class_names[int(nip.prediction[0])],
        "front_suppressed": int(shift.front_suppressed[0]),
        "front": shift.groups_before.front_size,
    }


def test_tour_tells_the_story_with_the_library_numbers(tour_truth):
    at = open_page("app_pages/learn.py")
    assert errors(at) == []
    text = " ".join(m.value for m in at.markdown)
    assert tour_truth["adversarial"] != tour_truth["clean"]  # the example is one the attack fools
    assert f"the network now says **{tour_truth['adversarial']}**" in text
    assert f"It says **{tour_truth['clean']}**" in text
    assert f"Here {tour_truth['front_suppressed']} of the {tour_truth['front']} front neurons lost influence" in text
    assert f"**NIP (guided)** — the model says **{tour_truth['nip']}**" in text
    titles = plotly_titles(at)
    assert titles[:2] == ["digit 9 (#43)", "What the model says"] and titles[2].startswith("The change (×")
    assert titles[3:5] == ["Attacked image", "What the model says now"]
    assert any("influence, clean vs attacked" in t for t in titles)
    assert titles.count("After the defence") == 2


def test_tour_ignores_the_sidebar_and_opens_its_example(tour_truth):
    at = open_page("app_pages/learn.py")
    submit_attack(at, "fgsm", eps=0.2)  # another attack than the tour's
    at.selectbox(key="model_name").set_value("digits-resnet").run()
    assert_healthy(at)
    assert "digit 9 (#43)" in plotly_titles(at)  # the ready example, whatever the sidebar says
    at.button(key="learn.load_example").click().run()
    assert_healthy(at)
    banner = " ".join(m.value for m in at.main.markdown if "**" in m.value and " · " in m.value)
    assert "`digits-cnn`" in banner and "digit 9 (#43)" in banner
    assert "PGD (L∞) · eps 0.1 (25.5/255), alpha 0.01 (2.55/255), steps 10" in banner  # the tour's attack
    assert at.sidebar.selectbox(key="attack_name").value == "pgd"
    assert [w.value for w in at.sidebar.number_input if w.label == "steps"] == [10]


def test_methods_name_the_four_papers_and_the_reconstructions():
    at = open_page("app_pages/learn.py")
    text = " ".join(m.value for m in at.markdown)
    for arxiv in ("2112.13060", "1909.06978", "2201.12347", "2402.00304"):
        assert f"arXiv:{arxiv}" in text
    assert text.count("**reconstruction**") >= 3
    assert len(at.get("latex")) == 4
    defaults = at.dataframe[0].value  # NIP (oracle): its parameters from the registry
    assert "front" in list(defaults["parameter"]) and "step" in list(defaults["parameter"])
