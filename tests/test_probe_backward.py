"""Recording.backward (one backward pass, gradients caught by tensor hooks) gives exact gradients
in every case, also where the recorded leaves do not cover every layer; influence on an
accelerator comes back in one transfer with independent tensors."""

import pytest
import torch
from captum.attr import LayerGradientXActivation
from torch import nn

from neuronviz.core.models import load_model
from neuronviz.core.probe import probe
from neuronviz.methods.influence import _to_cpu, neuron_influence, probe_layers


def _captum(model, layers, x, target):
    refs = LayerGradientXActivation(model, model.layers(layers)).attribute(x, target=target)
    return [r.flatten(2).sum(2) if r.dim() > 2 else r.flatten(1) for r in refs]


def _collect(rec, objective, names):
    got = {}
    rec.backward(objective, lambda name, a, g: got.__setitem__(name, (a, g.clone())), names)
    return got


@pytest.fixture
def resnet():
    return load_model("digits-resnet", device="cpu")


def test_backward_equals_gradients_for_every_layer(resnet, digits_test):
    x = digits_test[0][:3]
    names = [info.name for info in probe_layers(resnet)]
    with probe(resnet, names) as rec:
        logits = rec.forward(x)
        objective = logits[:, 2].sum()
        got = _collect(rec, objective, names)
    with probe(resnet, names) as rec:
        logits = rec.forward(x)
        expected = rec.gradients(logits[:, 2].sum(), names)
    assert set(got) == set(names)
    for name in names:
        assert torch.allclose(got[name][1], expected[name], rtol=1e-5, atol=1e-7), name
        assert not got[name][0].requires_grad


def test_a_layer_subset_that_descends_from_an_unnamed_leaf(resnet, digits_test):
    # Only later layers are named: their gradients still come (the leaf is the first probed layer).
    x = digits_test[0][:2]
    names = [info.name for info in probe_layers(resnet)]
    with probe(resnet, names) as rec:
        logits = rec.forward(x)
        later = names[len(names) // 2 :]
        got = _collect(rec, logits[:, 1].sum(), later)
    with probe(resnet, later) as rec:
        expected = rec.gradients(rec.forward(x)[:, 1].sum())
    for name in later:
        assert torch.allclose(got[name][1], expected[name], rtol=1e-5, atol=1e-7), name
        assert float(got[name][1].abs().sum()) > 0 or name == later[-1]


def test_trainable_parameters_and_an_input_that_requires_grad(resnet, digits_test):
    # Parameters that require grad make the first layer a non-leaf: no recorded leaf covers it,
    # so backward asks for it explicitly. Numbers must still equal Captum's.
    x = digits_test[0][:2]
    names = [info.name for info in probe_layers(resnet, kinds=(nn.Conv2d, nn.BatchNorm2d, nn.Linear))]
    target = torch.tensor([3, 7])
    trainable = resnet.copy()
    trainable.net.requires_grad_(True)
    maps = neuron_influence(trainable, x, layers=names, target=target)
    for name, ref in zip(names, _captum(resnet, names, x, target)):
        assert torch.allclose(maps[name].values, ref, rtol=1e-5, atol=1e-6), name
    assert all(p.grad is None for p in trainable.parameters())
    xg = x.clone().requires_grad_(True)
    with probe(resnet, names) as rec:
        logits = rec.forward(xg)
        got = _collect(rec, logits[:, 3].sum(), names)
    with probe(resnet, names) as rec:
        expected = rec.gradients(rec.forward(x.clone().requires_grad_(True))[:, 3].sum())
    for name in names:
        assert torch.allclose(got[name][1], expected[name], rtol=1e-5, atol=1e-7), name


def test_a_layer_the_objective_does_not_depend_on_gets_zeros():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.unused = nn.Conv2d(2, 2, 1)
            self.fc = nn.Linear(2 * 26 * 26, 2)

        def forward(self, x):
            h = self.conv(x)
            self.unused(h)  # computed, never used
            return self.fc(h.flatten(1))

    from neuronviz.core.models import wrap_model

    model = wrap_model(TwoHeads(), mean=[0.0], std=[1.0], input_size=(28, 28), class_names=["a", "b"], name="two-heads")
    x = torch.rand(2, 1, 28, 28)
    maps = neuron_influence(model, x, layers=["conv", "unused", "fc"], target=0)
    assert torch.equal(maps["unused"].values, torch.zeros(2, 2))
    assert float(maps["conv"].values.abs().sum()) > 0
    assert torch.allclose(maps["unused"].activations, model.net.unused(model.net.conv(x)).flatten(2).sum(2), atol=1e-5)


def test_to_cpu_is_one_buffer_split_into_independent_tensors():
    a, b = torch.arange(6.0).view(2, 3), torch.arange(4.0).view(2, 2) + 10
    same = _to_cpu([a, b])  # on the CPU: the tensors themselves, detached
    assert same[0] is not None and torch.equal(same[0], a) and torch.equal(same[1], b)
    if not torch.cuda.is_available():
        pytest.skip("the one-transfer path needs an accelerator (tests/test_cuda.py runs it on a GPU)")
    moved = _to_cpu([a.cuda(), b.cuda()])
    assert [t.device.type for t in moved] == ["cpu", "cpu"]
    assert torch.equal(moved[0], a) and torch.equal(moved[1], b)
    assert moved[0].untyped_storage().data_ptr() != moved[1].untyped_storage().data_ptr()
