"""The model registry: one place that knows every architecture and every named model.

Three kinds of source reach :func:`load_model`:

- an **embedded** model (``digits-cnn``, ``digits-resnet``, ``digits-cnn-robust``): a small
  ``.safetensors`` file in ``assets/models/`` with a JSON model card, trained by
  ``python -m neuronviz train <name>``;
- a **zoo** model (``resnet18``, ``vgg19``, ...): torchvision's architecture, with weights from the
  local torch hub cache (``weights="default"``), random initialisation (``weights=None``) or a file
  the user has (``weights=<path>``);
- a **checkpoint path**: a ``.safetensors`` or ``.pt``/``.pth`` state dict for a registered
  architecture, named by ``architecture=``, by the file's metadata, or inferred from its keys
  and shapes when exactly one registered architecture fits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from neuronviz.datasets import DIGITS_CLASSES, DIGITS_SIZE
from neuronviz.errors import CheckpointError, DeviceError, InputError, ModelNotFoundError
from neuronviz.models import torchvision_zoo as zoo
from neuronviz.models.builtin import DigitsCNN, DigitsResNet
from neuronviz.models.checkpoints import (
    STATE_DICT_SUFFIXES,
    Checkpoint,
    apply_state,
    normalise_keys,
    read_checkpoint,
)
from neuronviz.models.pixel import ImagePolicy, ModelMeta, PixelModel

#: Mean and std of the digits training split (1×28×28, see ``neuronviz.datasets``); used for a
#: randomly initialised digits architecture. Trained checkpoints carry their own.
DIGITS_MEAN = (0.3054,)
DIGITS_STD = (0.3247,)
DIGITS_POLICY = ImagePolicy(mode="pad", resize_size=DIGITS_SIZE, invert_light_background=True)


def assets_dir() -> Path:
    """The embedded assets folder (``$NEURONVIZ_ASSETS`` overrides, for tests and deployments)."""
    override = os.environ.get("NEURONVIZ_ASSETS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "assets"


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


@dataclass(frozen=True)
class ModelInfo:
    """A named model as the registry lists it (for the UI's model picker and the CLI)."""

    name: str
    kind: str  # "embedded" or "zoo"
    architecture: str
    description: str
    channels: int
    input_size: tuple[int, int]
    num_classes: int
    weights_available: bool
    card: dict | None = None


def _zoo_architecture(name: str) -> Architecture:
    spec = zoo.zoo_spec(name)
    return Architecture(
        name=name,
        build=lambda k, _n=name: _build_zoo(_n, k),
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
}

#: Embedded models: name → (architecture, description).
EMBEDDED: dict[str, tuple[str, str]] = {
    "digits-cnn": ("digits-cnn", "Small CNN on 28×28 handwritten digits (the default)"),
    "digits-resnet": ("digits-resnet", "Small ResNet with batch norm on 28×28 digits"),
    "digits-cnn-robust": ("digits-cnn", "The digits CNN adversarially trained with PGD (L∞)"),
    "digits-cnn-sns": ("digits-cnn", "The digits CNN fine-tuned with SNS: sensitive neurons stabilised (reconstruction)"),
}


def list_architectures() -> list[str]:
    return [*_DIGITS_ARCHITECTURES, *zoo.ZOO]


def get_architecture(name: str) -> Architecture:
    if name in _DIGITS_ARCHITECTURES:
        return _digits_architecture(name, _DIGITS_ARCHITECTURES[name])
    if name in zoo.ZOO:
        return _zoo_architecture(name)
    raise ModelNotFoundError(f"unknown architecture {name!r}; registered: {list_architectures()}")


def embedded_path(name: str) -> Path:
    return assets_dir() / "models" / f"{name}.safetensors"


def model_card(name: str) -> dict | None:
    """The JSON model card of an embedded model, or None when it has none."""
    path = assets_dir() / "models" / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def list_models() -> list[ModelInfo]:
    """Every named model: the embedded ones first (offline), then the torchvision zoo."""
    infos = []
    for name, (arch_name, description) in EMBEDDED.items():
        arch = get_architecture(arch_name)
        infos.append(
            ModelInfo(
                name=name,
                kind="embedded",
                architecture=arch_name,
                description=description,
                channels=len(arch.mean),
                input_size=arch.input_size,
                num_classes=len(arch.class_names),
                weights_available=embedded_path(name).is_file(),
                card=model_card(name),
            )
        )
    for name, description in zoo.ZOO.items():
        spec = zoo.zoo_spec(name)
        infos.append(
            ModelInfo(
                name=name,
                kind="zoo",
                architecture=name,
                description=description,
                channels=3,
                input_size=(spec.crop_size, spec.crop_size),
                num_classes=len(spec.categories),
                weights_available=zoo.weights_cached(name),
            )
        )
    return infos


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU; a named device must exist here."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(f"not a device: {device!r} ({error})") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA was requested but no CUDA GPU is available here; use device='cpu'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"{resolved} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif resolved.type != "cpu":
        raise DeviceError(f"device type {resolved.type!r} is not supported; use 'cpu' or 'cuda'")
    return resolved


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


def _from_checkpoint(
    checkpoint: Checkpoint, arch: Architecture, name: str, source: str, description: str = "", card: dict | None = None
) -> PixelModel:
    state, extras = normalise_keys(checkpoint.state)
    class_names = checkpoint.json_field("class_names") or list(arch.class_names)
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names) or not class_names:
        raise CheckpointError(f"{source}: metadata class_names must be a non-empty list of strings")
    mean = checkpoint.json_field("mean") or extras.get("mean") or list(arch.mean)
    std = checkpoint.json_field("std") or extras.get("std") or list(arch.std)
    if len(mean) != len(arch.mean) or len(std) != len(arch.std):
        raise CheckpointError(f"{source}: mean/std have {len(mean)}/{len(std)} channels; {arch.name} takes {len(arch.mean)}")
    net = arch.build(len(class_names))
    apply_state(net, state, f"{Path(source).name} (for {arch.name})", remap=arch.key_remap)
    meta = ModelMeta(name=name, architecture=arch.name, source=source, description=description, card=card or {})
    return PixelModel(net, mean, std, arch.input_size, class_names, meta, arch.image_policy)


