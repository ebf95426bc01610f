"""Neuron influence (NIP's definition), front/middle/tail groups, and the shift an attack causes.

NIP (Chen et al., arXiv:2112.13060; authors' code ``Reverse_VGG_CIFAR.py``) defines the influence
of neuron ``j`` of a layer on the class ``c`` as activation × gradient:

    I_j(x) = a_j(x) · ∂z_c(x)/∂a_j(x)

with ``c`` the model's prediction on the image (no label needed). This is certain from the
authors' code. A neuron of a convolutional layer is a channel (influence summed over the spatial
positions: ``granularity="channel"``, the dashboard's default) or one ``C×H×W`` element
(``"unit"``, as the code's flatten layer); of a linear layer, a unit.

``method="grad_x_act"`` computes every requested layer in ONE forward and ONE backward pass
(:mod:`neuronviz.probe`), and equals Captum's ``LayerGradientXActivation`` layer by layer (tested).
Captum's ``LayerConductance`` and ``InternalInfluence`` are offered by name (one Captum call per
layer, ``n_steps`` interpolation steps each: far slower), and ``"activation"`` is the plain
activation (spatially summed for channels).

Front / middle / tail (NIP): sort neurons by influence; front = the top ``k``, tail = the ``t``
lowest (``tail_rule="bottom"``) or ranks ``k+1..k+t`` (``tail_rule="next"``, the variant in the
authors' second script). Sizes are counts or fractions of the layer (default 5% / 5%, at least
one neuron each).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from neuronviz import cache
from neuronviz.errors import InputError
from neuronviz.limits import check_batch
from neuronviz.models.pixel import PixelModel
from neuronviz.probe import probe, without_inplace

METHODS = ("grad_x_act", "activation", "conductance", "internal_influence")
GRANULARITIES = ("channel", "unit")
GROUP_NAMES = ("front", "middle", "tail")
FRONT, MIDDLE, TAIL = 0, 1, 2
#: The one default share of a layer's neurons in the front and in the tail, for every view.
DEFAULT_GROUP_FRACTION = 0.2

#: Module types whose outputs are worth probing (neurons a user can reason about).
_PROBE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6,
                nn.SiLU, nn.GELU, nn.Hardswish, nn.LeakyReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d)

#: Residual/inverted blocks, probed as a whole: their output (after the addition and the final
#: activation) is the "block output" people mean, and in torchvision's ResNets it is not the
#: output of any single reused ``relu`` module.
_BLOCK_TYPES = frozenset({"BasicBlock", "Bottleneck", "InvertedResidual", "MBConv", "_DenseLayer", "_Transition"})


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """A probe-able layer: qualified name, module type, output shape per image, neuron counts."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    channels: int
    units: int
    index: int  # position in forward order

    def neurons(self, granularity: str = "channel") -> int:
        return self.channels if granularity == "channel" else self.units


_LAYER_CACHE = cache.new_cache("influence.probe_layers", max_entries=64)


