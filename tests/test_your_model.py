"""A network from outside the project, in every form a researcher saves it (issue 22 items 1, 2, 6, 7).

The test writes its own small CNN (three convolutions, batch norm after the first two, ReLUs as
function calls, one pooling module used twice) and saves it as a state dict (with a factory), an
ONNX file with and without metadata, a torch.export program with and without its side file, and a
``module:function`` factory. Through :func:`neuronviz.core.models.create_model` and the CLI: equal
outputs, each fact with its origin (nothing assumed silently; a grey model never gets RGB
statistics), the layer list saying what it folds or leaves out, refusals, and random weights that
are the same in two processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from neuronviz.cli import main
from neuronviz.core.layers import probe_layers
from neuronviz.core.models import create_model, load_model
from neuronviz.core.models.layer_notes import layer_notes
from neuronviz.infra.errors import CheckpointError, InputError, SharedServerError
from neuronviz.workflows import provenance

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = 0.3054, 0.3247
CLASSES = [str(i) for i in range(10)]

NET = textwrap.dedent(
    '''
    from pathlib import Path

    import torch
    import torch.nn.functional as F
    from torch import nn


    class Outside(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
            self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.bn1(self.conv1(x))))
            x = self.pool(F.relu(self.bn2(self.conv2(x))))
            x = F.relu(self.conv3(x))
            return self.head(x.mean((2, 3)))


    def build():
        return Outside().eval()


    def trained():
        net = Outside().eval()
        net.load_state_dict(torch.load(Path(__file__).with_name("outside.pt"), weights_only=True))
        return net
    '''
)


def _export_onnx(net, path: Path, props: dict[str, str] | None) -> Path:
    import onnx

    torch.onnx.export(net, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    if props:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """Every saved form of one trained-looking network (random weights, non-trivial batch-norm statistics)."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "outside_net.py").write_text(NET)
    sys.path.insert(0, str(folder))
    import outside_net

    torch.manual_seed(0)
    net = outside_net.build()
    for bn in (net.bn1, net.bn2):  # statistics that make folding visible
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    torch.save(net.state_dict(), folder / "outside.pt")
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, folder / "outside.safetensors",
        metadata={"mean": json.dumps([MEAN]), "std": json.dumps([STD]), "class_names": json.dumps(CLASSES)},
    )
    props = {"neuronviz.mean": json.dumps([MEAN]), "neuronviz.std": json.dumps([STD]), "neuronviz.class_names": json.dumps(CLASSES)}
    _export_onnx(net, folder / "with-meta.onnx", props)
    _export_onnx(net, folder / "bare.onnx", None)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net, (torch.rand(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}})
    side = json.dumps({"mean": [MEAN], "std": [STD], "class_names": CLASSES})
    torch.export.save(program, folder / "with-side.pt2", extra_files={"neuronviz.json": side})
    torch.export.save(program, folder / "bare.pt2")
    yield folder, net
    sys.path.remove(str(folder))
    sys.modules.pop("outside_net", None)


GIVEN = {"mean": str(MEAN), "std": str(STD), "classes": ",".join(CLASSES), "input_size": "28"}


def _all_forms(folder: Path):
    return {
        "state dict + factory": load_model(folder / "outside.safetensors", device="cpu", factory="outside_net:build", options={"input_size": "28"}),
        "onnx with metadata": create_model(folder / "with-meta.onnx", device="cpu"),
        "onnx without metadata, facts given": create_model(folder / "bare.onnx", device="cpu", options=GIVEN),
        ".pt2 with side file": create_model(str(folder / "with-side.pt2"), device="cpu"),
        "factory": create_model("outside_net:trained", device="cpu", options=GIVEN),
    }


def test_every_form_gives_the_networks_own_outputs(forms):
    folder, net = forms
    torch.manual_seed(1)
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        expected = net((x - MEAN) / STD)
    for form, model in _all_forms(folder).items():
        assert model.channels == 1 and model.input_size == (28, 28) and model.class_names == tuple(CLASSES), form
        with torch.no_grad():
            got = model(x)
        assert (got - expected).abs().max().item() < 1e-4, form
    assert expected.abs().max().item() > 1e-2  # a real comparison


