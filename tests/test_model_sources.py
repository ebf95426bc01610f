"""The model-source registry (issue 13): one entry per source, one create_model, a sidebar that
loops over list_sources() and knows no source (a fake listed source and a fake upload source)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from apptest import MAIN, assert_healthy, errors
from streamlit.testing.v1 import AppTest
from torch import nn

from neuronviz.core.models import (
    ImagePolicy,
    ModelInfo,
    ModelSource,
    OptionField,
    create_model,
    list_models,
    list_sources,
    load_model,
    register_source,
    source_for,
    wrap_model,
)
from neuronviz.core.models import registry as sources_module
from neuronviz.core.models.registry import parse_options
from neuronviz.infra.errors import InputError, ModelNotFoundError


class _Tiny(nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4, 10)
        with torch.no_grad():
            self.fc.bias.fill_(scale)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.conv(x))))


def _wrap(name: str, scale: float = 1.0):
    torch.manual_seed(3)
    return wrap_model(
        _Tiny(scale), (0.3,), (0.3,), (28, 28), [str(i) for i in range(10)], name=name, architecture="tiny",
        image_policy=ImagePolicy(mode="pad", resize_size=28, invert_light_background=True),
    )


class FakeSource(ModelSource):
    name = "fake"
    label = "Fake lab"

    def __init__(self) -> None:
        self.loaded: list[tuple[str, object]] = []

    def owns(self, spec: str) -> bool:
        return spec.startswith("fake:")

    def list_models(self) -> list[ModelInfo]:
        return [ModelInfo("fake:one", self.name, "tiny", "A fake listed model", 1, (28, 28), 10, True)]

    def load(self, spec, *, weights="default", options=None):
        if spec != "fake:one":
            raise ModelNotFoundError(f"no {spec}")
        self.loaded.append((spec, weights))
        return _wrap(spec)


class FakeUploads(ModelSource):
    name = "fakeup"
    label = "Fake upload"
    upload_suffixes = (".fake",)
    options = (
        OptionField("bias", "Output bias", "0.5", help="added to every logit"),
        OptionField("kind", "Kind", "", choices=("", "small", "large")),
    )

    def __init__(self) -> None:
        self.uploads: list[tuple[bytes, dict]] = []

    def owns(self, spec: str) -> bool:
        return False

    def load(self, spec, *, weights="default", options=None):
        raise ModelNotFoundError(spec)

    def load_upload(self, path: Path, options):
        self.uploads.append((path.read_bytes(), dict(options)))
        try:
            bias = float(options.get("bias", "0"))
        except ValueError:
            raise InputError(f"bias must be a number, got {options.get('bias')!r}") from None
        return _wrap(path.stem, bias)


@pytest.fixture()
def fake():
    source = register_source(FakeSource())
    uploads = register_source(FakeUploads())
    yield source, uploads
    sources_module.unregister_source("fake")
    sources_module.unregister_source("fakeup")


def test_builtin_sources_in_order_and_one_owner_per_spec(tmp_path):
    names = [s.name for s in list_sources()]
    assert names[:4] == ["embedded", "zoo", "checkpoint", "timm"]
    assert source_for("digits-cnn").name == "embedded"
    assert source_for("resnet18").name == "zoo"
    assert source_for("timm:resnet18").name == "timm"
    assert source_for(str(tmp_path / "x.safetensors")).name == "checkpoint"
    with pytest.raises(ModelNotFoundError, match="digits-cnn"):
        source_for("digits-cnx")
    infos = list_models()
    assert [i.source for i in infos] == sorted((i.source for i in infos), key=names.index)  # grouped by source
    assert all(i.kind == i.source for i in infos)


def test_a_registered_source_is_listed_and_created(fake):
    source, _ = fake
    assert source in list_sources()
    assert "fake:one" in [info.name for info in list_models()]
    model = create_model("fake:one", weights=None, device="cpu")
    assert model.name == "fake:one" and source.loaded == [("fake:one", None)]
    assert load_model("fake:one", device="cpu").content_hash == model.content_hash  # the same factory
    assert str(model.device) == "cpu"


def test_parse_options():
    assert parse_options(["mean=0.5, 0.5", "classes=a,b"]) == {"mean": "0.5, 0.5", "classes": "a,b"}
    with pytest.raises(InputError, match="name=value"):
        parse_options(["oops"])


def test_the_sidebar_lists_and_loads_a_registered_source(fake):
    source, _ = fake
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    assert_healthy(at)
    box = at.sidebar.selectbox(key="model_name")
    assert "fake:one · Fake lab" in box.options
    box.set_value("fake:one").run()
    assert_healthy(at)
    assert errors(at) == [] and ("fake:one", "default") in source.loaded
    assert any("**Model** `fake:one`" in m.value for m in at.markdown)
    assert not [r for r in at.sidebar.radio if r.key and r.key.startswith("weights:")]  # offers_random is False


def test_the_sidebar_offers_an_upload_source_with_its_options(fake):
    _, uploads = fake
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    source_box = at.sidebar.button_group(key="model_source")
    # every upload-capable source gets a segment, in registry order; the fake one comes last
    uploads_offered = [s.label for s in sources_module.list_sources() if s.upload_suffixes and s.name != "checkpoint"]
    assert source_box.options == ["Built-in", "Your checkpoint", *uploads_offered]
    assert uploads_offered[-1] == "Fake upload" and "ONNX upload" in uploads_offered
    source_box.set_value("Fake upload").run()
    assert_healthy(at)
    assert at.sidebar.text_input(key="fakeup_bias").value == "0.5"
    assert at.sidebar.selectbox(key="fakeup_kind").options == ["from the file (or inferred)", "small", "large"]
    at.sidebar.text_input(key="fakeup_bias").set_value("2.5")
    at.sidebar.selectbox(key="fakeup_kind").set_value("large")
    at.file_uploader(key="fakeup_upload").upload("mine.fake", b"my model bytes", "application/octet-stream").run()
    assert_healthy(at)
    assert errors(at) == []
    assert uploads.uploads == [(b"my model bytes", {"bias": "2.5", "kind": "large"})]
    assert any("**Model** `mine`" in m.value for m in at.markdown)
    # a bad option value: the source's message, and the previous model stays
    at.sidebar.text_input(key="fakeup_bias").set_value("lots").run()
    assert_healthy(at)
    [message] = errors(at)
    assert "bias must be a number" in message and "Still showing mine.fake" in message
