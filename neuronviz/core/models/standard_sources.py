"""The built-in model sources and the architecture registry behind checkpoints.

Three sources (:mod:`neuronviz.core.models.registry`) are defined and registered here, next to the
loaders they use:

- ``embedded`` (``digits-cnn``, ``digits-resnet``, ``digits-cnn-robust``, ``digits-cnn-sns``): a
  small ``.safetensors`` file in ``assets/models/`` with a JSON model card, trained by
  ``python -m neuronviz train <name>``;
- ``zoo`` (``resnet18``, ``vgg19``, ...): torchvision's architecture, with weights from the local
  torch hub cache (``weights="default"``), random initialisation (``weights=None``) or a file the
  user has (``weights=<path>``);
- ``checkpoint`` (a path, or an upload): a ``.safetensors`` or ``.pt``/``.pth`` state dict for a
  registered architecture, named by the ``architecture`` option, by the file's metadata, or
  inferred from its keys and shapes when exactly one registered architecture fits.

Architectures (what a checkpoint can be for) are registered by name with
:func:`register_architecture`; the digits and torchvision ones are registered below.

Longer than 500 lines on purpose: the three built-in sources share the architecture table and
the plan that checks a state dict against an architecture built on ``meta`` (keys, shapes,
head size, statistics, input size) before any tensor is read; the other sources live in their
own modules (``timm_source``, ``onnx_source``, ``local_source``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

from neuronviz.core.models import torchvision_zoo as zoo
from neuronviz.core.models.builtin import DigitsCNN, DigitsResNet, digits_vit
from neuronviz.core.models.checkpoints import (
    STATE_DICT_SUFFIXES,
    Checkpoint,
    apply_state,
    inspect_checkpoint,
    load_tensors,
    normalise_keys,
)
from neuronviz.core.models.pixel import ImagePolicy, ModelMeta, PixelModel
from neuronviz.core.models.registry import (
    ModelInfo,
    ModelSource,
    OptionField,
    create_model,
    list_all_models,
    register_source,
    resolve_device,
)
from neuronviz.data.datasets import DIGITS_CLASSES, DIGITS_SIZE
from neuronviz.infra import settings
from neuronviz.infra.errors import CheckpointError, ModelNotFoundError, SharedServerError

#: Mean and std of the digits training split (1×28×28, see ``neuronviz.data.datasets``); used for a
#: randomly initialised digits architecture. Trained checkpoints carry their own.
DIGITS_MEAN = (0.3054,)
DIGITS_STD = (0.3247,)
DIGITS_POLICY = ImagePolicy(mode="pad", resize_size=DIGITS_SIZE, invert_light_background=True)


def assets_dir() -> Path:
    """The embedded assets folder (``$NEURONVIZ_ASSETS`` overrides, for tests and deployments)."""
    override = os.environ.get("NEURONVIZ_ASSETS")
    return Path(override) if override else Path(__file__).resolve().parents[3] / "assets"


@dataclass(frozen=True)
class Architecture:
    """A registered architecture: how to build it and its default input facts."""

    name: str
    build: Callable[[int], nn.Module]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    image_policy: ImagePolicy
    family: str  # "digits" or "imagenet"
    key_remap: Callable[[str], str] | None = None


def _zoo_architecture(name: str) -> Architecture:
    spec = zoo.zoo_spec(name)
    return Architecture(
        name=name,
        build=functools.partial(_build_zoo, name),
        mean=spec.mean,
        std=spec.std,
        input_size=(spec.crop_size, spec.crop_size),
        class_names=spec.categories,
        image_policy=ImagePolicy(mode="crop", resize_size=spec.resize_size, min_size=32),  # pools adaptively
        family="imagenet",
        key_remap=zoo.key_remap(name),
    )


def _build_zoo(name: str, num_classes: int) -> nn.Module:
    from torchvision import models

    if num_classes == 1000:
        return zoo.build_network(name)
    return models.get_model(name, weights=None, num_classes=num_classes)


def _digits_architecture(name: str, build: Callable[[int], nn.Module]) -> Architecture:
    return Architecture(
        name=name,
        build=build,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        input_size=(DIGITS_SIZE, DIGITS_SIZE),
        class_names=DIGITS_CLASSES,
        image_policy=DIGITS_POLICY,
        family="digits",
    )


_DIGITS_ARCHITECTURES = {
    "digits-cnn": lambda k: DigitsCNN(num_classes=k),
    "digits-resnet": lambda k: DigitsResNet(num_classes=k),
    "digits-vit": digits_vit,
}

#: Embedded models: name → (architecture, description).
EMBEDDED: dict[str, tuple[str, str]] = {
    "digits-cnn": ("digits-cnn", "Small CNN on 28×28 handwritten digits (the default)"),
    "digits-resnet": ("digits-resnet", "Small ResNet with batch norm on 28×28 digits"),
    "digits-cnn-robust": ("digits-cnn", "The digits CNN adversarially trained with PGD (L∞)"),
    "digits-cnn-sns": ("digits-cnn", "The digits CNN fine-tuned with SNS: sensitive neurons stabilised (reconstruction)"),
    "digits-vit": ("digits-vit", "Small vision transformer (timm ViT, 4 blocks, 4×4 patches) on 28×28 digits"),
}


_ARCHITECTURES: dict[str, Callable[[], Architecture]] = {}


def register_architecture(name: str, factory: Callable[[], Architecture]) -> None:
    """Make ``name`` an architecture checkpoints can be for (``factory`` builds its facts)."""
    _ARCHITECTURES[name] = factory
    _meta_shapes.cache_clear()
    _head_keys.cache_clear()


def list_architectures() -> list[str]:
    return list(_ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    factory = _ARCHITECTURES.get(name)
    if factory is None:
        raise ModelNotFoundError(f"unknown architecture {name!r}; registered: {list_architectures()}")
    return factory()


def embedded_path(name: str) -> Path:
    return assets_dir() / "models" / f"{name}.safetensors"


def model_card(name: str) -> dict | None:
    """The JSON model card of an embedded model, or None when it has none."""
    path = assets_dir() / "models" / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def list_models() -> list[ModelInfo]:
    """Every listed model of every registered source, grouped by source (embedded, zoo, timm...)."""
    return list_all_models()


def wrap_model(
    module: nn.Module,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: tuple[int, int],
    class_names: Sequence[str],
    name: str = "custom",
    architecture: str = "custom",
    image_policy: ImagePolicy | None = None,
    device: str | torch.device | None = "cpu",
) -> PixelModel:
    """Wrap any classifier taking normalised input into a :class:`PixelModel`.

    The module is used as given (not copied): do not keep training it while the app uses it.
    """
    model = PixelModel(module, mean, std, input_size, class_names, ModelMeta(name=name, architecture=architecture), image_policy)
    return model.to(resolve_device(device))


@dataclass(frozen=True)
class _Plan:
    """What a checkpoint will become, decided before any tensor data is read."""

    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...] | None  # None: from the PixelModel state in the file, else the architecture's
    std: tuple[float, ...] | None
    input_size: tuple[int, int]
    image_policy: ImagePolicy


def _plan(checkpoint: Checkpoint, arch: Architecture, label: str) -> _Plan:
    """Validate a checkpoint's metadata and shapes against ``arch`` on the meta device.

    Raises CheckpointError (what is wrong and what to do) before anything is allocated.
    """
    caps = settings.limits()
    channels = len(arch.mean)
    state, _ = normalise_keys(checkpoint.state)
    raw_names = checkpoint.metadata.get("class_names")
    names = parse_class_names(raw_names, label) if raw_names is not None else None
    mean = _stats(checkpoint, "mean", channels, label)
    std = _stats(checkpoint, "std", channels, label)
    input_size = _input_size(checkpoint, arch, label)

    outputs, head = _output_count(state, arch)
    if outputs is not None and outputs > caps.max_classes:
        raise CheckpointError(
            f"{label}: its output layer has {outputs:,} classes; models with up to {caps.max_classes:,} "
            f"classes are loaded here{_limit_note(caps)}. Nothing was allocated."
        )
    if not _body_fits(state, arch):  # another architecture's file: list what differs, not the head
        with torch.device("meta"):
            net = arch.build(len(names) if names else len(arch.class_names))
        apply_state(net, state, f"{label} (for {arch.name})", remap=arch.key_remap, check_only=True)
    if names is not None and outputs is not None and len(names) != outputs:
        raise CheckpointError(
            f"{label}: its output layer has {outputs:,} classes but its class_names metadata lists "
            f"{len(names):,} names. Give exactly one name per output."
        )
    if names is None:
        if outputs is not None and outputs != len(arch.class_names):
            expected = _meta_shapes(arch.name).get(head[0]) if head else None
            detail = f" ({head[0]}: checkpoint {head[1]} vs model {expected})" if head and expected else ""
            raise CheckpointError(
                f"{label}: its output layer has {outputs:,} classes{detail}, but {arch.name}'s default class names "
                f"are {len(arch.class_names):,}. Add a class_names entry to the checkpoint's metadata "
                f"(a JSON list of {outputs:,} names)."
            )
        names = tuple(arch.class_names)

    with torch.device("meta"):
        net = arch.build(len(names))
    parameters = sum(p.numel() for p in net.parameters())
    if parameters > caps.max_checkpoint_parameters:
        raise CheckpointError(
            f"{label}: {arch.name} with {len(names):,} classes has {parameters:,} parameters; models up to "
            f"{caps.max_checkpoint_parameters:,} are loaded here{_limit_note(caps)}. "
            "Nothing was allocated."
        )
    apply_state(net, state, f"{label} (for {arch.name})", remap=arch.key_remap, check_only=True)
    policy = arch.image_policy
    if input_size != arch.input_size:
        _check_input_fits(net, channels, input_size, arch, label)
        scale = max(input_size) / max(arch.input_size)
        if policy.resize_size is not None:
            policy = dataclasses.replace(policy, resize_size=max(1, round(policy.resize_size * scale)))
    return _Plan(len(names), names, mean, std, input_size, policy)


def _limit_note(caps: settings.Limits) -> str:
    return " (a shared server's limit)" if caps.shared_server else ""


def parse_class_names(raw: str, label: str = "checkpoint") -> tuple[str, ...]:
    """A JSON list of class names, read one name at a time so a huge list is refused early."""
    caps = settings.limits()
    text = raw.strip() if isinstance(raw, str) else ""
    fix = "Write class_names as a JSON list of strings, e.g. [\"cat\", \"dog\"]."
    if not text.startswith("["):
        raise CheckpointError(f"{label}: its class_names metadata is not a JSON list of strings. {fix}")
    names: list[str] = []
    pos, end = 1, len(text)
    while True:
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos < end and text[pos] == "]" and not names:
            break
        if pos >= end or text[pos] != '"':
            raise CheckpointError(f"{label}: its class_names metadata holds something other than strings (at character {pos}). {fix}")
        try:
            name, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{label}: its class_names metadata is not valid JSON ({error.msg}). {fix}") from None
        if len(name) > caps.max_class_name_chars:
            raise CheckpointError(
                f"{label}: class name {len(names)} is {len(name):,} characters long; names up to "
                f"{caps.max_class_name_chars} characters are accepted. Shorten it."
            )
        if not name.strip():
            raise CheckpointError(f"{label}: class name {len(names)} is empty. Give every class a name.")
        names.append(name)
        if len(names) > caps.max_classes:
            raise CheckpointError(
                f"{label}: its class_names metadata lists more than {caps.max_classes:,} names; models with up to "
                f"{caps.max_classes:,} classes are loaded here. Nothing was allocated."
            )
        while pos < end and text[pos] in " \t\r\n":
            pos += 1
        if pos < end and text[pos] == ",":
            pos += 1
            continue
        if pos < end and text[pos] == "]":
            break
        raise CheckpointError(f"{label}: its class_names metadata is not valid JSON (expected , or ] at character {pos}). {fix}")
    if text[pos + 1:].strip():
        raise CheckpointError(f"{label}: its class_names metadata has text after the list. {fix}")
    if not names:
        raise CheckpointError(f"{label}: its class_names metadata is an empty list. {fix}")
    return tuple(names)


def _stats(checkpoint: Checkpoint, key: str, channels: int, label: str) -> tuple[float, ...] | None:
    value = checkpoint.json_field(key, max_chars=4096)
    if value is None:
        return None
    what = "the per-channel mean of the training images" if key == "mean" else "the per-channel standard deviation of the training images"
    example = "[0.5]" if channels == 1 else "[0.485, 0.456, 0.406]"
    noun = "number" if channels == 1 else "numbers"
    if not isinstance(value, list):
        found = f"the {type(value).__name__} {value!r}" if not isinstance(value, dict) else "a JSON object"
        raise CheckpointError(
            f"{label}: its {key} metadata must be a list of {channels} {noun} (one per input channel), "
            f"e.g. {example}; found {found}. {key} is {what}."
        )
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise CheckpointError(
            f"{label}: its {key} metadata must hold numbers only, e.g. {example}; found {bad[0]!r}. {key} is {what}."
        )
    if len(value) != channels:
        raise CheckpointError(
            f"{label}: its {key} metadata lists {len(value)} numbers, but this architecture takes "
            f"{channels} input channel{'s' if channels > 1 else ''}: give one number per channel, e.g. {example}."
        )
    values = tuple(float(v) for v in value)
    _check_finite_stats(values, key, label)
    return values


def _check_finite_stats(values: Sequence[float], key: str, label: str) -> None:
    if not all(math.isfinite(v) for v in values):
        raise CheckpointError(
            f"{label}: its {key} metadata holds a value that is not a finite number ({list(values)}): every "
            f"prediction would be NaN. Fix the file's {key}."
        )
    if key == "std" and any(v <= 0 for v in values):
        raise CheckpointError(
            f"{label}: its std metadata must be positive in every channel (found {list(values)}): inputs are "
            "divided by it. Fix the file's std."
        )


def _input_size(checkpoint: Checkpoint, arch: Architecture, label: str) -> tuple[int, int]:
    value = checkpoint.json_field("input_size", max_chars=256)
    if value is None:
        return arch.input_size
    caps = settings.limits()
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise CheckpointError(
            f"{label}: its input_size metadata must be [height, width] in pixels, e.g. "
            f"{list(arch.input_size)}; found {value!r}."
        )
    if not all(1 <= v <= caps.max_input_side for v in value):
        raise CheckpointError(
            f"{label}: its input_size {value} is out of range: each side must be between 1 and "
            f"{caps.max_input_side} pixels."
        )
    return (value[0], value[1])


def _check_input_fits(net: nn.Module, channels: int, size: tuple[int, int], arch: Architecture, label: str) -> None:
    """A forward pass on the meta device: refuses an input size the network cannot take."""
    try:
        with torch.no_grad():
            net(torch.empty(1, channels, *size, device="meta"))
    except (RuntimeError, ValueError) as error:
        reason = str(error).splitlines()[0][:200]
        raise CheckpointError(
            f"{label}: its input_size {size[0]}×{size[1]} is too small for {arch.name} ({reason}). "
            f"Use at least the architecture's own size, {arch.input_size[0]}×{arch.input_size[1]}."
        ) from None


def _body_fits(state: dict[str, torch.Tensor], arch: Architecture) -> bool:
    """True when every tensor but the output layer's has the architecture's name and shape."""
    remap = arch.key_remap
    head = {key for key, _ in _head_keys(arch.name)}
    found = {(remap(k) if remap else k): tuple(v.shape) for k, v in state.items()}
    expected = _meta_shapes(arch.name)
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    for key, shape in expected.items():
        if key in head or (key in optional and key not in found):
            continue
        if found.get(key) != shape:
            return False
    return all(key in expected for key in found)


def _output_count(state: dict[str, torch.Tensor], arch: Architecture) -> tuple[int | None, tuple[str, tuple[int, ...]] | None]:
    """How many classes the checkpoint's output layer has, and (key, shape) of the tensor that says
    so; (None, None) when its head is not found."""
    remap = arch.key_remap
    found = {(remap(k) if remap else k): v for k, v in state.items()}
    for key, dim in _head_keys(arch.name):
        if key in found and found[key].dim() > dim:
            return int(found[key].shape[dim]), (key, tuple(found[key].shape))
    return None, None


@cache
def _head_keys(arch_name: str) -> tuple[tuple[str, int], ...]:
    """State keys whose shape follows the class count, with the dimension that does (meta builds)."""
    arch = get_architecture(arch_name)
    k = len(arch.class_names)
    with torch.device("meta"):
        a, b = arch.build(k).state_dict(), arch.build(k + 1).state_dict()
    keys = []
    for key, tensor in a.items():
        if key in b and tuple(b[key].shape) != tuple(tensor.shape):
            dim = next(i for i, (x, y) in enumerate(zip(tensor.shape, b[key].shape)) if x != y)
            keys.append((key, dim))
    return tuple(keys)


def _parameter_count(arch_name: str) -> int:
    return sum(math.prod(s) for k, s in _meta_shapes(arch_name).items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))


def _from_checkpoint(
    checkpoint: Checkpoint, arch: Architecture, name: str, source: str, description: str = "", card: dict | None = None
) -> PixelModel:
    """Check ``checkpoint`` (inspected: meta tensors) against ``arch``, then read and load it."""
    label = Path(source).name
    plan = _plan(checkpoint, arch, label)
    checkpoint = load_tensors(checkpoint)
    state, extras = normalise_keys(checkpoint.state)
    mean, std = plan.mean, plan.std
    for key in ("mean", "std"):
        if (mean if key == "mean" else std) is None and key in extras:
            values = tuple(float(v) for v in extras[key].tolist())
            if len(values) != len(arch.mean):
                raise CheckpointError(
                    f"{label}: its normalize.{key} has {len(values)} channels but {arch.name} takes {len(arch.mean)}"
                )
            _check_finite_stats(values, key, label)
            mean, std = (values, std) if key == "mean" else (mean, values)
    net = arch.build(plan.num_classes)
    apply_state(net, state, f"{label} (for {arch.name})", remap=arch.key_remap)
    meta = ModelMeta(name=name, architecture=arch.name, source=source, description=description, card=card or {})
    return PixelModel(net, mean or arch.mean, std or arch.std, plan.input_size, plan.class_names, meta, plan.image_policy)


@cache
def _meta_shapes(arch_name: str) -> dict[str, tuple[int, ...]]:
    """An architecture's state-dict shapes, built on the meta device (no memory, no init cost)."""
    arch = get_architecture(arch_name)
    with torch.device("meta"):
        net = arch.build(len(arch.class_names))
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def infer_architecture(checkpoint: Checkpoint) -> str:
    """The one registered architecture whose keys and shapes the checkpoint fits exactly."""
    state, _ = normalise_keys(checkpoint.state)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    fits, scores = [], []
    for arch_name in list_architectures():
        expected = _meta_shapes(arch_name)
        remap = get_architecture(arch_name).key_remap
        found = {(remap(k) if remap else k): s for k, s in shapes.items()}
        if found == expected:
            fits.append(arch_name)
        common = sum(1 for k, s in found.items() if expected.get(k) == s)
        scores.append((common / max(len(expected), len(found)), arch_name))
    if len(fits) == 1:
        return fits[0]
    label = checkpoint.label
    hint = "Pick the architecture in the sidebar's Architecture box."
    if len(fits) > 1:
        raise CheckpointError(
            f"{label} fits several architectures ({', '.join(fits)}): choose which one it is for "
            "(the Architecture box in the sidebar; in Python, load_model(..., architecture=...)).",
            ui_hint=hint,
        )
    best_score, best = max(scores)
    if best_score == 0:
        raise CheckpointError(
            f"{label} is not a checkpoint for any architecture this tool knows: none of its {len(shapes)} "
            f"tensors has the name and shape of a tensor in {', '.join(list_architectures())}.",
            ui_hint="Upload a checkpoint of one of the listed architectures.",
        )
    raise CheckpointError(
        f"{label} matches no registered architecture exactly (closest: {best}, {best_score:.0%} of "
        f"its tensors agree). If it is a {best} checkpoint, choose {best} as its architecture (the "
        "Architecture box in the sidebar; in Python, architecture=...) to see which tensors differ.",
        ui_hint=f"Pick {best} in the sidebar's Architecture box to see which tensors differ.",
    )


