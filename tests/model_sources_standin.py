"""A tiny stand-in for ``neuronviz.models.sources`` (the models helper's module), installed only
when that module does not exist yet, so the ONNX and local-model tests run on this branch alone.
Once the real module is merged, :func:`install` does nothing (delete this file then)."""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass


def install() -> None:
    if "neuronviz.models.sources" in sys.modules or importlib.util.find_spec("neuronviz.models.sources") is not None:
        return
    module = types.ModuleType("neuronviz.models.sources")

    @dataclass(frozen=True)
    class OptionField:
        name: str
        label: str
        default: str
        help: str = ""

    @dataclass(frozen=True)
    class ModelInfo:
        name: str
        kind: str
        architecture: str
        description: str
        channels: int
        input_size: tuple
        num_classes: int
        weights_available: bool
        card: dict | None = None

    class ModelSource:
        name = ""
        label = ""
        upload_suffixes: tuple = ()
        options: tuple = ()

    sources: dict = {}

    def register_source(source):
        sources[source.name] = source
        return source

    def list_sources():
        return list(sources.values())

    def source_for(spec):
        return next(s for s in sources.values() if s.owns(str(spec)))

    def create_model(spec, *, weights="default", device=None, options=None):
        return source_for(spec).load(str(spec), weights=weights, options=dict(options or {})).to(device or "cpu")

    for value in (OptionField, ModelInfo, ModelSource, register_source, list_sources, source_for, create_model):
        setattr(module, value.__name__, value)
    sys.modules["neuronviz.models.sources"] = module
