"""Model sources: one registry entry per place a model comes from, one factory for all of them.

A *source* knows its specs (``digits-cnn``, ``resnet18``, ``timm:vit_tiny_patch16_224``, a
checkpoint path, ``local:<name>``...), what its picker lists, how to load a spec and, when it
takes uploads, how to load an uploaded file. Sources register themselves next to their
definitions (``register_source(MySource())``, as timm's ``@register_model`` does), and every
caller (the sidebar, the app's loaders, the CLI, :func:`neuronviz.core.models.load_model`) goes
through :func:`create_model` and the entries' own methods, in the spirit of timm's
``create_model``: no caller branches on which source a model is from.

The built-in sources: ``embedded`` and ``zoo`` and ``checkpoint`` (``neuronviz.core.models.standard_sources``),
``timm`` (``neuronviz.core.models.timm_source``). A plugin (``neuronviz.infra.plugins``) adds one by
subclassing :class:`ModelSource` in its own file; see ``docs/architecture.md``, "A new model
source".
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from neuronviz.core.models.pixel import PixelModel
from neuronviz.infra.errors import DeviceError, InputError, ModelNotFoundError


@dataclass(frozen=True)
class OptionField:
    """A value the user gives for a source: a sidebar text input (a select box when ``choices``
    is non-empty) and ``--option name=value`` on the command line. Values are strings; the
    source parses them and raises :class:`~neuronviz.infra.errors.InputError` for a bad one."""

    name: str
    label: str
    default: str
    help: str = ""
    choices: tuple[str, ...] = ()  # non-empty: one of these ("" may stand for "not given")


@dataclass(frozen=True)
class ModelInfo:
    """A model as a source lists it (the model picker, the CLI's ``models``).

    ``source`` is the name of the :class:`ModelSource` it comes from; ``kind`` is the same value
    under its older name (give either, or both equal)."""

    name: str  # the spec create_model takes
    kind: str = ""
    architecture: str = ""
    description: str = ""
    channels: int = 3
    input_size: tuple[int, int] = (224, 224)
    num_classes: int = 0
    weights_available: bool = False
    card: dict | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind and self.source and self.kind != self.source:
            raise ValueError(f"ModelInfo {self.name!r}: kind {self.kind!r} and source {self.source!r} differ")
        if not (self.kind or self.source):
            raise ValueError(f"ModelInfo {self.name!r} names no source")
        object.__setattr__(self, "kind", self.kind or self.source)
        object.__setattr__(self, "source", self.source or self.kind)


class ModelSource:
    """Where models come from. Subclass it, set the class attributes, override what applies,
    and ``register_source(MySource())``.

    Required: :attr:`name`, :attr:`label`, :meth:`owns`, :meth:`load`. The rest has defaults
    that mean "this source does not do that" (no listed models, no uploads, no fetching).
    """

    #: Unique short name ("embedded", "zoo", "checkpoint", "timm", "onnx", "local").
    name: str = ""
    #: The sidebar's word for the source ("timm", "ONNX upload", "Local models").
    label: str = ""
    #: Non-empty: the sidebar offers a file upload of these suffixes, read by :meth:`load_upload`.
    upload_suffixes: tuple[str, ...] = ()
    #: What the upload takes, one or two sentences (the uploader's help).
    upload_help: str = ""
    #: Asked for with uploads (and accepted as ``options=`` by :meth:`load`).
    options: tuple[OptionField, ...] = ()
    #: Whether the picker offers "random initialisation" (``weights=None``) for listed models.
    offers_random: bool = False
    #: Non-empty: the button's label that fetches missing weights (:meth:`fetch_weights`).
    fetch_label: str = ""
    #: Non-empty: the picker offers a text box for any spec of this source (e.g. any timm name).
    spec_field: OptionField | None = None
    #: How the dashboard names the default weights of a model of this source.
    weights_word: str = "pretrained weights"

    def owns(self, spec: str) -> bool:
        """Whether ``spec`` names a model of this source (e.g. ``spec.startswith("timm:")``)."""
        raise NotImplementedError

    def list_models(self) -> list[ModelInfo]:
        """What the picker and the CLI list (may be empty)."""
        return []

    def info(self, spec: str) -> ModelInfo:
        """Facts about one spec: its listed entry. Sources that take any name override this."""
        for info in self.list_models():
            if info.name == spec:
                return info
        raise ModelNotFoundError(f"{self.label or self.name} has no model {spec!r}")

    def picker_label(self, info: ModelInfo) -> str:
        """How the model picker shows a listed model."""
        return f"{info.name} · {self.label or self.name}"

    def load(
        self, spec: str, *, weights: str | os.PathLike | None = "default", options: Mapping[str, str] | None = None
    ) -> PixelModel:
        """Load ``spec`` on the CPU, in eval mode. ``weights``: ``"default"`` (the source's own,
        never downloaded here), ``None`` (random initialisation) or a weights file's path."""
        raise NotImplementedError

    def load_upload(self, path: Path, options: Mapping[str, str]) -> PixelModel:
        """Load an uploaded file (only sources with :attr:`upload_suffixes`)."""
        raise InputError(f"the model source {self.name!r} takes no uploads")

    def fetch_weights(self, spec: str) -> Path:
        """Fetch the default weights of ``spec`` (an explicit user action; network). Only sources
        with :attr:`fetch_label`. Raises DownloadError / SharedServerError."""
        raise InputError(f"the model source {self.name!r} fetches no weights")

    def spec_from_text(self, text: str) -> str:
        """The spec for what the user typed in :attr:`spec_field`'s box."""
        return text.strip()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


_lock = threading.Lock()
_sources: dict[str, ModelSource] = {}


def register_source(source: ModelSource) -> ModelSource:
    """Add ``source`` to the registry (again under the same name: replaces it). Returns it."""
    if not isinstance(source, ModelSource):
        raise TypeError(f"register_source needs a ModelSource instance, got {type(source).__name__}")
    if not source.name or not isinstance(source.name, str):
        raise ValueError(f"{type(source).__name__} has no name")
    with _lock:
        _sources[source.name] = source
    return source


def unregister_source(name: str) -> None:
    """Remove a source (tests that register a temporary one)."""
    with _lock:
        _sources.pop(name, None)


def list_sources() -> list[ModelSource]:
    """Every registered source, in registration order (embedded, zoo, checkpoint, timm, plugins)."""
    with _lock:
        return list(_sources.values())


def get_source(name: str) -> ModelSource:
    """The source registered under ``name``."""
    with _lock:
        source = _sources.get(name)
    if source is None:
        raise ModelNotFoundError(f"no model source {name!r}; registered: {[s.name for s in list_sources()]}")
    return source


def source_for(spec: str | os.PathLike) -> ModelSource:
    """The first registered source that owns ``spec``. Raises ModelNotFoundError naming the
    listed models closest to it."""
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if not isinstance(text, str) or not text:
        raise InputError(f"a model spec must be a model name or a checkpoint path, got {spec!r}")
    for source in list_sources():
        if source.owns(text):
            return source
    names = [info.name for source in list_sources() for info in source.list_models()]
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.5)
    hint = f" Closest: {close}." if close else ""
    raise ModelNotFoundError(
        f"no model named {text!r} and no such checkpoint file.{hint} Models: {names}",
        ui_hint="Choose a model in the sidebar's Model box.",
    )


def list_all_models() -> list[ModelInfo]:
    """Every source's listed models, grouped by source in registration order."""
    return [info for source in list_sources() for info in source.list_models()]


def create_model(
    spec: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = "default",
    device: str | torch.device | None = None,
    options: Mapping[str, str] | None = None,
) -> PixelModel:
    """The one entry point: the :class:`~neuronviz.core.models.PixelModel` that ``spec`` names, on
    ``device`` (``None``: CUDA when available), in eval mode.

    Raises the source's NeuronvizError (ModelNotFoundError, CheckpointError,
    WeightsNotAvailableError, DeviceError, InputError...)."""
    target = resolve_device(device)
    text = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    source = source_for(text)
    model = source.load(text, weights=weights, options=dict(options or {}))
    return model.to(target)


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


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``["mean=0.5", "classes=a,b"]`` (the CLI's ``--option k=v``) → a dict. Raises InputError."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"an option must be written name=value, got {pair!r}")
        options[key.strip()] = value.strip()
    return options
