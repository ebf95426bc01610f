"""Bounds and sanity checks of an uploaded model, before and during its load-time test forward
(issue 24.19, 24.20). Called from one place each in :mod:`neuronviz.core.models.onnx_source`
(:func:`check_onnx_file` right after parsing, :func:`check_onnx_graph` before the graph is
converted to torch) and in its ``check_outputs``
(:func:`probe_forward` and :func:`check_logits`, shared with :mod:`neuronviz.core.models.local_source`).

Before anything runs (:func:`check_onnx_file`, :func:`check_onnx_graph`):

- the node count, subgraphs included, before ``onnx.checker`` walks the graph
  (:attr:`neuronviz.infra.settings.Limits.max_onnx_nodes`): 200 k ``Identity`` nodes took 68 s and
  +2.4 GB to convert;
- ONNX shape inference (``onnx.shape_inference.infer_shapes`` with data propagation) on the graph
  with its input fixed to the test batch ``(2, C, H, W)``: every tensor whose shape it infers is
  held to :attr:`~neuronviz.infra.settings.Limits.max_tensor_elements` (a 31 KB ``ConstantOfShape`` to
  2 × 5e8 allocated 4.1 GB on every forward), and the estimated multiply-accumulates per image
  (convolutions, matrix products; one per output element for the other operators) to
  :attr:`~neuronviz.infra.settings.Limits.max_model_macs` (61 convolutions at 512² ran > 150 s). A
  tensor whose shape cannot be inferred is not counted: the time bound below still holds.

The test forward (:func:`probe_forward`): two different images (zeros, and seeded noise), under
the caller's budget and cancel flag and at most :attr:`~neuronviz.infra.settings.Limits.load_check_s`
seconds, checked before every module of the converted graph, so a slow graph stops at its next
node. Its output (:func:`check_logits`) must be logits: at least 2 classes (``(N, 1)`` is a score,
not a classifier), finite (no NaN or infinity), and depending on the input (a gradient path from
the image to the output, and not the same output for two different images); otherwise the model is
refused at load with the reason, instead of a "success 0.00" or a raw ``RuntimeError`` in an attack.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from neuronviz.infra import budget, settings
from neuronviz.infra.errors import CheckpointError, NeuronvizError

#: What a refusal suggests.
_HINT = "Upload an image classifier whose single output is its logits (N, classes)."


# -- before anything is parsed: the input facts' text ------------------------------------------------------

#: Deepest JSON nesting of an input fact (``neuronviz.mean``, ``.class_names``, … in a file's
#: metadata, or the Mean/Std/Input size/Classes fields): a list of numbers or names nests 1 level.
#: ``json`` recurses once a level: 1,000 levels (a 2,000-character link value) was a RecursionError.
MAX_FACT_DEPTH = 2


def check_onnx_file(model, options, label: str) -> None:
    """Right after the protobuf is parsed, before the checker or anything else walks the graph:
    the node count (subgraphs included) against :attr:`~neuronviz.infra.settings.Limits.max_onnx_nodes`,
    and every input fact's text (the file's ``neuronviz.*`` metadata: :class:`CheckpointError`;
    ``options``: :class:`InputError` naming the field), too long or nested too deep to parse. The
    longest text allowed is a class-name list at the class cap."""
    from neuronviz.infra.errors import InputError
    from neuronviz.infra.json_text import json_nesting_depth

    caps = settings.limits()
    nodes = sum(1 for _ in _all_nodes(model.graph))
    if nodes > caps.max_onnx_nodes:
        raise CheckpointError(
            f"{label} has {nodes:,} operator nodes; graphs of up to {caps.max_onnx_nodes:,} are loaded here "
            f"(resnet50 has about 120, a ViT-B about 1,000). Nothing was converted or run.",
            ui_hint="Use a smaller model.",
        )
    longest = caps.max_classes * (caps.max_class_name_chars + 4)
    texts: list[tuple[str, str, type[NeuronvizError]]]
    texts = [(f"its {p.key} metadata", p.value, CheckpointError) for p in model.metadata_props if p.key.startswith("neuronviz.")]
    texts += [(f"the {key} field", value, InputError) for key, value in (options or {}).items() if isinstance(value, str)]
    for what, text, error in texts:
        if len(text) > longest:
            raise error(f"{label}: {what} is {len(text):,} characters; up to {longest:,} are read", ui_hint=_HINT)
        depth = json_nesting_depth(text)
        if depth > MAX_FACT_DEPTH:
            raise error(
                f"{label}: {what} nests {depth:,} levels deep; a list of numbers or names nests 1. Nothing was parsed.",
                ui_hint=_HINT,
            )


# -- before anything runs: the ONNX graph -----------------------------------------------------------------


def _all_nodes(graph) -> Iterator:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


def _elements(value_info) -> int | None:
    """The element count of a fully known tensor shape, else None."""
    kind = value_info.type
    if not kind.HasField("tensor_type") or not kind.tensor_type.HasField("shape"):
        return None
    dims = kind.tensor_type.shape.dim
    if any(not d.HasField("dim_value") or d.dim_value < 0 for d in dims):
        return None
    return math.prod(d.dim_value for d in dims)


def check_onnx_graph(model, channels: int, size: tuple[int, int], label: str) -> dict[str, int]:
    """Refuse an ONNX graph too large to convert or run, before anything runs (module docstring).

    ``model`` is the parsed ``onnx.ModelProto``; ``channels`` and ``size`` the test forward's
    image. Returns ``{"nodes", "largest", "macs"}`` (largest inferred tensor in elements at batch
    2, estimated multiply-accumulates per image). Raises :class:`CheckpointError` naming the cap."""
    import onnx

    caps = settings.limits()
    nodes = sum(1 for _ in _all_nodes(model.graph))
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    initializers = {t.name for t in probe.graph.initializer}
    for value in probe.graph.input:
        if value.name in initializers or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            for dim, number in zip(dims, (2, channels, *size), strict=True):
                dim.Clear()
                dim.dim_value = number
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=False, strict_mode=False, data_prop=True)
    except Exception as error:  # noqa: BLE001 - onnx's InferenceError and C++ errors: the file's problem
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{label}: ONNX shape inference fails on it ({reason})", ui_hint=_HINT) from None
    graph = inferred.graph
    shapes: dict[str, int] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        count = _elements(value)
        if count is not None:
            shapes[value.name] = count
    for tensor in graph.initializer:
        shapes.setdefault(tensor.name, math.prod(tensor.dims))
    largest_name, largest = max(shapes.items(), key=lambda item: item[1], default=("", 0))
    if largest > caps.max_tensor_elements:
        raise CheckpointError(
            f"{label}: its tensor {largest_name!r} would hold {largest:,} numbers "
            f"({settings.format_bytes(4 * largest)} as float32) for a batch of two {channels}×{size[0]}×{size[1]} "
            f"images; tensors of up to {caps.max_tensor_elements:,} numbers are allowed here. Nothing was run.",
            ui_hint="Use a smaller model or input size.",
        )
    dims_of = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*graph.value_info, *graph.input)}
    for tensor in graph.initializer:
        dims_of.setdefault(tensor.name, list(tensor.dims))
    macs = 0
    for node in graph.node:
        out = max((shapes.get(name, 0) for name in node.output), default=0)
        per_output = 1
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1:
            weight = dims_of.get(node.input[1]) or []
            if len(weight) >= 3:  # Conv: (out, in/groups, k…); ConvTranspose: (in, out/groups, k…), an upper bound
                per_output = math.prod(weight[1:]) if node.op_type == "Conv" else weight[0] * math.prod(weight[2:])
        elif node.op_type in ("MatMul", "Gemm") and node.input:
            first = dims_of.get(node.input[0]) or []
            if first:
                transposed = node.op_type == "Gemm" and any(a.name == "transA" and a.i for a in node.attribute)
                per_output = first[-2] if transposed and len(first) >= 2 else first[-1]
        macs += out * max(1, per_output)
    per_image = macs // 2
    if per_image > caps.max_model_macs:
        raise CheckpointError(
            f"{label}: one image costs about {per_image / 1e9:,.1f} G multiply-accumulates at {size[0]}×{size[1]}; "
            f"models of up to {caps.max_model_macs / 1e9:,.0f} G are run here (resnet50: 4.1 G). Nothing was run.",
            ui_hint="Use a smaller model or input size.",
        )
    return {"nodes": nodes, "largest": largest, "macs": per_image}


# -- the test forward ------------------------------------------------------------------------------------


def probe_images(channels: int, size: tuple[int, int]) -> torch.Tensor:
    """The test batch: a blank image and seeded noise (normalised units), so that an output that
    ignores its input shows."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(1, channels, *size, generator=generator) * 4 - 2
    return torch.cat([torch.zeros(1, channels, *size), noise]).requires_grad_(True)


