"""What a layer's neurons are: the probe layers of a model, their neuron axis, and the reductions.

One blank forward pass per model (through :func:`neuronviz.core.probe.probe`, the one hook mechanism)
records every module's output shape and call count; from that, each layer gets a
:class:`LayerInfo` saying where its neurons are (``layout``):

- ``"channels_first"`` ``(N, C, *spatial)``: a convolution, BatchNorm, a CNN block; a neuron is
  a channel (summed over positions), a linear layer's neuron a unit;
- ``"channels_last"`` ``(N, *spatial, C)``: a linear layer or LayerNorm applied to every
  position of a channels-last map (ConvNeXt's MLP), and the activations that follow it; a neuron
  is one of the ``C`` features, summed over positions;
- ``"tokens"`` ``(N, T, C)``: any layer of a vision transformer (a model with attention blocks)
  whose output is a token sequence; a neuron is a hidden unit, summed over the tokens, or read
  at one token (``tokens="cls"`` or an index);
- ``"heads"`` ``(N, T, heads·head_dim)``: the attention of a transformer block, recorded as the
  input of its ``proj`` (:func:`neuronviz.core.probe.attention_heads`); a neuron is a head (summed
  over its ``head_dim`` features and the tokens).

Transformer blocks are modules with an attention child (a module with an integer ``num_heads``:
timm's ``Attention`` and torch's ``MultiheadAttention``) and a token output: timm's
``VisionTransformer``, DeiT (distilled too), ViTs with register tokens, torchvision's ViT. The
prefix tokens (class, distillation, register tokens) come from timm's ``num_prefix_tokens``, or
are counted as the tokens beyond the patch grid (the first convolution's output: the patch
embedding). :func:`probe_layers` lists a transformer by block: its heads (``role="attention"``),
its MLP's hidden activation (``"mlp"``) and the block's output (``"residual"``, the residual
stream), plus the patch embedding and the head outside the blocks.

Hand-written: timm and Captum have no description of a model's layers and neuron axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import attention_heads, probe
from neuronviz.infra import cache
from neuronviz.infra.errors import InputError

LAYOUTS = ("channels_first", "channels_last", "tokens", "heads")
#: ``tokens=`` values besides a token index.
TOKEN_CHOICES = ("all", "cls")

#: Module types whose outputs are worth probing (neurons a user can reason about).
PROBE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6,
    nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
)
_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.Mish,
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
#: Residual/inverted blocks, probed as a whole: their output (after the addition and the final
#: activation) is the "block output" people mean, and in torchvision's ResNets it is not the
#: output of any single reused ``relu`` module.
BLOCK_TYPES = frozenset({"BasicBlock", "Bottleneck", "InvertedResidual", "MBConv", "_DenseLayer", "_Transition"})


@dataclass(frozen=True)
class LayerInfo:
    """A probe-able layer: qualified name, what it is, its output shape per image, its neurons.

    ``kind``: ``"conv"``, ``"linear"``, ``"norm"``, ``"activation"``, ``"pool"``, ``"block"``,
    ``"tokens"`` (a transformer's token layer), ``"heads"`` (a transformer's attention) or
    ``"other"``; ``module_type`` is the module's class name. ``neurons``: the channel count, the
    hidden size of a token layer, the head count of an attention; ``channels`` is the same number
    (the older name); ``units`` the elements of one output. ``block`` (e.g. ``"blocks.3"``) and
    ``role`` (``"attention"``, ``"mlp"``, ``"residual"`` or ``"other"``) place a transformer's
    layers; None elsewhere. ``prefix_tokens``: the class/distillation/register tokens before the
    patch tokens, ``grid`` the patch grid ``(h, w)``, ``class_token`` whether token 0 is a class
    token (token layers only).
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    channels: int
    units: int
    index: int  # position in forward order
    neurons: int
    layout: str = "channels_first"
    module_type: str = ""
    block: str | None = None
    role: str | None = None
    heads: int | None = None
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None
    class_token: bool = False

    def neuron_count(self, granularity: str = "channel") -> int:
        """Neurons of this layer at ``granularity`` ("channel": :attr:`neurons`; "unit": every element)."""
        return self.neurons if granularity == "channel" else self.units

    @property
    def tokens(self) -> int | None:
        """The token count of a token or heads layer (None for the others)."""
        return self.output_shape[0] if self.layout in ("tokens", "heads") else None


@dataclass(frozen=True)
class _Description:
    """Every module of a model called in a blank forward pass: LayerInfo (first call) and call counts."""

    infos: dict[str, LayerInfo]
    calls: dict[str, int]
    types: dict[str, type]  # each module's class (not the module: a cached entry keeps no weights alive)
    blocks: tuple[str, ...]


