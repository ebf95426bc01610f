"""First-layer fragility (Pravin et al., reconstruction): exact values on a hand-built model, the
batched sweep against the naive loop, the copy-only rescaling, and the model left untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronviz.core.models import wrap_model
from neuronviz.core.probe import hook_count, probe
from neuronviz.infra.errors import InputError
from neuronviz.methods.fragility import (
    evaluate_rescaled,
    first_conv,
    first_layer_fragility,
    first_layer_maps,
    nodal_dropout,
    partial_zero,
    rescale_first_layer,
)


def _hooks(model):
    return hook_count(model)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


class Brightness(nn.Module):
    """Class 1 iff the image's mean brightness is above 0.5.

    First layer: filter 0 copies the image (it carries the class signal), filter 1 has zero
    weight and bias (it does nothing). Then global average pooling and a linear read-out of
    channel 0 only: logits = (0.5 − m, m − 0.5) with m the mean of channel 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.0]).view(2, 1, 1, 1))
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, -0.5]))

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.conv(x))))


@pytest.fixture
def brightness():
    return wrap_model(Brightness(), [0.0], [1.0], (8, 8), ["dark", "bright"], name="brightness")


@pytest.fixture
def brightness_data():
    values = torch.tensor([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95])
    x = values.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    return x, (values > 0.5).long()


def test_hand_built_model_signal_filter_is_fragile_and_idle_filter_robust(brightness, brightness_data):
    x, y = brightness_data
    report = first_layer_fragility(brightness, x, y, attack="fgsm", eps=0.1)
    assert report.layer == "conv" and report.filters == 2
    # FGSM moves every pixel by 0.1 toward the other class: 0.45 and 0.55 flip, nothing else.
    assert report.clean_accuracy == 1.0 and report.adv_accuracy == pytest.approx(0.8)
    # Dropping filter 0 leaves m = 0: everything is "dark", right for the 5 dark images only.
    assert report.clean_accuracy_dropped.tolist() == pytest.approx([0.5, 1.0])
    assert report.adv_accuracy_dropped.tolist() == pytest.approx([0.5, 0.8])
    assert report.delta_clean.tolist() == pytest.approx([-0.5, 0.0])
    assert report.delta_adv.tolist() == pytest.approx([-0.3, 0.0])
    # Targeting of filter 0: mean |Δa| = 0.1 over mean |a| = 0.5; filter 1 never moves.
    assert report.targeting_raw.tolist() == pytest.approx([0.2, 0.0], abs=1e-6)
    assert report.targeting.tolist() == [1.0, 0.0]
    assert report.score.tolist() == [1.0, 0.0]
    assert report.labels == ("fragile", "robust")
    assert report.fragile == [0] and report.robust == [1]
    assert report.correlation == pytest.approx(1.0)
    assert report.sweep_path == "dummy-input"
    assert report.strength.tolist() == [1.0, 1.0]  # r = score (fragile), 1 − score (robust)
    frame = report.to_frame()
    assert list(frame["label"]) == ["fragile", "robust"] and len(frame) == 2
    assert report.to_dict()["fragile"] == [0]


def test_rescale_works_on_a_copy_and_scales_channels_exactly(brightness, brightness_data):
    x, y = brightness_data
    report = first_layer_fragility(brightness, x, y, eps=0.1)
    state, hooks = _state(brightness), _hooks(brightness)
    beta = 0.2
    twin = rescale_first_layer(brightness, report, beta)
    assert twin is not brightness and _same_state(brightness, state) and _hooks(brightness) == hooks
    factors = report.factors(beta)
    assert factors.tolist() == pytest.approx([1 + beta * 1.0, 1 - beta * 1.0])
    probe_x = torch.rand(4, 1, 8, 8) * 0.5 + 0.25
    with probe(brightness, ["conv"]) as rec, torch.no_grad():
        rec.forward(probe_x)
        original = rec.activation("conv").clone()
    with probe(twin, ["conv"]) as rec, torch.no_grad():
        rec.forward(probe_x)
        scaled = rec.activation("conv")
    torch.testing.assert_close(scaled, original * factors.view(1, -1, 1, 1), rtol=0, atol=1e-6)