def test_each_fact_says_where_it_came_from(forms):
    folder, _ = forms
    onnx_meta = create_model(folder / "with-meta.onnx", device="cpu").facts
    assert [onnx_meta[n].origin for n in ("mean", "std", "input_size", "channels", "class_names")] == [
        "metadata", "metadata", "file", "file", "metadata",
    ]
    assert onnx_meta["mean"].detail == "the file's metadata_props neuronviz.mean" and onnx_meta.assumed == ()
    bare = create_model(folder / "bare.onnx", device="cpu")
    assert bare.facts.assumed == ("mean", "std", "class_names")
    # a grey model without statistics gets MNIST's (marked assumed), never ImageNet's (grey or RGB)
    assert bare.facts["mean"].value == pytest.approx((0.1307,)) and bare.facts["std"].value == pytest.approx((0.3081,))
    assert bare.facts["mean"].detail.startswith("nothing gave the mean: MNIST's training statistics")
    assert "0.449" not in json.dumps(bare.facts.to_dict()) and "0.485" not in json.dumps(bare.facts.to_dict())
    assert bare.facts["input_size"].origin == "file" and bare.facts["input_size"].value == (28, 28)
    given = create_model(folder / "bare.onnx", device="cpu", options=GIVEN).facts
    assert given["mean"].origin == "user" and given["class_names"].origin == "user" and given.assumed == ()
    side = create_model(str(folder / "with-side.pt2"), device="cpu").facts
    assert side["mean"].origin == "metadata" and "neuronviz.json" in side["mean"].detail and side["channels"].origin == "file"
    no_side = create_model(str(folder / "bare.pt2"), device="cpu")
    assert no_side.facts.assumed == ("mean", "std", "class_names") and no_side.facts["mean"].value == pytest.approx((0.1307,))
    factory = create_model("outside_net:trained", device="cpu")
    assert factory.facts.assumed == ("mean", "std", "input_size", "class_names")
    assert factory.facts["channels"].origin == "file" and "conv1" in factory.facts["channels"].detail
    state = load_model(folder / "outside.safetensors", device="cpu", factory="outside_net:build")
    assert state.facts["mean"].origin == "metadata" and state.facts["class_names"].origin == "metadata"
    assert state.facts.assumed == ("input_size",)
    # provenance carries the facts, their origin, and what was assumed
    record = provenance.model_record(bare)
    assert record["assumed"] == ["mean", "std", "class_names"] and record["facts"]["input_size"]["origin"] == "file"
    note = provenance.assumed_note({"model": record})
    assert note.startswith("Model facts assumed, not known (bare): mean 0.1307; std 0.3081; class names class 0")
    assert provenance.assumed_note({"model": provenance.model_record(state)}).endswith("input size 224×224.")


def test_the_layer_list_says_what_it_folds_and_leaves_out(forms):
    folder, _ = forms
    onnx_notes = layer_notes(create_model(folder / "bare.onnx", device="cpu"))
    assert [n.split(":")[0] for n in onnx_notes] == ["conv1", "conv2"]  # the batch norms went into them; conv3 had none
    assert all("folded" in n for n in onnx_notes)
    onnx_layers = [info.name for info in probe_layers(create_model(folder / "bare.onnx", device="cpu"))]
    assert {"relu", "relu_1", "relu_2", "pool", "pool_1"} <= set(onnx_layers)  # one module per call site in ONNX
    factory = create_model("outside_net:trained", device="cpu", options=GIVEN)
    notes = layer_notes(factory)  # a factory's forward is the user's code: what it cannot probe is said
    assert any(n.startswith("pool: runs 2 times per forward pass") for n in notes), notes
    assert any(n.startswith("relu: called as a function 3 times") for n in notes), notes
    assert "pool" not in [info.name for info in probe_layers(factory)]
    # a .pt2 program gets a module per call site, named as the ONNX file names them
    program = create_model(str(folder / "with-side.pt2"), device="cpu")
    notes = layer_notes(program)
    assert notes[0].startswith("pool_1: call 2 of pool, which the network runs 2 times"), notes
    assert notes[1].startswith("relu, relu_1, relu_2: the network's functional relu calls"), notes
    assert len(notes) == 2
    program_layers = [info.name for info in probe_layers(program)]
    assert program_layers == ["conv1", "bn1", "relu", "pool", "conv2", "bn2", "relu_1", "pool_1", "conv3", "relu_2", "head"]
    # the same name, the same values: relu_1 and pool_1 of the program and of the ONNX file (batch norm folded there)
    from neuronviz.core.probe import probe

    onnx_model = create_model(folder / "with-meta.onnx", device="cpu")
    x = torch.rand(3, 1, 28, 28)
    for name in ("relu", "relu_1", "pool_1", "relu_2"):
        with probe(program, [name]) as a, torch.no_grad():
            a.forward(x)
        with probe(onnx_model, [name]) as b, torch.no_grad():
            b.forward(x)
        assert torch.allclose(a.calls(name)[0], b.calls(name)[0], atol=1e-4), name
    # the onnx conv2 is conv2 and bn2: different from the program's conv2 (stated in its notes above)
    with probe(program, ["bn2"]) as a, torch.no_grad():
        a.forward(x)
    with probe(onnx_model, ["conv2"]) as b, torch.no_grad():
        b.forward(x)
    assert torch.allclose(a.calls("bn2")[0], b.calls("conv2")[0], atol=1e-4)
    assert layer_notes(create_model("digits-cnn", device="cpu")) == []  # every ReLU its own module, none reused


