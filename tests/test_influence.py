"""Probe and influence: exact values by hand, exact parity with Captum, hooks, threads, groups."""

import math

import pytest
import torch
from captum.attr import InternalInfluence, LayerConductance, LayerGradientXActivation
from torch import nn

from neuronviz.core.models import load_model, wrap_model
from neuronviz.core.probe import hook_count, probe
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.attribution import input_attribution
from neuronviz.methods.influence import (
    FRONT,
    MIDDLE,
    TAIL,
    InfluenceMap,
    default_layer,
    influence_shift,
    layer_shift_table,
    neuron_influence,
    partition,
    probe_layers,
)


class HandNet(nn.Module):
    """conv 1×1 (1→2, weights +1 and −1) · ReLU · flatten · linear (8→2), all weights set by hand."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            # class 0: 1 on channel-0 positions, 2 on channel-1; class 1: 3 on channel 0 positions
            self.fc.weight.copy_(torch.tensor([[1.0] * 4 + [2.0] * 4, [3.0] * 4 + [0.0] * 4]))

    def forward(self, x):
        return self.fc(self.flat(self.relu(self.conv(x))))


@pytest.fixture
def hand():
    return wrap_model(HandNet(), mean=[0.0], std=[1.0], input_size=(2, 2), class_names=["a", "b"], name="hand")


X_HAND = torch.tensor([[[[0.5, 0.25], [1.0, 0.0]]]])  # sum 1.75


def test_hand_computed_values(hand):
    # z0 = 1·(0.5+0.25+1+0) = 1.75, z1 = 3·1.75 = 5.25 → prediction is class 1
    maps = neuron_influence(hand, X_HAND, layers=["conv", "relu", "fc"])
    conv = maps["conv"]
    assert conv.target.tolist() == [1]
    # conv channel 0: a = x, ∂z1/∂a = 3 where a > 0 (ReLU passes), so I = 3·1.75 = 5.25
    # conv channel 1: a = −x ≤ 0, ReLU blocks, gradient 0, so I = 0
    assert torch.allclose(conv.values, torch.tensor([[5.25, 0.0]]))
    assert torch.allclose(conv.activations, torch.tensor([[1.75, -1.75]]))
    unit = neuron_influence(hand, X_HAND, layers="conv", granularity="unit")["conv"]
    assert torch.allclose(unit.values, torch.tensor([[1.5, 0.75, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]]))
    assert unit.neuron_label(2) == "(0, 1, 0)" and conv.neuron_label(1) == "ch 1"
    # fc output units: I_k = z_k · ∂z1/∂z_k → (0, 5.25)
    assert torch.allclose(maps["fc"].values, torch.tensor([[0.0, 5.25]]))
    # toward class 0 instead: channel 0 gets 1·1.75, channel 1 still blocked
    to_a = neuron_influence(hand, X_HAND, layers="conv", target=0)["conv"]
    assert torch.allclose(to_a.values, torch.tensor([[1.75, 0.0]]))
    act = neuron_influence(hand, X_HAND, layers="relu", method="activation")["relu"]
    assert torch.allclose(act.values, torch.tensor([[1.75, 0.0]]))


def _captum_reference(model, layer, x, target, granularity="channel"):
    ref = LayerGradientXActivation(model, model.layer(layer)).attribute(x, target=target)
    return ref.flatten(2).sum(2) if granularity == "channel" and ref.dim() > 2 else ref.flatten(1)


@pytest.mark.parametrize("name", ["digits-cnn", "digits-resnet", "digits-cnn-robust", "resnet18", "mobilenet_v2"])
def test_single_pass_equals_captum_layer_by_layer(name):
    weights = None if name in ("resnet18", "mobilenet_v2") else "default"
    model = load_model(name, weights=weights, device="cpu")
    torch.manual_seed(0)
    n, size = (2, model.input_size) if model.channels == 1 else (1, (32, 32))  # the zoo nets take any size ≥ 32
    x = torch.rand(n, model.channels, *size)
    maps = neuron_influence(model, x)
    layers = [info.name for info in probe_layers(model)]
    assert layers == list(maps)
    target = maps[layers[0]].target
    # every layer against Captum's multi-layer call, and a few against one call per layer
    refs = LayerGradientXActivation(model, [model.layer(n) for n in layers]).attribute(x, target=target)
    singles = {n: _captum_reference(model, n, x, target) for n in layers[:: max(1, len(layers) // 6)]}
    for layer, ref in zip(layers, refs):
        ref = ref.flatten(2).sum(2) if ref.dim() > 2 else ref.flatten(1)
        scale = ref.abs().max().clamp_min(1e-12)
        assert float((maps[layer].values - ref).abs().max() / scale) <= 1e-5, layer
        if layer in singles:
            assert float((maps[layer].values - singles[layer]).abs().max() / scale) <= 1e-5, layer
    unit_layer = default_layer(model)
    unit = neuron_influence(model, x, layers=unit_layer, granularity="unit")[unit_layer]
    ref = _captum_reference(model, unit_layer, x, unit.target, granularity="unit")
    assert float((unit.values - ref).abs().max() / ref.abs().max()) <= 1e-5
    # channel influence is the spatial sum of unit influence
    channel = maps[unit_layer].values
    assert torch.allclose(unit.values.view(n, channel.shape[1], -1).sum(2), channel, rtol=1e-4, atol=1e-6)


def test_captum_path_methods_equal_captum(digits_cnn, digits_test):
    x = digits_test[0][:2]
    for method, cls in (("conductance", LayerConductance), ("internal_influence", InternalInfluence)):
        ours = neuron_influence(digits_cnn, x, layers="features.3", method=method, n_steps=16)["features.3"]
        ref = cls(digits_cnn, digits_cnn.layer("features.3")).attribute(x, target=ours.target, n_steps=16)
        assert torch.allclose(ours.values, ref.flatten(2).sum(2), atol=1e-6)


def test_captum_methods_on_inplace_models_do_not_touch_the_shared_model():
    model = load_model("resnet18", weights=None, device="cpu")
    x = torch.rand(1, 3, 64, 64)
    maps = neuron_influence(model, x, layers=["layer1.0.bn1"], method="conductance", n_steps=4)
    assert torch.isfinite(maps["layer1.0.bn1"].values).all()
    assert model.net.relu.inplace is True  # the shared model keeps its in-place ReLUs

def _hooks(model):
    return hook_count(model)


class Exploding(nn.Module):
    def forward(self, x):
        raise RuntimeError("boom in the middle of the forward pass")


def test_hooks_are_removed_even_when_the_forward_raises(digits_cnn, digits_test):
    model = digits_cnn.copy()
    before = _hooks(model)
    model.net.classifier[1] = Exploding()
    with pytest.raises(RuntimeError, match="boom"):
        neuron_influence(model, digits_test[0][:1])
    assert _hooks(model) == before
    with pytest.raises(ValueError, match="inside the block"):
        with probe(model, ["features.0"]):
            assert _hooks(model) == before + 1
            raise ValueError("an error inside the block")
    assert _hooks(model) == before
    assert model.lock.acquire(blocking=False)  # the lock was released
    model.lock.release()


def test_model_and_caller_tensors_are_unchanged(digits_cnn, digits_test):
    x = digits_test[0][:3].clone()
    x_copy, state = x.clone(), {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    hooks = _hooks(digits_cnn)
    neuron_influence(digits_cnn, x)
    assert torch.equal(x, x_copy) and not x.requires_grad
    assert all(torch.equal(v, state[k]) for k, v in digits_cnn.state_dict().items())
    assert _hooks(digits_cnn) == hooks and not digits_cnn.training
    assert all(p.grad is None for p in digits_cnn.parameters())


def test_reused_modules_are_recorded_per_call_and_refused_as_one_layer():
    model = load_model("resnet18", weights=None, device="cpu")
    names = [info.name for info in probe_layers(model)]
    assert "layer1.0.relu" not in names and "layer1.0" in names and default_layer(model) == "layer4.1"
    with probe(model, ["layer1.0.relu"]) as rec:
        with torch.no_grad():
            rec.forward(torch.rand(1, 3, 64, 64))
        assert len(rec.calls("layer1.0.relu")) == 2
        with pytest.raises(InputError, match="called 2 times"):
            rec.activation("layer1.0.relu")
    with pytest.raises(InputError, match="called 2 times"):
        neuron_influence(model, torch.rand(1, 3, 64, 64), layers="layer1.0.relu")


class PairOut(nn.Module):
    def forward(self, x):
        return x * 2, "metadata"


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pair = PairOut()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        doubled, _ = self.pair(x)
        return self.fc(doubled.flatten(1))


def test_tuple_outputs_record_their_first_tensor():
    model = wrap_model(TupleNet(), mean=[0.0], std=[1.0], input_size=(2, 2), class_names=["a", "b"])
    x = torch.rand(1, 1, 2, 2)
    influence = neuron_influence(model, x, layers="pair", granularity="unit")["pair"]
    # by hand: a = 2x, ∂z_c/∂a = W_c (Captum cannot hook this module: its tuple holds a string)
    expected = (2 * x).flatten(1) * model.net.fc.weight[influence.target]
    assert torch.allclose(influence.values, expected, atol=1e-6)


def test_eight_threads_match_sequential_results(digits_test, run_in_threads):
    model = load_model("digits-resnet", device="cpu")
    x = digits_test[0][:4]
    expected = neuron_influence(model, x)
    results = run_in_threads(lambda: neuron_influence(model, x), 8)
    for result in results:
        assert all(torch.equal(result[k].values, expected[k].values) for k in expected)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(method="lrp"), "method must be one of"),
        (dict(granularity="pixel"), "granularity must be one of"),
        (dict(layers="features.99"), "no layer 'features.99'"),
        (dict(target=10), "outside the model's classes"),
        (dict(target=[1, 2, 3]), "3 classes for 2 images"),
        (dict(method="conductance", n_steps=0), "n_steps"),
    ],
)
def test_errors(kwargs, message, digits_cnn, digits_test):
    with pytest.raises(InputError, match=message):
        neuron_influence(digits_cnn, digits_test[0][:2], **kwargs)


# -- groups and shifts -------------------------------------------------------------------------


def _map(values, layer="l"):
    values = torch.tensor(values, dtype=torch.float32)
    return InfluenceMap(layer, "grad_x_act", "channel", torch.zeros(len(values), dtype=torch.long), values, values.clone(), (values.shape[1],))


def test_partition_counts_fractions_and_rules():
    m = _map([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    bottom = partition(m, front=2, tail=1)
    assert bottom.front.tolist() == [[0, 1]] and bottom.tail.tolist() == [[5]]
    assert bottom.labels.tolist() == [[FRONT, FRONT, MIDDLE, MIDDLE, MIDDLE, TAIL]]
    nxt = partition(m, front=2, tail=2, tail_rule="next")
    assert nxt.tail.tolist() == [[2, 3]]
    tiny = partition(m, front=0.05, tail=0.05)  # 5% of 6 neurons → at least one each
    assert tiny.front_size == 1 and tiny.tail_size == 1
    assert partition(m, front=0.5, tail=0.3).front_size == 3 and partition(m, front=0.5, tail=0.3).tail_size == 2
    for kwargs, message in [
        (dict(front=0), "at least 1"),
        (dict(front=1.5), "fraction"),
        (dict(front=4, tail=3), "exceed"),
        (dict(front=7), "has 6"),
        (dict(tail_rule="top"), "tail_rule"),
        (dict(front="5%"), "count"),
    ]:
        with pytest.raises(InputError, match=message):
            partition(m, **kwargs)


def test_shift_worked_by_hand():
    before = _map([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    after = _map([[0.5, 4.0, 3.0, 2.0, 1.0, 6.0]])  # the front neuron collapses, the tail one jumps
    shift = influence_shift(before, after, front=1, tail=1)
    # neuron 0: front → tail; neuron 5: tail → front; the rest stay middle
    assert shift.transition[0].tolist() == [[0, 0, 1], [0, 4, 0], [1, 0, 0]]
    assert shift.front_overlap.tolist() == [0.0]
    # the paper's direction: the front's influence fell (suppressed); the tail's rose (weakened: NOT enhanced)
    assert shift.front_suppressed_influence.tolist() == [1] and shift.tail_enhanced_influence.tolist() == [0]
    assert shift.front_suppressed_activation.tolist() == [1] and shift.tail_enhanced_activation.tolist() == [1]
    with pytest.warns(DeprecationWarning, match="opposite"):
        assert shift.tail_lifted.tolist() == [1]  # the old count: tail influence rose
    assert shift.front_influence_change.tolist() == [-4.5] and shift.tail_influence_change.tolist() == [6.0]
    # ascending ranks before [6,5,4,3,2,1], after [1,5,4,3,2,6]: Σd² = 50, ρ = 1 − 6·50/(6·35)
    assert shift.spearman[0] == pytest.approx(1 - 300 / 210, abs=1e-6)
    assert "1 of 1 front neurons lost activation (1 lost influence" in shift.summary()
    unchanged = influence_shift(before, before, front=2, tail=2)
    assert unchanged.spearman[0] == pytest.approx(1.0) and unchanged.kendall[0] == pytest.approx(1.0)
    assert unchanged.transition[0].diagonal().tolist() == [2, 2, 2]


def test_attack_shift_across_the_network(digits_cnn, digits_test):
    x, y = digits_test[0][:16], digits_test[1][:16]
    report = run_attack(digits_cnn, x, "pgd", {"steps": 20}, labels=y, seed=0)
    target = report.clean_pred
    before = neuron_influence(digits_cnn, x, target=target)
    after = neuron_influence(digits_cnn, report.adversarial, target=target)  # toward the benign class
    table = layer_shift_table(before, after)
    assert list(table["layer"]) == list(before)
    defined = table["spearman"].dropna()
    assert defined.between(-1, 1).all() and table["front_overlap"].between(0, 1).all()
    # classifier.2: only the benign logit has influence toward it, so ρ is not defined (never −1)
    assert math.isnan(table.iloc[-1]["spearman"]) and table.iloc[-1]["correlation_note"].startswith("not defined")
    # toward the benign class: the benign logit falls for every fooled image, and most front
    # neurons of the last feature layer lose influence (NIP's observation; measured 58% here)
    assert table.iloc[-1]["front_suppressed_influence_share"] == 1.0
    assert table[table["layer"] == default_layer(digits_cnn)].iloc[0]["front_suppressed_influence_share"] > 0.5
    row = table.iloc[-1]
    assert row["front_suppressed_influence_share_n"] == 16 * row["front_size"]  # neuron × image pairs
    assert row["front_suppressed_influence_share_low"] <= 1.0 == row["front_suppressed_influence_share_high"]
    # toward each image's own class the ranking is rewired: late layers keep little of their order
    own = layer_shift_table(before, neuron_influence(digits_cnn, report.adversarial))
    late = own[own["layer"] == default_layer(digits_cnn)].iloc[0]
    assert late["spearman"] < 0.5 < table[table["layer"] == default_layer(digits_cnn)].iloc[0]["spearman"]


# -- input attributions ------------------------------------------------------------------------


def test_input_attributions(digits_cnn, digits_test):
    x = digits_test[0][:2]
    saliency = input_attribution(digits_cnn, x, "saliency")
    xg = x.clone().requires_grad_(True)
    logits = digits_cnn(xg)
    grad, = torch.autograd.grad(logits.gather(1, saliency.target[:, None]).sum(), xg)
    assert torch.allclose(saliency.values, grad.abs().sum(1), atol=1e-6)
    ig = input_attribution(digits_cnn, x, "integrated_gradients", n_steps=64)
    # completeness: attributions sum to z_c(x) − z_c(black)
    with torch.no_grad():
        gap = digits_cnn(x).gather(1, ig.target[:, None])[:, 0] - digits_cnn(torch.zeros_like(x)).gather(1, ig.target[:, None])[:, 0]
    assert torch.allclose(ig.values.sum((1, 2)), gap, rtol=0.05, atol=0.05)
    cam = input_attribution(digits_cnn, x, "grad_cam")
    assert cam.values.shape == (2, 28, 28) and cam.layer == "features.7" and float(cam.values.min()) >= 0
    with pytest.raises(InputError, match="method"):
        input_attribution(digits_cnn, x, "lime")


def test_influence_map_select_picks_images_in_order(digits_cnn, digits_test):
    x = digits_test[0][:4]
    full = neuron_influence(digits_cnn, x, layers="features.7")["features.7"]
    picked = full.select([2, 0, 2])
    assert torch.equal(picked.values, full.values[[2, 0, 2]])
    assert torch.equal(picked.activations, full.activations[[2, 0, 2]])
    assert torch.equal(picked.target, full.target[[2, 0, 2]])
    one = full.select(1)
    assert one.values.shape == (1, full.neurons) and torch.equal(one.values[0], full.values[1])
    assert (one.layer, one.method, one.shape) == (full.layer, full.method, full.shape)
