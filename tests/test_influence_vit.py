"""Vision transformers, first class: token layers, heads, Grad-CAM on the patch grid, patch-embedding
filters, sensitivity per hidden unit. Random timm ViTs in small configurations (no downloads)."""

from __future__ import annotations

import time

import pytest
import torch
from captum.attr import LayerGradientXActivation
from torch import nn

from neuronviz.core.layers import layer_info
from neuronviz.core.models import wrap_model
from neuronviz.core.probe import hook_count, probe
from neuronviz.infra.errors import InputError
from neuronviz.methods.attribution import input_attribution
from neuronviz.methods.feature_maps import channel_maps
from neuronviz.methods.fragility import first_conv, first_layer_maps, nodal_dropout
from neuronviz.methods.influence import (
    default_layer,
    influence_shift,
    layer_shift_table,
    neuron_influence,
    partition,
    probe_layers,
)
from neuronviz.methods.sensitivity import neuron_sensitivity

timm = pytest.importorskip("timm")

SMALL = dict(img_size=32, patch_size=8, depth=2, num_classes=10)  # 4×4 = 16 patches + the class token


def _vit(name: str = "vit_tiny_patch16_224", size: int = 32, **kwargs) -> tuple:
    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, **kwargs)
    net.eval()
    classes = [str(i) for i in range(net.num_classes)]
    model = wrap_model(net, mean=[0.5] * 3, std=[0.25] * 3, input_size=(size, size), class_names=classes, name=name)
    return model, net


@pytest.fixture(scope="module")
def vit():
    return _vit(**SMALL)


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32)


def test_probe_layers_list_a_transformer_by_block(vit):
    model, net = vit
    infos = probe_layers(model)
    hidden = net.blocks[0].mlp.fc1.out_features  # 4 × 192 = 768 for vit_tiny
    assert [i.name for i in infos] == [
        "patch_embed.proj",
        "blocks.0.attn", "blocks.0.mlp.act", "blocks.0",
        "blocks.1.attn", "blocks.1.mlp.act", "blocks.1",
        "head",
    ]
    by_name = {i.name: i for i in infos}
    mlp, heads, block = by_name["blocks.0.mlp.act"], by_name["blocks.0.attn"], by_name["blocks.1"]
    assert (mlp.kind, mlp.neurons, mlp.channels, mlp.output_shape, mlp.block, mlp.role) == ("tokens", hidden, hidden, (17, hidden), "blocks.0", "mlp")
    assert hidden == 768 and mlp.units == 17 * 768
    assert (heads.kind, heads.neurons, heads.heads, heads.role, heads.output_shape) == ("heads", 3, 3, "attention", (17, 192))
    assert (block.kind, block.neurons, block.role) == ("tokens", 192, "residual")
    assert (mlp.prefix_tokens, mlp.grid, mlp.class_token) == (1, (4, 4), True)
    assert by_name["patch_embed.proj"].kind == "conv" and by_name["patch_embed.proj"].neurons == 192
    assert by_name["head"].kind == "linear" and by_name["head"].block is None
    assert [i.index for i in infos] == list(range(len(infos)))
    assert default_layer(model) == "blocks.1"


def test_probe_layers_register_no_hooks_of_their_own(vit):
    model, _ = vit
    probe_layers(model)
    assert hook_count(model) == 0


