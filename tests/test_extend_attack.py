"""The attack registry: the catalogue's facts agree with torchattacks, and a new attack is one file.

The extension test writes a new attack (an L2 fast gradient method that torchattacks does not
have) as ONE module in a temporary folder, registers it the documented way (the module named in
NEURONVIZ_PLUGINS, docs/architecture.md "A new attack"), and finds it in the dashboard's sidebar
and Attack page, the Batch page, and the CLI, with no other file changed.
"""

from __future__ import annotations

import base64
import inspect
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
import torchattacks
from apptest import assert_healthy, clear_caches, open_page, submit_attack

from neuronviz.infra import plugins
from neuronviz.infra.errors import InputError
from neuronviz.infra.schema import Param
from neuronviz.methods.attacks import (
    ATTACKS,
    AttackInfo,
    get_attack,
    list_attacks,
    register_attack,
    run_attack,
    unregister_attack,
)

# -- the built-in catalogue --------------------------------------------------------------------------


@pytest.mark.parametrize("info", [i for i in list_attacks() if isinstance(i.cls, str)], ids=lambda i: i.name)
def test_schema_names_are_the_torchattacks_keywords_and_the_modes_its_own(info):
    cls = getattr(torchattacks, info.cls)
    keywords = set(inspect.signature(cls.__init__).parameters) - {"self", "model"}
    names = {p.name for p in info.params}
    assert names | set(info.context) <= keywords, (info.name, sorted(names - keywords))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    built = cls(model, **({"n_classes": 3} if "n_classes" in info.context else {}))
    assert tuple(built.supported_mode) == info.supported_mode
    assert info.targeted == ("targeted" in built.supported_mode)


def test_each_entry_carries_its_special_case():
    assert get_attack("tifgsm").needs_rgb and get_attack("tifgsm").check is not None
    assert get_attack("jsma").untargeted_target is not None and get_attack("jsma").targeted
    assert get_attack("none").trace_unit is None
    assert {i.name: i.minimised_norm for i in list_attacks() if i.minimised_norm} == {"cw": "L2", "deepfool": "L2"}
    assert get_attack("autoattack").run_name({"version": "plus"}) == "AutoAttack (plus)"
    assert get_attack("pgd").run_name({"steps": 20}) == "PGD-20 (L∞)"
    with pytest.raises(InputError, match="odd"):
        get_attack("tifgsm").resolve({"len_kernel": 4})
    # JSMA untargeted aims at label + 1 mod K: the hook's numbers
    assert get_attack("jsma").untargeted_target(torch.tensor([0, 9]), 10).tolist() == [1, 0]


def test_lookup_spellings_and_refused_entries():
    assert get_attack("PGD").name == "pgd" and get_attack("i-fgsm").name == "bim" and get_attack("cw_l2").name == "cw"
    with pytest.raises(InputError, match="unknown attack 'nope'"):
        get_attack("nope")
    base = dict(label="X", short_label="X", family="gradient", norm="Linf", paper="p", description="d", cls="FGSM",
                params=(Param("eps", "float", 0.1, "budget", 0.0, 1.0),))
    with pytest.raises(InputError, match="already registered"):
        register_attack(AttackInfo(name="p-g-d", **base))
    with pytest.raises(InputError, match="budget_param 'epsilon'"):
        register_attack(AttackInfo(name="x-attack", budget_param="epsilon", **base))
    with pytest.raises(InputError, match="supported_mode"):
        register_attack(AttackInfo(name="x-attack", supported_mode=("targeted",), **base))
    with pytest.raises(InputError, match="lower-case"):
        register_attack(AttackInfo(name="X attack", **base))
    assert "x-attack" not in ATTACKS


# -- a new attack in one file --------------------------------------------------------------------------

PLUGIN = '''
"""FGM (L2): one step of L2 size eps along the normalised gradient of the loss."""

import torch
from torchattacks.attack import Attack

from neuronviz.methods.attacks import AttackInfo, register_attack
from neuronviz.infra.schema import Param


class FGM(Attack):
    """Fast gradient method, L2 (Miyato et al., arXiv:1605.07725): x + eps * g / ||g||_2."""

    def __init__(self, model, eps=1.0):
        super().__init__("FGM", model)
        self.eps = eps
        self.supported_mode = ["default", "targeted"]

    def forward(self, images, labels):
        images = images.clone().detach().to(self.device).requires_grad_(True)
        labels = labels.clone().detach().to(self.device)
        loss = torch.nn.functional.cross_entropy(self.get_logits(images), labels)
        grad = torch.autograd.grad(-loss if self.targeted else loss, images)[0]
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (images + self.eps * grad / norm).clamp(0, 1).detach()


register_attack(AttackInfo(
    name="fgm-l2", label="FGM (L2)", short_label="FGM", family="gradient", norm="L2",
    params=(Param("eps", "float", 1.0, "L2 size of the step", 0.0, 100.0, "L2 norm in pixel units", default_gray=3.0),),
    paper="Miyato et al., Adversarial Training Methods for Semi-Supervised Text Classification, arXiv:1605.07725",
    description="One step along the L2-normalised gradient of the loss.",
    cls=FGM, supported_mode=("default", "targeted"), budget_param="eps", cost=lambda p, k: 2.0, randomness="none",
))
'''
MODULE = "nv_lab_attacks.fgm_l2"