def probe_forward(net: nn.Module, x: torch.Tensor, label: str) -> torch.Tensor:
    """``net(x)`` with a gradient path from ``x`` only (the parameters' flags are off meanwhile),
    under the caller's budget and cancel flag and at most ``settings.limits().load_check_s``,
    checked before every module, so a slow graph stops at its next node."""
    seconds = settings.limits().load_check_s
    flags = [(p, p.requires_grad) for p in net.parameters()]
    hooks = [module.register_forward_pre_hook(lambda *_: budget.check()) for module in net.modules()]
    try:
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        with budget.limit(seconds, what=f"the test forward of {label}"), torch.enable_grad():
            return net(x)
    finally:
        for hook in hooks:
            hook.remove()
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def check_logits(out: torch.Tensor, label: str) -> None:
    """Refuse an output that is not a classifier's logits (module docstring); ``out`` is
    :func:`probe_forward`'s output on :func:`probe_images`, already known to be ``(2, K)`` floats."""
    classes = int(out.shape[1])
    if classes < 2:
        raise CheckpointError(
            f"{label}: its output is (N, {classes}): one number an image is a score or a regression, not a "
            "classifier's logits (a classifier here has at least 2 classes; export a binary classifier with 2 logits)",
            ui_hint=_HINT,
        )
    values = out.detach()
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).sum())
        kind = "NaN" if torch.isnan(values).any() else "infinite"
        raise CheckpointError(
            f"{label}: its output holds {bad} {kind} value(s) for a blank image and a noise image: not usable logits",
            ui_hint=_HINT,
        )
    if not out.requires_grad:
        raise CheckpointError(
            f"{label}: its output does not depend on the input image (no gradient path from the image to the "
            "logits): attacks and attributions cannot work on it",
            ui_hint=_HINT,
        )
    if torch.equal(values[0], values[1]):
        raise CheckpointError(
            f"{label}: its output is the same for a blank image and a noise image: it does not depend on the "
            "input, so no attack or attribution means anything on it",
            ui_hint=_HINT,
        )
