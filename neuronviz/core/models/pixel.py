"""PixelModel: a classifier that takes pixels in [0, 1] and carries what the dashboard needs.

Contract (the whole project relies on it):

- input ``(N, C, H, W)`` floating tensor with values in [0, 1], ``C == model.channels``;
- output logits ``(N, K)`` with ``K == len(model.class_names)``;
- mean/std normalisation is a module *inside* the model, so attacks, defences and figures all
  work in pixel space;
- the model is in eval mode and its parameters do not require gradients (influence needs
  gradients with respect to activations and inputs only; shared parameters never collect
  ``.grad``);
- ``model.lock`` (a re-entrant lock) is held by every library call that registers hooks, runs
  an attack or otherwise touches the model, because Streamlit hands one cached object to every
  session thread;
- ``model.content_hash`` identifies architecture, normalisation and every weight byte, so it can
  key caches.

Layer names are the qualified names of ``model.net.named_modules()`` (``"features.0"``,
``"layer4.1.conv2"``, ``"fc"``): the wrapper adds nothing to them.
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from neuronviz.infra import budget
from neuronviz.infra.digest import state_digest
from neuronviz.infra.errors import InputError


@dataclass(frozen=True)
class ImagePolicy:
    """How an arbitrary image is brought to the model's input (see ``neuronviz.data.images``).

    ``mode="crop"``: resize the shorter side to ``resize_size`` then centre-crop to the input size
    (torchvision's ImageNet evaluation recipe). ``mode="pad"``: pad to a square with the
    background colour, then resize to the input size, so the whole object stays visible (the
    digits models). ``invert_light_background``: for models trained on light ink on a dark
    background, invert an image whose border is mostly light. ``min_size``: ``None`` when the
    model takes exactly its input size (library calls refuse any other spatial size); an int when
    the network pools adaptively and accepts any size from ``min_size`` up (the torchvision
    classifiers: 32).

    ``interpolation``: the resampling of every resize, ``"bilinear"`` (antialiased; torchvision's
    zoo and the digits), ``"bicubic"`` (antialiased; most timm models) or ``"nearest"``.
    ``crop_pct``: timm's crop fraction: with ``mode="crop"`` and no ``resize_size``, the shorter
    side is resized to ``floor(input side / crop_pct)`` before the centre crop (timm's
    ``transforms_factory``: vit_tiny_patch16_224, crop_pct 0.9: 248 then 224).
    """

    mode: str = "crop"
    resize_size: int | None = None
    invert_light_background: bool = False
    min_size: int | None = None
    interpolation: str = "bilinear"
    crop_pct: float | None = None

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"interpolation must be one of {list(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.crop_pct is not None and not (0.0 < self.crop_pct <= 1.0):
            raise InputError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")

    def resize_target(self, input_size: tuple[int, int]) -> int:
        """The shorter side an image is resized to before the centre crop (``mode="crop"``)."""
        if self.resize_size is not None:
            return self.resize_size
        side = max(input_size)
        if self.crop_pct is not None:
            return int(math.floor(side / self.crop_pct))
        return side


#: The resampling modes an :class:`ImagePolicy` may name.
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std stored as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise InputError(f"mean has {len(mean)} values but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise InputError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class ModelMeta:
    """Descriptive facts about a loaded model (shown in the UI, stored in exports)."""

    name: str
    architecture: str
    source: str = ""
    description: str = ""
    card: dict = field(default_factory=dict, compare=False, hash=False)
    #: Where each input fact came from (:class:`neuronviz.core.models.facts.ModelFacts`); None: the
    #: values were given to the constructor (origin ``user``).
    facts: Any = field(default=None, compare=False, hash=False)


class PixelModel(nn.Module):
    """A classifier on [0, 1] pixels: ``Normalize`` then the wrapped network.

    Build one with :func:`neuronviz.core.models.wrap_model` or :func:`neuronviz.core.models.load_model`.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        input_size: tuple[int, int],
        class_names: Sequence[str],
        meta: ModelMeta,
        image_policy: ImagePolicy | None = None,
    ) -> None:
        super().__init__()
        if len(mean) not in (1, 3):
            raise InputError(f"mean/std must have 1 or 3 channels, got {len(mean)}")
        height, width = (int(v) for v in input_size)
        if height <= 0 or width <= 0:
            raise InputError(f"input_size must be positive, got {input_size}")
        if not class_names:
            raise InputError("class_names must not be empty")
        self.normalize = Normalize(mean, std)
        self.net = net
        self.input_size: tuple[int, int] = (height, width)
        self.channels: int = len(mean)
        self.class_names: tuple[str, ...] = tuple(str(c) for c in class_names)
        self.meta = meta
        self.image_policy = image_policy or ImagePolicy(mode="crop", resize_size=max(height, width))
        self.lock = threading.RLock()
        self.eval()
        self.requires_grad_(False)

    # -- the contract -------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise InputError(
                f"{self.meta.name} expects (N, {self.channels}, H, W) pixels, got shape {tuple(x.shape)}"
            )
        budget.check()  # stops every attack, defence and influence pass at its budget or cancel
        return self.net(self.normalize(x))

    def check_pixels(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Validate a pixel batch at a library boundary; return it on the model's device.

        Raises :class:`InputError` naming the broken rule: not a tensor, not 4-D, wrong channel
        count, not floating point, values outside [0, 1] or not finite.
        """
        if not isinstance(x, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise InputError(f"{name} must be (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise InputError(f"{name} is an empty batch")
        if x.shape[1] != self.channels:
            raise InputError(f"{name} has {x.shape[1]} channels; {self.meta.name} takes {self.channels}")
        self.check_size(x, name)
        if not x.is_floating_point():
            raise InputError(f"{name} must be floating point in [0, 1], got {x.dtype}")
        low, high = (float(v) for v in torch.aminmax(x))  # one pass; NaN propagates, ±inf is an extreme
        if not (math.isfinite(low) and math.isfinite(high)):
            raise InputError(f"{name} contains NaN or infinite values")
        if low < 0.0 or high > 1.0:
            raise InputError(f"{name} must be pixels in [0, 1], got values in [{low:.4g}, {high:.4g}]")
        return x.to(self.device, torch.float32)

    def check_size(self, x: torch.Tensor, name: str = "x") -> None:
        """Refuse a spatial size the model cannot take (:attr:`ImagePolicy.min_size`): any size but
        :attr:`input_size` for a fixed-size model, a side below ``min_size`` for the others."""
        height, width = int(x.shape[-2]), int(x.shape[-1])
        expected = f"{self.input_size[0]}×{self.input_size[1]}"
        hint = "load images with neuronviz.data.images.load_image, which resizes them to the model's input"
        minimum = self.image_policy.min_size
        if minimum is None:
            if (height, width) != self.input_size:
                raise InputError(
                    f"{name} is {height}×{width} pixels; {self.meta.name} takes exactly {expected} "
                    f"(the size it was trained at): {hint}"
                )
        elif height < minimum or width < minimum:
            raise InputError(
                f"{name} is {height}×{width} pixels; {self.meta.name} needs at least {minimum}×{minimum} "
                f"(its input size is {expected}): {hint}"
            )

    def check_classes(self, classes, n: int, name: str = "target") -> torch.Tensor:
        """Validate class indices for ``n`` images: an int (broadcast), a sequence or a tensor.

        Returns an int64 CPU tensor ``(n,)``; raises :class:`InputError` for a wrong count or a
        class outside ``0..num_classes-1``.
        """
        if type(classes) is torch.Tensor and classes.dtype == torch.int64 and classes.dim() == 1 and classes.shape[0] == n:
            low, high = (int(v) for v in torch.aminmax(classes))  # the common case, one pass
            if 0 <= low and high < self.num_classes:
                return classes.detach().cpu()
        if isinstance(classes, bool) or isinstance(classes, (str, bytes)):
            raise InputError(f"{name} must be class indices, got {classes!r}")
        try:
            tensor = torch.as_tensor(classes).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"{name} must be class indices, got {classes!r}") from None
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise InputError(f"{name} must be integer class indices, got {tensor.dtype}")
        tensor = tensor.long().flatten()
        if tensor.numel() == 1:
            tensor = tensor.expand(n).clone()
        if tensor.shape[0] != n:
            raise InputError(f"{name} has {tensor.shape[0]} classes for {n} images")
        bad = tensor[(tensor < 0) | (tensor >= self.num_classes)]
        if bad.numel():
            raise InputError(f"{name} class {int(bad[0])} is outside the model's classes 0..{self.num_classes - 1}")
        return tensor

    # -- facts --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def facts(self):
        """Mean, std, input size, channels and class names, each with its origin
        (:class:`neuronviz.core.models.facts.ModelFacts`). The values are always the model's own; the
        origins are those its loader recorded (``user`` when none did: the values were given to
        ``wrap_model`` / ``PixelModel``)."""
        from neuronviz.core.models import facts as _facts

        actual = {
            "mean": tuple(float(v) for v in self.normalize.mean.flatten().tolist()),
            "std": tuple(float(v) for v in self.normalize.std.flatten().tolist()),
            "input_size": self.input_size,
            "channels": self.channels,
            "class_names": self.class_names,
        }
        recorded = self.meta.facts
        return _facts.ModelFacts(
            tuple(
                _facts.Fact(name, actual[name], recorded[name].origin, recorded[name].detail)
                if recorded is not None
                else _facts.Fact(name, actual[name], "user", "given to wrap_model / PixelModel")
                for name in _facts.FACT_NAMES
            )
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        return self.normalize.mean.device

    @property
    def content_hash(self) -> str:
        """SHA-256 of the architecture, normalisation, input size and every parameter/buffer.

        Cached, and computed again when any parameter or buffer was changed in place since
        (tensors count their in-place changes in ``_version``), so a cache keyed by it never
        serves results of weights that are gone."""
        state = self.state_dict(keep_vars=True)
        stamp = tuple((k, id(v), v._version) for k, v in state.items())
        cached = self.__dict__.get("_content_hash")
        if cached is not None and cached[0] == stamp:
            return cached[1]
        digest = state_digest(
            {k: v.detach() for k, v in state.items()},
            extra=(self.meta.architecture, str(self.input_size), ",".join(self.class_names)),
        )
        self.__dict__["_content_hash"] = (stamp, digest)
        return digest

    def layer(self, name: str) -> nn.Module:
        """The sub-module of ``net`` with that qualified name (``""`` is the whole net)."""
        return self.layers([name])[0]

    def layers(self, names: Sequence[str]) -> list[nn.Module]:
        """The sub-modules of ``net`` with these qualified names (one walk over the modules)."""
        modules = dict(self.net.named_modules())
        for name in names:
            if not isinstance(name, str) or name not in modules:
                close = [n for n in modules if n and isinstance(name, str) and (name in n or n in name)][:5]
                hint = f"; close names: {close}" if close else ""
                raise InputError(f"{self.meta.name} has no layer {name!r}{hint}")
        return [modules[name] for name in names]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted class and softmax probabilities ``(N,), (N, K)`` for a pixel batch."""
        x = self.check_pixels(x)
        with self.lock:
            probs = torch.cat([self(x[i : i + batch_size]).softmax(dim=1) for i in range(0, len(x), batch_size)])
        return probs.argmax(dim=1).cpu(), probs.cpu()

    # -- copies -------------------------------------------------------------------------------

    def copy(self) -> PixelModel:
        """An independent deep copy with its own lock (for changes that must not touch this one)."""
        with self.lock:
            twin = PixelModel(
                copy.deepcopy(self.net),
                self.normalize.mean.flatten().tolist(),
                self.normalize.std.flatten().tolist(),
                self.input_size,
                self.class_names,
                self.meta,
                self.image_policy,
            )
        return twin.to(self.device)

    def __deepcopy__(self, memo: dict) -> PixelModel:
        return self.copy()

    def __reduce__(self):  # a lock cannot be pickled, and models are shared, not shipped
        raise TypeError("PixelModel is not picklable; save its state_dict() instead")

    def extra_repr(self) -> str:
        return (
            f"name={self.meta.name!r}, input=({self.channels}, {self.input_size[0]}, {self.input_size[1]}), "
            f"classes={self.num_classes}"
        )


def require_pixel_model(model, what: str) -> PixelModel:
    """``model`` itself when it is a :class:`PixelModel`; else a precise :class:`InputError`
    (a TypeError too): a bare ``nn.Module`` lacks the normalisation, classes and lock the library
    relies on."""
    if isinstance(model, PixelModel):
        return model
    if isinstance(model, nn.Module):
        raise ModelTypeError(
            f"{what} needs a neuronviz PixelModel, got a bare {type(model).__name__} (torch.nn.Module): "
            "wrap it with neuronviz.core.models.wrap_model(module, mean, std, input_size, class_names) "
            "or load one with neuronviz.core.models.load_model"
        )
    raise ModelTypeError(f"{what} needs a neuronviz PixelModel as its model, got {type(model).__name__}")


class ModelTypeError(InputError, TypeError):
    """The object given as the model is not a :class:`PixelModel`."""
