"""The timm source (issue 16): any timm name, pretrained config → image policy, parameter cap on
the meta device, weights from the local Hugging Face cache only, fetched on request."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from apptest import MAIN, assert_healthy, errors
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from neuronviz.core.models import ImagePolicy, create_model, list_models, source_for, wrap_model
from neuronviz.core.models import timm_source as ts
from neuronviz.data.images import load_image_with_info
from neuronviz.infra import settings
from neuronviz.infra.errors import (
    CheckpointError,
    DownloadError,
    InputError,
    ModelNotFoundError,
    WeightsNotAvailableError,
)

TINY_VIT = "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2"
REPO = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def test_spec_parsing():
    spec = ts.parse_spec(TINY_VIT)
    assert spec.name == "vit_tiny_patch16_224" and spec.kwargs == {"img_size": 32, "patch_size": 8, "depth": 2}
    assert spec.spec == TINY_VIT
    assert ts.parse_spec("timm:convnext_atto.d2_in1k").name == "convnext_atto.d2_in1k"
    assert ts.parse_spec("timm:resnet18?drop_rate=0.1&global_pool=avg&class_token=false").kwargs == {
        "drop_rate": 0.1, "global_pool": "avg", "class_token": False,
    }
    with pytest.raises(InputError, match="checkpoint_path"):
        ts.parse_spec("timm:resnet18?checkpoint_path=/etc/passwd")
    with pytest.raises(InputError, match="pretrained"):
        ts.parse_spec("timm:resnet18?pretrained=true")
    with pytest.raises(InputError, match="not a number"):
        ts.parse_spec("timm:resnet18?global_pool=../../x")
    with pytest.raises(InputError, match="does not name"):
        ts.parse_spec("timm:")
    assert source_for("timm:anything").spec_from_text("convnext_atto") == "timm:convnext_atto"


def test_unknown_name_lists_close_names():
    with pytest.raises(ModelNotFoundError, match="vit_tiny_patch16_224") as info:
        create_model("timm:vit_tiny_patch16_22", weights=None, device="cpu")
    assert "timm has no model 'vit_tiny_patch16_22'" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="convnext_atto"):
        create_model("timm:convnext_atoo", weights=None, device="cpu")
    with pytest.raises(ModelNotFoundError, match=r"no pretrained tag 'resnet18.nope'.*resnet18\.a1_in1k"):
        create_model("timm:resnet18.nope", weights=None, device="cpu")


def test_policy_from_the_pretrained_config():
    facts = ts.input_facts(ts.parse_spec("timm:vit_tiny_patch16_224"))
    assert facts.policy == ImagePolicy(mode="crop", interpolation="bicubic", crop_pct=0.9, min_size=None)
    assert facts.input_size == (224, 224) and facts.mean == (0.5, 0.5, 0.5) and facts.num_classes == 1000
    assert facts.policy.resize_target(facts.input_size) == 248  # floor(224 / 0.9)
    convnext = ts.input_facts(ts.parse_spec("timm:convnext_atto"))
    assert convnext.policy.crop_pct == 0.875 and convnext.policy.min_size == 32  # pools adaptively
    assert convnext.mean == pytest.approx((0.485, 0.456, 0.406))


def test_vit_tiny_image_geometry_is_timms_resize_248_bicubic_then_crop_224():
    """Through the model's policy: 400×300 → shorter side 248 (bicubic) → centre crop 224, equal
    to torchvision's v2 Resize(248, BICUBIC) + CenterCrop(224) on the same float image."""
    from torchvision.transforms import InterpolationMode, v2

    facts = ts.input_facts(ts.parse_spec("timm:vit_tiny_patch16_224"))
    model = wrap_model(torch.nn.Flatten(), facts.mean, facts.std, facts.input_size, ["a"], image_policy=facts.policy)
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    x, info = load_image_with_info(array, model)
    assert any("400×300 → 330×248 (bicubic" in n for n in info.notes)
    assert any("centre-cropped 330×248 → 224×224" in n for n in info.notes)
    reference = v2.Compose([v2.Resize(248, interpolation=InterpolationMode.BICUBIC, antialias=True), v2.CenterCrop(224)])
    expected = reference(torch.from_numpy(array).permute(2, 0, 1).float().div(255).unsqueeze(0)).clamp(0, 1)
    assert x.shape == (1, 3, 224, 224) and torch.allclose(x, expected, atol=1e-6)


def test_random_tiny_vit_loads_with_imagenet_names():
    model = create_model(TINY_VIT, weights=None, device="cpu")
    assert model.input_size == (32, 32) and model.channels == 3 and model.num_classes == 1000
    assert model.class_names[0] == "tench" and model.meta.source == "random initialisation"
    assert model.image_policy.interpolation == "bicubic" and model.image_policy.min_size is None
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1000)
    ten = create_model(TINY_VIT + "&num_classes=10", weights=None, device="cpu")
    assert ten.class_names == tuple(f"class {i}" for i in range(10))