def load_model(
    source: str | os.PathLike,
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = "default",
    architecture: str | None = None,
) -> PixelModel:
    """Load a model by registry name, source spec or checkpoint path, as a :class:`PixelModel`
    in eval mode (:func:`neuronviz.core.models.registry.create_model` with these arguments).

    Args:
        source: a listed model name (see :func:`list_models`), a source's spec
            (``timm:vit_tiny_patch16_224``), or a checkpoint path (``.safetensors``,
            ``.pt``/``.pth`` state dict).
        device: ``None`` picks CUDA when available, else CPU.
        weights: for a named model, ``"default"`` (the embedded file, or zoo/timm weights from
            the local cache: never downloaded here), ``None`` (random initialisation), or a path
            to a weights file for that architecture.
        architecture: for a checkpoint path, the registered architecture it is for; when omitted,
            taken from the file's metadata or inferred from its keys and shapes.

    Raises:
        ModelNotFoundError, CheckpointError, WeightsNotAvailableError, DeviceError.
    """
    options = {"architecture": architecture} if architecture else None
    return create_model(source, weights=weights, device=device, options=options)


def _check_parameter_cap(name: str, arch_name: str) -> None:
    caps = settings.limits()
    parameters = _parameter_count(arch_name)
    if parameters > caps.max_checkpoint_parameters:
        raise CheckpointError(
            f"{name} has {parameters:,} parameters; models up to {caps.max_checkpoint_parameters:,} are loaded "
            f"here{_limit_note(caps)}. Choose a smaller model."
        )