def test_mlp_influence_is_captums_summed_over_tokens_and_cls_is_token_zero(vit, x):
    model, _ = vit
    maps = neuron_influence(model, x, layers=["blocks.0.mlp.act", "blocks.1"])
    mlp = maps["blocks.0.mlp.act"]
    assert mlp.values.shape == (2, 768) and mlp.neurons == 768 and mlp.kind == "tokens" and mlp.tokens == "all"
    ref = LayerGradientXActivation(model, model.layer("blocks.0.mlp.act")).attribute(x, target=mlp.target)
    assert ref.shape == (2, 17, 768)
    assert torch.allclose(mlp.values, ref.sum(1), rtol=1e-5, atol=1e-7)
    assert float(mlp.values.abs().max()) > 0
    cls = neuron_influence(model, x, layers="blocks.0.mlp.act", target=mlp.target, tokens="cls")["blocks.0.mlp.act"]
    assert torch.allclose(cls.values, ref[:, 0], rtol=1e-5, atol=1e-7) and cls.tokens == "cls"
    five = neuron_influence(model, x, layers="blocks.0.mlp.act", target=mlp.target, tokens=5)["blocks.0.mlp.act"]
    assert torch.allclose(five.values, ref[:, 5], rtol=1e-5, atol=1e-7)
    act = neuron_influence(model, x, layers="blocks.0.mlp.act", method="activation")["blocks.0.mlp.act"]
    with probe(model, ["blocks.0.mlp.act"]) as rec, torch.no_grad():
        rec.forward(x)
        assert torch.allclose(act.values, rec.activation("blocks.0.mlp.act").sum(1), atol=1e-5)
    unit = neuron_influence(model, x, layers="blocks.0.mlp.act", granularity="unit", tokens="cls")["blocks.0.mlp.act"]
    assert unit.values.shape == (2, 768) and unit.neuron_label(3) == "(0, 3)" and mlp.neuron_label(3) == "unit 3"


def test_heads_are_the_input_of_proj_split_by_head(vit, x):
    model, net = vit
    heads = neuron_influence(model, x, layers="blocks.1.attn")["blocks.1.attn"]
    assert heads.values.shape == (2, net.blocks[1].attn.num_heads) == (2, 3) and heads.neuron_label(2) == "head 2"
    proj = LayerGradientXActivation(model, net.blocks[1].attn.proj).attribute(
        x, target=heads.target, attribute_to_layer_input=True
    )
    ref = proj.reshape(2, 17, 3, 64).sum(dim=(1, 3))
    assert torch.allclose(heads.values, ref, rtol=1e-5, atol=1e-7)
    for method in ("conductance", "internal_influence"):
        other = neuron_influence(model, x, layers=["blocks.1.attn", "blocks.0.mlp.act"], method=method, n_steps=4)
        assert other["blocks.1.attn"].values.shape == (2, 3) and other["blocks.0.mlp.act"].values.shape == (2, 768)
        assert torch.isfinite(other["blocks.1.attn"].values).all()


def test_groups_and_shifts_run_unchanged_on_token_layers(vit, x):
    model, _ = vit
    before = neuron_influence(model, x)
    after = neuron_influence(model, (x + 0.05 * torch.randn_like(x)).clamp(0, 1), target=before["head"].target)
    groups = partition(before["blocks.0.mlp.act"], front=0.05, tail=0.05)
    assert groups.front_size == 39 and groups.labels.shape == (2, 768)  # ceil(5% of 768)
    shift = influence_shift(before["blocks.1.attn"], after["blocks.1.attn"], front=1, tail=1)
    assert shift.transition.sum(dim=(1, 2)).tolist() == [3, 3]
    table = layer_shift_table(before, after)
    assert table["neurons"].tolist() == [192, 3, 768, 192, 3, 768, 192, 10]


def test_token_options_are_checked(vit, x):
    model, _ = vit
    for bad in (True, "first", 17, -1, 1.5):
        with pytest.raises(InputError, match="token"):
            neuron_influence(model, x, layers="blocks.0", tokens=bad)
    pooled, _ = _vit(**SMALL, class_token=False, global_pool="avg")
    info = layer_info(pooled, "blocks.0")
    assert (info.prefix_tokens, info.class_token, info.output_shape) == (0, False, (16, 192))
    with pytest.raises(InputError, match="no class token"):
        neuron_influence(pooled, x, layers="blocks.0", tokens="cls")


@pytest.mark.parametrize(
    ("name", "kwargs", "prefix"),
    [
        ("vit_tiny_patch16_224", {"reg_tokens": 4}, 5),
        ("deit_tiny_distilled_patch16_224", {}, 2),
    ],
)
def test_prefix_tokens_are_read_from_timm(name, kwargs, prefix):
    model, _ = _vit(name, **SMALL, **kwargs)
    info = layer_info(model, "blocks.0.mlp.act")
    assert (info.prefix_tokens, info.grid, info.output_shape[0]) == (prefix, (4, 4), 16 + prefix)
    cam = input_attribution(model, torch.rand(1, 3, 32, 32), method="grad_cam")
    assert cam.raw is not None and cam.raw.shape == (1, 4, 4)


