"""The ``timm`` model source: any timm architecture by name, ``timm:<name>[?key=value&...]``.

- Architecture: ``timm.create_model(name, pretrained=False, **kwargs)``; the spec's query holds
  keyword arguments for small configurations (``timm:vit_tiny_patch16_224?img_size=32&depth=2``),
  numbers and booleans only, and never a keyword that reads a file or fetches weights.
- Size: the parameter count is taken on the ``meta`` device before anything is allocated, and
  checked against ``settings.limits().max_checkpoint_parameters``.
- Weights (``weights=``): ``"default"`` reads the model's pretrained file from the local Hugging
  Face cache only (``huggingface_hub.try_to_load_from_cache``, no network: the repository and
  file come from timm's ``pretrained_cfg``); :meth:`TimmSource.fetch_weights` downloads it on an
  explicit user action (the dashboard's "Fetch weights", ``python -m neuronviz download``);
  ``None`` is random initialisation; a path is a weights file the user has. Every file goes
  through :mod:`neuronviz.core.models.checkpoints` (safetensors, or ``torch.load(weights_only=True)``,
  structure checked before a byte of data is read), not through timm's own loader, which would
  unpickle ``.bin`` files without those checks.
- Input facts: timm's pretrained config (``timm.data.resolve_model_data_config``) gives mean,
  std, input size, interpolation and ``crop_pct``, which become the :class:`ImagePolicy`.
  ``fixed_input_size`` (the ViTs) makes the model take exactly its input size.
- Class names: ImageNet's (the torchvision zoo's categories, same order) for 1000 classes, else
  ``class i``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import torch
from torch import nn

from neuronviz.core.models import torchvision_zoo as zoo
from neuronviz.core.models.checkpoints import apply_state, inspect_checkpoint, load_tensors, normalise_keys
from neuronviz.core.models.pixel import ImagePolicy, ModelMeta, PixelModel
from neuronviz.core.models.registry import ModelInfo, ModelSource, OptionField, register_source
from neuronviz.core.models.standard_sources import refuse_local_path
from neuronviz.infra import settings
from neuronviz.infra.errors import (
    CheckpointError,
    DownloadError,
    InputError,
    ModelNotFoundError,
    SharedServerError,
    WeightsNotAvailableError,
)

PREFIX = "timm:"

#: What the picker lists (small, well-known, one per family); any other timm name is accepted.
CURATED: dict[str, str] = {
    "vit_tiny_patch16_224": "ViT-Tiny/16 (5.7 M parameters), ImageNet-1k",
    "deit_tiny_patch16_224": "DeiT-Tiny/16 (5.7 M), ImageNet-1k",
    "convnext_atto": "ConvNeXt-Atto (3.7 M), ImageNet-1k",
    "resnet18": "ResNet-18, timm's A1 recipe (11.7 M), ImageNet-1k",
    "efficientnet_b0": "EfficientNet-B0 (5.3 M), ImageNet-1k",
    "mobilenetv3_small_100": "MobileNet-V3 Small (2.5 M), ImageNet-1k",
}

#: Keyword arguments that read files, fetch weights or change what create_model returns.
_REFUSED_KWARGS = frozenset(
    {
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "checkpoint_path",
        "cache_dir",
        "features_only",
        "scriptable",
        "exportable",
        "no_jit",
        "pretrained_strict",
    }
)
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,120}")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
_IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class TimmSpec:
    """A parsed ``timm:`` spec: the model name (``arch`` or ``arch.tag``) and keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def spec(self) -> str:
        query = urlencode({k: _format_value(v) for k, v in self.kwargs.items()})
        return f"{PREFIX}{self.name}" + (f"?{query}" if query else "")


def parse_spec(spec: str) -> TimmSpec:
    """``"timm:vit_tiny_patch16_224?img_size=32&depth=2"`` → TimmSpec. Raises InputError."""
    if not spec.startswith(PREFIX):
        raise InputError(f"a timm spec starts with {PREFIX!r}, got {spec!r}")
    name, _, query = spec[len(PREFIX):].strip().partition("?")
    name = name.strip()
    if not name or not _NAME.fullmatch(name):
        raise InputError(f"{spec!r} does not name a timm model: write timm:<name>, e.g. timm:convnext_atto")
    kwargs: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if not _WORD.fullmatch(key):
            raise InputError(f"{spec!r}: {key!r} is not a keyword argument name")
        if key in _REFUSED_KWARGS:
            raise InputError(
                f"{spec!r}: the keyword {key!r} is not accepted here (weights come from the local cache or "
                "weights=<file>, never from create_model's own loaders)"
            )
        kwargs[key] = _parse_value(raw, key, spec)
    parsed = TimmSpec(name, kwargs)
    check_options(parsed)  # 24.21: every numeric option bounded before anything is built
    return parsed


