"""neuronviz.methods.feature_maps: the maps of chosen channels on a clean image and its adversarial version."""

from __future__ import annotations

import pytest
import torch

from neuronviz.core.probe import hook_count
from neuronviz.infra.errors import InputError
from neuronviz.methods.feature_maps import channel_maps


def test_channel_maps_equal_a_plain_forward(digits_cnn, digits_test):
    x = digits_test[0][:1]
    x_adv = (x + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    hooks_before = hook_count(digits_cnn)
    maps = channel_maps(digits_cnn, x, x_adv, "features.3", [5, 2, 30])
    with torch.no_grad():
        upto = digits_cnn.net.features[:4]
        clean = upto(digits_cnn.normalize(x))[0]
        adv = upto(digits_cnn.normalize(x_adv))[0]
    assert maps.channels == (5, 2, 30) and maps.spatial == (14, 14)
    torch.testing.assert_close(maps.clean, clean[[5, 2, 30]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps.adversarial, adv[[5, 2, 30]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(maps.difference, adv[[5, 2, 30]] - clean[[5, 2, 30]], rtol=1e-5, atol=1e-5)
    assert hook_count(digits_cnn) == hooks_before


def test_channel_maps_of_a_linear_layer_are_numbers(digits_cnn, digits_test):
    x = digits_test[0][1:2]
    maps = channel_maps(digits_cnn, x[0], x[0], "classifier.0", [0, 63])  # (C, H, W) accepted too
    assert maps.spatial == () and maps.clean.shape == (2,)
    assert torch.equal(maps.difference, torch.zeros(2))


def test_channel_maps_refusals(digits_cnn, digits_test):
    x = digits_test[0][:2]
    with pytest.raises(InputError):
        channel_maps(digits_cnn, x, x, "features.3", [0])  # two images
    with pytest.raises(InputError, match="32 channels"):
        channel_maps(digits_cnn, x[:1], x[:1], "features.3", [32])
    with pytest.raises(InputError):
        channel_maps(digits_cnn, x[:1], x[:1], "features.3", [])
    with pytest.raises(InputError):
        channel_maps(digits_cnn, x[:1], x[:1], "features.3", [1.5])
    with pytest.raises(InputError):
        channel_maps(digits_cnn, x[:1], x[:1], "no.such.layer", [0])
