"""The "Neurons of a data set" page under AppTest: its numbers are the library's, its sentences computed."""

from __future__ import annotations

import pytest
from apptest import MAIN, assert_healthy, errors, plotly_titles
from streamlit.testing.v1 import AppTest

PAGE = "app_pages/population.py"
IMAGES = 24


@pytest.fixture(scope="module")
def page():
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["population.images_kept"] = IMAGES
    at.switch_page(PAGE)
    at.run()
    assert_healthy(at)
    return at


def _library():
    from neuronviz.core.models import load_model
    from neuronviz.data.labelled import evaluation_set
    from neuronviz.workflows import population
    from neuronviz.workflows.analysis import AttackChoice

    model = load_model("digits-cnn", device="cpu")
    data = evaluation_set(model, IMAGES)
    choice = AttackChoice()
    return population.population(model, data.images, data.labels, choice.attack, choice.params(model),
                                 layers=["features.7"], seed=choice.seed, ids=list(data.ids))


def test_page_shows_attack_and_control_shares_of_the_library(page):
    assert not errors(page)
    assert page.title[0].value == "Neurons of a data set"
    result = _library()
    frame = page.dataframe[0].value
    assert list(frame["layer"]) == ["features.7"]
    entry = result.layers["features.7"].counts["front_suppressed"]
    from app.app_pages.population import rate_text

    assert frame.loc[0, "front activation fell: attack"] == rate_text(entry["attack"])
    assert frame.loc[0, "front activation fell: noise"] == rate_text(entry["control"])
    text = " ".join(m.value for m in page.markdown)
    share = entry["attack"]["share"]
    assert f"front activations fell in {100 * share:.0f}% of pairs" in text
    assert any(t.startswith("NIP's observation per layer") for t in plotly_titles(page))
    assert any(t.startswith("features.7: activation change per neuron") for t in plotly_titles(page))
    consistent = [r for r in result.neuron_rows() if r["consistent"]]
    if consistent:
        assert f"moved beyond the noise ({sum(r['direction'] == 'lowered' for r in consistent)} lowered" in text
    else:
        assert any("No neuron is moved beyond the matched noise" in i.value for i in page.info)


@pytest.mark.slow
def test_page_switches_to_every_layer(page):
    page.selectbox(key="population.layer").set_value("all")
    page.run()
    assert_healthy(page)
    frame = page.dataframe[0].value
    assert len(frame) == 12 and frame["layer"].iloc[-1] == "classifier.2"
    # the logits layer: toward the clean class only one logit has influence: ρ is not defined, not ±1
    assert frame["median ρ clean vs attack"].iloc[-1].startswith("not defined")


def test_a_layer_of_another_model_is_dropped_not_an_error():
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["population.images_kept"] = 12
    at.session_state["population.layer"] = "blocks.3"  # digits-vit's, not digits-cnn's
    at.switch_page(PAGE)
    at.run()
    assert_healthy(at)
    assert not errors(at)
    assert at.selectbox(key="population.layer").value == "features.7"