# Descriptions per model content (a few hundred small records each, no tensors), at most 64.
_LAYER_CACHE: cache.Cache[str, _Description] = cache.new_cache("layers.describe", max_entries=64, size=lambda _: 0)


def _kind(module: nn.Module, layout: str) -> str:
    if layout in ("tokens", "heads"):
        return layout
    if isinstance(module, _CONVS):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, _ACTIVATIONS):
        return "activation"
    if isinstance(module, _POOLS):
        return "pool"
    if type(module).__name__ in BLOCK_TYPES:
        return "block"
    return "other"


def _describe(model: PixelModel) -> _Description:
    return _LAYER_CACHE.get_or_make(model.content_hash, lambda: _describe_now(model))


def _describe_now(model: PixelModel) -> _Description:
    modules = {name: module for name, module in model.net.named_modules() if name}
    if not modules:
        raise InputError(f"{model.name} has no layers to probe")
    blank = torch.zeros(1, model.channels, *model.input_size, device=model.device)
    with probe(model, list(modules)) as rec, torch.no_grad():
        rec.forward(blank, require_called=False)
        order = list(rec.order)
        calls = {name: len(rec.calls(name)) for name in order}
        shapes = {name: tuple(int(s) for s in rec.calls(name)[0].shape[1:]) for name in order}
    attention = _attention_modules(modules)
    blocks = tuple(
        name for name in order
        if len(shapes[name]) == 2 and any(f"{name}.{child}" in attention for child, _ in modules[name].named_children())
    )
    transformer = bool(blocks)
    prefix, grid, class_token = _token_facts(model, modules, order, shapes, blocks) if transformer else (0, None, False)
    infos: dict[str, LayerInfo] = {}
    previous: dict[tuple[int, ...], str] = {}  # the last layout seen for an output shape (activations inherit it)
    for index, name in enumerate(order):
        module, shape = modules[name], shapes[name]
        heads = attention_heads(module)
        if heads is not None and len(shape) == 2:
            layout = "heads"
        elif transformer and len(shape) == 2 and not isinstance(module, (nn.Conv1d, nn.BatchNorm1d)):
            layout = "tokens"
        elif len(shape) >= 2 and isinstance(module, (nn.Linear, nn.LayerNorm)):
            layout = "channels_last"  # a linear layer or LayerNorm acts on the last axis
        elif len(shape) >= 2 and not isinstance(module, (*_CONVS, *_NORMS, *_POOLS)):
            layout = previous.get(shape, "channels_first")
        else:
            layout = "channels_first"
        previous[shape] = layout
        if layout == "heads":
            neurons = int(heads or 1)
        elif layout in ("tokens", "channels_last"):
            neurons = shape[-1]
        else:
            neurons = shape[0] if shape else 1
        block = next((b for b in sorted(blocks, key=len, reverse=True) if name == b or name.startswith(b + ".")), None)
        infos[name] = LayerInfo(
            name=name,
            kind=_kind(module, layout),
            output_shape=shape,
            channels=neurons,
            units=math.prod(shape) if shape else 1,
            index=index,
            neurons=neurons,
            layout=layout,
            module_type=type(module).__name__,
            block=block,
            role=None if block is None else _role(name, block, modules, attention),
            heads=heads if layout == "heads" else None,
            prefix_tokens=prefix if layout in ("tokens", "heads") else 0,
            grid=grid if layout in ("tokens", "heads") else None,
            class_token=class_token and layout in ("tokens", "heads"),
        )
    description = _Description(infos=infos, calls=calls, types={n: type(m) for n, m in modules.items()}, blocks=blocks)
    return description


def _attention_modules(modules: dict[str, nn.Module]) -> set[str]:
    """Names of the attention modules: an integer ``num_heads`` and no attention inside (a block
    that stores ``num_heads`` itself, as torchvision's ``EncoderBlock``, is not one)."""
    heads = {name for name, module in modules.items() if isinstance(getattr(module, "num_heads", None), int)}
    return {name for name in heads if not any(other.startswith(name + ".") for other in heads)}


def _role(name: str, block: str, modules: dict[str, nn.Module], attention: set[str]) -> str:
    if name == block:
        return "residual"
    child = name[len(block) + 1 :].split(".")[0]
    if f"{block}.{child}" in attention:
        return "attention"
    if any(word in child.lower() for word in ("mlp", "ffn", "feed_forward")):
        return "mlp"
    return "other"