# -- option bounds (issue 24.21): checked before a model is built, on the meta device or for real ----

#: Bounds of timm's numeric keyword arguments, ``name: (low, high, integer?, why)``; ``img_size``'s
#: upper bound is the input-side cap (``settings.limits().max_input_side``). Any other number must be
#: finite with magnitude at most :data:`MAX_OTHER_OPTION`. ``depth=20000`` built on the meta device
#: for > 180 s at 2-4.5 GB; ``num_heads=0``/``patch_size=0`` divided by zero; ``mlp_ratio=inf``
#: overflowed; ``img_size=4096`` took 50 s a forward.
OPTION_BOUNDS: dict[str, tuple[float, float, bool, str]] = {
    "depth": (1, 64, True, "the number of blocks; ViT-g has 40"),
    "num_heads": (1, 64, True, "attention heads"),
    "patch_size": (1, 64, True, "pixels a patch side"),
    "embed_dim": (8, 4096, True, "channels; ViT-g has 1,408"),
    "mlp_ratio": (0.25, 16, False, "× the embedding width"),
    "img_size": (8, 1024, True, "pixels a side"),
    "num_classes": (2, 100_000, True, "a classifier has at least 2 classes"),
    "in_chans": (1, 3, True, "input channels"),
    "window_size": (1, 64, True, "patches a window side"),
    "drop_rate": (0, 1, False, "a probability"),
    "drop_path_rate": (0, 1, False, "a probability"),
    "attn_drop_rate": (0, 1, False, "a probability"),
    "proj_drop_rate": (0, 1, False, "a probability"),
    "pos_drop_rate": (0, 1, False, "a probability"),
}
#: Largest magnitude of any other numeric option.
MAX_OTHER_OPTION = 4096
#: Most patch tokens, (img_size / patch_size)², a ViT-style option set may ask for: attention is
#: quadratic in them (224/16 = 196 tokens; 518/14 = 1,369). 1,024 on a shared server.
MAX_TOKENS = 4096
SHARED_MAX_TOKENS = 1024


def option_problem(key: str, value: Any) -> str | None:
    """Why the option ``key=value`` is refused (a sentence naming it and its bounds), or None."""
    if isinstance(value, bool) or isinstance(value, str):
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{key}={value!r} is not a finite number"
    bound = OPTION_BOUNDS.get(key)
    if bound is None:
        if abs(value) > MAX_OTHER_OPTION:
            return f"{key}={value!r}: numeric options are at most {MAX_OTHER_OPTION:,} in size here"
        return None
    low, high, integer, why = bound
    if key == "img_size":
        high = min(high, settings.limits().max_input_side)
    elif key == "num_classes":
        high = min(high, settings.limits().max_classes)
    if integer and value != int(value):
        return f"{key}={value!r} is not a whole number ({why})"
    if not low <= value <= high:
        note = " (a shared server's limit)" if key == "img_size" and settings.shared_server() else ""
        return f"{key}={value:g} is outside {low:g}..{high:g} ({why}){note}"
    return None