def test_rescale_factors_on_digits_cnn(digits_cnn, digits_test):
    x, y = digits_test
    report = first_layer_fragility(digits_cnn, x[:40], y[:40], eps=0.1)
    state = _state(digits_cnn)
    twin = rescale_first_layer(digits_cnn, report, beta=0.3)
    sign = torch.tensor([{"fragile": 1.0, "robust": -1.0, "neutral": 0.0}[lab] for lab in report.labels])
    expected = 1 + 0.3 * sign * report.strength
    torch.testing.assert_close(
        twin.net.features[0].weight, digits_cnn.net.features[0].weight * expected.view(-1, 1, 1, 1), rtol=0, atol=1e-7
    )
    torch.testing.assert_close(twin.net.features[0].bias, digits_cnn.net.features[0].bias * expected, rtol=0, atol=1e-7)
    assert _same_state(digits_cnn, state)
    assert torch.equal(twin.net.features[3].weight, digits_cnn.net.features[3].weight)


def test_evaluate_rescaled_reports_before_and_after(brightness, brightness_data):
    x, y = brightness_data
    report = first_layer_fragility(brightness, x, y, eps=0.1)
    same = evaluate_rescaled(brightness, x, y, report, beta=0.0)
    assert same.clean_before == same.clean_after == 1.0
    assert same.adv_before == same.adv_after == same.adv_transfer_after == pytest.approx(0.8)
    # β = 0.5 amplifies the signal filter by 1.5: m → 1.5·m moves the boundary to m = 1/3.
    moved = evaluate_rescaled(brightness, x, y, report, beta=0.5)
    assert moved.clean_after == pytest.approx(0.8)  # 0.35 and 0.45 now read as bright
    assert moved.to_frame().shape == (3, 3) and moved.to_dict()["beta"] == 0.5


def test_batched_sweep_equals_the_naive_loop(digits_cnn, digits_test):
    x = digits_test[0][:12]
    naive = nodal_dropout(digits_cnn, x, batched=False)
    one = nodal_dropout(digits_cnn, x)  # CPU default: one filter per pass, zeroed in place
    stacked = nodal_dropout(digits_cnn, x, filters_per_pass=5)  # 5 masked copies per pass: 4 passes
    budget = nodal_dropout(digits_cnn, x, filters_per_pass=None, chunk_bytes=3 * 12 * 16 * 28 * 28 * 4)
    assert naive.path == "loop"
    for batched in (one, stacked, budget):
        assert batched.path == "dummy-input" and batched.logits.shape == (16, 12, 10)
        torch.testing.assert_close(batched.logits, naive.logits, rtol=1e-5, atol=1e-5)
        assert torch.equal(batched.predictions, naive.predictions)
        torch.testing.assert_close(batched.base_logits, naive.base_logits, rtol=0, atol=0)
    # the recorded first-layer output was restored after the in-place zeroing
    torch.testing.assert_close(one.first_output, naive.first_output, rtol=0, atol=0)
    only = nodal_dropout(digits_cnn, x, filters=[7, 2])
    torch.testing.assert_close(only.logits, naive.logits[[7, 2]], rtol=1e-5, atol=1e-5)
    # and the naive loop itself is a plain forward with the channel zeroed
    with probe(digits_cnn, ["features.0"], replace={"features.0": partial_zero(3)}) as rec, torch.no_grad():
        torch.testing.assert_close(rec.forward(x), naive.logits[3], rtol=0, atol=0)


