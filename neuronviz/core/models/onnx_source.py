"""ONNX models as uploads: parsed from protobuf, converted to torch modules, no code runs.

An ``.onnx`` file is a protobuf message: a graph of standard operators and tensors. Loading one
here runs nothing from the file. The steps, each refusing with a :class:`CheckpointError` that
names the problem:

1. the file's size against the checkpoint cap (:func:`neuronviz.infra.settings.limits`), before a byte
   is read;
2. ``onnx.load_model_from_string`` (protobuf parsing) and ``onnx.checker.check_model``;
3. no tensor may keep its data outside the file (``data_location=EXTERNAL``: a path on the
   server the file would make us read), the parameter count against the cap;
4. exactly one image input of rank 4 ``(N, C, H, W)`` in float32 and one output ``(N, K)``;
5. the graph's size before anything runs (node count, every tensor's size from ONNX shape
   inference, estimated compute: :func:`neuronviz.core.models.load_checks.check_onnx_graph`);
6. ``onnx2torch.convert`` (the maintained converter: each ONNX node becomes a torch module such
   as ``nn.Conv2d``, ``nn.Linear``, ``nn.ReLU``), then a bounded forward pass on a blank and a
   noise image to read ``K`` and check that the output is logits
   (:mod:`neuronviz.core.models.load_checks`: at least 2 classes, finite, depending on the input).

Layer names are made readable, and usable as probe layers (:func:`neuronviz.methods.influence.probe_layers`
finds layers by module type in ``model.net.named_modules()``, so the names only need to be
dotted module paths): PyTorch's exporter names nodes by module scope, e.g.
``/features/features.2/conv/Conv``, which becomes ``features.2.conv`` — the name the layer had in
the original network. A scope with several nodes, or one that is also the parent of other named
layers, gets the operator as a last part (``features.2.add``); a node without scopes is named by
its sanitised ONNX name (``/Flatten`` → ``flatten``; another exporter's ``resnetv17_conv0_fwd``
stays as it is).

Input facts. The ONNX model is taken to expect *normalised* input (``(x - mean) / std``, as
exported from a torchvision-style network); :class:`~neuronviz.core.models.pixel.PixelModel` puts that
normalisation in front of it so every method works on [0, 1] pixels. Each fact comes, first
found, from the user's option (the sidebar fields or ``options=``), from the file's
``metadata_props``, or from the default:

=========================  ===============================================  ============================
metadata key               value (a JSON text)                              default
=========================  ===============================================  ============================
``neuronviz.mean``         ``[0.485, 0.456, 0.406]`` (one number a channel)  ImageNet's (1 channel: 0.449)
``neuronviz.std``          ``[0.229, 0.224, 0.225]``                         ImageNet's (1 channel: 0.226)
``neuronviz.input_size``   ``[224, 224]`` or ``224``                         the graph's H×W when fixed, else 224
``neuronviz.class_names``  ``["cat", "dog"]``                                ``class 0``, ``class 1``, …
``neuronviz.input``        ``"pixels"`` (the model normalises inside) or     ``"normalized"``
                           ``"normalized"``
=========================  ===============================================  ============================

With ``neuronviz.input = "pixels"`` mean and std are 0 and 1 (the file's own first layers do
the normalisation). An option equal to the field's offered default counts as not given (the
sidebar pre-fills the defaults), so the file's metadata wins over it. Write the metadata with
``onnx.helper.set_model_props(model, {"neuronviz.mean": "[0.5]", ...})`` before ``onnx.save``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from neuronviz.core.models import facts as _facts
from neuronviz.core.models.checkpoints import check_size, parse_class_names
from neuronviz.core.models.facts import GREY_DEFAULT_MEAN, GREY_DEFAULT_STD, GREY_DEFAULT_WORDS
from neuronviz.core.models.load_checks import (
    check_logits,
    check_onnx_file,
    check_onnx_graph,
    probe_forward,
    probe_images,
)
from neuronviz.core.models.pixel import ImagePolicy, ModelMeta, PixelModel
from neuronviz.core.models.registry import ModelInfo, ModelSource, OptionField, register_source
from neuronviz.infra import settings
from neuronviz.infra.errors import CancelledError, CheckpointError, InputError, TimeLimitError
from neuronviz.infra.settings import format_bytes

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: One-channel defaults: MNIST's statistics (0.1307, 0.3081), marked assumed. Never statistics of
#: three-channel images (ImageNet's grey 0.449/0.226 took a 1×28×28 digits model from 97.7% to 29.5%).
GREY_MEAN = GREY_DEFAULT_MEAN
GREY_STD = GREY_DEFAULT_STD
DEFAULT_SIDE = 224
METADATA_PREFIX = "neuronviz."
_HINT = "Upload an .onnx file exported from an image classifier (torch.onnx.export)."

#: The fields start blank: blank means "from the file (its metadata, its input shape), else an
#: assumed default", and an assumed value is shown as such; a value typed here is the user's.
MEAN_FIELD = OptionField("mean", "Mean", "", "Per-channel mean the model was trained with (one number a channel); blank: the file's metadata, else assumed (ImageNet's for RGB, MNIST's 0.1307 for grey)")
STD_FIELD = OptionField("std", "Std", "", "Per-channel standard deviation (one positive number a channel); blank: the file's metadata, else assumed (ImageNet's for RGB, MNIST's 0.3081 for grey)")
SIZE_FIELD = OptionField("input_size", "Input size", "", "Height×width in pixels: 224 or 224, 160; blank: the file's fixed input shape or metadata, else assumed 224")
CLASSES_FIELD = OptionField(
    "classes", "Classes", "", "Class names, comma-separated or a JSON list (blank: the file's, else class 0, class 1, …)"
)
#: What the form pre-filled before its fields started blank: a link or session file carrying one
#: of these still means "not given".
LEGACY_DEFAULTS = {"mean": "0.485, 0.456, 0.406", "std": "0.229, 0.224, 0.225", "input_size": "224"}
FIELDS = (MEAN_FIELD, STD_FIELD, SIZE_FIELD, CLASSES_FIELD)


# -- input facts (shared with neuronviz.core.models.local_source) ------------------------------------


@dataclass(frozen=True)
class InputFacts:
    """What a PixelModel needs besides the network: normalisation, input size, class names, and
    where each came from (``origins``: :class:`neuronviz.core.models.facts.ModelFacts`)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    origins: _facts.ModelFacts | None = None


