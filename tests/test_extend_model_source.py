"""Extension test (issue 13): a new model source is ONE new file, registered the documented way
(``register_source`` in a module named in NEURONVIZ_PLUGINS), and appears in the sidebar, the
Batch page and the CLI with no other file changed."""

from __future__ import annotations

import sys
import textwrap

import pytest
from apptest import MAIN, assert_healthy, errors
from streamlit.testing.v1 import AppTest

from neuronviz.core.models import registry as sources
from neuronviz.infra import plugins

PLUGIN = textwrap.dedent(
    '''
    """A lab's own models: one file (docs/architecture.md, "A new model source")."""

    import torch
    from torch import nn

    from neuronviz.core.models import ImagePolicy, ModelInfo, ModelSource, register_source, wrap_model


    class LabNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(6, 10)

        def forward(self, x):
            return self.fc(self.flatten(self.pool(self.relu(self.conv(x)))))


    class LabSource(ModelSource):
        name = "lab"
        label = "Lab models"

        def owns(self, spec):
            return spec.startswith("lab:")

        def list_models(self):
            return [ModelInfo(name="lab:tiny", kind=self.name, architecture="LabNet", description="The lab's tiny digits net",
                              channels=1, input_size=(28, 28), num_classes=10, weights_available=True)]

        def load(self, spec, *, weights="default", options=None):
            torch.manual_seed(7)
            return wrap_model(LabNet(), mean=(0.3,), std=(0.3,), input_size=(28, 28), class_names=[str(i) for i in range(10)],
                              name=spec, architecture="LabNet",
                              image_policy=ImagePolicy(mode="pad", resize_size=28, invert_light_background=True))


    register_source(LabSource())
    '''
)


@pytest.fixture()
def lab_plugin(tmp_path, monkeypatch):
    (tmp_path / "nv_lab_models.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, "nv_lab_models")
    monkeypatch.setattr(plugins, "_loaded", {})
    yield
    sources.unregister_source("lab")
    sys.modules.pop("nv_lab_models", None)


def test_a_plugin_source_appears_in_the_sidebar_the_batch_page_and_the_cli(lab_plugin, capsys):
    from neuronviz import cli

    assert cli.main(["models"]) == 0  # the CLI imports the plugin, then lists every source
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("lab:tiny")]
    assert len(lines) == 1 and " lab " in lines[0] and "1×28×28" in lines[0] and "10 classes" in lines[0]

    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    assert_healthy(at)
    box = at.sidebar.selectbox(key="model_name")
    assert "lab:tiny · Lab models" in box.options  # the source's own label (ModelSource.picker_label)
    box.set_value("lab:tiny").run()
    assert_healthy(at)
    assert errors(at) == []
    assert any("`lab:tiny`" in m.value for m in at.markdown)  # the banner names the loaded model

    at.switch_page("app_pages/batch.py")
    at.run()
    assert_healthy(at)
    at.slider(key="batch.n").set_value(10)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert metrics, "the Batch page showed no result for the plugin's model"
    assert metrics["Images"] == "10" and metrics["Clean accuracy"].endswith("%")
    assert any("**Model** `lab:tiny`" in m.value for m in at.markdown)  # the result is the plugin model's