def _token_facts(model, modules, order, shapes, blocks) -> tuple[int, tuple[int, int] | None, bool]:
    """(prefix token count, patch grid, whether token 0 is a class token) of a transformer."""
    tokens = shapes[blocks[0]][0]
    patch = next((n for n in order if isinstance(modules[n], nn.Conv2d) and len(shapes[n]) == 3), None)
    grid = (shapes[patch][1], shapes[patch][2]) if patch else None
    owner = next((m for m in [model.net, *modules.values()] if isinstance(getattr(m, "num_prefix_tokens", None), int)), None)
    if owner is not None:
        prefix = int(owner.num_prefix_tokens)  # type: ignore[arg-type]
        class_token = getattr(owner, "cls_token", None) is not None
    else:
        prefix = tokens - grid[0] * grid[1] if grid else 0
        class_token = prefix > 0
    if grid is None or tokens - prefix != grid[0] * grid[1]:
        grid = None
    return max(prefix, 0), grid, class_token


def layer_info(model: PixelModel, name: str) -> LayerInfo:
    """The :class:`LayerInfo` of any layer of ``model`` called in its forward pass (not only the
    :func:`probe_layers`); a layer called several times is described by its first call."""
    description = _describe(model)
    if name not in description.infos:
        model.layer(name)  # an unknown name: the error with close names
        raise InputError(f"layer {name!r} of {model.name} is not called in its forward pass")
    return description.infos[name]


def probe_layers(model: PixelModel, kinds: Sequence[type] | None = None) -> list[LayerInfo]:
    """The layers worth probing, in forward order, with their neuron counts.

    A CNN: conv, linear, BatchNorm, activation and pooling modules (and residual blocks) called
    exactly once per forward pass (a reused module such as torchvision ResNet's shared ``relu``
    is left out: its output is ambiguous). A transformer: per block its heads, its MLP's hidden
    activation and its output, plus those modules outside the blocks (patch embedding, head).
    ``kinds``: the modules of these types instead (called once). Found by one forward pass of a
    blank image; cached per model content.
    """
    description = _describe(model)
    once = [name for name, info in description.infos.items() if description.calls[name] == 1]
    types = description.types
    if kinds:
        wanted = tuple(kinds)
        chosen = [name for name in once if issubclass(types[name], wanted)]
    elif description.blocks:
        chosen = _transformer_layers(description, once)
    else:
        chosen = [name for name in once if issubclass(types[name], PROBE_TYPES) or types[name].__name__ in BLOCK_TYPES]
    return [_indexed(description.infos[name], i) for i, name in enumerate(chosen)]


def _indexed(info: LayerInfo, index: int) -> LayerInfo:
    from dataclasses import replace

    return replace(info, index=index)


def _transformer_layers(description: _Description, once: list[str]) -> list[str]:
    infos, types = description.infos, description.types
    chosen: list[str] = []
    for name in once:
        info = infos[name]
        if info.block is None:
            if issubclass(types[name], PROBE_TYPES):
                chosen.append(name)
        elif info.role == "residual" or (info.role == "attention" and name.count(".") == info.block.count(".") + 1):
            chosen.append(name)  # the block's output; its attention (heads)
    for block in description.blocks:  # the MLP's hidden layer: its first activation, else its first linear layer
        inside = [n for n in once if infos[n].block == block and infos[n].role == "mlp"]
        hidden = next((n for n in inside if issubclass(types[n], _ACTIVATIONS)), None) or next(
            (n for n in inside if issubclass(types[n], nn.Linear)), None
        )
        if hidden is not None:
            chosen.append(hidden)
    return sorted(set(chosen), key=lambda n: infos[n].index)


def transformer_blocks(model: PixelModel) -> tuple[str, ...]:
    """The qualified names of a transformer's blocks in forward order (empty for other models)."""
    return _describe(model).blocks


def default_layer(model: PixelModel) -> str:
    """The last feature layer before the classifier: NIP's choice (the last conv block's output).

    A transformer: its last block's output (the residual stream). Otherwise the last probe layer
    with a spatial output (C, H, W) that is not a pooling layer; if there is none, the last layer
    before the final linear one.
    """
    blocks = transformer_blocks(model)
    if blocks:
        return blocks[-1]
    layers = probe_layers(model)
    spatial = [info for info in layers if len(info.output_shape) == 3 and info.kind != "pool" and info.layout == "channels_first"]
    if spatial:
        return spatial[-1].name
    if len(layers) >= 2:
        return layers[-2].name
    raise InputError(f"{model.name} has no layer to probe")


# --------------------------------------------------------------------------------------------
# Neurons of a layer's output
# --------------------------------------------------------------------------------------------