def parse_numbers(value: object, key: str, label: str) -> tuple[float, ...]:
    """Mean or std from a JSON list, a number, or comma/space separated text; finite (std > 0)."""
    items: list[object]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as error:
                raise InputError(f"{label}: its {key} {text!r} is not a JSON list ({error.msg})") from None
            items = parsed if isinstance(parsed, list) else [parsed]
        else:
            items = [part for part in re.split(r"[,\s]+", text) if part]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    numbers: list[float] = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            number = float(item) if isinstance(item, (int, float, str)) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise InputError(f"{label}: its {key} must be finite numbers, one a channel (e.g. 0.5 or 0.485, 0.456, 0.406); got {value!r}")
        numbers.append(number)
    if len(numbers) not in (1, 3):
        raise InputError(f"{label}: its {key} has {len(numbers)} numbers; give 1 (grey) or 3 (RGB), one a channel")
    if key == "std" and any(n <= 0 for n in numbers):
        raise InputError(f"{label}: its std must be positive in every channel (inputs are divided by it); got {numbers}")
    return tuple(numbers)


def parse_input_size(value: object, label: str) -> tuple[int, int]:
    """``224``, ``"224"``, ``"224, 160"``, ``"224x160"`` or ``[224, 160]`` → (height, width), within the cap."""
    if isinstance(value, str):
        text = value.strip()
        parts = json.loads(text) if text.startswith("[") and _is_json(text) else [p for p in re.split(r"[,\s×x]+", text) if p]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        sides = [int(p) for p in parts if not isinstance(p, bool) and (isinstance(p, int) or str(p).strip().isdigit())]
    except (TypeError, ValueError):
        sides = []
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or len(parts) not in (1, 2):
        raise InputError(f"{label}: its input size must be one side or height, width in pixels (e.g. 224 or 224, 160); got {value!r}")
    cap = settings.limits().max_input_side
    if not all(1 <= s <= cap for s in sides):
        raise InputError(f"{label}: its input size {sides[0]}×{sides[1]} is out of range: each side must be 1 to {cap} pixels")
    return sides[0], sides[1]


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def parse_classes(value: object, label: str) -> tuple[str, ...]:
    """Class names from a JSON list of strings, comma-separated text, or a sequence."""
    if isinstance(value, (list, tuple)):
        names = tuple(str(v).strip() for v in value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                return parse_class_names(text, label)
            except CheckpointError as error:
                raise InputError(str(error)) from None
        names = tuple(part.strip() for part in text.split(","))
    caps = settings.limits()
    if not names or any(not n for n in names):
        raise InputError(f"{label}: every class needs a name (comma-separated or a JSON list); got {value!r}")
    if len(names) > caps.max_classes:
        raise InputError(f"{label}: {len(names):,} class names; up to {caps.max_classes:,} are accepted")
    if any(len(n) > caps.max_class_name_chars for n in names):
        raise InputError(f"{label}: a class name is longer than {caps.max_class_name_chars} characters")
    return names


def given(options: Mapping[str, str] | None, field: OptionField, explicit: bool = False) -> str | None:
    """The user's value for ``field``: None when absent, empty or (unless ``explicit``: an operator's
    option is always meant) equal to the offered default, which the sidebar pre-fills."""
    if not options:
        return None
    raw = options.get(field.name)
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    if not explicit and text in (field.default.strip(), LEGACY_DEFAULTS.get(field.name)):
        return None
    return text


def resolve_facts(
    label: str,
    *,
    channels: int,
    outputs: int,
    fixed_size: tuple[int, int] | None,
    options: Mapping[str, str] | None,
    metadata: Mapping[str, object],
    pixels: bool = False,
    explicit: bool = False,
    channels_origin: tuple[str, str] = ("file", "the network's input"),
    metadata_where: str = "the file's metadata {key}",
    fixed_where: str = "the input shape fixed in the file",
    metadata_details: Mapping[str, str] | None = None,
) -> InputFacts:
    """Choose each fact from the options, else ``metadata`` (keys mean/std/input_size/class_names),
    else the defaults; check them against the network's ``channels``, ``outputs`` and fixed size.
    Each fact's origin is recorded (``metadata_where`` names the metadata, ``{key}`` its key)."""
    origin: dict[str, tuple[str, str]] = {}
    details = dict(metadata_details or {})

    def where(key: str) -> str:
        return details.get(key) or metadata_where.format(key=key)

    mean, std = _normalisation(label, options, explicit, metadata, pixels, channels, where, origin)
    size = _input_size(label, options, explicit, metadata, fixed_size, fixed_where, where, origin)
    names = _class_names(label, options, explicit, metadata, outputs, where, origin)
    recorded = _facts.build(
        mean=(mean, *origin["mean"]),
        std=(std, *origin["std"]),
        input_size=(size, *origin["input_size"]),
        channels=(channels, *channels_origin),
        class_names=(names, *origin["class_names"]),
    )
    return InputFacts(mean, std, size, names, recorded)


def _normalisation(
    label: str,
    options: Mapping[str, str] | None,
    explicit: bool,
    metadata: Mapping[str, object],
    pixels: bool,
    channels: int,
    where: Callable[[str], str],
    origin: dict[str, tuple[str, str]],
) -> tuple[tuple, tuple]:
    """The mean and std (options, else pixels-in network, else metadata, else the defaults), one
    number per input channel; their origins go into ``origin``."""
    grey = channels == 1
    facts: dict[str, object] = {}
    for field, key, default in (
        (MEAN_FIELD, "mean", GREY_MEAN if grey else IMAGENET_MEAN),
        (STD_FIELD, "std", GREY_STD if grey else IMAGENET_STD),
    ):
        value = given(options, field, explicit)
        if value is not None:
            facts[key], origin[key] = parse_numbers(value, key, label), ("user", f"option {key}")
        elif pixels:
            facts[key] = (0.0,) * channels if key == "mean" else (1.0,) * channels
            origin[key] = ("metadata", where("input") + ' = "pixels" (the network normalises itself)')
        elif metadata.get(key) is not None:
            facts[key], origin[key] = parse_numbers(metadata[key], key, label), ("metadata", where(key))
        else:
            what = GREY_DEFAULT_WORDS if grey else "ImageNet's"
            facts[key], origin[key] = default, ("default", f"nothing gave the {key}: {what}")
    mean, std = facts["mean"], facts["std"]
    assert isinstance(mean, tuple) and isinstance(std, tuple)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            if len(values) == 1:  # one number for every channel
                values = values * channels
                facts[key] = values
            else:
                raise InputError(f"{label}: its {key} has {len(values)} numbers but the model takes {channels} input channel(s)")
    mean, std = facts["mean"], facts["std"]
    assert isinstance(mean, tuple) and isinstance(std, tuple)
    return mean, std


def _input_size(
    label: str,
    options: Mapping[str, str] | None,
    explicit: bool,
    metadata: Mapping[str, object],
    fixed_size: tuple[int, int] | None,
    fixed_where: str,
    where: Callable[[str], str],
    origin: dict[str, tuple[str, str]],
) -> tuple[int, int]:
    """The input height and width (options, else metadata, else the file's fixed size, else the
    default), checked against a size fixed in the file; its origin goes into ``origin``."""
    size_text = given(options, SIZE_FIELD, explicit)
    if size_text is not None:
        size, origin["input_size"] = parse_input_size(size_text, label), ("user", "option input_size")
    elif metadata.get("input_size") is not None:
        size, origin["input_size"] = parse_input_size(metadata["input_size"], label), ("metadata", where("input_size"))
    elif fixed_size is not None:
        size, origin["input_size"] = fixed_size, ("file", fixed_where)
    else:
        size, origin["input_size"] = (DEFAULT_SIDE, DEFAULT_SIDE), ("default", f"the file fixes no height and width: {DEFAULT_SIDE} assumed")
    if fixed_size is not None and size != fixed_size:
        raise InputError(
            f"{label}: the model takes exactly {fixed_size[0]}×{fixed_size[1]} pixels (fixed in the file), "
            f"not {size[0]}×{size[1]}; leave the input size at {fixed_size[0]}"
        )
    if fixed_size is not None:
        origin["input_size"] = ("file", fixed_where) if origin["input_size"][0] != "user" else origin["input_size"]
    return size


def _class_names(
    label: str,
    options: Mapping[str, str] | None,
    explicit: bool,
    metadata: Mapping[str, object],
    outputs: int,
    where: Callable[[str], str],
    origin: dict[str, tuple[str, str]],
) -> tuple[str, ...]:
    """The class names (options, else metadata, else ``class 0`` …), one per output; their origin goes into ``origin``."""
    classes_text = given(options, CLASSES_FIELD, explicit)
    if classes_text is not None:
        names, origin["class_names"] = parse_classes(classes_text, label), ("user", "option classes")
    elif metadata.get("class_names") is not None:
        names, origin["class_names"] = parse_classes(metadata["class_names"], label), ("metadata", where("class_names"))
    else:
        names = tuple(f"class {i}" for i in range(outputs))
        origin["class_names"] = ("default", f"no names given: class 0 … class {outputs - 1} (the count, {outputs}, is the output layer's)")
    if len(names) != outputs:
        raise InputError(f"{label}: {len(names):,} class names for a model with {outputs:,} outputs; give one name an output")
    return names


def default_policy(size: tuple[int, int]) -> ImagePolicy:
    """torchvision's evaluation recipe for ImageNet-sized inputs (resize to side/0.875, centre crop);
    small inputs (under 128 pixels) are resized whole."""
    side = max(size)
    return ImagePolicy(mode="crop", crop_pct=0.875) if side >= 128 else ImagePolicy(mode="crop", resize_size=side)


def check_outputs(net: nn.Module, channels: int, size: tuple[int, int], label: str) -> int:
    """Run ``net`` on a blank and a noise image (bounded: :func:`~neuronviz.core.models.load_checks.probe_forward`);
    return its class count, refusing anything but ``(2, K)`` logits (:func:`~neuronviz.core.models.load_checks.check_logits`)."""
    caps = settings.limits()
    try:
        out = probe_forward(net, probe_images(channels, size), label)  # 24.19: bounded, two different images
    except (TimeLimitError, CancelledError):
        raise
    except Exception as error:  # noqa: BLE001 - any failure of a foreign graph is the file's problem
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{label}: the model fails on a batch of two {channels}×{size[0]}×{size[1]} images ({reason})",
            ui_hint="Check the input size and channel count; the batch dimension must not be fixed.",
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CheckpointError(
            f"{label}: the model's output for two images is {shape}; a classifier's is (2, classes) logits",
            ui_hint=_HINT,
        )
    if not out.is_floating_point():
        raise CheckpointError(f"{label}: the model's output is {out.dtype}, not floating-point logits", ui_hint=_HINT)
    outputs = int(out.shape[1])
    if not 1 <= outputs <= caps.max_classes:
        raise CheckpointError(f"{label}: the model has {outputs:,} outputs; up to {caps.max_classes:,} classes are loaded here")
    check_logits(out, label)  # 24.20: at least 2 classes, finite, depends on the input
    return outputs


# -- ONNX ------------------------------------------------------------------------------------------


def load_onnx(path: str | Path, options: Mapping[str, str] | None = None, *, name: str | None = None, explicit: bool = False) -> PixelModel:
    """Load an ``.onnx`` file as a :class:`PixelModel` (see the module docstring for each check)."""
    path = Path(path)
    label = path.name
    caps = settings.limits()
    try:
        size = path.stat().st_size
    except OSError as error:
        raise CheckpointError(f"{label}: cannot read the file ({error.strerror})", ui_hint=_HINT) from None
    check_size(label, size, "ONNX models", caps)
    return load_onnx_bytes(path.read_bytes(), label, options, name=name or path.stem, explicit=explicit)


def load_onnx_bytes(
    data: bytes, label: str, options: Mapping[str, str] | None = None, *, name: str = "onnx-model", explicit: bool = False
) -> PixelModel:
    """:func:`load_onnx` on bytes already in memory (the size cap applies to them too).
    ``explicit``: every option is meant (library and CLI callers); otherwise a value equal to what
    the sidebar once pre-filled counts as not given."""
    unknown = sorted(set(options or {}) - {f.name for f in FIELDS})
    if unknown:
        raise InputError(f"{label}: unknown option(s) {unknown} for an ONNX model; use {', '.join(f.name for f in FIELDS)}")
    import onnx

    caps = settings.limits()
    if len(data) > caps.max_checkpoint_bytes:
        raise CheckpointError(f"{label} is {format_bytes(len(data))}; ONNX models up to {format_bytes(caps.max_checkpoint_bytes)} are read here")
    if not data:
        raise CheckpointError(f"{label} is empty", ui_hint=_HINT)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise CheckpointError(f"{label} is not an ONNX model: its protobuf could not be parsed ({type(error).__name__})", ui_hint=_HINT) from None
    if not model.HasField("graph") or not model.graph.node:
        raise CheckpointError(f"{label} is not an ONNX model: it has no graph of operators", ui_hint=_HINT)
    _refuse_external_data(model, label)
    check_onnx_file(model, options, label)  # 24.19: node count; 24.15's class: fact texts too deep to parse
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # noqa: BLE001 - onnx.checker.ValidationError and C++ errors
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{label} is not a valid ONNX model: {reason}", ui_hint=_HINT) from None
    parameters = sum(math.prod(t.dims) for t in _tensors(model.graph))
    if parameters > caps.max_checkpoint_parameters:
        raise CheckpointError(
            f"{label} holds {parameters:,} numbers in its tensors; models up to {caps.max_checkpoint_parameters:,} parameters "
            "are loaded here.",
            ui_hint="Use a smaller model.",
        )
    channels, fixed = _image_input(model, label)
    _single_output(model, label)
    metadata = {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(METADATA_PREFIX)}
    mode = str(metadata.get("input", "normalized")).strip().strip('"').lower()
    if mode not in ("normalized", "normalised", "pixels"):
        raise CheckpointError(f"{label}: its neuronviz.input metadata is {mode!r}; write \"pixels\" or \"normalized\"", ui_hint=_HINT)
    channels_origin = ("file", "the graph's input shape")
    if channels is None:  # not fixed in the file: as many channels as the mean has numbers (default 3)
        user_mean = given(options, MEAN_FIELD, explicit)
        mean = user_mean or metadata.get("mean")
        channels = len(parse_numbers(mean, "mean", label)) if mean is not None else 3
        channels_origin = (
            ("user" if user_mean else "metadata", "one a number of the mean")
            if mean is not None
            else ("default", "the graph leaves the channels open: 3 (RGB) assumed")
        )
    size_hint = fixed or (DEFAULT_SIDE, DEFAULT_SIDE)
    probe_size = size_hint
    size_text = given(options, SIZE_FIELD, explicit)
    if fixed is None and (size_text or metadata.get("input_size")):
        probe_size = parse_input_size(size_text or metadata["input_size"], label)
    check_onnx_graph(model, channels, probe_size, label)  # 24.19: nodes, tensor sizes, compute, before anything runs
    net, opset_note = _convert(model, label)
    outputs = check_outputs(net, channels, probe_size, label)
    facts = resolve_facts(
        label, channels=channels, outputs=outputs, fixed_size=fixed, options=options, metadata=metadata, pixels=mode == "pixels",
        explicit=explicit,
        channels_origin=channels_origin, metadata_where="the file's metadata_props neuronviz.{key}",
        fixed_where="the graph's input shape",
    )
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p) or "an unknown producer"
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    meta = ModelMeta(
        name=name,
        architecture="onnx",
        source=f"ONNX upload {label}",
        description=f"ONNX graph from {producer} (opset {opsets}), {len(model.graph.node)} nodes, converted with onnx2torch{opset_note}",
        card={"format": "onnx", "producer": producer, "opset": opsets, "file": label, "input": "pixels" if mode == "pixels" else "normalized",
              "layer_notes": onnx_layer_notes(model, net)},
        facts=facts.origins,
    )
    return PixelModel(net, facts.mean, facts.std, facts.input_size, facts.class_names, meta, default_policy(facts.input_size))


