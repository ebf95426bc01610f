"""Neuron influence (NIP's definition), front/middle/tail groups, and the shift an attack causes.

NIP (Chen et al., arXiv:2112.13060; authors' code ``Reverse_VGG_CIFAR.py``) defines the influence
of neuron ``j`` of a layer on the class ``c`` as activation × gradient:

    I_j(x) = a_j(x) · ∂z_c(x)/∂a_j(x)

with ``c`` the model's prediction on the image (no label needed). This is certain from the
authors' code. A neuron of a convolutional layer is a channel (influence summed over the spatial
positions: ``granularity="channel"``, the dashboard's default) or one ``C×H×W`` element
(``"unit"``, as the code's flatten layer); of a linear layer, a unit.

``method="grad_x_act"`` computes every requested layer in ONE forward and ONE backward pass
(:mod:`neuronviz.core.probe`), and equals Captum's ``LayerGradientXActivation`` layer by layer (tested).
Captum's ``LayerConductance`` and ``InternalInfluence`` are offered by name (one Captum call per
layer, ``n_steps`` interpolation steps each: far slower), and ``"activation"`` is the plain
activation (spatially summed for channels).

Front / middle / tail (NIP): sort neurons by influence; front = the top ``k``, tail = the ``t``
lowest (``tail_rule="bottom"``) or ranks ``k+1..k+t`` (``tail_rule="next"``, the variant in the
authors' second script). Sizes are counts or fractions of the layer (default 5% / 5%, at least
one neuron each).

The shift (:func:`influence_shift`) counts the paper's direction on activations and on influence
(:data:`DIRECTION_MEASURES`, :data:`SIGN_CONVENTION`): a front neuron is *suppressed* when its
activation (influence) falls, a tail neuron *enhanced* when its activation rises, which makes its
negative influence toward the benign class fall further below zero. Rank correlations that are
not defined for a layer (fewer than :data:`MIN_RANK_NEURONS` neurons, constant ranks, at most one
non-zero value) are NaN with the reason, never ±1. An attack's effect is read beside its matched
control: :mod:`neuronviz.workflows.evidence`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neuronviz.core.layers import LayerInfo as LayerInfo  # the layer description lives in neuronviz.core.layers;
from neuronviz.core.layers import check_tokens, influence_product, layer_infos, neuron_sums
from neuronviz.core.layers import default_layer as default_layer  # these names stay importable from here
from neuronviz.core.layers import probe_layers as probe_layers
from neuronviz.core.models.pixel import PixelModel, require_pixel_model
from neuronviz.core.probe import Recording, forget, memo, probe, tap, without_inplace
from neuronviz.infra.errors import InputError
from neuronviz.infra.limits import check_batch
from neuronviz.infra.registry import Registry

GRANULARITIES = ("channel", "unit")
GROUP_NAMES = ("front", "middle", "tail")
FRONT, MIDDLE, TAIL = 0, 1, 2
#: The one default share of a layer's neurons in the front and in the tail, for every view.
DEFAULT_GROUP_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# Influence
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfluenceMap:
    """Influence of every neuron of one layer, per image: ``values (N, neurons)``.

    ``activations (N, neurons)`` holds the matching activations (summed over positions for
    channels, tokens and heads), so "front neurons lost activation" can be read next to "lost
    influence". ``target (N,)`` is the class each image's influence was computed toward. ``shape``
    is the layer's output shape per image; for ``unit`` granularity neuron ``j`` is element ``j``
    of that shape (of the chosen tokens), flattened. ``kind`` is the layer's
    :attr:`LayerInfo.kind`; ``tokens`` the tokens of a token layer summed ("all"), or the one
    read ("cls" or an index).
    """

    layer: str
    method: str
    granularity: str
    target: torch.Tensor
    values: torch.Tensor
    activations: torch.Tensor
    shape: tuple[int, ...]
    kind: str = ""
    tokens: str | int = "all"

    @property
    def neurons(self) -> int:
        return int(self.values.shape[1])

    def select(self, rows: int | Sequence[int]) -> InfluenceMap:
        """The map of some of its images (one index, or a list, in that order)."""
        pick = torch.tensor([rows] if isinstance(rows, int) else list(rows), dtype=torch.long)
        return dataclasses.replace(self, target=self.target[pick], values=self.values[pick], activations=self.activations[pick])

    def neuron_label(self, j: int) -> str:
        """A readable name: ``"ch 12"`` for a channel, ``"head 2"``, ``"unit 7"`` (a linear layer's
        or a token layer's hidden unit), ``"(3, 4, 5)"`` for an element."""
        if self.granularity == "channel" or len(self.shape) <= 1:
            if self.kind == "heads":
                return f"head {j}"
            return f"ch {j}" if len(self.shape) > 1 and self.kind != "tokens" else f"unit {j}"
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


# --------------------------------------------------------------------------------------------
# Influence methods: a registry, one entry per method
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfluenceRequest:
    """One call of :func:`neuron_influence`, checked: what an :class:`InfluenceMethod` computes."""

    model: PixelModel
    x: torch.Tensor
    layers: tuple[LayerInfo, ...]
    target: torch.Tensor | None
    granularity: str
    tokens: str | int
    n_steps: int
    internal_batch_size: int | None


#: ``{layer: (activation per neuron (N, K), influence per neuron (N, K))}`` and the target used.
RawInfluence = tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]


