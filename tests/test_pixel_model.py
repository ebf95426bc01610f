import copy
import pickle
import threading

import pytest
import torch
from torch import nn

from neuronviz.core.models import PixelModel, wrap_model
from neuronviz.infra.errors import InputError


class Sum(nn.Module):
    """Tiny hand-set classifier: logit k = (k+1) * sum of the normalised input."""

    def __init__(self, classes=3):
        super().__init__()
        self.fc = nn.Linear(1, classes, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.arange(1, classes + 1, dtype=torch.float32)[:, None])

    def forward(self, x):
        return self.fc(x.sum(dim=(1, 2, 3))[:, None])


@pytest.fixture
def tiny():
    return wrap_model(Sum(), mean=[0.5], std=[0.25], input_size=(2, 2), class_names=["a", "b", "c"], name="tiny")


def test_normalisation_inside_the_model(tiny):
    x = torch.full((1, 1, 2, 2), 0.75)  # normalised: (0.75-0.5)/0.25 = 1 per pixel, sum 4
    assert torch.allclose(tiny(x), torch.tensor([[4.0, 8.0, 12.0]]))
    x = torch.zeros(2, 1, 2, 2)  # normalised -2 per pixel, sum -8
    assert torch.allclose(tiny(x), torch.tensor([[-8.0, -16.0, -24.0]] * 2))


def test_facts_eval_mode_and_frozen_parameters(tiny):
    assert tiny.channels == 1 and tiny.input_size == (2, 2) and tiny.num_classes == 3
    assert tiny.class_names == ("a", "b", "c") and tiny.name == "tiny"
    assert not tiny.training and not any(m.training for m in tiny.modules())
    assert not any(p.requires_grad for p in tiny.parameters())
    assert isinstance(tiny.lock, type(threading.RLock()))
    assert tiny.device == torch.device("cpu")
    # torchattacks reads model.mean/model.std to add its own normalisation: we must not expose them
    assert not hasattr(tiny, "mean") and not hasattr(tiny, "std")


@pytest.mark.parametrize(
    "x,message",
    [
        ([[0.5]], "torch.Tensor"),
        (torch.rand(1, 2, 2), r"\(N, C, H, W\)"),
        (torch.rand(0, 1, 2, 2), "empty"),
        (torch.rand(1, 3, 2, 2), "3 channels"),
        (torch.ones(1, 1, 2, 2, dtype=torch.uint8), "floating point"),
        (torch.full((1, 1, 2, 2), float("nan")), "NaN"),
        (torch.full((1, 1, 2, 2), 1.5), r"\[0, 1\]"),
        (torch.full((1, 1, 2, 2), -0.1), r"\[0, 1\]"),
    ],
)
def test_check_pixels_names_each_broken_rule(tiny, x, message):
    with pytest.raises(InputError, match=message):
        tiny.check_pixels(x)


def test_forward_refuses_wrong_channels(tiny):
    with pytest.raises(InputError, match="expects"):
        tiny(torch.rand(1, 3, 2, 2))


def test_predict(tiny):
    pred, probs = tiny.predict(torch.full((2, 1, 2, 2), 0.75))
    assert pred.tolist() == [2, 2]
    assert torch.allclose(probs.sum(1), torch.ones(2))
    assert torch.allclose(probs[0], torch.softmax(torch.tensor([4.0, 8.0, 12.0]), 0))


def test_content_hash_is_stable_and_tracks_weights(tiny):
    twin = wrap_model(Sum(), mean=[0.5], std=[0.25], input_size=(2, 2), class_names=["a", "b", "c"], name="other")
    assert tiny.content_hash == twin.content_hash  # same architecture, weights, normalisation
    changed = tiny.copy()
    assert changed.content_hash == tiny.content_hash
    with torch.no_grad():
        changed.net.fc.weight[0, 0] += 1e-6
    changed.__dict__.pop("content_hash", None)
    assert changed.content_hash != tiny.content_hash
    other_norm = wrap_model(Sum(), mean=[0.4], std=[0.25], input_size=(2, 2), class_names=["a", "b", "c"])
    assert other_norm.content_hash != tiny.content_hash


def test_copy_is_independent(tiny):
    twin = copy.deepcopy(tiny)
    assert isinstance(twin, PixelModel) and twin.lock is not tiny.lock
    with torch.no_grad():
        twin.net.fc.weight.zero_()
    assert float(tiny.net.fc.weight.sum()) == 6.0
    assert twin.class_names == tiny.class_names and not twin.training


def test_layer_lookup(tiny):
    assert tiny.layer("fc") is tiny.net.fc
    with pytest.raises(InputError, match="no layer 'fcc'"):
        tiny.layer("fcc")


def test_not_picklable(tiny):
    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(tiny)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(mean=[0.5], std=[0.0]), "positive"),
        (dict(mean=[0.5, 0.5], std=[0.2, 0.2]), "1 or 3"),
        (dict(mean=[0.5], std=[0.2, 0.2]), "mean has 1"),
        (dict(input_size=(0, 2)), "positive"),
        (dict(class_names=[]), "empty"),
    ],
)
def test_wrap_model_validates(kwargs, message):
    args = dict(mean=[0.5], std=[0.25], input_size=(2, 2), class_names=["a"])
    args.update(kwargs)
    with pytest.raises(InputError, match=message):
        wrap_model(Sum(), **args)