def _tensors(graph) -> Iterator:
    """Every TensorProto of a graph: initializers, Constant attributes, and those of subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for sub in attribute.graphs:
                yield from _tensors(sub)


def _refuse_external_data(model, label: str) -> None:
    import onnx

    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise CheckpointError(
                f"{label}: tensor {tensor.name!r} keeps its data in a separate file; only self-contained .onnx files are "
                "read (a file must not make the server read other paths). Save it with onnx.save(model, path, "
                "save_as_external_data=False).",
                ui_hint="Save the model as one self-contained .onnx file.",
            )


def _dims(value_info) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _image_input(model, label: str) -> tuple[int | None, tuple[int, int] | None]:
    """(channels or None, (H, W) or None) of the one graph input that is not an initializer."""
    import onnx

    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise CheckpointError(f"{label}: the model has {len(inputs)} inputs ({names}); an image classifier has one", ui_hint=_HINT)
    value = inputs[0]
    if not value.type.HasField("tensor_type"):
        raise CheckpointError(f"{label}: its input {value.name!r} is not a tensor", ui_hint=_HINT)
    elem = value.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise CheckpointError(
            f"{label}: its input {value.name!r} is {onnx.TensorProto.DataType.Name(elem)}; images enter as FLOAT (float32)",
            ui_hint="Export the model with a float32 input.",
        )
    if not value.type.tensor_type.HasField("shape"):
        raise CheckpointError(f"{label}: its input {value.name!r} has no declared shape; export it with one", ui_hint=_HINT)
    dims = _dims(value)
    if len(dims) != 4:
        shown = "(" + ", ".join(str(d) for d in dims) + ")"
        raise CheckpointError(
            f"{label}: its input {value.name!r} has rank {len(dims)} {shown}; neuronviz needs images of rank 4 (N, C, H, W)",
            ui_hint="Upload an image classifier whose input is (batch, channels, height, width).",
        )
    batch, channels, height, width = dims
    if isinstance(batch, int) and batch != 0 and batch != 1:
        pass  # a fixed batch > 1 is found by the forward check on two images, with the converter's reason
    if isinstance(channels, int) and channels not in (1, 3):
        raise CheckpointError(f"{label}: its input has {channels} channels; images here have 1 (grey) or 3 (RGB)", ui_hint=_HINT)
    fixed = (height, width) if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0 else None
    if fixed is not None:
        cap = settings.limits().max_input_side
        if max(fixed) > cap:
            raise CheckpointError(f"{label}: its input is {fixed[0]}×{fixed[1]} pixels; sides up to {cap} are accepted here")
    return (channels if isinstance(channels, int) else None), fixed


def _single_output(model, label: str) -> None:
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        raise CheckpointError(
            f"{label}: the model has {len(outputs)} outputs ({names}); a classifier here has one, its logits (N, classes)",
            ui_hint="Export only the logits as the model's output.",
        )


def _convert(model, label: str) -> tuple[nn.Module, str]:
    """onnx2torch's GraphModule, its modules renamed to readable dotted paths (module docstring),
    and a note on the opset conversion ("" when none was needed)."""
    from onnx2torch import convert
    from onnx2torch.onnx_graph import OnnxGraph

    original_opset = _opset(model)
    try:
        model, graph_module = _convert_any_opset(model, convert)
    except NotImplementedError as error:
        raise CheckpointError(
            f"{label}: onnx2torch cannot convert it: {str(error).strip()[:300]}",
            ui_hint="Export the model with standard ONNX operators (opset 13 to 17 convert best).",
        ) from None
    except Exception as error:  # noqa: BLE001 - a converter failure on a foreign graph
        raise CheckpointError(f"{label}: converting it to torch failed ({type(error).__name__}: {str(error)[:300]})", ui_hint=_HINT) from None
    nodes = {unique: node.proto for unique, node in OnnxGraph(model.graph).nodes.items()}
    calls = [node for node in graph_module.graph.nodes if node.op == "call_module"]
    readable = readable_names([(nodes[n.target].name, nodes[n.target].op_type) if n.target in nodes else (str(n.target), "") for n in calls])
    original_targets = [str(node.target) for node in calls]
    owners: dict[str, object] = {}
    for node, new in zip(calls, readable, strict=True):
        owners[new] = graph_module.get_submodule(str(node.target))
        node.target = new
    for node in graph_module.graph.nodes:
        if node.op == "get_attr":
            owners[str(node.target)] = _attribute(graph_module, str(node.target))
    renamed = torch.fx.GraphModule(owners, graph_module.graph, class_name="OnnxGraph")
    renamed.__dict__["onnx_node_names"] = {  # ONNX node name → module name (for the layer notes)
        nodes[n_].name: new for n_, new in zip(original_targets, readable, strict=True) if n_ in nodes
    }
    note = "" if _opset(model) == original_opset else f", converted from opset {original_opset} to {_opset(model)}"
    return renamed.float().eval(), note


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


#: Opsets tried, newest first, when onnx2torch lacks a converter for an operator's newer version
#: (it stops at opset 17 for some: torch 2.x exports opset 18-20 by default).
FALLBACK_OPSETS = (18, 17, 16, 15, 14, 13)


def _convert_any_opset(model, convert):
    """``(model, convert(model))``, else the same graph converted down to an older opset with
    ``onnx.version_converter`` (protobuf to protobuf: nothing runs) and then to torch."""
    from onnx import version_converter

    try:
        return model, convert(model)
    except NotImplementedError as first:
        current = _opset(model)
        for target in FALLBACK_OPSETS:
            if target >= current:
                continue
            try:
                older = version_converter.convert_version(model, target)
                return older, convert(older)
            except Exception:  # noqa: BLE001, S112 - that opset does not fit either: try the next one
                continue
        raise first


def _attribute(module: nn.Module, target: str) -> object:
    value: object = module
    for part in target.split("."):
        value = getattr(value, part)
    return value


_UNSAFE = re.compile(r"[^0-9A-Za-z_]+")


def _snake(op: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", op).lower()
    return _UNSAFE.sub("_", text).strip("_") or "node"


def scope_path(onnx_name: str) -> tuple[str, str] | None:
    """``"/features/features.2/conv/Conv"`` → ``("features.2.conv", "conv")``: the module path of a
    node named by PyTorch's exporter, and the operator part; None for a name without scopes."""
    if not onnx_name.startswith("/"):
        return None
    parts = [p for p in onnx_name.split("/") if p]
    if not parts:
        return None
    scopes, op = parts[:-1], parts[-1]
    path, last = "", ""
    for scope in scopes:
        if path and last and scope.startswith(last + "."):  # "features" then "features.2"
            path += scope[len(last):]
        else:
            path = f"{path}.{scope}" if path else scope
        last = scope
    return path, _snake(op)


