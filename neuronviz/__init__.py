"""neuronviz: what adversarial attacks do to a classifier's neurons, and what defences undo.

The library works on tensors and knows nothing of Streamlit (``import neuronviz`` never imports
it, nor torch). Its folders are its layers, each importing only from the ones before it:

- ``infra``: errors, settings, budgets, caches, limits, digests, the registry class, schemas, plugins;
- ``core``: models (the PixelModel contract and the model sources), the probe, layers;
- ``data``: images, datasets, labelled evaluation sets;
- ``methods``: attacks, defences, influence, attribution, fragility, sensitivity, statistics, controls;
- ``workflows``: the analysis, sweeps, batch evaluation, defence tables, session records, export, provenance;
- ``figures``, ``training`` and ``cli`` on top.

The flat layout's module paths (``neuronviz.models``, ``neuronviz.defenses``,
``neuronviz.evaluation``...) still import, through the one alias finder below: each gives the new
module itself (same object, so patching either name patches both) and warns once with a
:class:`DeprecationWarning` that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import warnings
from types import ModuleType

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# The flat layout's modules (relative to "neuronviz.") -> where they live now. Submodules of a
# moved package follow their package unless named here.
# relayout: leave this file alone (it names the old paths on purpose).
MOVED: dict[str, str] = {
    "errors": "infra.errors",
    "settings": "infra.settings",
    "budget": "infra.budget",
    "cache": "infra.cache",
    "limits": "infra.limits",
    "digest": "infra.digest",
    "entries": "infra.registry",
    "schema": "infra.schema",
    "plugins": "infra.plugins",
    "models": "core.models",
    "models.registry": "core.models.standard_sources",
    "models.sources": "core.models.registry",
    "probe": "core.probe",
    "layers": "core.layers",
    "images": "data.images",
    "datasets": "data.datasets",
    "evalset": "data.labelled",
    "attacks": "methods.attacks",
    "defenses": "methods.defences",
    "influence": "methods.influence",
    "attribution": "methods.attribution",
    "fragility": "methods.fragility",
    "sensitivity": "methods.sensitivity",
    "feature_maps": "methods.feature_maps",
    "stats": "methods.stats",
    "controls": "methods.controls",
    "analysis": "workflows.analysis",
    "sweep": "workflows.sweep",
    "batch": "workflows.batch",
    "evaluation": "workflows.defence_table",
    "evaluate": "workflows.evaluate",
    "session": "workflows.session_record",
    "export": "workflows.export",
    "provenance": "workflows.provenance",
    "figure_cli": "cli.figure",
}


def moved_to(name: str) -> str | None:
    """The new full module name for an old one (``neuronviz.models.pixel`` ->
    ``neuronviz.core.models.pixel``), or None when ``name`` is not a flat-layout path."""
    if not name.startswith(__name__ + "."):
        return None
    parts = name[len(__name__) + 1 :].split(".")
    for cut in range(len(parts), 0, -1):
        new = MOVED.get(".".join(parts[:cut]))
        if new is not None:
            return ".".join([__name__, new, *parts[cut:]])
    return None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the new module itself, with a DeprecationWarning."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = moved_to(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=False)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = moved_to(spec.name)
        assert new is not None
        warnings.warn(f"{spec.name} moved to {new}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        # the import system sets __spec__ on what we return; exec_module puts the real one back
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None and spec.loader_state is not None:
            module.__spec__ = spec.loader_state


sys.meta_path.insert(0, _Alias())