def test_refusals_say_what_is_wrong(forms, monkeypatch):
    folder, _ = forms
    with pytest.raises(SharedServerError, match="runs code when loaded"):
        create_model(str(folder / "bare.pt2"), device="cpu", trusted=False)
    with pytest.raises(SharedServerError, match="runs code when loaded"):
        create_model("outside_net:trained", device="cpu", trusted=False)
    with pytest.raises(InputError, match="only trusted callers"):
        create_model(folder / "outside.pt", device="cpu", options={"factory": "outside_net:build"}, trusted=False)
    with pytest.raises(CheckpointError, match="only together with its factory"):
        create_model(folder / "outside.pt", device="cpu", options={"mean": "0.5"})
    with pytest.raises(CheckpointError, match="either an architecture or a factory"):
        load_model(folder / "outside.pt", device="cpu", architecture="digits-cnn", factory="outside_net:build")
    with pytest.raises(CheckpointError, match="outside.pt \\(for digits_cnn_like:build\\)|missing|unexpected"):
        (folder / "digits_cnn_like.py").write_text("from neuronviz.core.models.builtin import DigitsCNN\n\ndef build():\n    return DigitsCNN()\n")
        load_model(folder / "outside.pt", device="cpu", factory="digits_cnn_like:build")
    with pytest.raises(InputError, match="unknown option"):
        create_model(folder / "bare.onnx", device="cpu", options={"meen": "0.5"})
    with pytest.raises(InputError, match="has 3 numbers but the model takes 1 input channel"):
        create_model(folder / "bare.onnx", device="cpu", options={"mean": "0.485, 0.456, 0.406"})
    monkeypatch.setenv("NEURONVIZ_SHARED_SERVER", "1")
    with pytest.raises(SharedServerError, match="shared server"):
        create_model(str(folder / "bare.pt2"), device="cpu")
    with pytest.raises(SharedServerError, match="shared server"):
        create_model(folder / "bare.onnx", device="cpu")


@pytest.mark.slow  # two small evaluations: ~12 s
def test_cli_inspect_and_evaluate_take_every_form(forms, capsys, tmp_path):
    folder, _ = forms
    assert main(["inspect", str(folder / "bare.onnx")]) == 0
    out = capsys.readouterr().out
    assert "(file: the graph's input shape)" in out and "assumed (default)" in out
    assert "conv2: folded" in out and "probe layers (9, forward order)" in out
    assert main(["inspect", str(folder / "outside.pt"), "--factory", "outside_net:build", "--mean", str(MEAN), "--std", str(STD),
                 "--input-size", "28", "--classes", ",".join(CLASSES)]) == 0
    out = capsys.readouterr().out
    assert "(user: option mean)" in out and "assumed" not in out.split("probe layers")[0].replace("or assumed", "")
    assert "relu: called as a function 3 times" in out
    assert main(["inspect", str(folder / "outside.pt")]) == 2  # a state dict of an unregistered network: its factory is needed
    assert "--factory my_pkg.net:build" in capsys.readouterr().err
    code = main(["evaluate", str(folder / "with-meta.onnx"), "--limit", "16", "--attack", "fgsm", "--defence", "none",
                 "--block-size", "16", "--out", str(tmp_path / "ev"), "--no-progress"])
    assert code == 0
    document = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert document["provenance"]["model"]["assumed"] == [] and document["provenance"]["model"]["facts"]["mean"]["origin"] == "metadata"
    code = main(["evaluate", str(folder / "bare.onnx"), "--classes", ",".join(CLASSES), "--limit", "16", "--attack", "fgsm",
                 "--defence", "none", "--block-size", "16", "--out", str(tmp_path / "ev2"), "--no-progress"])
    assert code == 0
    assert "Model facts assumed, not known (bare): mean 0.1307; std 0.3081." in (tmp_path / "ev2" / "results.md").read_text()


