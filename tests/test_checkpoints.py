"""Every way a checkpoint reaches load_model, and every way it is refused."""

import json
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from neuronviz.core.models import load_model
from neuronviz.core.models.builtin import DigitsCNN, DigitsResNet
from neuronviz.data.datasets import digits
from neuronviz.infra.errors import CheckpointError


@pytest.fixture(scope="module")
def x_test():
    return digits("test")[0][:16]


def _trained_state(name="digits-cnn"):
    return {k: v.clone() for k, v in load_model(name, device="cpu").net.state_dict().items()}


def test_safetensors_with_metadata_round_trip(tmp_path, digits_cnn, x_test):
    path = tmp_path / "mine.safetensors"
    meta = {"architecture": "digits-cnn", "mean": json.dumps([0.3054]), "std": json.dumps([0.3247])}
    save_file(_trained_state(), str(path), metadata=meta)
    model = load_model(path, device="cpu")
    assert model.meta.architecture == "digits-cnn" and model.name == "mine"
    assert torch.allclose(model(x_test), digits_cnn(x_test), atol=1e-4)


@pytest.mark.parametrize("arch_name,net_cls", [("digits-cnn", DigitsCNN), ("digits-resnet", DigitsResNet)])
def test_plain_state_dict_architecture_is_inferred(tmp_path, arch_name, net_cls):
    net = net_cls()
    path = tmp_path / "plain.pth"
    torch.save(net.state_dict(), path)
    model = load_model(str(path), device="cpu")
    assert model.meta.architecture == arch_name
    for key, value in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], value)


def test_wrapped_and_prefixed_state_dicts(tmp_path, digits_cnn, x_test):
    state = _trained_state()
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "architecture": "digits-cnn", "model_state_dict": state}, wrapped)
    assert torch.allclose(load_model(wrapped, device="cpu")(x_test), digits_cnn(x_test), atol=1e-5)

    parallel = tmp_path / "parallel.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, parallel)
    assert load_model(parallel, device="cpu").meta.architecture == "digits-cnn"

    whole = tmp_path / "whole.pt"  # a PixelModel's own state dict carries its normalisation
    torch.save(digits_cnn.state_dict(), whole)
    reloaded = load_model(whole, device="cpu")
    assert torch.allclose(reloaded.normalize.mean, digits_cnn.normalize.mean)
    assert torch.allclose(reloaded(x_test), digits_cnn(x_test), atol=1e-5)


class _Payload:
    """Unpickling this would create a marker file: the checkpoint must never get that far."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": torch.zeros(1), "payload": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="could run code") as info:
        load_model(path, device="cpu")
    assert "evil.pt" in str(info.value) and "io.open" in str(info.value)  # the global it refused
    assert not marker.exists()
    # the payload is live: unsafe unpickling of the very same file does run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_raw_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned2.txt"
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps({"w": _Payload(str(marker))}))
    with pytest.raises(CheckpointError):
        load_model(path, device="cpu")
    assert not marker.exists()


def test_state_dict_for_the_wrong_architecture(tmp_path):
    path = tmp_path / "resnet_weights.pt"
    torch.save(DigitsResNet().state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu", architecture="digits-cnn")
    message = str(info.value)
    assert "does not fit" in message and "missing key" in message and "unexpected key" in message
    assert "features.0.weight" in message and "conv1.weight" in message


def test_wrong_shapes_are_named(tmp_path):
    path = tmp_path / "five_classes.pt"
    torch.save(DigitsCNN(num_classes=5).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"classifier\.2\.weight: checkpoint \(5, 64\) vs model \(10, 64\)"):
        load_model(path, device="cpu", architecture="digits-cnn")


def test_unknown_layout_says_which_architecture_is_closest(tmp_path):
    state = DigitsCNN().state_dict()
    state.pop("classifier.2.bias")
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="closest: digits-cnn"):
        load_model(path, device="cpu")


def test_declared_architecture_conflict(tmp_path):
    path = tmp_path / "declared.pt"
    torch.save({"architecture": "digits-resnet", "state_dict": DigitsCNN().state_dict()}, path)
    with pytest.raises(CheckpointError, match="declares architecture 'digits-resnet'"):
        load_model(path, device="cpu", architecture="digits-cnn")


def test_nan_weights_are_refused(tmp_path):
    state = DigitsCNN().state_dict()
    state["features.0.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="NaN"):
        load_model(path, device="cpu")


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointError, match="TorchScript"):
        load_model(path, device="cpu")


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "mixed.pt"
    torch.save({"features.0.weight": torch.zeros(1), "note": "hello"}, path)
    with pytest.raises(CheckpointError, match="not tensors: note"):
        load_model(path, device="cpu")


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("garbage.safetensors", os.urandom(64), "not a valid safetensors"),
        ("garbage.pt", b"not a zip and not a pickle", "not a readable PyTorch checkpoint"),
        ("truncated.pt", None, "not a readable PyTorch checkpoint"),
        ("empty.pth", b"", "empty"),
        ("weights.h5", b"\x89HDF", "unsupported checkpoint type"),
    ],
)
def test_corrupt_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        full = tmp_path / "full.pt"
        torch.save(DigitsCNN().state_dict(), full)
        content = full.read_bytes()[: full.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path, device="cpu")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere.safetensors", device="cpu")


def test_named_model_with_a_users_weights_file(tmp_path, x_test):
    path = tmp_path / "cnn.safetensors"
    save_file(DigitsCNN().state_dict(), str(path))
    model = load_model("digits-cnn", device="cpu", weights=path)
    assert model.name == "digits-cnn" and model.meta.source == str(path)
    with pytest.raises(CheckpointError, match="missing key"):
        load_model("digits-resnet", device="cpu", weights=path)
