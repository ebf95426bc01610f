"""The fast all-layer influence path (issue 25.1) equals Captum on every model kind, and its
shortcuts (layer plans remembered per model object, a graph freed during the backward pass, one
reduction for a tensor two layers output) never change a number: a replaced module, a layer the
objective does not depend on and an input that requires grad all give Captum's values."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradientXActivation
from torch import nn

from neuronviz.core.layers import neuron_sums
from neuronviz.core.models import load_model, wrap_model
from neuronviz.core.probe import forget, memo, tap
from neuronviz.methods import influence
from neuronviz.methods.influence import neuron_influence, probe_layers


@pytest.fixture(autouse=True, params=["all gradients at once", "reduced inside the pass"])
def gradient_path(request, monkeypatch):
    """Every test runs on both grad×act paths: all gradients asked for at once and reduced after
    (small activations, the product formed in the gradient's memory) and each reduced inside the
    backward pass by a tensor hook (large activations)."""
    monkeypatch.setattr(influence, "HELD_AT_ONCE_BYTES", 2**62 if request.param == "all gradients at once" else 0)
    return request.param


def _captum_per_neuron(model, infos, x, target) -> dict[str, torch.Tensor]:
    """Captum's multi-layer LayerGradientXActivation, summed per neuron like ours. A heads layer is
    recorded at the input of its ``proj``: Captum is asked for those inputs in a call of its own."""
    taps = [tap(model, info.name) for info in infos]
    outputs = [i for i, t in enumerate(taps) if not t.on_input]
    inputs = [i for i, t in enumerate(taps) if t.on_input]
    refs: dict[int, torch.Tensor] = {}
    for chosen, on_input in ((outputs, False), (inputs, True)):
        if not chosen:
            continue
        got = LayerGradientXActivation(model, [taps[i].module for i in chosen]).attribute(
            x, target=target, attribute_to_layer_input=on_input
        )
        got = list(got) if len(chosen) > 1 else [got]
        for i, ref in zip(chosen, got):
            refs[i] = ref[0] if isinstance(ref, (tuple, list)) else ref
    return {info.name: neuron_sums(refs[i].detach(), "channel", info) for i, info in enumerate(infos)}


def _assert_equal_to_captum(model, x, maps=None, rtol=1e-5):
    infos = probe_layers(model)
    maps = maps or neuron_influence(model, x)
    assert list(maps) == [info.name for info in infos]
    target = maps[infos[0].name].target
    refs = _captum_per_neuron(model, infos, x, target)
    for info in infos:
        ref = refs[info.name]
        scale = float(ref.abs().max()) or 1.0
        assert float((maps[info.name].values - ref).abs().max()) / scale <= rtol, info.name
    return maps


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", ["digits-cnn", "digits-resnet", "digits-vit"])
def test_every_probe_layer_equals_captums_multi_layer_call(name, batch):
    model = load_model(name, device="cpu")
    torch.manual_seed(batch)
    x = torch.rand(batch, model.channels, *model.input_size)
    maps = _assert_equal_to_captum(model, x)
    assert any(float(m.values.abs().max()) > 0 for m in maps.values())
    # a second call (its layer plan and taps remembered) gives the same numbers, bit for bit
    again = neuron_influence(model, x, target=maps[next(iter(maps))].target)
    for layer, m in maps.items():
        assert torch.equal(m.values, again[layer].values) and torch.equal(m.activations, again[layer].activations)


def test_a_tensor_two_layers_output_gives_both_the_same_independent_numbers():
    model = load_model("digits-resnet", device="cpu")
    x = torch.rand(2, 1, 28, 28)
    maps = neuron_influence(model, x, layers=["layer1.0.relu2", "layer1.0"])
    block, relu = maps["layer1.0"], maps["layer1.0.relu2"]
    assert torch.equal(block.values, relu.values) and torch.equal(block.activations, relu.activations)
    assert block.values.data_ptr() != relu.values.data_ptr()  # independent tensors
    block.values.zero_()
    assert float(relu.values.abs().max()) > 0


class Branchy(nn.Module):
    """conv → relu → (fc to the logits) and an unused side branch the objective does not depend on."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.side = nn.Conv2d(4, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4, 3)
        self.last_side = None

    def forward(self, x):
        h = self.relu(self.conv(x))
        self.last_side = self.side(h)  # computed, never used by the logits
        return self.fc(self.flat(self.pool(h)))


class SumPool(nn.Module):
    def forward(self, h):
        return h.sum((2, 3))


def _branchy():
    torch.manual_seed(0)
    return wrap_model(Branchy(), mean=[0.5], std=[0.25], input_size=(6, 6), class_names=["a", "b", "c"], name="branchy")


def test_a_layer_the_objective_does_not_depend_on_gets_zero_and_the_others_stay_exact():
    model = _branchy()
    x = torch.rand(2, 1, 6, 6)
    maps = neuron_influence(model, x, layers=["conv", "relu", "side", "fc"])
    assert torch.equal(maps["side"].values, torch.zeros(2, 2))
    assert float(maps["side"].activations.abs().max()) > 0  # its activation is still recorded
    target = maps["conv"].target
    for layer in ("conv", "relu", "fc"):
        ref = LayerGradientXActivation(model, model.layer(layer)).attribute(x, target=target)
        ref = ref.flatten(2).sum(2) if ref.dim() > 2 else ref
        assert torch.allclose(maps[layer].values, ref, rtol=1e-5, atol=1e-7), layer


def test_gradients_that_share_memory_are_not_overwritten(gradient_path):
    # the pool's gradient is a view of the flatten's (one memory); a residual sum hands one gradient
    # to both of its branches: a product formed in place in one would change the other's numbers
    model = _branchy()
    x = torch.rand(2, 1, 6, 6)
    layers = ["conv", "relu", "pool", "flat", "fc"]
    maps = neuron_influence(model, x, layers=layers)
    target = maps["conv"].target
    for layer in layers:
        ref = LayerGradientXActivation(model, model.layer(layer)).attribute(x, target=target)
        ref = ref.flatten(2).sum(2) if ref.dim() > 2 else ref
        assert torch.allclose(maps[layer].values, ref, rtol=1e-5, atol=1e-7), (gradient_path, layer)
    # a sum over positions hands the layer before it an expanded gradient (one number per channel)
    torch.manual_seed(1)
    summed = wrap_model(
        nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), SumPool(), nn.Linear(3, 2)),
        mean=[0.5], std=[0.25], input_size=(6, 6), class_names=["a", "b"], name="summed",
    )
    got = neuron_influence(summed, x, layers=["0", "1"])  # not "2": its gradient is the memory "1"'s expands
    for layer in ("0", "1"):
        ref = LayerGradientXActivation(summed, summed.layer(layer)).attribute(x, target=got["0"].target)
        ref = ref.flatten(2).sum(2) if ref.dim() > 2 else ref
        assert torch.allclose(got[layer].values, ref, rtol=1e-5, atol=1e-7), (gradient_path, layer)
    # and on a residual network, every block and the layers inside it
    resnet = load_model("digits-resnet", device="cpu")
    _assert_equal_to_captum(resnet, torch.rand(2, 1, 28, 28))


