"""Defences: restore adversarial images (NIP in three modes, PSSR, and the identity).

``restore(model, x, name, params, target=None, reference=None) -> Restoration``;
``list_defenses()`` gives every registered defence with its parameter schema.
"""

from neuronviz.defenses import nip, pssr  # noqa: F401  (register NIP and PSSR)
from neuronviz.defenses.base import (
    DEFENSES,
    Defense,
    Identity,
    Restoration,
    get_defense,
    list_defenses,
    register_defense,
    restore,
)

__all__ = ["DEFENSES", "Defense", "Identity", "Restoration", "get_defense", "list_defenses", "register_defense", "restore"]
