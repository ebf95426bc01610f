"""Defences: restore adversarial images (NIP in three modes, PSSR, and the identity).

Every defence is one registry entry (:class:`Defense`): ``list_defenses()`` gives them all with
their facts and parameter schemas, ``get_defense(name).restore_for(model, x_adv, benign=...,
clean=...)`` restores without asking what the defence needs, and ``restore(model, x, name,
params, target=None, reference=None)`` is the explicit call. A new defence is one file that
subclasses :class:`Defense` and calls :func:`register_defense` (docs/architecture.md).
"""

# NIP and PSSR register first (baselines imports them), then JPEG, bit depth, median, resize-and-pad
from neuronviz.methods.defences import baselines, nip, pssr  # noqa: F401
from neuronviz.methods.defences.base import (
    DEFENSES,
    Defense,
    Identity,
    Restoration,
    Restored,
    Variant,
    get_defense,
    list_defenses,
    register_defense,
    restore,
    restore_for,
)

__all__ = [
    "DEFENSES", "Defense", "Identity", "Restoration", "Restored", "Variant", "get_defense", "list_defenses", "register_defense",
    "restore", "restore_for",
]