def readable_names(nodes: Sequence[tuple[str, str]]) -> list[str]:
    """Readable, unique, dotted module names for ONNX nodes given as (node name, op type)."""
    candidates: list[tuple[str, str]] = []
    for index, (onnx_name, op_type) in enumerate(nodes):
        scoped = scope_path(onnx_name)
        if scoped is not None:
            path, op = scoped
        else:
            path, op = "", _snake(op_type or "node")
            if onnx_name.strip():
                path = _UNSAFE.sub("_", onnx_name.strip()).strip("_")
            if not path:
                path = f"{op}_{index}"
        parts = [_UNSAFE.sub("_", p) or "node" for p in path.split(".")] if path else []
        candidates.append((".".join(parts), op))
    counts: dict[str, int] = {}
    for path, _ in candidates:
        counts[path] = counts.get(path, 0) + 1
    prefixes = {".".join(path.split(".")[:i]) for path, _ in candidates for i in range(1, path.count(".") + 1)}
    names: list[str] = []
    used: set[str] = {"initializers"}  # onnx2torch's holder of constant tensors
    for path, op in candidates:
        name = path if path and counts[path] == 1 and path not in prefixes else (f"{path}.{op}" if path else op)
        base, k = name, 2
        while name in used or name in prefixes and name != path:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names.append(name)
    return names