class InfluenceMethod:
    """An influence method: subclass, set the facts, implement :meth:`compute`, and
    :func:`register_influence_method` an instance.

    ``name`` (the ``method=`` value), ``label`` (the dashboard's word), ``unit`` (what its values
    measure, for axis titles), ``paper`` (citation), ``description`` (one sentence).
    """

    name: str = ""
    label: str = ""
    unit: str = ""
    paper: str = ""
    description: str = ""

    def compute(self, request: InfluenceRequest) -> RawInfluence:  # pragma: no cover - abstract
        """Every layer's (activation, influence) per neuron, and the target classes used (the
        prediction when ``request.target`` is None). Called with the model's lock held."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<influence method {self.name!r}>"


_INFLUENCE_METHODS: Registry[InfluenceMethod] = Registry("influence method", InfluenceMethod)


def register_influence_method(method: InfluenceMethod) -> InfluenceMethod:
    """Add an influence method (an instance of an :class:`InfluenceMethod` subclass); its name
    becomes a valid ``method=`` of :func:`neuron_influence`. Returns it (usable as a decorator's result)."""
    return _INFLUENCE_METHODS.register(method)


def get_influence_method(name: str) -> InfluenceMethod:
    """The registered influence method ``name`` (an :class:`InputError` listing the names if unknown)."""
    return _INFLUENCE_METHODS.get(name)


def unregister_influence_method(name: str) -> None:
    """Remove a registered influence method (a test's, or a plugin's being reloaded); a missing name is no error."""
    _INFLUENCE_METHODS.unregister(name)


def list_influence_methods() -> list[InfluenceMethod]:
    """Every registered influence method, built-ins first."""
    return _INFLUENCE_METHODS.entries()


class GradientTimesActivation(InfluenceMethod):
    name = "grad_x_act"
    label = "activation × gradient (NIP)"
    unit = "activation × gradient, logit units"
    paper = "Chen et al., NIP: Neuron-level Inverse Perturbation Against Adversarial Attacks, arXiv:2112.13060"
    description = "Every layer in one forward and one backward pass; equals Captum's LayerGradientXActivation."

    def compute(self, request: InfluenceRequest) -> RawInfluence:
        return _single_pass(request, with_gradients=True)


class Activation(InfluenceMethod):
    name = "activation"
    label = "activation"
    unit = "activation, layer output units"
    paper = "the layer's output (no attribution)"
    description = "The plain activation, summed over positions for channels, tokens and heads."

    def compute(self, request: InfluenceRequest) -> RawInfluence:
        return _single_pass(request, with_gradients=False)


class _CaptumLayerMethod(InfluenceMethod):
    captum_class = ""

    def compute(self, request: InfluenceRequest) -> RawInfluence:
        import captum.attr

        target = request.target
        if target is None:
            with torch.no_grad():
                target = request.model(request.x).argmax(1)
        return _captum_layers(request, getattr(captum.attr, self.captum_class), target), target


class Conductance(_CaptumLayerMethod):
    name = "conductance"
    label = "layer conductance"
    unit = "layer conductance, logit units"
    paper = "Dhamdhere, Sundararajan, Yan, How Important Is a Neuron?, arXiv:1805.12233"
    description = "Captum's LayerConductance: one call per layer, n_steps interpolation steps each."
    captum_class = "LayerConductance"


class InternalInfluence(_CaptumLayerMethod):
    name = "internal_influence"
    label = "internal influence"
    unit = "internal influence, logit units"
    paper = "Leino, Sen, Datta, Fredrikson, Li, Influence-Directed Explanations for Deep Convolutional Networks, arXiv:1802.03788"
    description = "Captum's InternalInfluence: one call per layer, n_steps interpolation steps each."
    captum_class = "InternalInfluence"


for _method in (GradientTimesActivation(), Activation(), Conductance(), InternalInfluence()):
    register_influence_method(_method)

#: The built-in influence methods (:func:`list_influence_methods` has the registered ones too).
METHODS = tuple(m.name for m in list_influence_methods())


# --------------------------------------------------------------------------------------------
# Influence
# --------------------------------------------------------------------------------------------


def _resolve_layers(model: PixelModel, layers) -> list[str]:
    if layers is None:
        return [info.name for info in probe_layers(model)]
    if isinstance(layers, str):
        layers = [layers]
    return list(layers)  # probe() checks the names (one walk over the modules), with close names when one is unknown


class _StaleLayers(Exception):
    """A remembered layer description does not fit the activation recorded (the model was changed)."""


def _layer_plan(model: PixelModel, layers) -> tuple[list[str], tuple[LayerInfo, ...]]:
    """The layer names (``None``: :func:`probe_layers`) and their descriptions, remembered per model
    object (:func:`neuronviz.core.probe.memo`): describing them again walks the state dict and every
    module, 5–7% of a small model's forward and backward pass. An unknown name raises (with close
    names) before any work; a description that no longer fits is caught by :func:`_single_pass`."""
    try:
        key = ("influence.layers", layers if layers is None or isinstance(layers, str) else tuple(layers))
        remembered = memo(model).get(key)  # only names that were checked are remembered
    except TypeError:  # unhashable: not a name
        key, remembered = None, None
    if remembered is None and layers is not None and not isinstance(layers, str) and not all(isinstance(n, str) for n in layers):
        names = _resolve_layers(model, layers)
        return names, layer_infos(model, names)  # the precise error of the name that is not a string
    if remembered is None:
        names = _resolve_layers(model, layers)
        remembered = (names, layer_infos(model, names))  # one description look-up for all of them
        memo(model)[key] = remembered
    return list(remembered[0]), remembered[1]


def neuron_influence(
    model: PixelModel,
    x: torch.Tensor,
    layers: str | Sequence[str] | None = None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    method: str = "grad_x_act",
    granularity: str = "channel",
    n_steps: int = 32,
    internal_batch_size: int | None = None,
    tokens: str | int = "all",
) -> dict[str, InfluenceMap]:
    """Influence of every neuron of ``layers`` on the logit of ``target``, per image.

    Args:
        model: a :class:`PixelModel`.
        x: ``(N, C, H, W)`` pixels in [0, 1].
        layers: qualified names; default: every layer of :func:`probe_layers`.
        target: class per image (int or ``(N,)``); default: the model's prediction on ``x``.
        method: a registered influence method (:func:`list_influence_methods`): ``"grad_x_act"``
            (NIP; all layers in one forward + one backward pass), ``"activation"``,
            ``"conductance"`` (Captum ``LayerConductance``) or ``"internal_influence"`` (Captum
            ``InternalInfluence``); the last two run one Captum call per layer with ``n_steps``
            interpolation steps.
        granularity: ``"channel"`` (a neuron per channel, token-layer hidden unit or head,
            summed over positions) or ``"unit"`` (every element).
        tokens: for token and heads layers of a transformer: ``"all"`` (summed over tokens),
            ``"cls"`` (the class token only) or a token index; other layers ignore it.

    Returns:
        ``{layer: InfluenceMap}`` in the order of ``layers``, detached CPU tensors.
    """
    require_pixel_model(model, "neuron_influence")
    check_batch(x, "neuron_influence")  # neuronviz.infra.limits: batch cap
    entry = get_influence_method(method)
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not isinstance(n_steps, int) or not 1 <= n_steps <= 512:
        raise InputError(f"n_steps must be an integer in [1, 512], got {n_steps!r}")
    check_tokens(tokens)
    x = model.check_pixels(x)
    names, infos = _layer_plan(model, layers)
    if tokens != "all":  # "all" fits every layer
        for info in infos:
            check_tokens(tokens, info)
    target_tensor = None if target is None else model.check_classes(target, x.shape[0]).to(x.device)
    request = InfluenceRequest(model, x, infos, target_tensor, granularity, tokens, n_steps, internal_batch_size)
    with model.lock:
        try:
            raw, target_tensor = entry.compute(request)
        except _StaleLayers:  # the remembered descriptions no longer fit the network: describe it again
            forget(model)
            names, infos = _layer_plan(model, layers)
            request = dataclasses.replace(request, layers=infos)
            try:
                raw, target_tensor = entry.compute(request)
            except _StaleLayers as stale:
                raise InputError(
                    f"layer {stale} of {model.name} no longer has the output shape it was described with, and "
                    "describing it again did not change that; load the model again after changing its modules"
                ) from None
    host = _to_cpu([t for name in names for t in raw[name]])
    target_cpu = target_tensor.cpu()
    result = {}
    for i, (name, info) in enumerate(zip(names, infos)):
        result[name] = InfluenceMap(
            layer=name,
            method=method,
            granularity=granularity,
            target=target_cpu,
            values=host[2 * i + 1],
            activations=host[2 * i],
            shape=info.output_shape if granularity == "channel" else _unit_shape(info, tokens),
            kind=info.kind,
            tokens=tokens if info.tokens is not None else "all",
        )
    return result


def _unit_shape(info: LayerInfo, tokens: str | int) -> tuple[int, ...]:
    if info.tokens is None or tokens == "all":
        return info.output_shape
    return (1, *info.output_shape[1:])


def _single_pass(request: InfluenceRequest, with_gradients: bool) -> RawInfluence:
    """One forward (and, for grad×act, one backward) pass for every layer; returns the target used.

    Results are already reduced to neurons: ``{name: (activation, influence)}``. For grad×act
    with activations and gradients of at most :data:`HELD_AT_ONCE_BYTES` together, every gradient
    comes from one ``torch.autograd.grad`` and each layer is reduced after it; above that, each
    layer's activation × gradient is reduced per neuron inside the backward pass as soon as its
    gradient is formed (:meth:`Recording.backward`), with the activation's own sum, and the
    graph is freed as the pass goes, so no full-size gradient or saved tensor outlives its use.
    A layer whose gradient the pass did not reach (the objective does not depend on it) is
    asked for in a second forward pass.
    """
    model, x, target = request.model, request.x, request.target
    granularity, tokens = request.granularity, request.tokens
    infos = {info.name: info for info in request.layers}
    names = list(infos)
    native = tuple(x.shape[2:]) == model.input_size  # the size the layers were described at
    with probe(model, names) as rec:
        if not with_gradients:
            with torch.no_grad():
                logits = rec.forward(x)
            target = logits.argmax(1) if target is None else target
            out = {}
            for name, info in infos.items():
                _check_fits(rec.activation(name), info, native)
                reduced = neuron_sums(rec.activation(name), granularity, info, tokens)
                out[name] = (reduced, reduced)
            return out, target
        logits = rec.forward(x)
        target = logits.detach().argmax(1) if target is None else target
        if _held_at_once(rec, names) <= HELD_AT_ONCE_BYTES:
            return _all_gradients_at_once(rec, logits.gather(1, target[:, None]).sum(), infos, native, granularity, tokens), target
        result: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        last: list = [None, None]  # the last activation reduced and its result

        def each(name: str, activation: torch.Tensor, grad: torch.Tensor) -> None:
            if last[0] is activation:  # a tensor two layers output (a block and its last ReLU): handed on together
                result[name] = (last[1][0].clone(), last[1][1].clone())
                return
            _check_fits(activation, infos[name], native)
            result[name] = _reduce(activation, grad, infos[name], granularity, tokens)
            last[:] = [activation, result[name]]

        missed = rec.backward(logits.gather(1, target[:, None]).sum(), each, names, retain_graph=False)
        last.clear()
        if missed:
            logits = rec.forward(x)
            for name, grad in rec.gradients(logits.gather(1, target[:, None]).sum(), missed).items():
                result[name] = _reduce(rec.activation(name).detach(), grad, infos[name], granularity, tokens)
        return {name: result[name] for name in names}, target


#: The bytes of every probed activation and its gradient up to which grad×act asks the backward
#: pass for all gradients at once and reduces them afterwards (:func:`_all_gradients_at_once`)
#: instead of reducing each inside the pass as it is formed (a tensor hook per layer: a call back
#: into Python from the autograd engine per layer, and each product in fresh memory). Measured, 2
#: threads, batch 2: digits-cnn 0.19 ms of a 1.8 ms pass saved; resnet18 at 224 (103 MiB) 1.03×
#: instead of 1.08× its floor. Holding every gradient at most doubles what the graph already holds
#: (it saves every activation for the backward pass); above this, the hooks keep one gradient alive.
HELD_AT_ONCE_BYTES = 128 * 2**20


def _held_at_once(rec: Recording, names: list[str]) -> int:
    """Bytes of every distinct probed activation plus its gradient (same size)."""
    unique = {id(t): t for name in names for t in rec.calls(name)}
    return 2 * sum(t.numel() * t.element_size() for t in unique.values())


def _all_gradients_at_once(
    rec: Recording, objective: torch.Tensor, infos: dict[str, LayerInfo], native: bool, granularity: str, tokens: str | int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """grad×act of every layer for small activations: ONE ``torch.autograd.grad`` for all of them
    (zeros for a layer the objective does not depend on), then each layer reduced to neurons.

    A gradient whose memory no other gradient or activation shares is multiplied by its activation
    in place (the engine hands it to nobody else; no full-size product is allocated: 30% of the
    reductions' time on digits-resnet); one that shares it (a residual sum hands the same gradient
    to both branches, a flatten's gradient is a view of the next layer's, a sum's is expanded) is
    multiplied out of place. Either way the product is Captum's ``a * g``."""
    tensors = [rec.activation(name) for name in infos]
    unique = list({id(t): t for t in tensors}.values())  # a block and its last ReLU output one tensor
    grads = torch.autograd.grad(objective, unique, allow_unused=True)
    owners: dict[int, int] = {}
    for t in (*unique, *(g for g in grads if g is not None)):
        ptr = t.untyped_storage().data_ptr()
        owners[ptr] = owners.get(ptr, 0) + 1
    by_id = dict(zip(map(id, unique), grads))
    result: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for (name, info), tensor in zip(infos.items(), tensors):
        key = id(tensor)
        if key in done:  # the same tensor as an earlier layer: its numbers, in tensors of its own
            result[name] = (done[key][0].clone(), done[key][1].clone())
            continue
        _check_fits(tensor, info, native)
        activation, grad = tensor.detach(), by_id[key]
        if grad is None:
            grad, own = torch.zeros_like(activation), True
        else:
            own = owners[grad.untyped_storage().data_ptr()] == 1 and grad.is_contiguous()  # not an expanded view
        done[key] = result[name] = _reduce(activation, grad, info, granularity, tokens, in_place=own)
    return result


def _check_fits(activation: torch.Tensor, info: LayerInfo, native: bool) -> None:
    """At the input size the layers were described at (``native``), a recorded shape other than
    the description's means the model was changed since: describe it again (:func:`neuron_influence`)."""
    if native and activation.shape[1:] != info.output_shape:
        raise _StaleLayers(info.name)


def _reduce(
    activation: torch.Tensor, grad: torch.Tensor, info: LayerInfo, granularity: str, tokens: str | int, in_place: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's (activation, activation × gradient) reduced to neurons. The common cases without the
    general path's views: a channels-first layer per channel (the product, Captum's own arithmetic,
    then one sum over its positions), a token layer summed over its tokens, a heads layer over its
    tokens and then each head's features (contiguous sums, no permuted copies). ``in_place``: the
    product may be formed in ``grad``'s memory (the caller owns it and reads it no more)."""
    if granularity == "channel" and activation.dim() > 2:
        fast = info.layout == "channels_first" or (
            tokens == "all" and activation.dim() == 3 and (info.layout == "tokens" or (info.layout == "heads" and info.heads))
        )
        if fast:
            product = grad.mul_(activation) if in_place and grad.shape == activation.shape else activation * grad
            if info.layout == "channels_first":
                dims = tuple(range(2, activation.dim()))
                return activation.sum(dims), product.sum(dims)
            if info.layout == "tokens":  # (N, T, C): over the tokens
                return activation.sum(1), product.sum(1)
            n, heads = activation.shape[0], int(info.heads or 0)  # heads (a positive count, checked above): (N, T, H·D), over the tokens, then each head's features
            return activation.sum(1).view(n, heads, -1).sum(2), product.sum(1).view(n, heads, -1).sum(2)
    return (
        neuron_sums(activation, granularity, info, tokens),
        influence_product(activation, grad, granularity, info, tokens),
    )


def _to_cpu(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Detached CPU copies; from an accelerator in ONE transfer (not one per layer), each result
    its own tensor (a view into a shared buffer would pickle the whole buffer)."""
    if not tensors or tensors[0].device.type == "cpu":
        return [t.detach() if t.requires_grad else t for t in tensors]
    tensors = [t.detach() for t in tensors]
    if len({(t.device, t.dtype) for t in tensors}) > 1:
        return [t.cpu() for t in tensors]
    flat = torch.cat([t.reshape(-1) for t in tensors]).cpu()
    out, offset = [], 0
    for t in tensors:
        out.append(flat[offset : offset + t.numel()].view(t.shape).clone())
        offset += t.numel()
    return out


def _captum_layers(request: InfluenceRequest, cls: type, target: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One Captum layer-attribution call per layer (``cls(model, module).attribute``), reduced
    to neurons like the activations. A heads layer is attributed at the input of its ``proj``."""
    granularity, tokens = request.granularity, request.tokens
    subject = without_inplace(request.model)
    names = [info.name for info in request.layers]
    out = {}
    with probe(subject, names) as rec, torch.no_grad():
        rec.forward(request.x)
        activations = {name: rec.activation(name).detach() for name in names}
    for info in request.layers:
        where = tap(subject, info.name)
        attribution = cls(subject, where.module).attribute(
            request.x,
            target=target,
            n_steps=request.n_steps,
            internal_batch_size=request.internal_batch_size,
            attribute_to_layer_input=where.on_input,
        )
        if isinstance(attribution, (tuple, list)):
            attribution = attribution[0]
        out[info.name] = (
            neuron_sums(activations[info.name], granularity, info, tokens),
            neuron_sums(attribution.detach(), granularity, info, tokens),
        )
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


#: Fewer neurons than this: a per-image rank correlation is "not defined". With 4 neurons the
#: smallest two-sided permutation p of Spearman's ρ is 1/12, so no reordering could be told from
#: chance; with 3 (a 3-head attention layer) ρ can only be ±1 or ±0.5.
MIN_RANK_NEURONS = 5

#: The paper's direction of each half, on activations and on influence toward the benign class c
#: (METHODS.md "Directions"). A tail neuron's influence toward c is negative, so the paper's
#: "enhanced" tail neuron has an influence that FELL (more negative).
DIRECTION_MEASURES: dict[str, tuple[str, str, str]] = {
    # name: (group, quantity, which way counts)
    "front_suppressed_activation": ("front", "activation", "fell"),
    "tail_enhanced_activation": ("tail", "activation", "rose"),
    "front_suppressed_influence": ("front", "influence", "fell"),
    "tail_enhanced_influence": ("tail", "influence", "fell"),
}
#: Each measure in words: the group counted and what happened to its neurons.
MEASURE_LABELS: dict[str, tuple[str, str]] = {
    "front_suppressed_activation": ("front", "lost activation"),
    "tail_enhanced_activation": ("tail", "gained activation"),
    "front_suppressed_influence": ("front", "lost influence"),
    "tail_enhanced_influence": ("tail", "fell further below zero in influence"),
}
#: The sign convention, in one sentence, shown wherever a count is.
SIGN_CONVENTION = (
    "Paper's direction (NIP): a front neuron is suppressed when its activation (or its influence toward the "
    "clean prediction) falls; a tail neuron is enhanced when its activation rises, which makes its negative "
    "influence fall further below zero."
)


@dataclass(frozen=True)
class InfluenceShift:
    """How an attack (or a defence, or a control) moved one layer's neurons, per image.

    ``transition (N, 3, 3)``: counts of neurons going from group i (before) to group j (after),
    groups in the order front, middle, tail, with the after-groups of the same sizes.
    ``spearman``, ``kendall (N,)``: rank correlation of the influence before and after, NaN where
    it is not defined (``correlation_reasons`` says why: fewer than :data:`MIN_RANK_NEURONS`
    neurons, a constant ranking, at most one non-zero value). ``front_overlap (N,)``: share of
    the front neurons still front after.

    The deltas (after − before) of the clean front and tail neurons: ``front_influence_delta (N, k)``,
    ``tail_influence_delta (N, t)``, ``front_activation_delta (N, k)``, ``tail_activation_delta (N, t)``.
    The paper's direction (:data:`DIRECTION_MEASURES`), counted per image:
    ``front_suppressed_activation`` (front activation fell), ``tail_enhanced_activation`` (tail
    activation rose), ``front_suppressed_influence`` (front influence fell) and
    ``tail_enhanced_influence`` (tail influence fell: more negative).
    """

    layer: str
    groups_before: NeuronGroups
    groups_after: NeuronGroups
    transition: torch.Tensor
    spearman: torch.Tensor
    kendall: torch.Tensor
    front_overlap: torch.Tensor
    front_influence_delta: torch.Tensor
    tail_influence_delta: torch.Tensor
    front_activation_delta: torch.Tensor
    tail_activation_delta: torch.Tensor
    correlation_reasons: tuple[str | None, ...] = ()

    # -- the paper's direction, counted per image --------------------------------------------------

    @property
    def front_suppressed_activation(self) -> torch.Tensor:
        """``(N,)`` clean front neurons whose activation fell."""
        return (self.front_activation_delta < 0).sum(1)

    @property
    def tail_enhanced_activation(self) -> torch.Tensor:
        """``(N,)`` clean tail neurons whose activation rose."""
        return (self.tail_activation_delta > 0).sum(1)

    @property
    def front_suppressed_influence(self) -> torch.Tensor:
        """``(N,)`` clean front neurons whose influence toward the benign class fell."""
        return (self.front_influence_delta < 0).sum(1)

    @property
    def tail_enhanced_influence(self) -> torch.Tensor:
        """``(N,)`` clean tail neurons whose influence toward the benign class fell (more negative)."""
        return (self.tail_influence_delta < 0).sum(1)

    def count(self, measure: str) -> torch.Tensor:
        """``(N,)`` the count of one of :data:`DIRECTION_MEASURES`."""
        if measure not in DIRECTION_MEASURES:
            raise InputError(f"unknown measure {measure!r}; use one of {', '.join(DIRECTION_MEASURES)}")
        return getattr(self, measure)

    def group_size(self, measure: str) -> int:
        """The size of the group a measure counts in (front or tail)."""
        return self.groups_before.front_size if DIRECTION_MEASURES[measure][0] == "front" else self.groups_before.tail_size

    def pairs(self, measure: str) -> torch.Tensor:
        """``(N, group)`` booleans: which neuron × image pairs moved the paper's way."""
        group, quantity, way = DIRECTION_MEASURES[measure]
        delta = getattr(self, f"{group}_{quantity}_delta")
        return delta > 0 if way == "rose" else delta < 0

    # -- mean changes --------------------------------------------------------------------------------

    @property
    def front_influence_change(self) -> torch.Tensor:
        """``(N,)`` mean influence change (after − before) over the clean front."""
        return self.front_influence_delta.mean(1)

    @property
    def tail_influence_change(self) -> torch.Tensor:
        return self.tail_influence_delta.mean(1)

    @property
    def front_activation_change(self) -> torch.Tensor:
        return self.front_activation_delta.mean(1)

    @property
    def tail_activation_change(self) -> torch.Tensor:
        return self.tail_activation_delta.mean(1)

    # -- deprecated names ----------------------------------------------------------------------------

    @property
    def front_suppressed(self) -> torch.Tensor:
        """Deprecated: :attr:`front_suppressed_influence` (the same count) or :attr:`front_suppressed_activation`."""
        warnings.warn("InfluenceShift.front_suppressed is deprecated: use front_suppressed_influence (the same "
                      "count) or front_suppressed_activation", DeprecationWarning, stacklevel=2)
        return self.front_suppressed_influence

    @property
    def tail_lifted(self) -> torch.Tensor:
        """Deprecated, and the OPPOSITE of the paper's tail half: tail neurons whose influence rose
        (toward zero: weakened). Use :attr:`tail_enhanced_activation` or :attr:`tail_enhanced_influence`."""
        warnings.warn("InfluenceShift.tail_lifted counts tail neurons whose influence rose, the opposite of the "
                      "paper's tail half: use tail_enhanced_activation or tail_enhanced_influence",
                      DeprecationWarning, stacklevel=2)
        return (self.tail_influence_delta > 0).sum(1)

    # -- statistics ---------------------------------------------------------------------------------

    def correlation_reason(self, image: int = 0) -> str | None:
        """Why the image's rank correlation is not defined, or None when it is."""
        return self.correlation_reasons[image] if image < len(self.correlation_reasons) else None

    def rate(self, measure: str, image: int | None = None):
        """A :class:`neuronviz.methods.stats.Rate`: neuron × image pairs (one image's neurons when ``image``
        is given) that moved the paper's way, with its Wilson interval."""
        from neuronviz.methods.stats import rate_of

        pairs = self.pairs(measure)
        return rate_of(pairs if image is None else pairs[image])

    def overlap_rate(self, image: int = 0):
        """The front overlap of one image as a :class:`neuronviz.methods.stats.Rate` (n = the front size)."""
        from neuronviz.methods.stats import rate

        return rate(int(self.transition[image, FRONT, FRONT]), self.groups_before.front_size)

    def summary(self, image: int = 0) -> str:
        """One sentence a user can read: what happened to the front and the tail (paper's direction)."""
        k, t = self.groups_before.front_size, self.groups_before.tail_size
        rho = float(self.spearman[image])
        rho_text = f"not defined ({self.correlation_reason(image)})" if rho != rho else f"{rho:.2f}"
        return (
            f"{self.layer}: {int(self.front_suppressed_activation[image])} of {k} front neurons lost activation "
            f"({int(self.front_suppressed_influence[image])} lost influence; {float(self.front_overlap[image]):.0%} "
            f"stay front); {int(self.tail_enhanced_activation[image])} of {t} tail neurons gained activation "
            f"({int(self.tail_enhanced_influence[image])} fell further below zero in influence); "
            f"rank correlation ρ = {rho_text}"
        )

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "sign_convention": SIGN_CONVENTION,
            "front_size": self.groups_before.front_size,
            "tail_size": self.groups_before.tail_size,
            "tail_rule": self.groups_before.tail_rule,
            "transition": self.transition.tolist(),
            "spearman": [None if v != v else v for v in self.spearman.tolist()],
            "kendall": [None if v != v else v for v in self.kendall.tolist()],
            "correlation_reason": list(self.correlation_reasons),
            "front_overlap": self.front_overlap.tolist(),
            **{measure: self.count(measure).tolist() for measure in DIRECTION_MEASURES},
            "front_influence_change": self.front_influence_change.tolist(),
            "tail_influence_change": self.tail_influence_change.tolist(),
            "front_activation_change": self.front_activation_change.tolist(),
            "tail_activation_change": self.tail_activation_change.tolist(),
        }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant.
    The one rank correlation of the project (influence shifts, filter rankings)."""
    from scipy.stats import spearmanr

    if np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def rank_correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Spearman, Kendall τ-b) of two rankings; NaN for both when either side is constant."""
    from scipy.stats import kendalltau

    rho = spearman(a, b)
    if np.isnan(rho):
        return rho, float("nan")
    return rho, float(kendalltau(a, b).statistic)


def defined_rank_correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str | None]:
    """(Spearman, Kendall τ-b, reason) of one image's neurons before and after; NaN for both and
    the reason when not defined (:func:`neuronviz.methods.stats.undefined_reason`: constant ranks, at
    most one non-zero value; here also fewer than :data:`MIN_RANK_NEURONS` neurons)."""
    from neuronviz.methods.stats import rank_correlation, undefined_reason

    reason = undefined_reason(a, b, minimum=MIN_RANK_NEURONS)
    if reason is not None:
        return float("nan"), float("nan"), reason
    rho, reason = rank_correlation(a, b, "spearman")
    tau, tau_reason = rank_correlation(a, b, "kendall")
    if rho is None or tau is None:
        return float("nan"), float("nan"), reason or tau_reason
    return rho, tau, None


def influence_shift(
    before: InfluenceMap,
    after: InfluenceMap,
    groups: NeuronGroups | None = None,
    front: int | float = 0.05,
    tail: int | float = 0.05,
    tail_rule: str = "bottom",
) -> InfluenceShift:
    """Compare one layer's influence before and after (attack, defence or control), image by image.

    ``groups`` are the before-groups (computed from ``before`` with ``front``/``tail``/``tail_rule``
    when omitted; pass groups chosen elsewhere, e.g. :func:`neuronviz.workflows.evidence.reference_groups`,
    to compare on groups independent of this pair); the after-groups use the same sizes and rule.
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
    correlations = [defined_rank_correlations(before.values[i].numpy(), after.values[i].numpy()) for i in range(n)]
    delta_influence = after.values - before.values
    delta_activation = after.activations - before.activations
    return InfluenceShift(
        layer=before.layer,
        groups_before=groups,
        groups_after=after_groups,
        transition=transition,
        spearman=torch.tensor([c[0] for c in correlations], dtype=torch.float64),
        kendall=torch.tensor([c[1] for c in correlations], dtype=torch.float64),
        front_overlap=transition[:, FRONT, FRONT].float() / groups.front_size,
        front_influence_delta=delta_influence.gather(1, groups.front),
        tail_influence_delta=delta_influence.gather(1, groups.tail),
        front_activation_delta=delta_activation.gather(1, groups.front),
        tail_activation_delta=delta_activation.gather(1, groups.tail),
        correlation_reasons=tuple(c[2] for c in correlations),
    )


#: Columns of :func:`layer_shift_table` that are shares of neuron × image pairs (with ``_low``,
#: ``_high`` and ``_n`` companions: the 95% Wilson interval and the number of pairs).
SHARE_COLUMNS = tuple(f"{measure}_share" for measure in DIRECTION_MEASURES)


def layer_shift_table(
    before: Mapping[str, InfluenceMap],
    after: Mapping[str, InfluenceMap],
    front: int | float = 0.05,
    tail: int | float = 0.05,
    tail_rule: str = "bottom",
    image: int | None = None,
    groups: Mapping[str, NeuronGroups] | None = None,
):
    """Per-layer summary of the shift across the whole network (a pandas DataFrame, forward order).

    Columns: layer, neurons, front_size, tail_size; spearman, kendall (mean of the defined
    per-image values; NaN with ``correlation_note`` saying why when none is defined, and how many
    images were left out otherwise); front_overlap (with ``_low``/``_high``/``_n``: Wilson over
    front neuron × image pairs); for each of :data:`DIRECTION_MEASURES` ``<measure>_share`` with
    ``_low``, ``_high``, ``_n`` (neuron × image pairs); front/tail influence and activation change
    (mean over the clean groups). Over all images, or one ``image``. ``groups``: per layer, groups
    chosen elsewhere (else each image's clean ranking).
    """
    import pandas as pd

    from neuronviz.methods.stats import mean_defined, rate

    rows = []
    for name, map_before in before.items():
        if name not in after:
            continue
        chosen = None if groups is None else groups.get(name)
        shift = influence_shift(map_before, after[name], groups=chosen, front=front, tail=tail, tail_rule=tail_rule)
        pick = slice(None) if image is None else slice(image, image + 1)
        rho, rho_n, rho_left = mean_defined([None if v != v else v for v in shift.spearman[pick].tolist()])
        tau, _, _ = mean_defined([None if v != v else v for v in shift.kendall[pick].tolist()])
        reasons = [r for r in shift.correlation_reasons[pick] if r]
        note = ""
        if rho is None:
            note = f"not defined: {reasons[0]}" if reasons else "not defined"
        elif rho_left:
            note = f"{rho_left} image(s) left out: {reasons[0]}"
        row: dict = {
            "layer": name,
            "neurons": map_before.neurons,
            "front_size": shift.groups_before.front_size,
            "tail_size": shift.groups_before.tail_size,
            "spearman": float("nan") if rho is None else rho,
            "kendall": float("nan") if tau is None else tau,
            "correlation_images": rho_n,
            "correlation_note": note,
        }
        overlap = rate(int(shift.transition[pick, FRONT, FRONT].sum()), shift.groups_before.front_size * int(shift.transition[pick].shape[0]))
        row.update(_rate_columns("front_overlap", overlap))
        for measure in DIRECTION_MEASURES:
            row.update(_rate_columns(f"{measure}_share", shift.rate(measure) if image is None else shift.rate(measure, image)))
        row.update(
            {
                "front_influence_change": float(shift.front_influence_change[pick].mean()),
                "tail_influence_change": float(shift.tail_influence_change[pick].mean()),
                "front_activation_change": float(shift.front_activation_change[pick].mean()),
                "tail_activation_change": float(shift.tail_activation_change[pick].mean()),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _rate_columns(name: str, value) -> dict:
    """``{name: share, name_low, name_high, name_n}`` of a :class:`neuronviz.methods.stats.Rate` (NaN when undefined)."""
    nan = float("nan")
    return {
        name: nan if value.share is None else value.share,
        f"{name}_low": nan if value.low is None else value.low,
        f"{name}_high": nan if value.high is None else value.high,
        f"{name}_n": value.n,
    }
