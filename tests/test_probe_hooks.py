"""probe.py is the one place in the library and the app that registers hooks (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from neuronviz.core.models import load_model
from neuronviz.core.probe import probe

ROOT = Path(__file__).resolve().parents[1]
HOOKS = re.compile(
    r"\.register_(forward_pre_hook|forward_hook|full_backward_hook|full_backward_pre_hook|backward_hook|hook)\("
    r"|\._forward(_pre)?_hooks\["  # a hook put straight into a module's hook dict (what probe._register does)
)


def test_only_probe_registers_hooks():
    found = {
        str(path.relative_to(ROOT))
        for folder in ("neuronviz", "app")
        for path in (ROOT / folder).rglob("*.py")
        if HOOKS.search(path.read_text(encoding="utf-8"))
    }
    assert found == {"neuronviz/core/probe.py"}


def test_the_callers_own_hooks_fire_beside_a_probe_and_stay_after_it():
    model = load_model("digits-cnn", device="cpu")
    conv = model.layer("features.0")
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda module, inputs, output: seen.append(output))
    x = torch.rand(2, 1, 28, 28)
    with probe(model, ["features.0", "classifier.2"]) as first:
        first.forward(x)  # the first probe of a model also runs its once-per-model in-place check
    seen.clear()
    with probe(model, ["features.0", "classifier.2"]) as outer:
        with probe(model, ["features.0"]):  # a probe inside a probe of the same layer
            assert len(conv._forward_hooks) == 3
        assert len(conv._forward_hooks) == 2  # the caller's and the outer probe's
        outer.forward(x)
    assert len(seen) == 1 and torch.equal(seen[0], outer.activation("features.0"))
    assert list(conv._forward_hooks) == [handle.id]  # only the caller's is left, under its own key
    handle.remove()
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == 0