def _random_model(name: str, arch: Architecture, description: str) -> PixelModel:
    net = arch.build(len(arch.class_names))
    meta = ModelMeta(name=name, architecture=arch.name, source="random initialisation", description=description)
    return PixelModel(net, arch.mean, arch.std, arch.input_size, arch.class_names, meta, arch.image_policy)


def _from_file(name: str, arch: Architecture, path: Path, description: str, card: dict | None) -> PixelModel:
    checkpoint = inspect_checkpoint(path)
    if checkpoint.architecture and checkpoint.architecture != arch.name:
        raise CheckpointError(f"{path.name} is a checkpoint for {checkpoint.architecture}, not for {arch.name}")
    return _from_checkpoint(checkpoint, arch, name, str(path), description, card)


def _user_weights(weights: str | os.PathLike) -> Path:
    path = Path(weights)
    refuse_local_path(path)
    return path


def refuse_local_path(path: Path) -> None:
    """On a shared server, a model is read only from the dashboard's own upload folders."""
    if settings.shared_server() and not settings.is_upload_path(path):
        raise SharedServerError(
            f"this is a shared server ({settings.SHARED_SERVER_ENV}=1): models are not read from local paths "
            f"such as {path.name}. Upload the checkpoint instead.",
            ui_hint="Upload the checkpoint in the sidebar (Source: Your checkpoint).",
        )


