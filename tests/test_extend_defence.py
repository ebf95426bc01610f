"""A defence the project has never seen, written as ONE new file in a temporary package and
registered the documented way (docs/architecture.md, "A new defence"; NEURONVIZ_PLUGINS), shows
up in the Defences page, in a Batch page run and in `neuronviz evaluate --defences` — with no
other file changed."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from apptest import assert_healthy, errors, open_page, plotly_titles

from neuronviz.infra import plugins

NAME = "mean-3x3"
SHORT = "Mean 3×3"

#: The whole plugin: this file and nothing else (the worked example of docs/architecture.md).
PLUGIN = '''
"""Mean smoothing: each pixel replaced by the mean of its k×k window (the 3×3 average filter of
Li and Li, ICCV 2017, used to recover adversarial images). Label-free, so deployable."""

import torch.nn.functional as F

from neuronviz.methods.defences import Defence, Restored, register_defence
from neuronviz.infra.schema import Param


class MeanSmoothing(Defence):
    name = "mean-3x3"
    label = "Mean smoothing (box filter)"
    short_label = "Mean 3×3"
    summary = "label-free local smoothing — deployable"
    paper = "Li, Li, Adversarial Examples Detection in Deep Networks with Convolutional Filter Statistics, ICCV 2017"
    description = "Every pixel becomes the mean of its k×k neighbourhood (reflected at the border)."
    params = (Param("size", "int", 3, "window side k (odd)", 1, 7, "pixels"),)
    trace_keys = ("changed",)

    def restore_pixels(self, model, x, params, target, reference):
        k = params["size"] | 1  # an odd window, centred on the pixel
        padded = F.pad(x, (k // 2,) * 4, mode="reflect") if k > 1 else x
        windows = padded.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H, W, k, k)
        restored = windows.flatten(-2).mean(-1)
        changed = (restored != x).flatten(1).float().mean(1)
        return Restored(restored, trace={"changed": changed[None]}, notes=("Mean of each 3×3 window.",))


register_defence(MeanSmoothing())
'''


def _mean(x: torch.Tensor) -> torch.Tensor:
    """The same smoothing written independently (for the expected numbers)."""
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    return torch.nn.functional.avg_pool2d(padded, 3, stride=1)


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The plugin on sys.path and in NEURONVIZ_PLUGINS; afterwards the registry is as before."""
    from neuronviz.methods.defences import DEFENCES

    module = "nv_plugin_mean_defence"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, module)
    monkeypatch.setattr(plugins, "_loaded", {})
    before = list(DEFENCES)
    yield module
    for name in [n for n in DEFENCES if n not in before]:
        DEFENCES.pop(name)
    sys.modules.pop(module, None)


def test_the_plugin_is_the_worked_example_of_the_docs():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = docs.split("### A new defence", 1)[1].split("\n### ", 1)[0]
    assert f"```python\n{PLUGIN.strip()}\n```" in section


def test_the_cli_lists_and_evaluates_it(plugin, tmp_path, capsys, digits_cnn, digits_test):
    from neuronviz import cli

    assert cli.main(["defences"]) == 0
    listing = capsys.readouterr().out
    assert f"{NAME:13s} {SHORT:16s} deployable" in listing and "size" in listing

    out = tmp_path / "evaluation"
    code = cli.main([
        "evaluate", "digits-cnn", "--limit", "16", "--attack", "fgsm:eps=0.2", "--defences", f"none;{NAME}",
        "--out", str(out), "--no-progress", "--device", "cpu",
    ])
    assert code == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if f"| {SHORT} |" in line)
    assert row.startswith("| FGSM | 0.2 | none |") and "| yes |" in row  # deployable

    # the numbers are the smoothing's own: accuracy after it on the attacked and on the clean images
    from neuronviz.methods.attacks import run_attack

    x, y = digits_test[0][:16], digits_test[1][:16]
    adversarial = run_attack(digits_cnn, x, "fgsm", {"eps": 0.2}).adversarial  # FGSM draws nothing
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    after_adversarial = float((digits_cnn.predict(_mean(adversarial))[0] == y).double().mean())
    after_clean = float((digits_cnn.predict(_mean(x))[0] == y).double().mean())
    # (each rate is followed by its 95% Wilson interval: "96.9% (84.3–99.4)")
    assert [c.split(" (")[0] for c in cells[-2:]] == [f"{100 * after_adversarial:.1f}%", f"{100 * after_clean:.1f}%"]


def test_the_defences_page_shows_it(plugin):
    at = open_page("app_pages/defences.py")
    assert errors(at) == []
    assert f"##### {SHORT}" in [m.value for m in at.main.markdown]
    assert any("label-free local smoothing — deployable" in c.value for c in at.caption)
    # its restored image, titled with the outcome ("Mean 3×3: restored" / "not restored" / "nothing to restore")
    assert sum(title.startswith(f"{SHORT}: ") for title in plotly_titles(at)) == 1
    assert any("Mean of each 3×3 window." in c.value for c in at.caption)  # its notes
    [numbers] = [d.value for d in at.main.dataframe if "L∞ to adversarial" in d.value.columns]
    assert SHORT in list(numbers["image"])


def test_a_batch_with_it(plugin):
    at = open_page("app_pages/batch.py")
    box = at.checkbox(key=f"batch.{NAME}")
    assert box.label == "Mean smoothing (box filter)"
    box.check()
    at.slider(key="batch.n").set_value(10)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    metrics = {m.label: m.value for m in at.metric}
    assert f"DSR · {SHORT}" in metrics and f"Clean accuracy after {SHORT}" in metrics


def test_the_neurons_page_compares_it(plugin):
    """The analysis runs every plugin defence too: the Neurons page offers it as the condition compared
    with the clean image, and the restoration chart has its line."""
    at = open_page("app_pages/neurons.py")
    assert_healthy(at)
    assert errors(at) == []
    assert at.multiselect(key="analysis.extra_defences").value == [NAME]
    after = at.radio(key="neurons.after")
    assert NAME in after.options or SHORT in after.options
    after.set_value(NAME)
    at.run()
    assert errors(at) == []
    assert any(SHORT in title for title in plotly_titles(at))


def test_the_figure_command_draws_it(plugin, tmp_path, capsys):
    from neuronviz import cli

    out = tmp_path / "figure.svg"
    code = cli.main([
        "figure", "--model", "digits-cnn", "--image", "digit-test-0", "--attack", "fgsm", "--param", "eps=0.2",
        "--defences", NAME, "--after", NAME, "--charts", "top5,front-tail", "--out", str(out), "--device", "cpu",
    ])
    assert code == 0, capsys.readouterr().err
    import json

    numbers = json.loads(out.with_name(out.name + ".numbers.json").read_text(encoding="utf-8"))
    provenance = json.dumps(numbers)
    assert NAME in provenance or SHORT in provenance
    assert SHORT in out.read_text(encoding="utf-8")  # the panel's title
