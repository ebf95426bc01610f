"""ONNX uploads: a network the project has never seen, exported with torch.onnx.export, loaded
through the "onnx" model source; outputs equal onnxruntime's, gradients flow, bad files are refused
with precise errors."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from neuronviz.core.models import onnx_source  # noqa: E402
from neuronviz.core.models.registry import list_sources  # noqa: E402
from neuronviz.infra import settings  # noqa: E402
from neuronviz.infra.errors import CheckpointError, InputError  # noqa: E402
from neuronviz.methods.attacks import run_attack  # noqa: E402
from neuronviz.methods.influence import probe_layers  # noqa: E402


class Gate(nn.Module):
    """A squeeze-excitation-like gate: a block the project has no architecture for."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.Hardswish()
        self.score = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        weights = torch.sigmoid(self.score(y.mean(dim=(2, 3))))
        return y * weights[:, :, None, None] + x


class Stranger(nn.Module):
    def __init__(self, channels: int = 3, classes: int = 7) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.LeakyReLU(0.1))
        self.gate = Gate(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(6, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.gate(self.stem(x))), 1))


def export(net: nn.Module, path: Path, shape=(1, 3, 20, 20), dynamic_hw: bool = False, props: dict | None = None, **kwargs) -> Path:
    torch.manual_seed(0)
    net.eval()
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net, (torch.rand(*shape),), str(path), dynamo=False, input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": axes, "logits": {0: "batch"}}, **kwargs,
        )
    if props:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def stranger_file(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    net = Stranger()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net.stem[1].running_mean.uniform_(-0.2, 0.2)
        net.stem[1].running_var.uniform_(0.5, 2.0)
    return export(net, tmp_path_factory.mktemp("onnx") / "stranger.onnx")


def source() -> onnx_source.OnnxSource:
    [found] = [s for s in list_sources() if s.name == "onnx"]
    assert isinstance(found, onnx_source.OnnxSource)
    return found


def test_registered_as_an_upload_source():
    found = source()
    assert found.label == "ONNX upload"
    assert found.upload_suffixes == (".onnx",)
    assert [f.name for f in found.options] == ["mean", "std", "input_size", "classes"]
    assert found.options[0].default == "0.485, 0.456, 0.406"


def test_outputs_equal_onnxruntime_and_gradients_flow(stranger_file):
    model = source().load_upload(stranger_file, {})
    assert model.input_size == (20, 20) and model.channels == 3 and model.num_classes == 7
    assert re.search(r"converted from opset 20 to 1[3-8]$", model.meta.description)  # torch 2.x's default, too new for onnx2torch
    assert model.class_names[:2] == ("class 0", "class 1")
    assert model.normalize.mean.flatten().tolist() == pytest.approx(onnx_source.IMAGENET_MEAN)
    torch.manual_seed(3)
    x = torch.rand(5, 3, 20, 20)
    normalised = ((x - model.normalize.mean) / model.normalize.std).numpy()
    session = ort.InferenceSession(str(stranger_file), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image": normalised})[0]
    got = model(x).detach().numpy()
    assert got.shape == (5, 7)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(expected).max() > 1e-3  # a real comparison, not of zeros

    report = run_attack(model, x, "fgsm", params={"eps": 8 / 255})
    delta = report.adversarial - x
    assert float(delta.abs().max()) == pytest.approx(8 / 255, abs=1e-6)  # a signed-gradient step: the input gradient exists
    assert int((delta.abs() > 1e-6).sum()) > 0.5 * delta.numel()
    loss = nn.functional.cross_entropy
    with torch.no_grad():
        assert float(loss(model(report.adversarial), report.labels)) > float(loss(model(x), report.labels))


def test_layer_names_are_the_original_modules(stranger_file):
    model = source().load_upload(stranger_file, {})
    names = {name for name, _ in model.net.named_modules()}
    # batch norm is folded into the convolution by the exporter; everything else keeps its name
    assert {"stem.0", "stem.2", "gate.conv", "gate.act", "gate.score", "head"} <= names
    layers = {info.name: info.module_type for info in probe_layers(model)}
    assert layers["stem.0"] == "Conv2d" and layers["gate.conv"] == "Conv2d" and layers["head"] == "Linear"
    assert layers["stem.2"] == "LeakyReLU"
    assert all("/" not in name for name in names)


def test_readable_names_rules():
    names = onnx_source.readable_names(
        [
            ("/features/features.0/Conv", "Conv"),
            ("/features/features.2/conv/Conv", "Conv"),
            ("/features/features.2/Add", "Add"),
            ("/layer1/layer1.0/downsample/downsample.0/Conv", "Conv"),
            ("/Flatten", "Flatten"),
            ("/head/Gemm", "Gemm"),
            ("/head/Relu", "Relu"),
            ("resnetv17_conv0_fwd", "Conv"),
            ("", "MatMul"),
            ("weird name!", "Relu"),
        ]
    )
    assert names == [
        "features.0",
        "features.2.conv",
        "features.2.add",
        "layer1.0.downsample.0",
        "flatten",
        "head.gemm",
        "head.relu",
        "resnetv17_conv0_fwd",
        "mat_mul_8",
        "weird_name",
    ]


def test_metadata_props_and_options(tmp_path):
    props = {
        "neuronviz.mean": "[0.5]",
        "neuronviz.std": "[0.25]",
        "neuronviz.class_names": '["zero", "one", "two"]',
    }
    path = export(Stranger(channels=1, classes=3), tmp_path / "grey.onnx", shape=(1, 1, 12, 12), props=props)
    model = source().load_upload(path, {})
    assert model.channels == 1 and model.input_size == (12, 12)
    assert model.class_names == ("zero", "one", "two")
    assert model.normalize.mean.flatten().tolist() == [0.5] and model.normalize.std.flatten().tolist() == [0.25]
    # the sidebar's pre-filled defaults do not override the file; a changed value does
    defaults = {f.name: f.default for f in source().options}
    assert source().load_upload(path, defaults).class_names == ("zero", "one", "two")
    given = source().load_upload(path, {**defaults, "mean": "0.1", "classes": "a, b, c"})
    assert given.normalize.mean.flatten().tolist() == pytest.approx([0.1]) and given.class_names == ("a", "b", "c")
    with pytest.raises(InputError, match="2 class names for a model with 3 outputs") as caught:
        source().load_upload(path, {"classes": "a,b"})
    assert "Classes field" in (caught.value.ui_hint or "")
    with pytest.raises(InputError, match="exactly 12×12"):
        source().load_upload(path, {"input_size": "32"})


def test_grey_defaults_and_dynamic_size(tmp_path):
    path = export(Stranger(channels=1, classes=4), tmp_path / "dyn.onnx", shape=(1, 1, 16, 16), dynamic_hw=True)
    model = source().load_upload(path, {})
    assert model.input_size == (224, 224)  # not fixed in the file: the offered default
    assert model.normalize.mean.flatten().tolist() == pytest.approx(onnx_source.GREY_MEAN)
    small = source().load_upload(path, {"input_size": "32, 24"})
    assert small.input_size == (32, 24)
    assert small(torch.rand(2, 1, 32, 24)).shape == (2, 4)


def test_pixels_metadata_means_no_normalisation(tmp_path):
    path = export(Stranger(classes=2), tmp_path / "pixels.onnx", shape=(1, 3, 8, 8), props={"neuronviz.input": '"pixels"'})
    model = source().load_upload(path, {})
    assert model.normalize.mean.flatten().tolist() == [0.0, 0.0, 0.0]
    assert model.normalize.std.flatten().tolist() == [1.0, 1.0, 1.0]


def test_corrupt_file_is_refused(tmp_path, stranger_file):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xff" * 300 + b"not a protobuf")
    with pytest.raises(CheckpointError, match="junk.onnx is not") as caught:
        source().load_upload(junk, {})
    assert caught.value.ui_hint
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(stranger_file.read_bytes()[: stranger_file.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.onnx"):
        source().load_upload(cut, {})
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        source().load_upload(empty, {})


def test_oversized_file_is_refused_before_reading(tmp_path, stranger_file, monkeypatch):
    monkeypatch.setattr(settings, "MAX_CHECKPOINT_BYTES", 1000)

    def no_read(self):
        raise AssertionError("the file was read")

    monkeypatch.setattr(Path, "read_bytes", no_read)
    with pytest.raises(CheckpointError, match=r"stranger.onnx is .*; ONNX models up to 1,000 bytes are read here") as caught:
        source().load_upload(stranger_file, {})
    assert caught.value.ui_hint


def test_wrong_input_rank_and_outputs(tmp_path):
    mlp = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    path = export(mlp, tmp_path / "mlp.onnx", shape=(1, 16))
    with pytest.raises(CheckpointError, match=r"rank 2 \(batch, 16\); neuronviz needs images of rank 4") as caught:
        source().load_upload(path, {})
    assert caught.value.ui_hint

    class Two(Stranger):
        def forward(self, x):
            logits = super().forward(x)
            return logits, logits.softmax(1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Two().eval(), (torch.rand(1, 3, 8, 8),), str(tmp_path / "two.onnx"), dynamo=False)
    with pytest.raises(CheckpointError, match="2 outputs"):
        source().load_upload(tmp_path / "two.onnx", {})


def test_external_data_is_refused(tmp_path, stranger_file):
    model = onnx.load(str(stranger_file))
    onnx.save(model, str(tmp_path / "split.onnx"), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    with pytest.raises(CheckpointError, match="keeps its data in a separate file"):
        source().load_upload(tmp_path / "split.onnx", {})


def test_option_parsing_errors():
    with pytest.raises(InputError, match="2 numbers"):
        onnx_source.parse_numbers("0.5, 0.5", "mean", "m")
    with pytest.raises(InputError, match="positive"):
        onnx_source.parse_numbers("[0.5, 0, 1]", "std", "m")
    with pytest.raises(InputError, match="finite"):
        onnx_source.parse_numbers("nan", "mean", "m")
    assert onnx_source.parse_input_size("224x160", "m") == (224, 160)
    assert onnx_source.parse_input_size("[32, 32]", "m") == (32, 32)
    with pytest.raises(InputError, match="out of range"):
        onnx_source.parse_input_size("5000", "m")
    with pytest.raises(InputError, match="one side or height, width"):
        onnx_source.parse_input_size("big", "m")
    assert onnx_source.parse_classes('["a", "b"]', "m") == ("a", "b")
    with pytest.raises(InputError, match="every class needs a name"):
        onnx_source.parse_classes("a,,b", "m")