def _load_path(path: Path, architecture: str | None) -> PixelModel:
    checkpoint = inspect_checkpoint(path)
    declared = checkpoint.architecture
    if architecture and declared and architecture != declared:
        raise CheckpointError(f"{path.name} declares architecture {declared!r}, but {architecture!r} was requested")
    arch_name = architecture or declared or infer_architecture(checkpoint)
    if not architecture and arch_name not in list_architectures():
        raise CheckpointError(
            f"{path.name} declares architecture {arch_name!r}, which this tool does not know; "
            f"registered: {', '.join(list_architectures())}.",
            ui_hint="Pick the architecture in the sidebar's Architecture box.",
        )
    arch = get_architecture(arch_name)
    return _from_checkpoint(checkpoint, arch, path.stem, str(path), f"{arch_name} from {path.name}")


# -- the architectures checkpoints can be for ------------------------------------------------------

for _arch_name, _build in _DIGITS_ARCHITECTURES.items():
    register_architecture(_arch_name, functools.partial(_digits_architecture, _arch_name, _build))
for _zoo_name in zoo.ZOO:
    register_architecture(_zoo_name, functools.partial(_zoo_architecture, _zoo_name))


# -- the built-in sources --------------------------------------------------------------------------


class EmbeddedSource(ModelSource):
    """The digits models shipped in ``assets/models/`` (offline, with model cards)."""

    name = "embedded"
    label = "embedded"
    weights_word = "embedded weights"

    def owns(self, spec: str) -> bool:
        return spec in EMBEDDED

    def list_models(self) -> list[ModelInfo]:
        infos = []
        for name, (arch_name, description) in EMBEDDED.items():
            arch = get_architecture(arch_name)
            infos.append(
                ModelInfo(
                    name=name,
                    kind=self.name,
                    architecture=arch_name,
                    description=description,
                    channels=len(arch.mean),
                    input_size=arch.input_size,
                    num_classes=len(arch.class_names),
                    weights_available=embedded_path(name).is_file(),
                    card=model_card(name),
                )
            )
        return infos

    def picker_label(self, info: ModelInfo) -> str:
        return f"{info.name} · embedded" + ("" if info.weights_available else " (weights missing)")

    def load(
        self, spec: str, *, weights: str | os.PathLike | None = "default", options: Mapping[str, str] | None = None
    ) -> PixelModel:
        arch_name, description = EMBEDDED[spec]
        arch = get_architecture(arch_name)
        _check_parameter_cap(spec, arch_name)
        if weights is None:
            return _random_model(spec, arch, description)
        if weights != "default":
            return _from_file(spec, arch, _user_weights(weights), description, None)
        path = embedded_path(spec)
        if not path.is_file():
            raise CheckpointError(
                f"the embedded weights of {spec} are missing ({path}); rebuild them with "
                f"`python -m neuronviz train {spec}`"
            )
        return _from_file(spec, arch, path, description, model_card(spec))