def test_grad_cam_on_the_patch_grid_equals_the_reshape_recipe(vit, x):
    model, net = vit
    cam = input_attribution(model, x, method="grad_cam", target=3)
    assert cam.layer == "blocks.1.norm1"  # the last block's first token layer, as pytorch-grad-cam for ViTs
    assert cam.values.shape == (2, 32, 32) and cam.raw is not None and cam.raw.shape == (2, 4, 4)
    # independent: a plain hook on the module, the ViT reshape of pytorch-grad-cam, then Grad-CAM
    seen = {}
    handle = net.blocks[1].norm1.register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
    try:
        with torch.enable_grad():
            logits = model(x.clone().requires_grad_(True))  # the model's parameters are frozen
            (grad,) = torch.autograd.grad(logits[:, 3].sum(), seen["a"])
    finally:
        handle.remove()
    a = seen["a"].detach()[:, 1:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2)
    g = grad[:, 1:].reshape(2, 4, 4, 192).permute(0, 3, 1, 2)
    expected = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))
    assert torch.allclose(cam.raw, expected, rtol=1e-4, atol=1e-7)
    assert float(cam.raw.max()) > 0
    with pytest.raises(InputError, match="token layer"):
        input_attribution(model, x, method="grad_cam", layer="blocks.0.attn")
    for method in ("saliency", "integrated_gradients"):
        other = input_attribution(model, x, method=method, n_steps=4)
        assert other.values.shape == (2, 32, 32) and other.layer is None


def test_first_layer_filters_of_a_vit_are_its_patch_embedding(vit, x):
    model, net = vit
    assert first_conv(model) == "patch_embed.proj"
    sweep = nodal_dropout(model, x, filters=[0, 5, 191])
    assert sweep.logits.shape == (3, 2, 10) and sweep.first_output.shape == (2, 192, 4, 4)
    assert sweep.path == "full-input"  # timm's PatchEmbed refuses the dummy input; the real images are fed
    reference = nodal_dropout(model, x, filters=[0, 5, 191], batched=False)
    assert torch.allclose(sweep.logits, reference.logits, atol=1e-5)
    assert not torch.allclose(sweep.logits[1], sweep.base_logits)  # dropping a filter changes the logits
    maps = first_layer_maps(model, x[:1], x[1:])
    assert maps.weights.shape == (192, 3, 8, 8) and maps.clean.shape == (192, 4, 4)
    assert torch.equal(maps.weights, net.patch_embed.proj.weight.detach())


def test_sensitivity_and_feature_maps_per_hidden_unit(vit, x):
    model, _ = vit
    x_adv = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    sens = neuron_sensitivity(model, x, x_adv, layers=["blocks.0.mlp.act", "blocks.0.attn", "patch_embed.proj"])
    mlp = sens["blocks.0.mlp.act"]
    assert mlp.neurons == 768 and mlp.per_pair.shape == (2, 768) and sens["blocks.0.attn"].neurons == 3
    assert sens["patch_embed.proj"].neurons == 192
    with probe(model, ["blocks.0.mlp.act"]) as rec, torch.no_grad():
        rec.forward(torch.cat([x, x_adv]))
        a = rec.activation("blocks.0.mlp.act")
    expected = (a[:2] - a[2:]).abs().mean(1)  # mean over the 17 tokens, per hidden unit
    assert torch.allclose(mlp.per_pair, expected, atol=1e-6)
    unit_maps = channel_maps(model, x[:1], x_adv[:1], "blocks.0.mlp.act", [4, 700])
    assert unit_maps.clean.shape == (2, 4, 4)  # the patch tokens on the grid, the class token dropped
    assert torch.allclose(unit_maps.clean[0].flatten(), a[0, 1:, 4], atol=1e-6)
    head_maps = channel_maps(model, x[:1], x_adv[:1], "blocks.0.attn", [0, 2])
    assert head_maps.clean.shape == (2, 4, 4)


