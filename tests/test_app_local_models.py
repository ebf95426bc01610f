"""The dashboard on the operator's own models: a torch.export program and a module:function factory
of a custom architecture, given in NEURONVIZ_MODELS (AppTest cannot pass ``-- --model`` arguments;
tests/test_local_source.py tests that parser), listed under "Local models", and the Attack, Neurons
and First-layer filters pages run on them."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from apptest import MAIN, assert_healthy, clear_caches, errors, plotly_titles, submit_attack
from streamlit.testing.v1 import AppTest

NETS = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.act = nn.ReLU()
            self.mix = nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.act2 = nn.GELU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.head = nn.Linear(8, 10)

        def forward(self, x):
            x = self.act2(self.mix(self.act(self.stem(x))))
            return self.head(torch.flatten(self.pool(x), 1))


    def build():
        torch.manual_seed(0)
        net = Mixer().eval()
        net.class_names = [str(i) for i in range(10)]
        net.mean, net.std, net.input_size = [0.3], [0.3], 28
        return net
    '''
)


@pytest.fixture
def local_models(tmp_path, monkeypatch):
    (tmp_path / "local_app_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import local_app_nets

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(local_app_nets.build(), (torch.rand(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, tmp_path / "mixer.pt2")
    monkeypatch.setenv(
        "NEURONVIZ_MODELS",
        f"'{tmp_path / 'mixer.pt2'}' name=mixer-program mean=0.3 std=0.3 classes=0,1,2,3,4,5,6,7,8,9; local_app_nets:build",
    )
    clear_caches()
    yield
    sys.modules.pop("local_app_nets", None)
    from neuronviz.core.models import local_source

    for entry in local_source.local_entries():
        local_source.unregister_local_model(entry.name)
    clear_caches()


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page)
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    return at


@pytest.mark.parametrize("spec", ["local:mixer-program", "local:local_app_nets.build"])
def test_pages_run_on_local_models(local_models, spec):
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    assert_healthy(at)
    box = at.selectbox(key="model_name")
    assert f"{spec} · Local models" in box.options
    box.set_value(spec).run()
    assert_healthy(at)
    assert errors(at) == []
    selection = at.session_state["state.selection"]
    assert selection.model.name == spec.removeprefix("local:") and selection.model.num_classes == 10

    submit_attack(at, "fgsm")
    assert errors(at) == []
    assert plotly_titles(at), "the Attack page shows no chart"
    if spec != "local:mixer-program":  # the factory's module is a plain nn.Module: the Attack page suffices
        return

    _page(at, "app_pages/neurons.py")
    assert len(at.get("plotly_chart")) >= 2

    _page(at, "app_pages/filters.py")
    assert plotly_titles(at)[0] == "First-layer filters of stem"