class ZooSource(ModelSource):
    """torchvision's ImageNet classifiers; weights from the torch hub cache, fetched on request."""

    name = "zoo"
    label = "torchvision"
    offers_random = True
    fetch_label = "Download weights"

    def owns(self, spec: str) -> bool:
        return spec in zoo.ZOO

    def list_models(self) -> list[ModelInfo]:
        infos = []
        for name, description in zoo.ZOO.items():
            spec = zoo.zoo_spec(name)
            infos.append(
                ModelInfo(
                    name=name,
                    kind=self.name,
                    architecture=name,
                    description=description,
                    channels=3,
                    input_size=(spec.crop_size, spec.crop_size),
                    num_classes=len(spec.categories),
                    weights_available=zoo.weights_cached(name),
                )
            )
        return infos

    def picker_label(self, info: ModelInfo) -> str:
        return f"{info.name} · ImageNet, " + ("cached" if info.weights_available else "not cached")

    def load(
        self, spec: str, *, weights: str | os.PathLike | None = "default", options: Mapping[str, str] | None = None
    ) -> PixelModel:
        arch = get_architecture(spec)
        description = zoo.ZOO[spec]
        _check_parameter_cap(spec, spec)
        if weights is None:
            return _random_model(spec, arch, description)
        path = zoo.require_cached_weights(spec) if weights == "default" else _user_weights(weights)
        return _from_file(spec, arch, path, description, None)

    def fetch_weights(self, spec: str) -> Path:
        return zoo.download_weights(spec)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_+.-]+:(?![\\/])")  # "timm:x", not "C:\\x" or "./a:b"


