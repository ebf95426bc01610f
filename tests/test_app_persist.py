"""Page controls survive a visit to another page (Streamlit forgets undrawn widgets' values)."""

from __future__ import annotations

from apptest import assert_healthy, open_page


def test_neurons_controls_survive_a_visit_to_another_page():
    at = open_page("app_pages/neurons.py")
    at.selectbox(key="neurons.layer").set_value("features.3").run()
    at.radio(key="neurons.after").set_value("pssr").run()
    at.radio(key="neurons.tail_rule").set_value("next").run()
    assert_healthy(at)
    at.switch_page("app_pages/defences.py").run()
    assert_healthy(at)
    at.switch_page("app_pages/neurons.py").run()
    assert_healthy(at)
    assert at.selectbox(key="neurons.layer").value == "features.3"
    assert at.radio(key="neurons.after").value == "pssr"
    assert at.radio(key="neurons.tail_rule").value == "next"
    # Another model: a layer it does not have falls back to its default, as on a model change.
    at.selectbox(key="model_name").set_value("digits-resnet").run()
    assert_healthy(at)
    from neuronviz.core.models import load_model
    from neuronviz.methods.influence import default_layer

    assert at.selectbox(key="neurons.layer").value == default_layer(load_model("digits-resnet"))