class InputSkip(nn.Module):
    """Uses its input after the first convolution too: the dummy-input shortcut is invalid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3))) + x.mean((1, 2, 3)).unsqueeze(1) * torch.tensor([5.0, -5.0])


def test_sweep_falls_back_to_the_real_input_when_the_network_reuses_it():
    model = wrap_model(InputSkip(), [0.0], [1.0], (6, 6), ["a", "b"])
    x = torch.rand(5, 1, 6, 6)
    naive = nodal_dropout(model, x, batched=False)
    for batched in (nodal_dropout(model, x), nodal_dropout(model, x, filters_per_pass=2)):
        assert batched.path == "full-input"
        torch.testing.assert_close(batched.logits, naive.logits, rtol=1e-5, atol=1e-6)


def test_shared_model_is_unchanged_by_every_call(digits_cnn, digits_test):
    x, y = digits_test[0][:16], digits_test[1][:16]
    state, hooks = _state(digits_cnn), _hooks(digits_cnn)
    report = first_layer_fragility(digits_cnn, x, y, eps=0.1)
    rescale_first_layer(digits_cnn, report, 0.2)
    evaluate_rescaled(digits_cnn, x, y, report, 0.2)
    first_layer_maps(digits_cnn, x[0], report.adversarial[0])
    nodal_dropout(digits_cnn, x)
    assert _same_state(digits_cnn, state) and _hooks(digits_cnn) == hooks
    assert not digits_cnn.training and all(not p.requires_grad and p.grad is None for p in digits_cnn.parameters())


def test_first_layer_maps_of_one_image(digits_cnn, digits_test):
    x = digits_test[0][:1]
    x_adv = (x + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    maps = first_layer_maps(digits_cnn, x, x_adv)
    assert maps.layer == "features.0"
    assert maps.weights.shape == (16, 1, 5, 5) and maps.clean.shape == maps.adversarial.shape == (16, 28, 28)
    torch.testing.assert_close(maps.weights, digits_cnn.net.features[0].weight)
    expected_clean = digits_cnn.net.features[0](digits_cnn.normalize(x))[0]
    torch.testing.assert_close(maps.clean, expected_clean, rtol=1e-5, atol=1e-6)
    change = (maps.adversarial - maps.clean).abs().flatten(1).mean(1) / maps.clean.abs().flatten(1).mean(1)
    torch.testing.assert_close(maps.shift, change)
    assert len(maps.to_frame()) == 16


def test_concurrent_calls_match_sequential(brightness, brightness_data, run_in_threads):
    x, y = brightness_data
    expected = first_layer_fragility(brightness, x, y, eps=0.1)
    results = run_in_threads(lambda: first_layer_fragility(brightness, x, y, eps=0.1), 4)
    for result in results:
        assert torch.equal(result.delta_adv, expected.delta_adv) and result.labels == expected.labels


class NoConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.flatten(x))


def test_bad_arguments_raise_input_errors(brightness, brightness_data, digits_cnn):
    x, y = brightness_data
    for eps in (0, -0.1, 1.5, float("nan"), True):
        with pytest.raises(InputError, match="eps"):
            first_layer_fragility(brightness, x, y, eps=eps)
    with pytest.raises(InputError, match="empty"):
        first_layer_fragility(brightness, x[:0], y[:0])
    with pytest.raises(InputError, match="labels"):
        first_layer_fragility(brightness, x, y[:3])
    with pytest.raises(InputError, match="no convolutional layer"):
        first_conv(wrap_model(NoConv(), [0.0], [1.0], (4, 4), ["a", "b"]))
    with pytest.raises(InputError, match="tolerance"):
        first_layer_fragility(brightness, x, y, tolerance=2.0)
    report = first_layer_fragility(brightness, x, y)
    for beta in (-0.1, 1.5, float("inf")):
        with pytest.raises(InputError, match="beta"):
            rescale_first_layer(brightness, report, beta)
    with pytest.raises(InputError, match="another model"):
        rescale_first_layer(digits_cnn, report, 0.2)
    with pytest.raises(InputError, match="one image"):
        first_layer_maps(brightness, x[:2], x[:2])


def test_probe_replace_substitutes_and_cleans_up(digits_cnn, digits_test):
    x = digits_test[0][:3]
    hooks = _hooks(digits_cnn)
    with probe(digits_cnn, ["features.0"]) as rec, torch.no_grad():
        plain = rec.forward(x)
        first = rec.activation("features.0").clone()
    # a tensor substitute with another batch size than the (dummy) input
    with probe(digits_cnn, ["features.0", "features.3"], replace={"features.0": first}) as rec, torch.no_grad():
        logits = rec.forward(torch.zeros(1, 1, 1, 1))
        assert torch.equal(rec.activation("features.0"), first)
    torch.testing.assert_close(logits, plain, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="not probed"):
        with probe(digits_cnn, ["features.0"], replace={"features.3": first}):
            pass
    with pytest.raises(RuntimeError):
        with probe(digits_cnn, ["features.0"], replace={"features.0": torch.zeros(2, 5, 3, 3)}) as rec:
            rec.forward(x)  # the wrong shape fails downstream; the hooks still go
    assert _hooks(digits_cnn) == hooks
