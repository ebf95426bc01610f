"""Methods from outside the project: a plugin is a module that registers entries on import.

A new attack, defence, attribution or influence method, or model source is one file that calls
its registry's ``register_*`` function at import time (see docs/architecture.md, "Registries").
The dashboard and the command line import every plugin once, before they read a registry:

- modules named in the environment variable ``NEURONVIZ_PLUGINS`` (comma separated, e.g.
  ``NEURONVIZ_PLUGINS=my_lab.attacks,my_lab.defences``), importable from ``sys.path``;
- modules advertised by installed packages under the entry-point group ``neuronviz.plugins``
  (``[project.entry-points."neuronviz.plugins"] my_lab = "my_lab.neuronviz_plugin"``).

Plugins run code, so they come only from the server's own environment, never from an upload.
"""

from __future__ import annotations

import importlib
import os
import threading
from importlib import metadata

from neuronviz.infra.errors import PluginError

ENV = "NEURONVIZ_PLUGINS"
GROUP = "neuronviz.plugins"

_lock = threading.Lock()
_loaded: dict[str, bool] = {}


def plugin_modules() -> list[str]:
    """The module names to import: the environment variable's first, then the entry points'."""
    names = [part.strip() for part in os.environ.get(ENV, "").split(",") if part.strip()]
    for entry in metadata.entry_points(group=GROUP):
        if entry.value not in names:
            names.append(entry.value)
    return names


def load_plugins() -> list[str]:
    """Import every plugin module once (thread-safe); returns the names imported so far.

    Raises:
        PluginError: a named module is missing or raised while importing (the message names it).
    """
    with _lock:
        for name in plugin_modules():
            if name in _loaded:
                continue
            try:
                importlib.import_module(name)
            except Exception as error:  # a plugin's own failure, reported with its name
                raise PluginError(
                    f"the plugin {name!r} (from {ENV} or the {GROUP!r} entry points) failed to import: "
                    f"{type(error).__name__}: {error}"
                ) from error
            _loaded[name] = True
        return list(_loaded)
