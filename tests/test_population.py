"""The neurons of a data set (neuronviz.workflows.population) and the `neurons` command.

The CLI test writes its own tiny model (a module:function the command loads as a trusted local
model) and a small image folder, runs ``neurons`` with FGSM (deterministic), and recomputes every
count of ``neurons.json`` independently: the attack by hand (one signed-gradient step), the
activations and influence with plain forward hooks and autograd, the groups with numpy.
"""

from __future__ import annotations

import io
import json
import math
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronviz.core.models import wrap_model
from neuronviz.infra.errors import InputError
from neuronviz.methods import controls
from neuronviz.workflows import population

NET = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class PopNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 10, 3, padding=1)
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(2)
            self.head = nn.Linear(40, 10)

        def forward(self, x):
            return self.head(torch.flatten(self.pool(self.act(self.conv(x))), 1))


    def make():
        net = PopNet()
        net.load_state_dict(torch.load(__file__.replace(".py", ".pt"), weights_only=True))
        return net.eval()


    def build():
        net = make()
        net.class_names = [str(i) for i in range(10)]
        net.mean, net.std, net.input_size = [0.5], [0.25], 8
        return net
    '''
)

EPS = 0.2


def _trained(net: nn.Module) -> nn.Module:
    """A few hundred steps on the 8×8 digits (normalised as the model card says): a model whose
    predictions differ between images, so that an attack has something to change."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None] - 0.5) / 0.25
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    for _step in range(150):
        rows = torch.randint(0, len(y), (128,))
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
        optimiser.step()
    return net.eval()


@pytest.fixture(scope="module")
def net_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("popnet")
    (folder / "population_test_net.py").write_text(NET)
    sys.path.insert(0, str(folder))
    import population_test_net

    torch.save(_trained(population_test_net.PopNet()).state_dict(), folder / "population_test_net.pt")

    yield population_test_net
    sys.path.remove(str(folder))
    sys.modules.pop("population_test_net", None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path_factory.mktemp("pop-folder")
    for i in range(36):
        label = int(digits.target[i])
        (root / str(label)).mkdir(exist_ok=True)
        pixels = (digits.images[i] / 16.0 * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        (root / str(label) / f"{i:03d}.png").write_bytes(buffer.getvalue())
    return root


def _independent(net: nn.Module, x: torch.Tensor, layer: str, seed: int):
    """(clean, adversarial, control) activation and influence sums per channel, by hand."""
    mean, std = 0.5, 0.25

    def logits(images):
        return net((images - mean) / std)

    with torch.no_grad():
        clean_pred = logits(x).argmax(1)
    grad_x = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(logits(grad_x), clean_pred, reduction="sum")
    (g,) = torch.autograd.grad(loss, grad_x)
    adversarial = (x + EPS * g.sign()).clamp(0, 1)
    control = controls.matched_control(x, adversarial, "Linf", seed)
    module = dict(net.named_modules())[layer]
    out = {}
    for name, images in (("clean", x), ("adversarial", adversarial), ("control", control)):
        seen: dict[str, torch.Tensor] = {}
        handle = module.register_forward_hook(lambda m, i, o, seen=seen: seen.__setitem__("a", o))
        try:
            z = logits(images)
            a = seen["a"]
            (ga,) = torch.autograd.grad(z.gather(1, clean_pred[:, None]).sum(), a)
        finally:
            handle.remove()
        out[name] = ((a.detach()).sum((2, 3)).numpy(), (a.detach() * ga).sum((2, 3)).numpy())
    with torch.no_grad():
        fooled = (logits(adversarial).argmax(1) != clean_pred).numpy()
    return out, fooled


def test_cli_shares_match_an_independent_computation(net_module, folder, tmp_path):
    from neuronviz import cli
    from neuronviz.core.models import local_source
    from neuronviz.workflows.evaluate import load_dataset

    out = tmp_path / "out"
    try:
        code = cli.main(["neurons", "population_test_net:build", "--data", f"folder:{folder}", "--attack", f"fgsm:eps={EPS}",
                         "--layer", "conv", "--fraction", "0.2", "--out", str(out)])
        assert code == 0
        document = json.loads((out / "neurons.json").read_text())
    finally:
        for entry in local_source.local_entries():
            local_source.unregister_local_model(entry.name)
    net = net_module.make()
    pixel = wrap_model(net_module.make(), [0.5], [0.25], (8, 8), [str(i) for i in range(10)], name="popnet")
    data = load_dataset(f"folder:{folder}", pixel)  # the images as the command read them (same loader, same order)
    measured, fooled = _independent(net, data.images, "conv", seed=0)
    assert document["fraction"] == 0.2 and document["images"] == 36
    assert document["fooled"]["k"] == int(fooled.sum()) > 3
    layer = document["layers"]["conv"]
    k = t = math.ceil(0.2 * 10)
    assert layer["front_size"] == k and layer["tail_size"] == t
    rows = np.flatnonzero(fooled)
    clean_act, clean_inf = measured["clean"]
    order = np.argsort(-clean_inf[rows], axis=1, kind="stable")
    front, tail = order[:, :k], order[:, -t:]
    for side, name in (("attack", "adversarial"), ("control", "control")):
        act, inf = measured[name]
        d_act = np.take_along_axis(act[rows] - clean_act[rows], front, 1), np.take_along_axis(act[rows] - clean_act[rows], tail, 1)
        d_inf = np.take_along_axis(inf[rows] - clean_inf[rows], front, 1), np.take_along_axis(inf[rows] - clean_inf[rows], tail, 1)
        expected = {
            "front_suppressed": int((d_act[0] < 0).sum()),
            "tail_enhanced": int((d_act[1] > 0).sum()),
            "front_suppressed_influence": int((d_inf[0] < 0).sum()),
            "tail_enhanced_influence": int((d_inf[1] < 0).sum()),
        }
        for key, count in expected.items():
            entry = layer[key][side]
            assert entry["n"] == len(rows) * (k if key.startswith("front") else t)
            assert entry["k"] == count, (key, side)
            assert entry["share"] == pytest.approx(count / entry["n"])
            assert entry["low"] <= entry["share"] <= entry["high"]
    # the per-neuron table: every neuron, its change under the attack as computed by hand
    table = layer["neuron_table"]
    assert [row["neuron"] for row in table] == list(range(10))
    adv_act = measured["adversarial"][0]
    for row in table:
        j = row["neuron"]
        assert row["activation_attack_mean"] == pytest.approx(float((adv_act[rows, j] - clean_act[rows, j]).mean()), rel=1e-4, abs=1e-4)
    # CSVs with the provenance record in their comment lines
    from app.export_controls import read_csv

    frame, record = read_csv((out / "layers.csv").read_text())
    assert record["model"]["name"] and record["attacks"][0]["attack"] == "fgsm" and record["dataset"]["images"] == 36
    assert frame.loc[0, "front_suppressed_attack_share"] == pytest.approx(layer["front_suppressed"]["attack"]["share"])
    neurons, _ = read_csv((out / "neurons.csv").read_text())
    assert len(neurons) == 10


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 10))
    return wrap_model(net.eval(), [0.5], [0.25], (8, 8), [str(i) for i in range(10)], name="pop-small")


def test_degenerate_layer_is_not_defined_not_minus_one(small_model):
    torch.manual_seed(1)
    x = torch.rand(24, 1, 8, 8)
    y = torch.randint(0, 10, (24,))
    result = population.population(small_model, x, y, "fgsm", {"eps": 0.3}, layers=["0", "4"], eps_scales=None)
    assert result.fooled_count > 2
    logits = result.layers["4"]
    # toward the clean class only its own logit has a non-zero influence: ρ is not defined
    assert logits.spearman["attack"]["median"] is None
    assert "non-zero" in logits.spearman["attack"]["reason"]
    conv = result.layers["0"]
    assert conv.spearman["attack"]["median"] is not None and -1 < conv.spearman["attack"]["median"] <= 1
    # per-neuron q values are corrected across both layers (BH: q ≥ p)
    for row in result.neuron_rows():
        if row["activation_p"] is not None:
            assert row["activation_q"] >= row["activation_p"] - 1e-12
    with pytest.raises(InputError, match="fraction"):
        population.population(small_model, x, y, "fgsm", {"eps": 0.3}, fraction=0.6)
    with pytest.raises(InputError):
        population.population(small_model, x, y, "fgsm", {"eps": 0.3}, layers="no-such-layer")


def test_consistent_neurons_have_exemplars_and_a_curve(small_model):
    torch.manual_seed(2)
    x = torch.rand(40, 1, 8, 8)
    y = torch.randint(0, 10, (40,))
    result = population.population(small_model, x, y, "pgd", {"eps": 0.3, "steps": 3}, layers="0", details=2,
                                   exemplars=3, eps_scales=(0.5, 1.0), curve_images=16)
    consistent = [row for row in result.neuron_rows() if row["consistent"]]
    assert len(result.details) == min(2, len(consistent))
    for detail in result.details:
        activation = result.layers["0"].measures.clean_activation[:, detail.neuron]
        assert [e.image for e in detail.exemplars] == torch.argsort(activation, descending=True)[:3].tolist()
        for e in detail.exemplars:
            assert e.box is not None  # a 3×3 convolution: the box around its position, clipped to the image
            top, left, bottom, right = e.box
            h, w = e.position
            assert top == max(0, h - 1) and left == max(0, w - 1) and bottom <= min(8, h + 2) and right <= min(8, w + 2)
        assert [p["eps"] for p in detail.curve] == [0.0, 0.15, 0.3]
    document = result.to_dict()
    json.dumps(document, allow_nan=False)


def test_receptive_field_of_a_conv_stack(small_model):
    x = torch.rand(1, 8, 8)
    position, box, reason = population.receptive_field(small_model, x, "0", 2)
    assert reason is None and box is not None
    h, w = position
    assert box == (max(0, h - 1), max(0, w - 1), min(8, h + 2), min(8, w + 2))


def test_figures_hold_the_results_numbers(small_model):
    from neuronviz.figures import population as figs

    torch.manual_seed(2)
    x = torch.rand(40, 1, 8, 8)
    y = torch.randint(0, 10, (40,))
    result = population.population(small_model, x, y, "pgd", {"eps": 0.3, "steps": 3}, layers=["0", "4"], details=1,
                                   exemplars=2, eps_scales=(1.0,), curve_images=8)
    fig = figs.layer_counts_figure(result)
    attack = [t for t in fig.data if t.legendgroup == "attack"]
    assert len(attack) == 4  # one per count
    expected = [100 * result.layers[name].counts["front_suppressed"]["attack"]["share"] for name in result.layers]
    assert list(attack[0].y) == pytest.approx(expected)
    boxes = figs.neuron_distributions(result, "0", "activation", top=3)
    assert [t.name for t in boxes.data] == ["PGD", "matched noise"]
    assert len(set(boxes.data[0].x)) == 3
    with pytest.raises(InputError):
        figs.neuron_distributions(result, "nope")
    for detail in result.details:
        detail_fig = figs.neuron_detail_figure(detail, x)
        assert len(detail_fig.layout.shapes) == sum(e.box is not None for e in detail.exemplars)


def test_per_image_spearman_equals_the_shared_rank_correlation():
    torch.manual_seed(4)
    before = torch.randn(30, 12)
    after = before + 0.5 * torch.randn(30, 12)
    after[3] = 1.0  # constant: not defined
    before[5, 1:] = 0  # one non-zero value: not defined
    after[7] = before[7].round()  # ties
    values, reasons = population.per_image_spearman(before, after)
    for i in range(30):
        expected, reason = population.stats.rank_correlation(before[i], after[i])
        assert (values[i] is None) == (expected is None)
        if expected is not None:
            assert values[i] == pytest.approx(expected, abs=1e-12)
    assert len(reasons) == 2


def test_cli_refuses_bad_arguments_with_a_message(net_module, folder, tmp_path, capsys):
    from neuronviz import cli
    from neuronviz.core.models import local_source

    try:
        for extra, message in ((["--fraction", "0.7"], "fraction must be"), (["--layer", "nope"], "nope"),
                               (["--attack", "nosuchattack"], "nosuchattack")):
            code = cli.main(["neurons", "population_test_net:build", "--data", f"folder:{folder}", "--out", str(tmp_path / "x"),
                             *extra])
            assert code == 2
            assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()
    finally:
        for entry in local_source.local_entries():
            local_source.unregister_local_model(entry.name)
