"""Attribution and influence methods are registries: one entry per method carries its facts, and a
new method defined in its own file is called like the built-ins."""

from __future__ import annotations

import pytest
import torch

from neuronviz.infra.errors import InputError
from neuronviz.methods.attribution import (
    ATTRIBUTION_METHODS,
    AttributionMethod,
    get_attribution,
    input_attribution,
    list_attributions,
    register_attribution,
    unregister_attribution,
)
from neuronviz.methods.influence import (
    METHODS,
    InfluenceMethod,
    default_layer,
    get_influence_method,
    list_influence_methods,
    neuron_influence,
    register_influence_method,
    unregister_influence_method,
)


def test_built_in_entries_carry_their_facts(digits_cnn):
    names = [m.name for m in list_attributions()]
    assert names[:3] == ["saliency", "integrated_gradients", "grad_cam"] and ATTRIBUTION_METHODS == tuple(names[:3])
    cam = get_attribution("grad_cam")
    assert (cam.label, cam.unit, cam.paper) == ("Grad-CAM", "arbitrary units", "Selvaraju et al., arXiv:1610.02391")
    assert cam.layer_for(digits_cnn) == default_layer(digits_cnn) and get_attribution("saliency").layer_for(digits_cnn) is None
    assert cam.caption(digits_cnn) == f"Grad-CAM at {default_layer(digits_cnn)} (Selvaraju et al., arXiv:1610.02391)"
    assert get_attribution("integrated_gradients").caption(digits_cnn, n_steps=32) == (
        "Integrated Gradients from a black image, 32 steps (Sundararajan et al., arXiv:1703.01365)"
    )
    assert [m.name for m in list_influence_methods()][:4] == list(METHODS)
    assert get_influence_method("grad_x_act").unit == "activation × gradient, logit units"
    assert all(m.label and m.unit and m.paper for m in list_influence_methods())
    for getter in (get_attribution, get_influence_method):
        try:
            getter("nope")
        except InputError as error:
            assert "must be one of" in str(error)
        else:
            raise AssertionError("an unknown method must raise")


class GradientTimesInput(AttributionMethod):
    name = "test_gradient_x_input"
    label = "Gradient × input"
    unit = "logit units"
    paper = "Shrikumar et al., arXiv:1605.01713"
    summary = "∂ logit / ∂ pixel × pixel"

    def attribute(self, model, x, target, layer, n_steps):
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
        return (grad * x).sum(1).detach(), None


class Doubled(InfluenceMethod):
    name = "test_doubled"
    label = "twice grad × act"
    unit = "logit units"
    paper = "a test"

    def compute(self, request):
        raw, target = get_influence_method("grad_x_act").compute(request)
        return {name: (a, 2 * i) for name, (a, i) in raw.items()}, target


@pytest.fixture
def registered():
    register_attribution(GradientTimesInput())
    register_influence_method(Doubled())
    yield
    unregister_attribution(GradientTimesInput.name)
    unregister_influence_method(Doubled.name)
    assert GradientTimesInput.name not in [m.name for m in list_attributions()]


def test_a_new_method_is_one_registered_entry(registered, digits_cnn, digits_test):
    x = digits_test[0][:2]
    assert "test_gradient_x_input" in [m.name for m in list_attributions()]
    got = input_attribution(digits_cnn, x, method="test_gradient_x_input", target=3)
    assert got.values.shape == (2, 28, 28) and got.layer is None and got.n_steps is None
    from captum.attr import InputXGradient

    ref = InputXGradient(digits_cnn).attribute(x.clone(), target=3).sum(1)
    assert torch.allclose(got.values, ref, atol=1e-6)
    layer = default_layer(digits_cnn)
    twice = neuron_influence(digits_cnn, x, layers=layer, method="test_doubled")[layer]
    once = neuron_influence(digits_cnn, x, layers=layer)[layer]
    assert torch.allclose(twice.values, 2 * once.values) and twice.method == "test_doubled"
    try:
        register_attribution(type("Other", (AttributionMethod,), {"name": "saliency"})())
    except InputError as error:
        assert "registered already" in str(error)
    else:
        raise AssertionError("a second method under a taken name must raise")


def test_the_documented_example_file_is_a_working_plugin(tmp_path, monkeypatch, digits_cnn, digits_test):
    from pathlib import Path

    from neuronviz.infra import plugins

    text = Path(__file__).resolve().parents[1].joinpath("docs", "architecture.md").read_text()
    section = text.split("### A new attribution or influence method", 1)[1].split("\n### ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_lab_gxi_doc.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, "my_lab_gxi_doc")
    try:
        assert "my_lab_gxi_doc" in plugins.load_plugins()
        entry = get_attribution("gradient_x_input")
        assert entry.label == "Gradient × input" and entry.layer_for(digits_cnn) is None
        x = digits_test[0][:2]
        got = input_attribution(digits_cnn, x, method="gradient_x_input", target=1)
        from captum.attr import InputXGradient

        assert torch.allclose(got.values, InputXGradient(digits_cnn).attribute(x.clone(), target=1).sum(1), atol=1e-6)
    finally:
        unregister_attribution("gradient_x_input")