def check_options(spec: TimmSpec) -> None:
    """Refuse, with an :class:`InputError` naming the option, any keyword argument out of
    :data:`OPTION_BOUNDS` (or not finite), and a patch grid of more than :data:`MAX_TOKENS` tokens."""
    for key, value in spec.kwargs.items():
        problem = option_problem(key, value)
        if problem is not None:
            raise InputError(f"timm:{spec.name}: {problem}. Nothing was built.", ui_hint=f"Change or remove the {key} option.")
    img, patch = spec.kwargs.get("img_size", _default_side(spec.name)), spec.kwargs.get("patch_size")
    if isinstance(img, int) and isinstance(patch, int) and not isinstance(img, bool) and not isinstance(patch, bool):
        if patch > img:
            raise InputError(f"timm:{spec.name}: patch_size={patch} is larger than img_size={img}. Nothing was built.")
        tokens = (img // patch) ** 2
        most = SHARED_MAX_TOKENS if settings.shared_server() else MAX_TOKENS
        if tokens > most:
            raise InputError(
                f"timm:{spec.name}: img_size={img}{'' if 'img_size' in spec.kwargs else ' (its default)'} with "
                f"patch_size={patch} makes {tokens:,} patch tokens; up to {most:,} "
                "are allowed here (attention grows with their square). Nothing was built.",
                ui_hint="Raise patch_size or lower img_size.",
            )


def _default_side(name: str) -> int | None:
    """The input side timm's pretrained config gives ``name`` (None when it gives none)."""
    try:
        size = _pretrained_cfg(name).get("input_size")
    except Exception:  # noqa: BLE001 - an unknown name is refused later, by check_name
        return None
    return int(size[-1]) if size else None


def drop_bad_options(spec: str) -> tuple[str, list[str]]:
    """``spec`` without the keyword arguments :func:`parse_spec` would refuse (out of bounds, not a
    number or word, a refused keyword), and one message per dropped option: for a link, the rest of
    the link and the other options still apply."""
    if not spec.startswith(PREFIX) or "?" not in spec:
        return spec, []
    head, _, query = spec.partition("?")
    kept: list[tuple[str, str]] = []
    messages: list[str] = []
    for key, raw in parse_qsl(query, keep_blank_values=True):
        problem = None
        if not _WORD.fullmatch(key) or key in _REFUSED_KWARGS:
            problem = f"{key[:40]!r} is not an accepted keyword argument"
        else:
            try:
                problem = option_problem(key, _parse_value(raw, key, spec))
            except InputError as error:
                problem = str(error)
        if problem is None:
            kept.append((key, raw))
        else:
            messages.append(f"The model option {key[:40]}={raw[:40]!r} was not used ({problem}): timm's default is used instead.")
    rebuilt = head + (f"?{urlencode(kept)}" if kept else "")
    try:
        check_options(_unchecked(rebuilt))
    except InputError as error:  # a combination (the patch grid): drop img_size and patch_size together
        kept = [(k, v) for k, v in kept if k not in ("img_size", "patch_size")]
        messages.append(f"The model options img_size and patch_size were not used ({error}): timm's defaults are used instead.")
        rebuilt = head + (f"?{urlencode(kept)}" if kept else "")
    return rebuilt, messages


def _unchecked(spec: str) -> TimmSpec:
    name, _, query = spec[len(PREFIX):].partition("?")
    return TimmSpec(name.strip(), {k: _parse_value(v, k, spec) for k, v in parse_qsl(query, keep_blank_values=True)})


def _parse_value(raw: str, key: str, spec: str) -> Any:
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if _WORD.fullmatch(text):  # e.g. global_pool=avg, act_layer=gelu
        return text
    raise InputError(f"{spec!r}: {key}={raw!r} is not a number, true/false or a plain word")


def _format_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _timm():
    import timm

    return timm


def check_name(name: str) -> None:
    """Refuse a name timm does not know, listing the closest names it does."""
    timm = _timm()
    base = name.split(".")[0]
    if timm.is_model(name):
        try:
            _pretrained_cfg(name)
        except RuntimeError:  # a known architecture with an unknown pretrained tag
            tags = timm.list_pretrained(f"{base}.*")[:8]
            raise ModelNotFoundError(
                f"timm has no pretrained tag {name!r}. Tags of {base}: {', '.join(tags) or 'none'}.",
                ui_hint="Type the architecture's name alone, or one of its tags.",
            ) from None
        return
    pattern = [n for n in timm.list_models(f"*{base}*")][:8]
    close = pattern or difflib.get_close_matches(base, timm.list_models(), n=8, cutoff=0.6)
    hint = f" Close names: {', '.join(close)}." if close else " List names with timm.list_models('*vit*')."
    raise ModelNotFoundError(
        f"timm has no model {name!r}.{hint}",
        ui_hint="Type a timm model name, e.g. convnext_atto or vit_tiny_patch16_224.",
    )


@cache
def _pretrained_cfg(name: str) -> dict[str, Any]:
    """timm's pretrained config of ``name`` (``arch`` or ``arch.tag``), as a dict; no network."""
    timm = _timm()
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    return cfg.to_dict() if cfg is not None else {}


def _hf_location(name: str) -> tuple[str, str | None, tuple[str, ...]] | None:
    """(repository, revision, candidate files) of the pretrained weights on the Hugging Face Hub."""
    cfg = _pretrained_cfg(name)
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    repo, _, revision = str(hub_id).partition("@")
    filename = cfg.get("hf_hub_filename")
    return repo, revision or None, (str(filename),) if filename else _WEIGHT_FILES


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``), read at call time."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit)
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home) / "hub"


