"""Issue 11.6 / 11.7 (library part): bad inputs to the public library get a precise error.

Each case names the call, the bad input, the exception class it must raise and words its message
must contain (what is wrong, the allowed range or size, and what to do). Before the fixes, a 1×1
image raised a raw RuntimeError from max-pooling, a 32×32 image on the 28×28 digits model was
accepted, a bare nn.Module raised AttributeError, and steps=NaN / steps=inf raised a plain
ValueError / OverflowError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from neuronviz.core.models import load_model
from neuronviz.core.models.pixel import ModelTypeError
from neuronviz.infra import budget
from neuronviz.infra.errors import InputError, NeuronvizError
from neuronviz.infra.limits import MAX_BATCH
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences import restore
from neuronviz.methods.influence import neuron_influence
from neuronviz.workflows.sweep import eps_sweep


class Bare(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture(scope="module")
def m(digits_cnn):
    return digits_cnn


@pytest.fixture(scope="module")
def x(digits_test):
    return digits_test[0][:2]


@pytest.fixture(scope="module")
def zoo():
    return load_model("resnet18", weights=None, device="cpu")


def _pgd(m, x, **params):
    return run_attack(m, x, "pgd", params)


CASES = [
    # --- the model is not a PixelModel ---------------------------------------------------------
    ("bare module to run_attack", lambda m, x: run_attack(Bare(), x, "fgsm"), ModelTypeError, ["PixelModel", "Bare", "wrap_model"]),
    ("None as the model", lambda m, x: run_attack(None, x, "fgsm"), ModelTypeError, ["PixelModel", "NoneType"]),
    ("bare module to restore", lambda m, x: restore(Bare(), x, "pssr"), ModelTypeError, ["restore (pssr)", "PixelModel"]),
    ("bare module to neuron_influence", lambda m, x: neuron_influence(Bare(), x), ModelTypeError, ["neuron_influence", "PixelModel"]),
    ("bare module to eps_sweep", lambda m, x: eps_sweep(Bare(), x[:1], "fgsm", None, [0.1]), ModelTypeError, ["eps_sweep", "PixelModel"]),
    # --- sizes -----------------------------------------------------------------------------
    ("1×1 image to run_attack", lambda m, x: run_attack(m, torch.rand(1, 1, 1, 1), "fgsm"), InputError, ["1×1", "exactly 28×28", "neuronviz.data.images"]),
    ("32×32 image on the 28×28 model", lambda m, x: run_attack(m, torch.rand(1, 1, 32, 32), "fgsm"), InputError, ["32×32", "28×28"]),
    ("32×32 image to restore", lambda m, x: restore(m, torch.rand(1, 1, 32, 32), "pssr"), InputError, ["32×32", "28×28"]),
    ("1×1 image to neuron_influence", lambda m, x: neuron_influence(m, torch.rand(1, 1, 1, 1)), InputError, ["1×1", "28×28"]),
    ("28×20 image to eps_sweep", lambda m, x: eps_sweep(m, torch.rand(1, 1, 28, 20), "fgsm", None, [0.1]), InputError, ["28×20", "28×28"]),
    # --- pixels ------------------------------------------------------------------------------
    ("a NumPy array", lambda m, x: run_attack(m, x.numpy(), "fgsm"), InputError, ["torch.Tensor", "ndarray"]),
    ("a 3-D tensor", lambda m, x: run_attack(m, x[0], "fgsm"), InputError, ["(N, C, H, W)"]),
    ("an empty batch", lambda m, x: run_attack(m, x[:0], "fgsm"), InputError, ["empty batch"]),
    ("three channels on a gray model", lambda m, x: run_attack(m, x.repeat(1, 3, 1, 1), "fgsm"), InputError, ["3 channels", "takes 1"]),
    ("a NaN pixel", lambda m, x: run_attack(m, torch.full_like(x, float("nan")), "fgsm"), InputError, ["NaN"]),
    ("pixels in 0..255", lambda m, x: run_attack(m, x * 255, "fgsm"), InputError, ["[0, 1]"]),
    ("integer pixels", lambda m, x: run_attack(m, (x * 255).to(torch.uint8), "fgsm"), InputError, ["floating point"]),
    # --- batch caps (11.5) -------------------------------------------------------------------
    ("too many images to restore", lambda m, x: restore(m, torch.rand(MAX_BATCH + 1, 1, 28, 28), "pssr"), InputError, ["restore (pssr)", "cap is 1024", "Split"]),
    ("too many images to neuron_influence", lambda m, x: neuron_influence(m, torch.rand(MAX_BATCH + 1, 1, 28, 28)), InputError, ["neuron_influence", "cap is 1024"]),
    ("too many images to run_attack", lambda m, x: run_attack(m, torch.rand(MAX_BATCH + 1, 1, 28, 28), "fgsm"), InputError, ["run_attack", "cap is 1024"]),
    # --- parameters (11.7) -------------------------------------------------------------------
    ("eps −1", lambda m, x: _pgd(m, x, eps=-1), InputError, ["'eps'", "= -1", "out of range [0, 1]"]),
    ("eps NaN", lambda m, x: _pgd(m, x, eps=float("nan")), InputError, ["'eps'", "finite", "[0, 1]", "nan"]),
    ("eps inf", lambda m, x: _pgd(m, x, eps=float("inf")), InputError, ["'eps'", "finite", "inf"]),
    ("eps 1e9", lambda m, x: _pgd(m, x, eps=1e9), InputError, ["'eps'", "1e+09", "out of range"]),
    ("eps as text that is no number", lambda m, x: _pgd(m, x, eps="abc"), InputError, ["'eps'", "[0, 1]", "abc"]),
    ("eps None", lambda m, x: _pgd(m, x, eps=None), InputError, ["'eps'", "must be a number", "None"]),
    ("steps 0", lambda m, x: _pgd(m, x, steps=0), InputError, ["'steps'", "= 0", "[1, 1000]"]),
    ("steps −1", lambda m, x: _pgd(m, x, steps=-1), InputError, ["'steps'", "= -1", "[1, 1000]"]),
    ("steps 1e9", lambda m, x: _pgd(m, x, steps=1e9), InputError, ["'steps'", "1e+09", "[1, 1000]"]),
    ("steps NaN", lambda m, x: _pgd(m, x, steps=float("nan")), InputError, ["'steps'", "finite", "[1, 1000]"]),
    ("steps inf", lambda m, x: _pgd(m, x, steps=float("inf")), InputError, ["'steps'", "finite", "[1, 1000]"]),
    ("steps 2.5", lambda m, x: _pgd(m, x, steps=2.5), InputError, ["'steps'", "whole number", "2.5"]),
    ("steps as a NumPy NaN", lambda m, x: _pgd(m, x, steps=np.float32("nan")), InputError, ["'steps'", "finite"]),
    ("random_start 1", lambda m, x: _pgd(m, x, random_start=1), InputError, ["'random_start'", "true or false"]),
    ("an unknown parameter", lambda m, x: _pgd(m, x, epsilon=0.1), InputError, ["no parameter", "epsilon", "'eps'"]),
    ("an unknown attack", lambda m, x: run_attack(m, x, "pgdx"), InputError, ["unknown attack", "pgdx"]),
    ("a defence parameter out of range", lambda m, x: restore(m, x, "nip-guided", {"steps": 1000}, target=0), InputError, ["'steps'", "1000", "[1, 200]"]),
    ("an unknown defence", lambda m, x: restore(m, x, "nipp"), InputError, ["unknown defence", "nipp"]),
    # --- classes, seeds, modes ---------------------------------------------------------------
    ("target class 10 of 10", lambda m, x: run_attack(m, x, "fgsm", target=10), InputError, ["class 10", "0..9"]),
    ("a float target", lambda m, x: run_attack(m, x, "fgsm", target=torch.tensor([1.5, 2.0])), InputError, ["integer class indices"]),
    ("targeted DeepFool", lambda m, x: run_attack(m, x, "deepfool", target=3), InputError, ["no targeted mode"]),
    ("seed −1", lambda m, x: run_attack(m, x, "fgsm", seed=-1), InputError, ["seed", "non-negative"]),
    ("three labels for two images", lambda m, x: run_attack(m, x, "fgsm", labels=[1, 2, 3]), InputError, ["3 classes for 2 images"]),
    # --- budgets -----------------------------------------------------------------------------
    ("a negative time budget", lambda m, x: budget.limit(-1).__enter__(), InputError, ["time budget", "positive"]),
    ("a cancel flag that is no Event", lambda m, x: budget.limit(10, cancel=True).__enter__(), InputError, ["threading.Event"]),
]


@pytest.mark.parametrize("label,call,error,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_precise_error(label, call, error, words, m, x):
    with pytest.raises(error) as caught:
        call(m, x)
    assert isinstance(caught.value, NeuronvizError), type(caught.value)
    message = str(caught.value)
    for word in words:
        assert word in message, f"{label}: {word!r} not in {message!r}"


def test_the_battery_is_large_enough():
    assert len(CASES) >= 25


def test_a_bare_module_error_is_also_a_type_error():
    with pytest.raises(TypeError):
        run_attack(Bare(), torch.rand(1, 1, 28, 28), "fgsm")


def test_zoo_models_take_other_sizes_but_not_tiny_ones(zoo):
    """The torchvision classifiers pool adaptively: 64×64 works, 1×1 is refused with the minimum."""
    assert restore(zoo, torch.rand(1, 3, 64, 64), "none").prediction.shape == (1,)
    with pytest.raises(InputError, match=r"1×1 pixels; resnet18 needs at least 32×32 \(its input size is 224×224\)"):
        run_attack(zoo, torch.rand(1, 3, 1, 1), "fgsm")


def test_nothing_was_left_locked_after_the_errors(m, x):
    """After the whole battery the model still works and its lock is free."""
    assert m.lock.acquire(blocking=False)
    m.lock.release()
    assert run_attack(m, x, "fgsm").adversarial.shape == x.shape