def probe_layers(model: PixelModel, kinds: Sequence[type] | None = None) -> list[LayerInfo]:
    """The layers worth probing, in forward order, with their neuron counts.

    Conv, linear, BatchNorm, activation and pooling modules that are called exactly once per
    forward pass (a reused module such as torchvision ResNet's shared ``relu`` is left out: its
    output is ambiguous). Found by one forward pass of a blank image; cached per model content.
    """
    key = model.content_hash
    if kinds is None and key in _LAYER_CACHE:
        return list(_LAYER_CACHE[key])
    wanted = tuple(kinds) if kinds else _PROBE_TYPES
    candidates = [
        name
        for name, module in model.net.named_modules()
        if name and (isinstance(module, wanted) or (kinds is None and type(module).__name__ in _BLOCK_TYPES))
    ]
    order: list[str] = []
    counts: dict[str, int] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            counts[name] = counts.get(name, 0) + 1
            if counts[name] == 1:
                order.append(name)
                tensor = output if isinstance(output, torch.Tensor) else next(
                    (t for t in output if isinstance(t, torch.Tensor)), None
                )
                if tensor is not None:
                    shapes[name] = tuple(tensor.shape[1:])

        return hook

    blank = torch.zeros(1, model.channels, *model.input_size, device=model.device)
    with model.lock:
        try:
            modules = dict(model.net.named_modules())
            for name in candidates:
                handles.append(modules[name].register_forward_hook(make_hook(name)))
            with torch.no_grad():
                model(blank)
        finally:
            for handle in handles:
                handle.remove()
    infos = []
    for name in order:
        if counts[name] != 1 or name not in shapes:
            continue
        shape = shapes[name]
        infos.append(
            LayerInfo(
                name=name,
                kind=type(modules[name]).__name__,
                output_shape=shape,
                channels=shape[0] if shape else 1,
                units=int(np.prod(shape)) if shape else 1,
                index=len(infos),
            )
        )
    if kinds is None:
        _LAYER_CACHE[key] = infos
    return list(infos)


def default_layer(model: PixelModel) -> str:
    """The last feature layer before the classifier: NIP's choice (the last conv block's output).

    The last probe layer with a spatial output (C, H, W) that is not a pooling layer; if there is
    none, the last layer before the final linear one.
    """
    layers = probe_layers(model)
    spatial = [info for info in layers if len(info.output_shape) == 3 and "Pool" not in info.kind]
    if spatial:
        return spatial[-1].name
    if len(layers) >= 2:
        return layers[-2].name
    raise InputError(f"{model.name} has no layer to probe")


# --------------------------------------------------------------------------------------------
# Influence
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfluenceMap:
    """Influence of every neuron of one layer, per image: ``values (N, neurons)``.

    ``activations (N, neurons)`` holds the matching activations (spatially summed for channels),
    so "front neurons lost activation" can be read next to "lost influence". ``target (N,)`` is the
    class each image's influence was computed toward. ``shape`` is the layer's output shape per
    image; for ``unit`` granularity neuron ``j`` is element ``j`` of that shape, flattened.
    """

    layer: str
    method: str
    granularity: str
    target: torch.Tensor
    values: torch.Tensor
    activations: torch.Tensor
    shape: tuple[int, ...]

    @property
    def neurons(self) -> int:
        return int(self.values.shape[1])

    def select(self, rows: int | Sequence[int]) -> InfluenceMap:
        """The map of some of its images (one index, or a list, in that order)."""
        pick = torch.tensor([rows] if isinstance(rows, int) else list(rows), dtype=torch.long)
        return dataclasses.replace(self, target=self.target[pick], values=self.values[pick], activations=self.activations[pick])

    def neuron_label(self, j: int) -> str:
        """A readable name: ``"ch 12"`` for a channel, ``"(3, 4, 5)"`` for a unit, ``"unit 7"``."""
        if self.granularity == "channel" or len(self.shape) <= 1:
            return f"ch {j}" if len(self.shape) > 1 else f"unit {j}"
        return str(tuple(int(i) for i in np.unravel_index(j, self.shape)))

    def to_frame(self):
        import pandas as pd

        n, k = self.values.shape
        return pd.DataFrame(
            {
                "image": np.repeat(np.arange(n), k),
                "neuron": np.tile(np.arange(k), n),
                "influence": self.values.flatten().numpy(),
                "activation": self.activations.flatten().numpy(),
                "target": np.repeat(self.target.numpy(), k),
                "layer": self.layer,
                "method": self.method,
            }
        )


def _reduce(tensor: torch.Tensor, granularity: str) -> torch.Tensor:
    """(N, C, *spatial) → (N, C) by summing spatial positions, or (N, C·H·W) for units."""
    if granularity == "unit" or tensor.dim() <= 2:
        return tensor.flatten(1)
    return tensor.flatten(2).sum(2)


