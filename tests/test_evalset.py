"""neuronviz.data.labelled: a labelled evaluation set for any model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronviz.core.models import wrap_model
from neuronviz.data.datasets import digits
from neuronviz.data.images import list_samples, load_sample
from neuronviz.data.labelled import DEFAULT_IMAGES, available_images, evaluation_set, is_digits_model
from neuronviz.infra.errors import InputError


@pytest.fixture(scope="module")
def photo_model():
    """A tiny 3-channel model with ImageNet-style class names (two of the sample photos' classes)."""
    names = [f"class {i}" for i in range(1000)]
    names[281], names[285] = "tabby", "Egyptian cat"  # the chelsea photo is a tabby in ImageNet's names
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1000))
    return wrap_model(net, [0.5] * 3, [0.25] * 3, (32, 32), names, name="tiny-photo")


def test_digits_model_gets_the_first_n_test_digits(digits_cnn):
    x, y = digits("test")
    result = evaluation_set(digits_cnn, 20)
    assert is_digits_model(digits_cnn)
    assert result.size == 20 and result.source == "digits-test" and result.available == 360
    assert torch.equal(result.images, x[:20]) and torch.equal(result.labels, y[:20])
    assert "first 20 of the 360 digits test images" in result.description
    assert evaluation_set(digits_cnn).size == DEFAULT_IMAGES
    everything = evaluation_set(digits_cnn, 10_000)
    assert everything.size == 360 and everything.description.startswith("all 360")
    assert available_images(digits_cnn) == 360


def test_other_models_get_the_labelled_samples(photo_model):
    labelled = [s for s in list_samples(photo_model) if s.true_class is not None]
    assert labelled, "the tabby photo must have a class in this model"
    result = evaluation_set(photo_model, 50)
    assert result.source == "samples" and result.size == len(labelled) == available_images(photo_model)
    assert result.labels.tolist() == [s.true_class for s in labelled]
    assert torch.equal(result.images[0:1], load_sample(labelled[0].id, photo_model))
    assert result.images.shape[1:] == (3, 32, 32)
    assert f"{len(labelled)} sample" in result.description and labelled[0].label in result.description
    assert not is_digits_model(photo_model)


def test_refusals(digits_cnn):
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(InputError):
            evaluation_set(digits_cnn, bad)
    with pytest.raises(InputError):
        evaluation_set("digits-cnn", 10)  # type: ignore[arg-type]
    nameless = wrap_model(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)), [0.5] * 3, [0.25] * 3, (8, 8), ["a", "b"])
    assert available_images(nameless) == 0
    with pytest.raises(InputError, match="no sample image has a class"):
        evaluation_set(nameless, 5)