#: Operators whose weights an exporter rewrites when it folds a following batch norm (or scale) in.
_FOLDABLE = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def onnx_layer_notes(model, net: nn.Module) -> list[str]:
    """What the converted layer list does not show: layers whose weights the exporter rewrote
    (a batch norm folded into a convolution), so that ``conv2`` here is conv2 *and* its batch
    norm, not the original network's ``conv2``.

    PyTorch's exporter names a layer's weights after its parameter (``conv3.weight``); when it
    folds a batch norm in, the rewritten weights get a generated name (``onnx::Conv_36``) and no
    ``BatchNormalization`` node is left. Both are read from the graph."""
    names = getattr(net, "onnx_node_names", {})
    initializers = {t.name for t in model.graph.initializer}
    has_batch_norm = any(node.op_type == "BatchNormalization" for node in model.graph.node)
    named_weights = any(name.endswith(".weight") for name in initializers)
    notes: list[str] = []
    for node in model.graph.node:
        if node.op_type not in _FOLDABLE or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        weight = node.input[1]
        if named_weights and not weight.endswith(".weight") and not has_batch_norm:
            layer = names.get(node.name, node.name)
            notes.append(
                f"{layer}: folded — its weights were rewritten by the exporter ({weight!r}, not a parameter's name), "
                "most likely a batch norm folded in: its output is the original layer followed by that batch norm"
            )
    if not has_batch_norm and not notes:
        notes.append("no BatchNormalization node: if the network had batch norm, the exporter folded it into the layer before it")
    return notes


