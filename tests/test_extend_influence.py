"""Extension test for the influence-method registry: the worked example of docs/architecture.md,
loaded as a plugin file through NEURONVIZ_PLUGINS with no other file changed, is listed by
`neuronviz methods`, offered by the Neurons page, used by the analysis and by `neuronviz figure`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from apptest import assert_healthy, errors, open_page

from neuronviz.infra import plugins
from neuronviz.methods.influence import default_layer, neuron_influence, unregister_influence_method

DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
MODULE = "my_lab_abs_influence"
NAME = "abs_grad_x_act"


def _example_code() -> str:
    section = DOCS.read_text(encoding="utf-8").split("### A new attribution or influence method", 1)[1].split("\n### ", 1)[0]
    return section.split("```python\n", 2)[2].split("```", 1)[0]


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    code = _example_code()
    assert "register_influence_method" in code
    (tmp_path / f"{MODULE}.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, MODULE)
    monkeypatch.setattr(plugins, "_loaded", {})
    yield MODULE
    unregister_influence_method(NAME)
    import sys

    sys.modules.pop(MODULE, None)


def test_the_library_and_the_analysis_use_it(plugin, digits_cnn, digits_test):
    plugins.load_plugins()
    from neuronviz.workflows.analysis import AttackChoice, compute_analysis

    x = digits_test[0][:2]
    layer = default_layer(digits_cnn)
    ours = neuron_influence(digits_cnn, x, layers=layer, target=[0, 1], method=NAME)[layer]
    nip = neuron_influence(digits_cnn, x, layers=layer, target=[0, 1], method="grad_x_act")[layer]
    torch.testing.assert_close(ours.values, nip.values.abs())
    result = compute_analysis(digits_cnn, x[:1], AttackChoice.make("fgsm", {"eps": 0.2}), influence_method=NAME)
    assert result.influence_method == NAME
    assert float(result.influence["clean"][layer].values.min()) >= 0.0  # magnitudes


def test_the_cli_lists_it_and_draws_a_figure_with_it(plugin, tmp_path, capsys):
    from neuronviz import cli

    assert cli.main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert NAME in listing and "|activation × gradient|, logit units" in listing
    out = tmp_path / "figure.svg"
    code = cli.main([
        "figure", "--model", "digits-cnn", "--image", "digit-test-0", "--attack", "fgsm", "--param", "eps=0.2",
        "--influence-method", NAME, "--charts", "front-tail", "--out", str(out), "--device", "cpu",
    ])
    assert code == 0, capsys.readouterr().err
    record = json.loads(out.with_name(out.name + ".provenance.json").read_text(encoding="utf-8"))
    assert json.dumps(record).count(f'"influence_method": "{NAME}"') == 1  # the figure says how it was measured


def test_the_neurons_page_offers_it(plugin):
    at = open_page("app_pages/neurons.py")
    assert_healthy(at)
    box = at.selectbox(key="analysis.influence_method")
    assert NAME in box.options or "|activation × gradient|" in box.options
    box.set_value(NAME)
    at.run()
    assert errors(at) == []
    assert any("|activation × gradient|" in e.label for e in at.expander)