def test_channels_last_linear_layers_have_their_features_as_neurons():
    class ChannelsLast(nn.Module):  # ConvNeXt's pattern: conv, then a linear MLP on (N, H, W, C)
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc1 = nn.Linear(8, 16)
            self.act = nn.GELU()
            self.head = nn.Linear(16, 4)

        def forward(self, x):
            y = self.act(self.fc1(self.conv(x).permute(0, 2, 3, 1)))
            return self.head(y.mean(dim=(1, 2)))

    model = wrap_model(ChannelsLast(), mean=[0.5] * 3, std=[0.5] * 3, input_size=(6, 6), class_names=list("abcd"))
    infos = {i.name: i for i in probe_layers(model)}
    assert (infos["fc1"].layout, infos["fc1"].neurons) == ("channels_last", 16)
    assert (infos["act"].layout, infos["act"].neurons) == ("channels_last", 16)
    x = torch.rand(2, 3, 6, 6)
    got = neuron_influence(model, x, layers="act")["act"]
    ref = LayerGradientXActivation(model, model.layer("act")).attribute(x, target=got.target)
    assert torch.allclose(got.values, ref.sum(dim=(1, 2)), rtol=1e-5, atol=1e-7)


def test_full_size_vit_tiny_through_the_library():
    started = time.perf_counter()
    model, _ = _vit("vit_tiny_patch16_224", size=224)
    infos = {i.name: i for i in probe_layers(model)}
    assert infos["blocks.0.mlp.act"].neurons == 768 and infos["blocks.0.attn"].neurons == 3
    assert len(infos) == 2 + 3 * 12
    x = torch.rand(1, 3, 224, 224)
    maps = neuron_influence(model, x, layers=["blocks.0.mlp.act", "blocks.0.attn", "blocks.11"])
    assert maps["blocks.0.mlp.act"].values.shape == (1, 768) and maps["blocks.0.attn"].values.shape == (1, 3)
    cam = input_attribution(model, x, method="grad_cam")
    assert cam.layer == "blocks.11.norm1" and cam.raw is not None and cam.raw.shape == (1, 14, 14)
    assert time.perf_counter() - started < 60


def test_torchvision_vision_transformer_is_listed_by_block():
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10)
    model = wrap_model(net.eval(), mean=[0.5] * 3, std=[0.5] * 3, input_size=(32, 32), class_names=[str(i) for i in range(10)])
    infos = {i.name: i for i in probe_layers(model)}
    last = "encoder.layers.encoder_layer_1"
    assert [(i.role, i.neurons) for i in infos.values() if i.block == last] == [("attention", 32), ("mlp", 64), ("residual", 32)]
    assert (infos[last].prefix_tokens, infos[last].grid, infos[last].class_token) == (1, (4, 4), True)
    assert default_layer(model) == last
    cam = input_attribution(model, torch.rand(1, 3, 32, 32), method="grad_cam")
    assert cam.layer == f"{last}.ln_1" and cam.raw is not None and cam.raw.shape == (1, 4, 4)


def test_nip_ranks_a_vits_hidden_units_not_its_tokens(vit, x):
    from neuronviz.methods.defences.nip import nip_step_direction

    model, _ = vit
    target = torch.tensor([1, 2])
    direction, objective, logits = nip_step_direction(model, x, target, "blocks.1", front=0.05, tail=0.05, tail_rule="bottom")
    assert direction.shape == x.shape and torch.isfinite(direction).all()
    maps = neuron_influence(model, x, layers="blocks.1", target=target)["blocks.1"]
    groups = partition(maps, 0.05, 0.05)  # over the 192 hidden units (10 front, 10 tail), not the 17 tokens
    with probe(model, ["blocks.1"]) as rec, torch.no_grad():
        rec.forward(x)
        sums = rec.activation("blocks.1").sum(1)
    expected = sums.gather(1, groups.front).sum(1) - sums.gather(1, groups.tail).sum(1)
    assert groups.front_size == 10 and torch.allclose(objective, expected, rtol=1e-4, atol=1e-5)