def _resolve_layers(model: PixelModel, layers) -> list[str]:
    if layers is None:
        return [info.name for info in probe_layers(model)]
    if isinstance(layers, str):
        layers = [layers]
    return list(layers)  # probe() checks the names (one walk over the modules), with close names when one is unknown


def neuron_influence(
    model: PixelModel,
    x: torch.Tensor,
    layers: str | Sequence[str] | None = None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    method: str = "grad_x_act",
    granularity: str = "channel",
    n_steps: int = 32,
    internal_batch_size: int | None = None,
) -> dict[str, InfluenceMap]:
    """Influence of every neuron of ``layers`` on the logit of ``target``, per image.

    Args:
        model: a :class:`PixelModel`.
        x: ``(N, C, H, W)`` pixels in [0, 1].
        layers: qualified names; default: every layer of :func:`probe_layers`.
        target: class per image (int or ``(N,)``); default: the model's prediction on ``x``.
        method: ``"grad_x_act"`` (NIP; all layers in one forward + one backward pass),
            ``"activation"``, ``"conductance"`` (Captum ``LayerConductance``) or
            ``"internal_influence"`` (Captum ``InternalInfluence``); the last two run one Captum
            call per layer with ``n_steps`` interpolation steps.
        granularity: ``"channel"`` (spatial sum) or ``"unit"``.

    Returns:
        ``{layer: InfluenceMap}`` in the order of ``layers``, detached CPU tensors.
    """
    check_batch(x, "neuron_influence", model=model)  # neuronviz.limits: batch cap, PixelModel check
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not isinstance(n_steps, int) or not 1 <= n_steps <= 512:
        raise InputError(f"n_steps must be an integer in [1, 512], got {n_steps!r}")
    x = model.check_pixels(x)
    names = _resolve_layers(model, layers)
    target_tensor = None if target is None else model.check_classes(target, x.shape[0]).to(model.device)
    with model.lock:
        if method in ("grad_x_act", "activation"):
            raw, target_tensor = _single_pass(model, x, names, target_tensor, method == "grad_x_act", granularity)
        else:
            if target_tensor is None:
                with torch.no_grad():
                    target_tensor = model(x).argmax(1)
            raw = _captum_layers(model, x, names, target_tensor, method, n_steps, internal_batch_size, granularity)
    host = _to_cpu([t for name in names for t in raw[name][:2]])
    target_cpu = target_tensor.cpu()
    result = {}
    for i, name in enumerate(names):
        result[name] = InfluenceMap(
            layer=name,
            method=method,
            granularity=granularity,
            target=target_cpu,
            values=host[2 * i + 1],
            activations=host[2 * i],
            shape=raw[name][2],
        )
    return result


def _raw(activation: torch.Tensor, influence: torch.Tensor | None, granularity: str):
    """(activation per neuron, influence per neuron, output shape per image); influence None = activation."""
    reduced = _reduce(activation, granularity)
    return reduced, reduced if influence is None else influence, tuple(activation.shape[1:])


def _product(activation: torch.Tensor, grad: torch.Tensor, granularity: str) -> torch.Tensor:
    """activation × gradient, reduced to neurons: a per-channel dot product over space, or units."""
    if granularity == "unit" or activation.dim() <= 2:
        return (activation * grad).flatten(1)
    return torch.linalg.vecdot(activation.flatten(2), grad.flatten(2))


influence_product, neuron_sums = _product, _reduce  # public names for other modules (NIP ranks and sums neurons so)


