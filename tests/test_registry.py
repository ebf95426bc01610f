"""The registry: named models, the torchvision zoo (never downloading), devices."""

import re

import pytest
import torch

from neuronviz.core.models import (
    EMBEDDED,
    ZOO,
    download_weights,
    list_models,
    load_model,
    resolve_device,
    weights_cached,
)
from neuronviz.core.models import torchvision_zoo as zoo
from neuronviz.infra.errors import DeviceError, ModelNotFoundError, WeightsNotAvailableError

ISSUE_ZOO = ["resnet18", "resnet50", "vgg16", "vgg19", "mobilenet_v2", "densenet121", "efficientnet_b0"]


def test_list_models_covers_embedded_and_zoo():
    infos = {info.name: info for info in list_models()}
    assert set(EMBEDDED) <= set(infos) and set(ISSUE_ZOO) <= set(infos)
    cnn = infos["digits-cnn"]
    assert (cnn.kind, cnn.channels, cnn.input_size, cnn.num_classes) == ("embedded", 1, (28, 28), 10)
    assert cnn.weights_available and cnn.card["metrics"]["clean_accuracy"] >= 0.97
    r18 = infos["resnet18"]
    assert (r18.kind, r18.channels, r18.input_size, r18.num_classes) == ("zoo", 3, (224, 224), 1000)
    assert r18.weights_available is False  # the test TORCH_HOME is empty


def test_embedded_model_loads_ready_to_use(digits_cnn):
    assert digits_cnn.name == "digits-cnn" and digits_cnn.meta.architecture == "digits-cnn"
    assert not digits_cnn.training and digits_cnn.class_names == tuple("0123456789")
    assert digits_cnn.image_policy.mode == "pad" and digits_cnn.image_policy.invert_light_background
    assert digits_cnn.meta.card["name"] == "digits-cnn"
    again = load_model("digits-cnn", device="cpu")
    assert again is not digits_cnn and again.content_hash == digits_cnn.content_hash
    assert load_model("digits-cnn-robust", device="cpu").content_hash != digits_cnn.content_hash


def test_unknown_name_lists_the_models():
    with pytest.raises(ModelNotFoundError, match="digits-cnn") as info:
        load_model("alexnet2000", device="cpu")
    assert "resnet18" in str(info.value)


@pytest.mark.parametrize("name", ISSUE_ZOO)
def test_zoo_random_init_builds_with_imagenet_facts(name):
    model = load_model(name, device="cpu", weights=None)
    assert model.channels == 3 and model.input_size == (224, 224) and model.num_classes == 1000
    assert model.class_names[0] == "tench" and model.image_policy.mode == "crop"
    assert model.image_policy.resize_size in (232, 256)
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert model.meta.source == "random initialisation"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 1000)


def test_zoo_default_weights_are_never_downloaded(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    assert not weights_cached("resnet18")
    with pytest.raises(WeightsNotAvailableError, match=r"download_weights\('resnet18'\)") as info:
        load_model("resnet18", device="cpu")
    assert "weights=None" in str(info.value) and calls == []


def _fresh_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # torch.hub.get_dir() then follows TORCH_HOME


def test_zoo_weights_from_the_hub_cache(tmp_path, monkeypatch):
    _fresh_torch_home(tmp_path, monkeypatch)
    net = zoo.build_network("resnet18")
    with torch.no_grad():
        net.fc.bias.fill_(0.125)
    path = zoo.cached_weights_path("resnet18")
    assert path.parent == tmp_path / "torch" / "hub" / "checkpoints"
    assert re.fullmatch(r"resnet18-[0-9a-f]+\.pth", path.name)
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    assert weights_cached("resnet18")
    model = load_model("resnet18", device="cpu")
    assert torch.all(model.net.fc.bias == 0.125) and model.meta.source == str(path)
    assert {i.name: i.weights_available for i in list_models()}["resnet18"] is True


def test_densenet_legacy_key_names_are_remapped(tmp_path, monkeypatch):
    """torchvision's published DenseNet files use 'norm.1' style keys; they must load."""
    _fresh_torch_home(tmp_path, monkeypatch)
    state = zoo.build_network("densenet121").state_dict()
    # as in the published file: old key names, and no BatchNorm step counters (pre-0.4.1 format)
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|relu|conv))(\d)\.", r"\1.\2.", k): v
        for k, v in state.items()
        if not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    path = zoo.cached_weights_path("densenet121")
    path.parent.mkdir(parents=True)
    torch.save(legacy, path)
    model = load_model("densenet121", device="cpu")
    assert torch.equal(model.net.features.denseblock1.denselayer1.norm1.weight, state["features.denseblock1.denselayer1.norm1.weight"])


def test_zoo_with_a_users_weights_file(tmp_path):
    net = zoo.build_network("mobilenet_v2")
    path = tmp_path / "my_mobilenet.pth"
    torch.save(net.state_dict(), path)
    model = load_model("mobilenet_v2", device="cpu", weights=str(path))
    assert torch.equal(model.net.classifier[1].weight, net.classifier[1].weight)
    inferred = load_model(path, device="cpu")
    assert inferred.meta.architecture == "mobilenet_v2"


def test_download_is_explicit_and_checks_the_hash(tmp_path, monkeypatch):
    _fresh_torch_home(tmp_path, monkeypatch)
    seen = {}

    def fake_download(url, dst, hash_prefix=None, progress=True):
        seen.update(url=url, hash_prefix=hash_prefix)
        torch.save(zoo.build_network("resnet18").state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = download_weights("resnet18")
    assert seen["url"] == zoo.zoo_spec("resnet18").url and seen["hash_prefix"] == path.name.split("-")[1].split(".")[0]
    assert weights_cached("resnet18") and load_model("resnet18", device="cpu").num_classes == 1000


def test_zoo_names_are_checked():
    with pytest.raises(ModelNotFoundError):
        zoo.zoo_spec("resnet1800")
    assert set(ISSUE_ZOO) <= set(ZOO)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device("gpu-please")
    with pytest.raises(DeviceError, match="not supported"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            load_model("digits-cnn", device="cuda")


def test_failed_download_is_a_clear_error_and_leaves_no_file(tmp_path, monkeypatch):
    import urllib.error

    from neuronviz.infra.errors import DownloadError

    _fresh_torch_home(tmp_path, monkeypatch)

    def offline(url, dst, hash_prefix=None, progress=True):
        open(dst, "wb").write(b"partial")
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(DownloadError, match="could not download the weights of vgg16") as info:
        download_weights("vgg16")
    assert isinstance(info.value, OSError) and not weights_cached("vgg16")