RANDOM = textwrap.dedent(
    """
    import json, sys, torch
    from neuronviz.core.models import create_model
    from neuronviz.workflows.provenance import model_record
    torch.manual_seed(int(sys.argv[1]))  # the process's own random state must not matter
    out = {}
    for spec in ("digits-cnn", "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=1&embed_dim=32&num_heads=2"):
        torch.manual_seed(int(sys.argv[1]))
        before = torch.rand(1).item()
        torch.manual_seed(int(sys.argv[1]))
        model = create_model(spec, weights=None, device="cpu")
        after = torch.rand(1).item()
        record = model_record(model)
        out[spec] = [model.content_hash, record["init_seed"], after == before]
    print(json.dumps(out))
    """
)


@pytest.mark.slow  # two fresh interpreters importing torch and timm: ~40 s on 2 shared cores
def test_random_weights_are_the_same_in_two_processes():
    runs = []
    for process_seed in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", RANDOM, str(process_seed)], capture_output=True, text=True, cwd=ROOT, timeout=300,
            env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
    hashes = [value[0] for value in runs[0].values()]
    assert len(set(hashes)) == 2
    for _hash, seed, rng_untouched in runs[0].values():
        assert isinstance(seed, int) and seed > 0
        assert rng_untouched  # building under the spec's seed leaves the caller's generator where it was


def test_register_architecture_as_documented(forms):
    """docs/models.md's register_architecture example: a state dict of a registered own network loads by inference."""
    from neuronviz.core.models import Architecture, ImagePolicy, register_architecture
    from neuronviz.core.models import standard_sources as registry

    folder, net = forms
    import outside_net

    register_architecture("my-net", lambda: Architecture(
        name="my-net", build=lambda k: outside_net.Outside(), mean=(0.1307,), std=(0.3081,), input_size=(28, 28),
        class_names=tuple("0123456789"), image_policy=ImagePolicy(mode="pad", resize_size=28), family="digits"))
    try:
        model = load_model(folder / "outside.pt", device="cpu")
        assert model.meta.architecture == "my-net" and model.facts["mean"].origin == "architecture"
        x = torch.rand(2, 1, 28, 28)
        with torch.no_grad():
            assert torch.allclose(model(x), net((x - 0.1307) / 0.3081), atol=1e-5)
    finally:
        registry._ARCHITECTURES.pop("my-net", None)
        registry._meta_shapes.cache_clear()
        registry._head_keys.cache_clear()


def test_the_documented_cost_of_guessing_grey_statistics():
    """docs/models.md's numbers: digits-cnn on the 360 test digits with its own statistics and with each guess."""
    from neuronviz.core.models import wrap_model
    from neuronviz.data.datasets import digits
    from neuronviz.methods.stats import rate

    model = create_model("digits-cnn", device="cpu")
    x, y = digits(split="test")
    shares = {}
    for label, mean, std in [("own", model.facts["mean"].value, model.facts["std"].value), ("mnist", (0.1307,), (0.3081,)),
                             ("imagenet grey", (0.449,), (0.226,)), ("none", (0.0,), (1.0,))]:
        predicted, _ = wrap_model(model.net, mean, std, (28, 28), model.class_names).predict(x)
        shares[label] = rate(int((predicted == y).sum()), len(y))
    assert [round(100 * shares[k].share) for k in ("own", "mnist", "imagenet grey", "none")] == [99, 91, 86, 53]
    assert shares["mnist"].text() == "91% (95% CI 87%–93%, n = 360)"
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    assert "scores 99% (95% CI 97–99%) with its own statistics,\n91% (87–93%) with MNIST's" in text