def _single_pass(model, x, names, target, with_gradients: bool, granularity: str):
    """One forward (and, for grad×act, one backward) pass for every layer; returns the target used.

    Results are already reduced to neurons: ``{name: (activation, influence, shape)}``. For
    grad×act, each layer's activation × gradient is reduced (a per-channel dot product over
    space, or per unit) inside the backward pass as soon as its gradient is formed, together
    with the activation's own sum; no full-size gradient is kept (:meth:`Recording.backward`).
    """
    with probe(model, names) as rec:
        if not with_gradients:
            with torch.no_grad():
                logits = rec.forward(x)
            target = logits.argmax(1) if target is None else target
            return {name: _raw(rec.activation(name), None, granularity) for name in names}, target
        logits = rec.forward(x)
        target = logits.detach().argmax(1) if target is None else target
        reduced: dict[str, tuple] = {}
        by_channel = granularity == "channel"

        def each(name: str, activation: torch.Tensor, grad: torch.Tensor) -> None:  # = _raw(a, _product(a, g))
            if by_channel and activation.dim() > 2:
                flat = activation.flatten(2)
                reduced[name] = (flat.sum(2), torch.linalg.vecdot(flat, grad.flatten(2)), tuple(activation.shape[1:]))
            else:
                reduced[name] = (activation.flatten(1), (activation * grad).flatten(1), tuple(activation.shape[1:]))

        rec.backward(logits.gather(1, target[:, None]).sum(), each, names)
        return {name: reduced[name] for name in names}, target


def _to_cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Detached CPU copies; from an accelerator in ONE transfer (not one per layer), each result
    its own tensor (a view into a shared buffer would pickle the whole buffer)."""
    tensors = [t.detach() for t in tensors]
    if not tensors or tensors[0].device.type == "cpu":
        return tensors
    if len({(t.device, t.dtype) for t in tensors}) > 1:
        return [t.cpu() for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu()
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view(t.shape).clone())
        offset += t.numel()
    return out


def _captum_layers(model, x, names, target, method, n_steps, internal_batch_size, granularity):
    from captum.attr import InternalInfluence, LayerConductance

    cls = LayerConductance if method == "conductance" else InternalInfluence
    subject = without_inplace(model)
    out = {}
    with probe(subject, names) as rec, torch.no_grad():
        rec.forward(x)
        activations = {name: rec.activation(name).detach() for name in names}
    for name in names:
        attribution = cls(subject, subject.layer(name)).attribute(
            x, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size
        )
        out[name] = _raw(activations[name], _reduce(attribution.detach(), granularity), granularity)
    return out


# --------------------------------------------------------------------------------------------
# Groups and shifts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronGroups:
    """Front / middle / tail membership per image: ``labels (N, neurons)`` with 0/1/2.

    ``front (N, k)`` and ``tail (N, t)`` hold neuron indices, front in decreasing and tail in
    increasing influence order. ``tail_rule`` is ``"bottom"`` (the t lowest) or ``"next"``
    (ranks k+1..k+t).
    """

    layer: str
    front: torch.Tensor
    tail: torch.Tensor
    labels: torch.Tensor
    tail_rule: str

    @property
    def front_size(self) -> int:
        return int(self.front.shape[1])

    @property
    def tail_size(self) -> int:
        return int(self.tail.shape[1])

    def to_dict(self) -> dict:
        return {"layer": self.layer, "tail_rule": self.tail_rule, "front": self.front.tolist(), "tail": self.tail.tolist()}


def _count(size: int | float, neurons: int, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise InputError(f"{what} must be a count (int ≥ 1) or a fraction in (0, 1), got {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise InputError(f"{what} must be at least 1 neuron, got {size}")
        count = size
    else:
        if not 0.0 < size < 1.0:
            raise InputError(f"{what} as a fraction must be in (0, 1), got {size}")
        count = max(1, math.ceil(size * neurons - 1e-9))
    if count > neurons:
        raise InputError(f"{what} = {count} neurons, but the layer has {neurons}")
    return count


def group_sizes(neurons: int, front: int | float = 0.05, tail: int | float = 0.05) -> tuple[int, int]:
    """Resolve front/tail sizes (counts or fractions) for a layer of ``neurons`` neurons."""
    k, t = _count(front, neurons, "front"), _count(tail, neurons, "tail")
    if k + t > neurons:
        raise InputError(f"front ({k}) + tail ({t}) exceed the layer's {neurons} neurons")
    return k, t


def partition(
    influence: InfluenceMap | torch.Tensor,
    front: int | float = 0.05,
    tail: int | float = 0.05,
    tail_rule: str = "bottom",
) -> NeuronGroups:
    """Split each image's neurons into front (top influence), tail and middle (the rest)."""
    if tail_rule not in ("bottom", "next"):
        raise InputError(f"tail_rule must be 'bottom' or 'next', got {tail_rule!r}")
    values = influence.values if isinstance(influence, InfluenceMap) else influence
    layer = influence.layer if isinstance(influence, InfluenceMap) else ""
    if values.dim() != 2:
        raise InputError(f"influence values must be (N, neurons), got {tuple(values.shape)}")
    k, t = group_sizes(values.shape[1], front, tail)
    order = torch.argsort(values, dim=1, descending=True, stable=True)
    front_idx = order[:, :k]
    tail_idx = order[:, k : k + t] if tail_rule == "next" else order[:, -t:].flip(1)
    labels = torch.full(values.shape, MIDDLE, dtype=torch.int8)
    labels.scatter_(1, front_idx, FRONT)
    labels.scatter_(1, tail_idx, TAIL)
    return NeuronGroups(layer=layer, front=front_idx, tail=tail_idx, labels=labels, tail_rule=tail_rule)


