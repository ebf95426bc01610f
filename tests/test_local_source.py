"""Local models from trusted paths: a torch.export program and module:function factories of a custom
architecture, given on the command line, in NEURONVIZ_MODELS or from Python."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from neuronviz.core.models import local_source, wrap_model
from neuronviz.core.models.registry import create_model, list_sources
from neuronviz.infra.errors import CheckpointError, InputError, ModelNotFoundError
from neuronviz.methods.fragility import first_conv, nodal_dropout
from neuronviz.methods.influence import neuron_influence, probe_layers

#: A custom architecture the project has never seen: a residual block (named like torchvision's,
#: so the probe layers list it as a block), a gate that is not a torch.nn type, digits-sized.
NETS = textwrap.dedent(
    '''
    import torch
    from torch import nn

    from neuronviz.core.models import wrap_model


    class BasicBlock(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(c)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.bn(self.conv(x)) + x)


    class Gate(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))


    class TinyNet(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.stem = nn.Conv2d(1, 6, 5, stride=2, padding=2, dilation=1)
            self.act = nn.ReLU()
            self.block = BasicBlock(6)
            self.gate = Gate()
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.head = nn.Linear(24, classes)

        def forward(self, x):
            x = self.gate(self.block(self.act(self.stem(x))))
            return self.head(torch.flatten(self.pool(x), 1))


    def make(seed=0):
        torch.manual_seed(seed)
        net = TinyNet().eval()
        with torch.no_grad():
            net.block.bn.running_mean.uniform_(-0.1, 0.1)
            net.block.bn.running_var.uniform_(0.5, 1.5)
        return net


    def build():
        net = make()
        net.class_names = [f"digit {i}" for i in range(10)]
        net.mean, net.std, net.input_size = [0.3], [0.3], 28
        return net


    def build_pixel():
        return wrap_model(make(), [0.5], [0.5], (28, 28), [str(i) for i in range(10)], name="tiny-pixel")


    def broken():
        raise RuntimeError("no weights here")


    def not_a_model():
        return 42
    '''
)

DIGITS = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("localnets")
    (folder / "local_test_nets.py").write_text(NETS)
    sys.path.insert(0, str(folder))
    import local_test_nets

    yield folder, local_test_nets
    sys.path.remove(str(folder))
    sys.modules.pop("local_test_nets", None)


@pytest.fixture(scope="module")
def program(nets):
    folder, module = nets
    net = module.make()
    batch = torch.export.Dim("batch", min=1, max=1024)
    exported = torch.export.export(net, (torch.rand(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    path = folder / "tiny.pt2"
    facts = {"mean": [0.25], "std": [0.5], "class_names": DIGITS}
    torch.export.save(exported, path, extra_files={"neuronviz.json": json.dumps(facts)})
    return path, net


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv(local_source.ENV, raising=False)
    yield
    for entry in local_source.local_entries():
        local_source.unregister_local_model(entry.name)


def test_registered_never_from_an_upload():
    [source] = [s for s in list_sources() if s.name == "local"]
    assert source.label == "Local models"
    assert source.upload_suffixes == ()
    assert source.owns("local:x") and not source.owns("x.pt2") and not source.owns("os:system")


def test_program_from_argv_and_create_model(program):
    path, net = program
    [spec] = local_source.register_argv(["--model", str(path), "--name", "tiny"])
    assert spec == "local:tiny"
    model = create_model(spec, device="cpu")
    assert model.class_names == tuple(DIGITS) and model.input_size == (28, 28) and model.channels == 1
    assert model.normalize.mean.flatten().tolist() == [0.25] and model.normalize.std.flatten().tolist() == [0.5]
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        expected = net((x - 0.25) / 0.5)
        assert torch.allclose(model(x), expected, atol=1e-6)
    assert model.meta.card["module_types"]["block"] == "local_test_nets.BasicBlock"
    assert model.copy()(x).shape == (6, 10)  # deep copies work (the Filters page drops filters on one)


def test_probe_layers_are_the_original_modules(program):
    path, net = program
    exported = local_source.load_program(path)
    original = wrap_model(net, [0.25], [0.5], (28, 28), DIGITS)
    facts = lambda m: [(i.name, i.module_type, i.output_shape) for i in probe_layers(m)]  # noqa: E731
    assert facts(exported) == facts(original)
    assert ("block", "BasicBlock", (6, 14, 14)) in facts(exported)
    stem = exported.layer("stem")
    assert isinstance(stem, nn.Conv2d) and stem.kernel_size == (5, 5) and stem.padding == (2, 2) and stem.stride == (2, 2)
    assert stem.in_channels == 1 and stem.out_channels == 6 and stem.groups == 1
    head = exported.layer("head")
    assert isinstance(head, nn.Linear) and (head.in_features, head.out_features) == (24, 10)
    assert isinstance(exported.layer("block.bn"), nn.BatchNorm2d) and exported.layer("block.bn").num_features == 6
    assert type(exported.layer("gate")).__name__ == "Gate" and not isinstance(exported.layer("gate"), nn.Conv2d)
    x = torch.rand(3, 1, 28, 28)
    got = neuron_influence(exported, x, ["block", "stem"])
    want = neuron_influence(original, x, ["block", "stem"])
    for layer in ("block", "stem"):
        assert torch.allclose(torch.as_tensor(got[layer].values), torch.as_tensor(want[layer].values), atol=1e-5)
    assert first_conv(exported) == "stem"
    sweep = nodal_dropout(exported, x)
    assert torch.allclose(sweep.logits, nodal_dropout(original, x).logits, atol=1e-5)


def test_factories_from_the_environment(nets, monkeypatch):
    monkeypatch.setenv(local_source.ENV, "local_test_nets:build; local_test_nets:build_pixel name=pix;;")
    [source] = [s for s in list_sources() if s.name == "local"]
    infos = {info.name: info for info in source.list_models()}
    assert set(infos) == {"local:local_test_nets.build", "local:pix"}
    assert infos["local:pix"].num_classes == 10 and infos["local:pix"].weights_available
    built = create_model("local:local_test_nets.build", device="cpu")
    assert built.class_names[0] == "digit 0" and built.input_size == (28, 28) and built.channels == 1
    assert built.normalize.mean.flatten().tolist() == pytest.approx([0.3])
    pixel = create_model("local:pix", device="cpu")
    assert pixel.name == "tiny-pixel" and pixel.normalize.mean.flatten().tolist() == [0.5]
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(built(x), nets[1].make()((x - 0.3) / 0.3), atol=1e-6)


def test_command_line_options_win(nets):
    [spec] = local_source.register_argv(
        ["--model", "local_test_nets:make", "--mean", "0.1", "--std=0.2", "--input-size", "32", "--classes", ",".join("abcdefghij")]
    )
    model = create_model(spec, device="cpu")
    assert model.input_size == (32, 32) and model.class_names[:3] == ("a", "b", "c")
    assert model.normalize.std.flatten().tolist() == pytest.approx([0.2])
    with pytest.raises(InputError, match="carries its own mean"):
        create_model(local_source.register_local_model("local_test_nets:build_pixel", options={"mean": "0.4"}), device="cpu")


def test_factory_errors(nets):
    cases = {
        "local_test_nets:broken": (InputError, r"local_test_nets:broken\(\) failed: RuntimeError: no weights here"),
        "local_test_nets:not_a_model": (InputError, "returned a int"),
        "local_test_nets:missing": (ModelNotFoundError, "has no function 'missing'"),
        "no_such_package_xyz.models:build": (ModelNotFoundError, "cannot be imported"),
    }
    for target, (error, message) in cases.items():
        spec = local_source.register_local_model(target)
        with pytest.raises(error, match=message) as caught:
            create_model(spec, device="cpu")
        assert caught.value.ui_hint
    [source] = [s for s in list_sources() if s.name == "local"]
    listed = {info.name: info for info in source.list_models()}
    assert not listed["local:local_test_nets.broken"].weights_available
    assert "cannot be loaded" in listed["local:local_test_nets.broken"].description


def test_unknown_names_and_bad_arguments():
    with pytest.raises(ModelNotFoundError, match="none was given"):
        create_model("local:nothing", device="cpu")
    for argv, message in (
        (["--mean", "0.5"], "comes before any --model"),
        (["--model"], "needs a value"),
        (["model.pt2"], "unexpected 'model.pt2'"),
        (["--model", "x.pt2", "--colour", "red"], "unknown local-model option 'colour'"),
        (["--model", "rm -rf"], "neither a torch.export program"),
        (["--model", "x.pt2", "--name", "a/b"], "letters, digits"),
    ):
        with pytest.raises(InputError, match=message):
            local_source.parse_argv(argv)
    with pytest.raises(InputError, match="not key=value"):
        local_source.entries_from_env({local_source.ENV: "x.pt2 mean"})


def test_a_bad_environment_entry_is_listed_with_its_reason(nets, monkeypatch):
    monkeypatch.setenv(local_source.ENV, "local_test_nets:build_pixel; x.pt2 mean")
    [source] = [s for s in list_sources() if s.name == "local"]
    infos = {info.name: info for info in source.list_models()}
    assert infos["local:local_test_nets.build_pixel"].weights_available
    bad = infos["local:NEURONVIZ_MODELS-2"]
    assert not bad.weights_available and "'mean' after 'x.pt2' is not key=value" in bad.description
    with pytest.raises(InputError, match="not key=value"):
        create_model("local:NEURONVIZ_MODELS-2", device="cpu")


def test_static_batch_and_missing_file(tmp_path, nets):
    net = nets[1].make()
    fixed = torch.export.export(net, (torch.rand(1, 1, 28, 28),))
    torch.export.save(fixed, tmp_path / "fixed.pt2")
    with pytest.raises(CheckpointError, match=r"batch size is fixed at 1; export it with dynamic_shapes"):
        local_source.load_program(tmp_path / "fixed.pt2")
    (tmp_path / "junk.pt2").write_bytes(b"PK junk")
    with pytest.raises(CheckpointError, match="junk.pt2 is not a torch.export program"):
        local_source.load_program(tmp_path / "junk.pt2")
    with pytest.raises(ModelNotFoundError, match="cannot read the program"):
        create_model(local_source.register_local_model(str(tmp_path / "gone.pt2")), device="cpu")


def test_trusted_spec_for_the_cli(program, monkeypatch):
    path, _ = program
    for other in ("digits-cnn", "timm:resnet18", "local:tiny", "resnet18"):  # other sources' specs pass through
        assert local_source.trusted_spec(other) == other
    with pytest.raises(InputError, match="a spec of the timm model source"):
        local_source.parse_argv(["--model", "timm:resnet18"])
    spec = local_source.trusted_spec(f"{path} name=cli-tiny")
    assert spec == "local:cli-tiny"
    monkeypatch.setenv("NEURONVIZ_SHARED_SERVER", "1")  # the operator's models load on a shared server too
    assert create_model(spec, device="cpu").num_classes == 10


def test_cli_figure_takes_a_program(program, tmp_path):
    from neuronviz import cli

    path, _ = program
    out = tmp_path / "figure.svg"
    code = cli.main(["figure", "--model", str(path), "--image", "digit-test-0", "--charts", "none", "--out", str(out)])
    assert code == 0
    assert out.stat().st_size > 1000
    assert any(e.target == str(Path(path).resolve()) for e in local_source.local_entries())