def check_tokens(tokens: str | int, layer: LayerInfo | None = None) -> str | int:
    """Validate ``tokens`` ("all", "cls" or a token index) for ``layer`` (any layer when None)."""
    if isinstance(tokens, bool) or not (tokens in TOKEN_CHOICES or isinstance(tokens, int)):
        raise InputError(f"tokens must be 'all', 'cls' or a token index, got {tokens!r}")
    if layer is None or layer.tokens is None:
        return tokens
    if tokens == "cls" and not layer.class_token:
        raise InputError(f"layer {layer.name!r}: this model has no class token; use tokens='all' or a token index")
    if isinstance(tokens, int) and not 0 <= tokens < layer.tokens:
        raise InputError(f"layer {layer.name!r} has {layer.tokens} tokens (0..{layer.tokens - 1}); got token {tokens}")
    return tokens


def select_tokens(tensor: torch.Tensor, layer: LayerInfo | None, tokens: str | int = "all") -> torch.Tensor:
    """The chosen tokens of a token or heads layer's output ``(N, T, ...)`` → ``(N, T', ...)``; any
    other layer's output unchanged (``tokens`` applies to token layers only)."""
    if layer is None or layer.layout not in ("tokens", "heads") or tokens == "all":
        return tensor
    index = 0 if tokens == "cls" else int(tokens)
    return tensor[:, index : index + 1]


def neuron_view(tensor: torch.Tensor, layer: LayerInfo | None = None, tokens: str | int = "all") -> torch.Tensor:
    """A layer's output ``(N, ...)`` with its neuron axis first: ``(N, neurons, *positions)``.

    Channels first: unchanged. Channels last: the last axis moved to 1. Tokens ``(N, T, C)``:
    ``(N, C, T')`` over the chosen tokens. Heads ``(N, T, H·D)``: ``(N, H, T', D)``.
    """
    layout = "channels_first" if layer is None else layer.layout
    if layout == "channels_first" or tensor.dim() <= 2:
        return tensor
    tensor = select_tokens(tensor, layer, tokens)
    if layout == "heads":
        assert layer is not None and layer.heads is not None
        n, t, width = tensor.shape
        return tensor.reshape(n, t, layer.heads, width // layer.heads).permute(0, 2, 1, 3)
    return tensor.movedim(-1, 1)


def neuron_sums(
    tensor: torch.Tensor, granularity: str = "channel", layer: LayerInfo | None = None, tokens: str | int = "all"
) -> torch.Tensor:
    """A layer's output reduced to neurons ``(N, neurons)``: each neuron summed over its positions
    (space, tokens, a head's features); ``granularity="unit"``: every element (of the chosen
    tokens), flattened in the output's own order. ``layer`` None: channels first."""
    if granularity == "unit" or tensor.dim() <= 2:
        return select_tokens(tensor, layer, tokens).flatten(1)
    return neuron_view(tensor, layer, tokens).flatten(2).sum(2)


def influence_product(
    activation: torch.Tensor,
    grad: torch.Tensor,
    granularity: str = "channel",
    layer: LayerInfo | None = None,
    tokens: str | int = "all",
) -> torch.Tensor:
    """activation × gradient reduced to neurons: a per-neuron dot product over its positions, or
    per unit. ``layer`` None: channels first."""
    if granularity == "unit" or activation.dim() <= 2:
        return (select_tokens(activation, layer, tokens) * select_tokens(grad, layer, tokens)).flatten(1)
    a, g = neuron_view(activation, layer, tokens), neuron_view(grad, layer, tokens)
    return torch.linalg.vecdot(a.flatten(2), g.flatten(2))


def token_grid(tensor: torch.Tensor, layer: LayerInfo) -> torch.Tensor:
    """The patch tokens of a token layer's output ``(N, T, C)`` on their grid: ``(N, C, h, w)``
    (prefix tokens dropped, as pytorch-grad-cam's ``reshape_transform`` for ViTs)."""
    if layer.layout != "tokens" or layer.grid is None:
        raise InputError(f"layer {layer.name!r} is not a token layer with a patch grid")
    h, w = layer.grid
    patches = tensor[:, layer.prefix_tokens :]
    if patches.shape[1] != h * w:
        raise InputError(f"layer {layer.name!r}: {patches.shape[1]} patch tokens do not fill the {h}×{w} grid")
    return patches.reshape(tensor.shape[0], h, w, tensor.shape[-1]).permute(0, 3, 1, 2)


def described_layers(model: PixelModel) -> list[LayerInfo]:
    """Every layer of ``model`` called in its forward pass, in forward order (``index`` counts
    them all), whatever its type: what :func:`probe_layers` chooses from."""
    return list(_describe(model).infos.values())