def pixels(z) -> torch.Tensor:
    """A heatmap's ``z`` from a chart spec (plotly writes arrays as base64 typed arrays)."""
    if isinstance(z, dict) and "bdata" in z:
        array = np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"]))
        shape = [int(s) for s in str(z["shape"]).split(",")] if z.get("shape") else [-1]
        return torch.from_numpy(array.reshape(shape).astype("float32"))
    return torch.tensor(z, dtype=torch.float32)


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The plugin as one file of a namespace package in tmp_path, named in NEURONVIZ_PLUGINS."""
    folder = tmp_path / "nv_lab_attacks"
    folder.mkdir()
    (folder / "fgm_l2.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, MODULE)
    monkeypatch.setattr(plugins, "_loaded", {})
    clear_caches()
    yield tmp_path
    if "fgm-l2" in ATTACKS:
        unregister_attack("fgm-l2")
    for name in (MODULE, "nv_lab_attacks"):
        sys.modules.pop(name, None)


def test_a_new_attack_in_one_file_reaches_the_dashboard_the_batch_page_and_the_cli(plugin, capsys):
    from neuronviz import cli
    from neuronviz.core.models import load_model
    from neuronviz.data.images import load_sample
    from neuronviz.workflows import analysis, batch

    # The sidebar lists it (the app loads the plugin itself), and the Attack page runs it.
    at = open_page()
    box = at.sidebar.selectbox(key="attack_name")
    assert box.options[-1] == "FGM (L2)"  # plugins register after the catalogue
    at = submit_attack(at, "fgm-l2", eps=2.5)
    assert_healthy(at)
    assert at.sidebar.selectbox(key="attack_name").value == "fgm-l2"
    model = load_model("digits-cnn", device="cpu")
    image = load_sample(analysis.DEFAULT_SAMPLE_ID, model)
    report = run_attack(model, image, "fgm-l2", {"eps": 2.5}, seed=0)
    assert 1.0 < float(report.l2[0]) <= 2.5 + 1e-4  # one step of L2 size ε, shorter where pixels clip to [0, 1]
    shown = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    [adversarial] = [s for s in shown if ((s.get("layout") or {}).get("title") or {}).get("text") == "Adversarial"]
    assert torch.allclose(pixels(adversarial["data"][0]["z"]), report.adversarial[0, 0], atol=1e-6)
    banner = " ".join(m.value for m in at.main.markdown) + " ".join(c.value for c in at.caption)
    assert "FGM (L2)" in banner

    # The Batch page: the sidebar's choice over 10 images, the library's numbers on the page.
    at.switch_page("app_pages/batch.py")
    at.run()
    assert_healthy(at)
    at.slider(key="batch.n").set_value(10)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    images = batch.batch_images(model, 10)
    expected = run_attack(model, images.images, "fgm-l2", {"eps": 2.5}, seed=0)  # away from the clean prediction
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Attack success"] == f"{100 * expected.success_rate:.1f}%"

    # The CLI lists it and evaluates it.
    capsys.readouterr()
    assert cli.main(["attacks"]) == 0
    listed = capsys.readouterr().out
    assert "fgm-l2" in listed and "FGM (L2)" in listed and "targeted/untargeted" in listed.split("fgm-l2")[1].splitlines()[0]
    out = plugin / "evaluation"
    code = cli.main(["evaluate", "digits-cnn", "--attack", "fgm-l2:eps=2.5", "--defence", "none", "--limit", "16",
                     "--block-size", "16", "--no-progress", "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    [row] = json.loads((out / "results.json").read_text(encoding="utf-8"))["rows"]
    x = batch.batch_images(model, 16).images
    assert row["attack"] == "FGM (L2)" and row["eps"] == 2.5
    assert row["attack_success"] == pytest.approx(run_attack(model, x, "fgm-l2", {"eps": 2.5}, seed=0).success_rate)
