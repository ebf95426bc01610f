"""Extension test (issue 13) for the attribution registry: the worked example of
docs/architecture.md, loaded as a plugin file through NEURONVIZ_PLUGINS with no other file
changed, is offered by the Neurons page and drawn with the library's (and Captum's) numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from apptest import errors, open_page
from test_app_neurons import PAGE, _adversarial, _decode, _selection, _spec

from neuronviz.infra import plugins
from neuronviz.methods.attribution import list_attributions, unregister_attribution

DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _example_code() -> str:
    section = DOCS.read_text().split("### A new attribution or influence method", 1)[1].split("\n### ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_a_plugin_attribution_method_appears_on_the_neurons_page(tmp_path, monkeypatch):
    (tmp_path / "my_lab_gxi_page.py").write_text(_example_code())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, "my_lab_gxi_page")
    try:
        at = open_page(PAGE)  # app/main.py loads the plugin before the sidebar
        radio = at.radio(key="neurons.attribution_method")
        assert radio.options == [entry.label for entry in list_attributions()]  # shown by label, plugin last
        assert radio.options[-1] == "Gradient × input"
        radio.set_value("gradient_x_input").run()
        assert not at.exception and not errors(at)
        selection = _selection(at)
        model = selection.model
        benign = int(model.predict(selection.image)[0][0])
        spec = _spec(at, "neurons.attribution.benign")
        assert spec["layout"]["title"]["text"] == f"Gradient × input toward the benign class {model.class_names[benign]}"
        from captum.attr import InputXGradient

        pair = torch.cat([selection.image, _adversarial(selection).adversarial])
        expected = InputXGradient(model).attribute(pair.clone(), target=benign).sum(1).detach()
        for trace, values in zip(spec["data"], expected, strict=True):
            np.testing.assert_allclose(np.array(_decode(trace["z"]), dtype=float), values.numpy(), rtol=1e-4, atol=1e-6)
    finally:
        unregister_attribution("gradient_x_input")
        plugins._loaded.pop("my_lab_gxi_page", None)
