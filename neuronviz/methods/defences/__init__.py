"""Defences: restore adversarial images (NIP in three modes, PSSR, and the identity).

Every defence is one registry entry (:class:`Defence`): ``list_defences()`` gives them all with
their facts and parameter schemas, ``get_defence(name).restore_for(model, x_adv, benign=...,
clean=...)`` restores without asking what the defence needs, and ``restore(model, x, name,
params, target=None, reference=None)`` is the explicit call. A new defence is one file that
subclasses :class:`Defence` and calls :func:`register_defence` (docs/architecture.md).

The American spellings of these names (``Defense``, ``DEFENSES``, ``get_defense``,
``list_defenses``, ``register_defense``) still import from here, with a DeprecationWarning.
relayout: leave this file alone (it names the old spellings on purpose).
"""

import warnings

# NIP and PSSR register first (baselines imports them), then JPEG, bit depth, median, resize-and-pad
from neuronviz.methods.defences import baselines, nip, pssr  # noqa: F401
from neuronviz.methods.defences.base import (
    DEFENCES,
    Defence,
    Identity,
    Restoration,
    Restored,
    Variant,
    get_defence,
    list_defences,
    register_defence,
    restore,
    restore_for,
)

__all__ = [
    "DEFENCES", "Defence", "Identity", "Restoration", "Restored", "Variant", "get_defence", "list_defences", "register_defence",
    "restore", "restore_for",
]

#: The American spellings, kept for code written before the one spelling (issue 20).
DEPRECATED_NAMES = {
    "Defense": "Defence",
    "DEFENSES": "DEFENCES",
    "get_defense": "get_defence",
    "list_defenses": "list_defences",
    "register_defense": "register_defence",
}


def __getattr__(name: str):
    if name in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[name]
        warnings.warn(f"neuronviz.methods.defences.{name} is now {new}", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