class OnnxSource(ModelSource):
    """ONNX files uploaded in the sidebar (or given to :func:`load_onnx`)."""

    name = "onnx"
    label = "ONNX upload"
    upload_suffixes = (".onnx",)
    upload_help = (
        "An .onnx file (protobuf, converted with onnx2torch: nothing in it runs). Mean, std, input size and "
        "classes below are used unless the file's metadata (neuronviz.mean, …) gives them and you leave the defaults."
    )
    options = FIELDS

    def owns(self, spec: str) -> bool:
        return spec.startswith("onnx:") or spec.lower().endswith(".onnx")

    def list_models(self) -> list[ModelInfo]:
        return []

    def load(self, spec: str, *, weights: object = "default", options: Mapping[str, str] | None = None) -> PixelModel:
        if not spec.lower().endswith(".onnx") or spec.startswith("onnx:"):
            raise InputError(
                f"{spec!r}: ONNX models are uploaded in the sidebar, or loaded from a path ending in .onnx "
                "(create_model('net.onnx')); there is no named ONNX model"
            )
        if weights != "default":
            raise InputError(f"{spec}: an ONNX file carries its own weights; weights={weights!r} cannot be applied")
        from neuronviz.core.models.checkpoints import refuse_local_path

        path = Path(spec)
        refuse_local_path(path)
        return load_onnx(path, options, explicit=True)

    def load_upload(self, path: Path, options: Mapping[str, str]) -> PixelModel:
        try:
            return load_onnx(path, options)
        except InputError as error:  # a field's value: say where to fix it
            if error.ui_hint is None:
                error.ui_hint = "Correct the Mean, Std, Input size or Classes field under the upload."
            raise


ONNX_SOURCE = register_source(OnnxSource())