class CheckpointSource(ModelSource):
    """A state dict or safetensors file for a registered architecture: a path, or an upload."""

    name = "checkpoint"
    label = "Your checkpoint"
    upload_suffixes = (".safetensors", ".pt", ".pth")
    upload_help = (
        "A state dict (.pt/.pth, read with weights_only=True) or a .safetensors file for a "
        "registered architecture. TorchScript archives are refused: loading them runs code."
    )

    def __init__(self) -> None:
        self.options = (
            OptionField(
                "architecture",
                "Architecture",
                "",
                help="The registered architecture the checkpoint is for; blank: from the file's metadata, "
                "or inferred from its keys and shapes.",
                choices=("", *list_architectures()),
            ),
        )

    def owns(self, spec: str) -> bool:
        if _SCHEME.match(spec):  # another source's spec ("timm:…", "local:…"), not a path
            return False
        path = Path(spec)
        return path.suffix.lower() in (".safetensors", *STATE_DICT_SUFFIXES) or path.exists()

    def load(
        self, spec: str, *, weights: str | os.PathLike | None = "default", options: Mapping[str, str] | None = None
    ) -> PixelModel:
        path = Path(spec)
        refuse_local_path(path)
        return _load_path(path, (options or {}).get("architecture") or None)

    def load_upload(self, path: Path, options: Mapping[str, str]) -> PixelModel:
        return self.load(str(path), options=options)


register_source(EmbeddedSource())
register_source(ZooSource())
register_source(CheckpointSource())