def cached_weights(name: str) -> Path | None:
    """The pretrained weights of ``name`` in the local Hugging Face cache, or None (no network)."""
    location = _hf_location(name)
    if location is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    repo, revision, files = location
    for filename in files:
        found = try_to_load_from_cache(repo, filename, cache_dir=str(hf_cache_dir()), revision=revision)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _hf_download(repo: str, filename: str, revision: str | None, cache_dir: str) -> str:
    """The network step (replaced in tests)."""
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, filename, revision=revision, cache_dir=cache_dir)


def fetch_weights(name: str) -> Path:
    """Download the pretrained weights of ``name`` into the Hugging Face cache (explicit action).

    Raises DownloadError (what failed), SharedServerError on a shared server,
    WeightsNotAvailableError when timm names no Hub file for it."""
    check_name(name)
    found = cached_weights(name)
    if found is not None:
        return found
    if settings.shared_server():
        raise SharedServerError(
            f"this is a shared server ({settings.SHARED_SERVER_ENV}=1): weights are not downloaded here. The "
            f"pretrained weights of timm:{name} are not in the server's cache; ask its operator to add them "
            f"(python -m neuronviz download timm:{name}), or use random initialisation.",
            ui_hint="Use random initialisation, or ask the server's operator to add these weights.",
        )
    location = _hf_location(name)
    if location is None:
        raise WeightsNotAvailableError(
            f"timm names no Hugging Face Hub file for the weights of {name}; use random initialisation "
            "or pass a weights file you have (weights=<path>)"
        )
    repo, revision, files = location
    errors = []
    for filename in files:
        try:
            return Path(_hf_download(repo, filename, revision, str(hf_cache_dir())))
        except Exception as error:  # noqa: BLE001 - huggingface_hub raises many kinds; all mean "not fetched"
            errors.append(f"{filename}: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}")
    raise DownloadError(
        f"could not fetch the weights of timm:{name} from the Hugging Face Hub ({repo}): {'; '.join(errors)}"
    )