@lru_cache(maxsize=None)
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
    label = checkpoint.path.name if checkpoint.path else "checkpoint"
    if len(fits) > 1:
        raise CheckpointError(f"{label} fits several architectures {fits}; name one with architecture=")
    best_score, best = max(scores)
    raise CheckpointError(
        f"{label} matches no registered architecture exactly (closest: {best}, {best_score:.0%} of "
        f"tensors agree). Registered: {list_architectures()}. Name one with architecture= to see "
        "which keys differ."
    )


def load_model(
    source: str | os.PathLike,
    device: str | torch.device | None = None,
    weights: str | os.PathLike | None = "default",
    architecture: str | None = None,
) -> PixelModel:
    """Load a model by registry name or checkpoint path, as a :class:`PixelModel` in eval mode.

    Args:
        source: an embedded or zoo model name (see :func:`list_models`), or a checkpoint path
            (``.safetensors``, ``.pt``/``.pth`` state dict).
        device: ``None`` picks CUDA when available, else CPU.
        weights: for a named model, ``"default"`` (the embedded file, or zoo weights from the torch
            hub cache: never downloaded here), ``None`` (random initialisation), or a path to a
            weights file for that architecture.
        architecture: for a checkpoint path, the registered architecture it is for; when omitted,
            taken from the file's metadata or inferred from its keys and shapes.

    Raises:
        ModelNotFoundError, CheckpointError, WeightsNotAvailableError, DeviceError.
    """
    target = resolve_device(device)
    name = os.fspath(source) if isinstance(source, os.PathLike) else source
    if not isinstance(name, str) or not name:
        raise InputError(f"source must be a model name or a checkpoint path, got {source!r}")
    if name in EMBEDDED or name in zoo.ZOO:
        model = _load_named(name, weights)
    elif Path(name).exists() or Path(name).suffix.lower() in (".safetensors", *STATE_DICT_SUFFIXES):
        model = _load_path(Path(name), architecture)
    else:
        raise ModelNotFoundError(
            f"no model named {name!r} and no such checkpoint file. Models: "
            f"{[*EMBEDDED, *zoo.ZOO]}"
        )
    return model.to(target)


def _load_named(name: str, weights: str | os.PathLike | None) -> PixelModel:
    if name in EMBEDDED:
        arch_name, description = EMBEDDED[name]
    else:
        arch_name, description = name, zoo.ZOO[name]
    arch = get_architecture(arch_name)
    if weights is None:
        net = arch.build(len(arch.class_names))
        meta = ModelMeta(name=name, architecture=arch_name, source="random initialisation", description=description)
        return PixelModel(net, arch.mean, arch.std, arch.input_size, arch.class_names, meta, arch.image_policy)
    if weights == "default":
        if name in EMBEDDED:
            path = embedded_path(name)
            if not path.is_file():
                raise CheckpointError(
                    f"the embedded weights of {name} are missing ({path}); rebuild them with "
                    f"`python -m neuronviz train {name}`"
                )
            card = model_card(name)
        else:
            path = zoo.require_cached_weights(name)
            card = None
    else:
        path, card = Path(weights), None
    checkpoint = read_checkpoint(path)
    if checkpoint.architecture and checkpoint.architecture != arch_name:
        raise CheckpointError(f"{path.name} is a checkpoint for {checkpoint.architecture}, not for {arch_name}")
    return _from_checkpoint(checkpoint, arch, name, str(path), description, card)


def _load_path(path: Path, architecture: str | None) -> PixelModel:
    checkpoint = read_checkpoint(path)
    declared = checkpoint.architecture
    if architecture and declared and architecture != declared:
        raise CheckpointError(f"{path.name} declares architecture {declared!r}, but {architecture!r} was requested")
    arch_name = architecture or declared or infer_architecture(checkpoint)
    arch = get_architecture(arch_name)
    return _from_checkpoint(checkpoint, arch, path.stem, str(path), f"{arch_name} from {path.name}")