@dataclass(frozen=True)
class InfluenceShift:
    """How an attack (or a defence) moved one layer's neurons, per image.

    ``transition (N, 3, 3)``: counts of neurons going from group i (before) to group j (after),
    groups in the order front, middle, tail, with the after-groups of the same sizes.
    ``spearman``, ``kendall (N,)``: rank correlation of the influence before and after.
    ``front_overlap (N,)``: share of the front neurons still front after.
    ``front_suppressed (N,)``: how many front neurons lost influence; ``tail_lifted (N,)``: how many
    tail neurons gained influence. ``*_influence_change`` and ``*_activation_change (N,)``: mean
    change (after − before) over the before-groups.
    """

    layer: str
    groups_before: NeuronGroups
    groups_after: NeuronGroups
    transition: torch.Tensor
    spearman: torch.Tensor
    kendall: torch.Tensor
    front_overlap: torch.Tensor
    front_suppressed: torch.Tensor
    tail_lifted: torch.Tensor
    front_influence_change: torch.Tensor
    tail_influence_change: torch.Tensor
    front_activation_change: torch.Tensor
    tail_activation_change: torch.Tensor

    def summary(self, image: int = 0) -> str:
        """One sentence a user can read: what happened to the front and the tail."""
        k, t = self.groups_before.front_size, self.groups_before.tail_size
        return (
            f"{self.layer}: {int(self.front_suppressed[image])} of {k} front neurons lost influence "
            f"({float(self.front_overlap[image]):.0%} stay front); {int(self.tail_lifted[image])} of {t} "
            f"tail neurons gained influence; rank correlation ρ = {float(self.spearman[image]):.2f}"
        )

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "transition": self.transition.tolist(),
            "spearman": self.spearman.tolist(),
            "kendall": self.kendall.tolist(),
            "front_overlap": self.front_overlap.tolist(),
            "front_suppressed": self.front_suppressed.tolist(),
            "tail_lifted": self.tail_lifted.tolist(),
            "front_influence_change": self.front_influence_change.tolist(),
            "tail_influence_change": self.tail_influence_change.tolist(),
            "front_activation_change": self.front_activation_change.tolist(),
            "tail_activation_change": self.tail_activation_change.tolist(),
        }


def _rank_correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau, spearmanr

    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan"), float("nan")
    return float(spearmanr(a, b).statistic), float(kendalltau(a, b).statistic)