def test_an_input_that_requires_grad_gives_the_same_numbers():
    model = load_model("digits-cnn", device="cpu")
    x = torch.rand(2, 1, 28, 28)
    plain = neuron_influence(model, x)
    needing = neuron_influence(model, x.clone().requires_grad_(True), target=plain["classifier.2"].target)
    for layer, m in plain.items():
        assert torch.allclose(m.values, needing[layer].values, rtol=1e-5, atol=1e-6), layer


def test_a_replaced_module_is_found_again_not_served_from_the_memo():
    model = _branchy()
    x = torch.rand(2, 1, 6, 6)
    before = neuron_influence(model, x, layers=["conv", "relu", "fc"], target=[0, 1])
    assert any(key[0] == "taps" for key in memo(model))
    torch.manual_seed(5)
    model.net.fc = nn.Linear(4, 3).requires_grad_(False)  # a new module object under the same name
    after = neuron_influence(model, x, layers=["conv", "relu", "fc"], target=[0, 1])
    ref = LayerGradientXActivation(model, model.layer("fc")).attribute(x, target=torch.tensor([0, 1]))
    assert torch.allclose(after["fc"].values, ref, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(after["fc"].values, before["fc"].values)


def test_a_module_whose_output_shape_changed_is_described_again():
    model = _branchy()
    x = torch.rand(1, 1, 6, 6)
    assert neuron_influence(model, x, layers=["conv", "fc"])["conv"].values.shape == (1, 4)
    with torch.no_grad():  # the same conv object, now with 5 output channels (and a pool/fc that fit)
        model.net.conv.weight = nn.Parameter(torch.randn(5, 1, 3, 3), requires_grad=False)
        model.net.conv.bias = nn.Parameter(torch.randn(5), requires_grad=False)
        model.net.conv.out_channels = 5
        model.net.side = nn.Conv2d(5, 2, 1).requires_grad_(False)
        model.net.fc = nn.Linear(5, 3).requires_grad_(False)
    maps = neuron_influence(model, x, layers=["conv", "fc"])
    assert maps["conv"].values.shape == (1, 5) and maps["conv"].shape == (5, 6, 6)
    ref = LayerGradientXActivation(model, model.layer("conv")).attribute(x, target=maps["conv"].target)
    assert torch.allclose(maps["conv"].values, ref.flatten(2).sum(2), rtol=1e-5, atol=1e-7)
    forget(model)  # forgetting is always safe: the next call describes the layers again
    assert torch.equal(neuron_influence(model, x, layers=["conv", "fc"], target=maps["conv"].target)["conv"].values, maps["conv"].values)


def test_resnet18_at_224_equals_captum():  # random weights; about a second
    model = load_model("resnet18", weights=None, device="cpu")
    torch.manual_seed(0)
    _assert_equal_to_captum(model, torch.rand(1, 3, 224, 224), rtol=1e-5)