def test_parameter_cap_is_checked_on_the_meta_device_before_building(monkeypatch):
    built = []
    real = ts._build

    def spy(spec, meta=False):
        built.append(meta)
        return real(spec, meta)

    monkeypatch.setattr(ts, "_build", spy)
    assert ts.count_parameters(ts.parse_spec("timm:vit_tiny_patch16_224")) == 5_717_416  # timm's own count
    monkeypatch.setattr(settings, "MAX_CHECKPOINT_PARAMETERS", 5_000_000)
    built.clear()
    with pytest.raises(CheckpointError, match=r"5,717,416 parameters; models up to 5,000,000.*Nothing was allocated"):
        create_model("timm:vit_tiny_patch16_224", weights=None, device="cpu")
    assert built == [True]  # counted on the meta device, never built for real


def test_default_weights_are_never_fetched(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(ts, "_hf_download", lambda *a: pytest.fail("downloaded without being asked"))
    with pytest.raises(WeightsNotAvailableError, match="not in the local cache") as info:
        create_model(TINY_VIT, device="cpu")
    assert REPO in str(info.value) and "Fetch weights" in str(info.value)


def test_explicit_fetch_offline_fails_with_a_clear_message(monkeypatch, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    calls = []

    def offline(repo, filename, revision, cache_dir):
        calls.append((repo, filename))
        raise LocalEntryNotFoundError("Cannot reach https://huggingface.co: the machine is offline")

    monkeypatch.setattr(ts, "_hf_download", offline)
    with pytest.raises(DownloadError) as info:
        source_for(TINY_VIT).fetch_weights(TINY_VIT)
    message = str(info.value)
    assert "could not fetch the weights of timm:vit_tiny_patch16_224" in message and REPO in message
    assert "LocalEntryNotFoundError" in message and "offline" in message
    assert calls == [(REPO, "model.safetensors"), (REPO, "pytorch_model.bin")]


def _fake_hf_cache(root, repo: str, state: dict) -> None:
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<rev>/model.safetensors}."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    snapshot = folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))


def test_weights_from_the_local_hugging_face_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    trained = create_model(TINY_VIT, weights=None, device="cpu")
    _fake_hf_cache(tmp_path, REPO, trained.net.state_dict())
    assert ts.cached_weights("vit_tiny_patch16_224") is not None
    loaded = create_model(TINY_VIT, device="cpu")  # weights="default": from the cache
    assert "Hugging Face cache" in loaded.meta.source
    assert all(torch.equal(a, b) for a, b in zip(loaded.net.state_dict().values(), trained.net.state_dict().values()))
    # a weights file the user has, for another configuration: refused with what differs
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in trained.net.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="does not fit"):
        create_model("timm:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=3", weights=path, device="cpu")
    assert create_model(TINY_VIT, weights=path, device="cpu").meta.source == str(path)


def test_curated_models_are_listed():
    timm_names = [info.name for info in list_models() if info.source == "timm"]
    assert {"timm:vit_tiny_patch16_224", "timm:deit_tiny_patch16_224", "timm:convnext_atto", "timm:resnet18",
            "timm:efficientnet_b0", "timm:mobilenetv3_small_100"} == set(timm_names)


def test_the_sidebar_takes_any_timm_name_and_the_attack_page_runs(monkeypatch, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))

    def offline(repo, filename, revision, cache_dir):
        raise LocalEntryNotFoundError("the machine is offline")

    monkeypatch.setattr(ts, "_hf_download", offline)
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    at.sidebar.selectbox(key="model_name").set_value("timm:*").run()
    assert_healthy(at)
    at.sidebar.text_input(key="timm_spec").set_value("vit_tiny_patch16_2").run()  # unknown: close names
    assert any("Close names: vit_tiny_patch16_224" in e.value for e in at.sidebar.error)
    at.sidebar.text_input(key="timm_spec").set_value(TINY_VIT[len("timm:"):]).run()
    assert_healthy(at)
    assert at.radio(key=f"weights:{TINY_VIT}").value == "random initialisation"
    at.button(key=f"download:{TINY_VIT}").click().run()  # explicit fetch, offline: a clear message
    assert any("Could not fetch the weights of timm:vit_tiny_patch16_224" in e.value and "offline" in e.value for e in at.sidebar.error)
    assert any(f"**Model** `{TINY_VIT}`" in m.value and "random initialisation" in m.value for m in at.markdown)
    at.switch_page("app_pages/attack.py")
    at.run()
    assert_healthy(at)
    assert [e for e in errors(at) if "Could not fetch" not in e] == []
    assert len(at.get("plotly_chart")) >= 1
