"""probe.py is the one place in the library and the app that registers hooks (issue 13)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch

from neuronviz.core.models import load_model
from neuronviz.core.probe import _register, hook_count, probe, tap

ROOT = Path(__file__).resolve().parents[1]
HOOKS = re.compile(
    r"\.register_(forward_pre_hook|forward_hook|full_backward_hook|full_backward_pre_hook|backward_hook|hook)\("
    r"|\._forward(_pre)?_hooks\["  # a hook put straight into a module's hook dict (what probe._register does)
    r"|__dict__\[[\"']forward[\"']\]\s*=|\.forward\s*=[^=]"  # a module's forward replaced (probe._Forward)
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
    assert hook_count(model) == 0


def test_the_regex_catches_every_way_probe_attaches(tmp_path):
    for line in ('m._forward_hooks[k] = f', "m.__dict__['forward'] = w", 'm.__dict__["forward"] = w', "m.forward = w",
                 "m.register_forward_hook(f)"):
        assert HOOKS.search(line), line
    assert not HOOKS.search("if m.forward == f:") and not HOOKS.search("def forward(self, x):")


def test_a_probe_wraps_forward_where_no_hook_of_the_callers_would_run_after_it():
    """The fast way in (no hook: the module's call stays on PyTorch's fast path) records exactly what
    a plain forward computes, and leaves the module as it was."""
    model = load_model("digits-cnn", device="cpu")
    x = torch.rand(2, 1, 28, 28)
    conv = model.layer("features.0")
    with probe(model, ["features.0", "classifier.2"]) as rec:
        assert "forward" in conv.__dict__ and len(conv._forward_hooks) == 0
        logits = rec.forward(x)
    assert "forward" not in conv.__dict__ and hook_count(model) == 0
    with torch.no_grad():
        assert torch.equal(rec.activation("features.0").detach(), conv(model.normalize(x)))
        assert torch.equal(logits.detach(), model(x))


@pytest.mark.parametrize("where", ["the module's own", "global"])
def test_a_callers_forward_hook_that_replaces_the_output_is_seen_by_the_probe(where):
    """Where a forward hook of the caller's (the module's own or a global one) changes a module's
    output, the probe records the changed output, as a hook registered after the caller's always did:
    it falls back to a hook there instead of wrapping ``forward``."""
    model = load_model("digits-cnn", device="cpu")
    conv = model.layer("features.0")
    zero = lambda module, inputs, output: output * 0  # noqa: E731
    own = where == "the module's own"
    handle = conv.register_forward_hook(zero) if own else torch.nn.modules.module.register_module_forward_hook(zero)
    try:
        with probe(model, ["features.0"]) as rec:
            assert "forward" not in conv.__dict__ and len(conv._forward_hooks) == (2 if own else 1)
            rec.forward(torch.rand(1, 1, 28, 28))
        assert float(rec.activation("features.0").detach().abs().max()) == 0.0
    finally:
        handle.remove()
    assert hook_count(model) == 0


def test_wrappers_of_one_module_removed_in_any_order_leave_it_as_it_was():
    model = load_model("digits-cnn", device="cpu")
    conv = model.layer("features.0")
    x = torch.rand(1, 1, 28, 28)
    own = conv.forward  # the caller's own instance forward, which must come back
    conv.forward = lambda value: type(conv).forward(conv, value) + 1  # a caller's replaced forward
    try:
        seen: list[str] = []
        where = tap(model, "features.0")
        first = _register(where, lambda out: seen.append("first"))
        second = _register(where, lambda out: seen.append("second"))
        first.remove()  # the older one first: it stays in the chain, passing the call on
        conv(x)
        assert seen == ["second"]
        second.remove()
        assert conv.__dict__["forward"] is not first and conv.__dict__["forward"] is not second
        seen.clear()
        out = conv(x)
        assert seen == [] and torch.equal(out, type(conv).forward(conv, x) + 1)
    finally:
        del conv.forward
    assert conv.forward == own and hook_count(model) == 0


def test_a_copy_made_during_a_probe_computes_with_its_own_weights():
    """A deep copy of the network made inside a probe does not carry the wrapper (which would run the
    original module, with the original's weights, and record into the probe)."""
    model = load_model("digits-cnn", device="cpu")
    x = model.normalize(torch.rand(1, 1, 28, 28))
    with probe(model, ["features.0"]) as rec:
        rec.forward(torch.rand(1, 1, 28, 28))
        twin = copy.deepcopy(model.net)
        calls = len(rec.calls("features.0"))
        twin_conv = twin.features[0]
        with torch.no_grad():
            twin_conv.weight.zero_()
            twin_out = twin_conv(x)
        assert len(rec.calls("features.0")) == calls  # the twin's conv recorded nothing here
    assert torch.equal(twin_out, twin_conv.bias.detach()[None, :, None, None].expand_as(twin_out))  # its zero weights
    with probe(model, ["features.0"]):
        wrapper = model.layer("features.0").__dict__["forward"]
        assert copy.deepcopy(wrapper) is wrapper  # copied alone (no module being copied): itself, never None
    assert "forward" not in model.layer("features.0").__dict__ and hook_count(model) == 0
