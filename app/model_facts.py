"""The model's facts and their origin in the app: the banner's "assumed" mark and the Model &
image page's table of facts and layer notes. Values come from ``model.facts``
(:mod:`neuronviz.core.models.facts`) and :mod:`neuronviz.core.models.layer_notes`; nothing is computed here."""

from __future__ import annotations

from typing import Any

import streamlit as st

from neuronviz.core.models import PixelModel
from neuronviz.core.models.facts import FACT_LABELS

#: How the table names each origin.
ORIGIN_WORDS = {
    "user": "given (option or field)",
    "metadata": "the file's metadata",
    "file": "read from the network",
    "architecture": "the architecture's own",
    "default": "assumed",
}


def banner_note(model: PixelModel) -> str:
    """The banner's mark for assumed facts ("" when every fact is known)."""
    assumed = model.facts.assumed
    if not assumed:
        return ""
    names = ", ".join(FACT_LABELS[name].lower() for name in assumed)
    return f"&emsp;:orange-badge[:material/help: assumed: {names}]"


def fact_rows(model: PixelModel) -> list[dict[str, Any]]:
    """One row a fact: its value, where it came from, and the detail."""
    return [
        {
            "fact": FACT_LABELS[fact.name],
            "value": fact.value_text(max_classes=10),
            "origin": ORIGIN_WORDS[fact.origin],
            "detail": fact.detail,
        }
        for fact in model.facts
    ]


def render_facts(model: PixelModel) -> None:
    """The Model & image page's section: the facts with their origin, a warning naming the
    assumed ones, and what the layer list leaves out or folds."""
    from neuronviz.core.models.layer_notes import layer_notes

    facts = model.facts
    st.dataframe(fact_rows(model), hide_index=True, width="stretch")
    if facts.assumed:
        st.warning(
            f"{facts.assumed_note()[:1].upper()}{facts.assumed_note()[1:]}. Nothing in the model's file or options gave "
            "them, so every prediction here depends on this guess: give them in the sidebar's fields (ONNX), the "
            "operator's --mean/--std/--input-size/--classes, or write them into the file's metadata.",
            icon=":material/help:",
        )
    seed = (model.meta.card or {}).get("init_seed")
    if seed is not None:
        st.caption(f"Random initialisation seeded from the model's spec (seed {seed}): the same link gives the same weights on every server.")
    notes = layer_notes(model)
    if notes:
        st.markdown("**Layers: what the layer list leaves out or folds**")
        for note in notes:
            st.markdown(f"- {note}")


def caption_note(model: PixelModel) -> str:
    """A sentence for a figure's caption naming the assumed facts (" " first; "" when none)."""
    note = model.facts.assumed_note()
    return f" Model facts {note}." if note else ""