def influence_shift(
    before: InfluenceMap,
    after: InfluenceMap,
    groups: NeuronGroups | None = None,
    front: int | float = 0.05,
    tail: int | float = 0.05,
    tail_rule: str = "bottom",
) -> InfluenceShift:
    """Compare one layer's influence before and after (attack, or defence), image by image.

    ``groups`` are the before-groups (computed from ``before`` with ``front``/``tail``/``tail_rule``
    when omitted); the after-groups use the same sizes and rule.
    """
    if before.values.shape != after.values.shape:
        raise InputError(f"before {tuple(before.values.shape)} and after {tuple(after.values.shape)} differ in shape")
    if before.layer != after.layer:
        raise InputError(f"before is layer {before.layer!r}, after is {after.layer!r}")
    groups = groups or partition(before, front, tail, tail_rule)
    if groups.labels.shape != before.values.shape:
        raise InputError("groups do not match the influence map's shape")
    after_groups = partition(after, groups.front_size, groups.tail_size, groups.tail_rule)
    n = before.values.shape[0]
    transition = torch.zeros(n, 3, 3, dtype=torch.long)
    pair = groups.labels.long() * 3 + after_groups.labels.long()
    for image in range(n):
        transition[image] = torch.bincount(pair[image], minlength=9).reshape(3, 3)
    correlations = [_rank_correlations(before.values[i].numpy(), after.values[i].numpy()) for i in range(n)]
    delta_influence = after.values - before.values
    delta_activation = after.activations - before.activations
    front_delta = delta_influence.gather(1, groups.front)
    tail_delta = delta_influence.gather(1, groups.tail)
    return InfluenceShift(
        layer=before.layer,
        groups_before=groups,
        groups_after=after_groups,
        transition=transition,
        spearman=torch.tensor([c[0] for c in correlations]),
        kendall=torch.tensor([c[1] for c in correlations]),
        front_overlap=transition[:, FRONT, FRONT].float() / groups.front_size,
        front_suppressed=(front_delta < 0).sum(1),
        tail_lifted=(tail_delta > 0).sum(1),
        front_influence_change=front_delta.mean(1),
        tail_influence_change=tail_delta.mean(1),
        front_activation_change=delta_activation.gather(1, groups.front).mean(1),
        tail_activation_change=delta_activation.gather(1, groups.tail).mean(1),
    )


def layer_shift_table(
    before: Mapping[str, InfluenceMap],
    after: Mapping[str, InfluenceMap],
    front: int | float = 0.05,
    tail: int | float = 0.05,
    tail_rule: str = "bottom",
    image: int | None = None,
):
    """Per-layer summary of the shift across the whole network (a pandas DataFrame, forward order).

    Columns: layer, neurons, spearman, kendall, front_overlap, front_suppressed_share,
    tail_lifted_share, front_influence_change, tail_influence_change, averaged over the images
    (or for one ``image``).
    """
    import pandas as pd

    rows = []
    for name, map_before in before.items():
        if name not in after:
            continue
        shift = influence_shift(map_before, after[name], front=front, tail=tail, tail_rule=tail_rule)
        pick = slice(None) if image is None else slice(image, image + 1)
        rows.append(
            {
                "layer": name,
                "neurons": map_before.neurons,
                "spearman": float(np.nanmean(shift.spearman[pick].numpy())),
                "kendall": float(np.nanmean(shift.kendall[pick].numpy())),
                "front_overlap": float(shift.front_overlap[pick].mean()),
                "front_suppressed_share": float(shift.front_suppressed[pick].float().mean() / shift.groups_before.front_size),
                "tail_lifted_share": float(shift.tail_lifted[pick].float().mean() / shift.groups_before.tail_size),
                "front_influence_change": float(shift.front_influence_change[pick].mean()),
                "tail_influence_change": float(shift.tail_influence_change[pick].mean()),
            }
        )
    return pd.DataFrame(rows)