def _build(spec: TimmSpec, meta: bool = False) -> nn.Module:
    timm = _timm()
    try:
        if meta:
            with torch.device("meta"):
                return timm.create_model(spec.name, pretrained=False, **spec.kwargs)
        return timm.create_model(spec.name, pretrained=False, **spec.kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as error:
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise InputError(f"timm could not build {spec.spec}: {reason}") from None


def count_parameters(spec: TimmSpec) -> int:
    """The model's parameter count, built on the meta device (nothing is allocated)."""
    return sum(p.numel() for p in _build(spec, meta=True).parameters())


def check_size(spec: TimmSpec) -> int:
    """Refuse a model above the parameter cap before building it for real. Returns the count."""
    caps = settings.limits()
    parameters = count_parameters(spec)
    if parameters > caps.max_checkpoint_parameters:
        note = " (a shared server's limit)" if caps.shared_server else ""
        raise CheckpointError(
            f"{spec.spec} has {parameters:,} parameters; models up to {caps.max_checkpoint_parameters:,} are "
            f"loaded here{note}. Nothing was allocated. Choose a smaller model."
        )
    return parameters


@dataclass(frozen=True)
class InputFacts:
    """What timm's pretrained config says about a model's input."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int]
    num_classes: int
    policy: ImagePolicy


def input_facts(spec: TimmSpec) -> InputFacts:
    """Mean, std, input size, class count and image policy from timm's pretrained config and the
    spec's keyword arguments (``img_size``, ``num_classes``, ``in_chans``)."""
    cfg = _pretrained_cfg(spec.name)
    data = _timm().data.resolve_data_config(pretrained_cfg=cfg, use_test_size=False)
    channels, height, width = (int(v) for v in data["input_size"])
    img_size = spec.kwargs.get("img_size")
    if isinstance(img_size, int) and not isinstance(img_size, bool):
        height = width = img_size
    mean = tuple(float(v) for v in data["mean"])
    std = tuple(float(v) for v in data["std"])
    in_chans = spec.kwargs.get("in_chans", channels)
    if in_chans == 1 and len(mean) == 3:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    elif in_chans not in (1, 3):
        raise InputError(f"{spec.spec}: in_chans={in_chans!r}; models with 1 or 3 input channels are loaded here")
    interpolation = str(data.get("interpolation", "bilinear"))
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bicubic"  # timm's "random" is a training-time choice; evaluation uses bicubic
    crop_pct = data.get("crop_pct")
    policy = ImagePolicy(
        mode="crop",
        interpolation=interpolation,
        crop_pct=float(crop_pct) if crop_pct else None,
        min_size=None if cfg.get("fixed_input_size", False) else 32,
    )
    num_classes = spec.kwargs.get("num_classes", cfg.get("num_classes", _IMAGENET_CLASSES))
    return InputFacts(mean, std, (height, width), int(num_classes), policy)


def class_names(count: int) -> tuple[str, ...]:
    """ImageNet's names for 1000 classes (timm and torchvision share the order), else ``class i``."""
    if count == _IMAGENET_CLASSES:
        return zoo.zoo_spec("resnet18").categories
    return tuple(f"class {i}" for i in range(count))


class TimmSource(ModelSource):
    """Any timm architecture by name (``timm:<name>``)."""

    name = "timm"
    label = "timm"
    offers_random = True
    fetch_label = "Fetch weights"
    spec_field = OptionField(
        "name",
        "timm model name",
        "convnext_atto",
        help="Any name timm.list_models() knows (optionally with a pretrained tag, e.g. "
        "vit_tiny_patch16_224.augreg_in21k_ft_in1k, and keyword arguments, e.g. ?img_size=32&depth=2). "
        "Weights come from the local Hugging Face cache only.",
    )

    def owns(self, spec: str) -> bool:
        return spec.startswith(PREFIX)

    def spec_from_text(self, text: str) -> str:
        text = text.strip()
        return text if text.startswith(PREFIX) else PREFIX + text

    def list_models(self) -> list[ModelInfo]:
        return [self._info(TimmSpec(name), description) for name, description in CURATED.items()]

    def info(self, spec: str) -> ModelInfo:
        parsed = parse_spec(spec)
        check_name(parsed.name)
        return self._info(parsed, CURATED.get(parsed.name, f"timm {parsed.name}"))

    def _info(self, spec: TimmSpec, description: str) -> ModelInfo:
        facts = input_facts(spec)
        return ModelInfo(
            name=spec.spec,
            kind=self.name,
            architecture=spec.name,
            description=description,
            channels=len(facts.mean),
            input_size=facts.input_size,
            num_classes=facts.num_classes,
            weights_available=not spec.kwargs and cached_weights(spec.name) is not None,
        )

    def picker_label(self, info: ModelInfo) -> str:
        return f"{info.name} · " + ("cached" if info.weights_available else "not cached")

    def load(
        self, spec: str, *, weights: str | os.PathLike | None = "default", options: Mapping[str, str] | None = None
    ) -> PixelModel:
        parsed = parse_spec(spec)
        check_name(parsed.name)
        facts = input_facts(parsed)
        caps = settings.limits()
        if facts.num_classes > caps.max_classes:
            raise CheckpointError(f"{parsed.spec} has {facts.num_classes:,} classes; up to {caps.max_classes:,} are loaded here")
        check_size(parsed)
        if weights == "default":
            path = cached_weights(parsed.name)
            if path is None:
                raise WeightsNotAvailableError(self._not_cached(parsed))
            source = f"Hugging Face cache ({path.name})"
        elif weights is None:
            path, source = None, "random initialisation"
        else:
            path = Path(weights)
            refuse_local_path(path)
            source = str(path)
        net = _build(parsed)
        if path is not None:
            checkpoint = inspect_checkpoint(path)
            apply_state(net, normalise_keys(checkpoint.state)[0], f"{path.name} (for {parsed.spec})", check_only=True)
            state, _ = normalise_keys(load_tensors(checkpoint).state)
            apply_state(net, state, f"{path.name} (for {parsed.spec})")
        meta = ModelMeta(
            name=parsed.spec, architecture=parsed.name, source=source, description=CURATED.get(parsed.name, f"timm {parsed.name}")
        )
        return PixelModel(net, facts.mean, facts.std, facts.input_size, class_names(facts.num_classes), meta, facts.policy)

    def _not_cached(self, spec: TimmSpec) -> str:
        location = _hf_location(spec.name)
        where = f"{location[0]} in the Hugging Face cache ({hf_cache_dir()})" if location else "any cache"
        if settings.shared_server():
            return (
                f"pretrained weights for {spec.spec} are not in this shared server's cache ({where}) and are not "
                "downloaded here; use random initialisation, or ask the server's operator to add them."
            )
        return (
            f"pretrained weights for {spec.spec} are not in the local cache ({where}). Fetch them once with "
            f"the dashboard's 'Fetch weights' button or `python -m neuronviz download {spec.spec}`, pass a "
            "weights file you have with weights=<path>, or use weights=None for random initialisation."
        )

    def fetch_weights(self, spec: str) -> Path:
        return fetch_weights(parse_spec(spec).name)


register_source(TimmSource())
