"""Actions shared by the pages and the sidebar: what a button does to the session's choices.

A page never imports another page or the sidebar to change the session's inputs; it calls one of
these. The sidebar's widget keys and option values that an action writes live here, and the
sidebar reads them from here (one place).
"""

from __future__ import annotations

import streamlit as st

from app import runs

# The sidebar's widget keys and option values an action sets.
MODEL_SOURCE_KEY = "model_source"
MODEL_NAME_KEY = "model_name"
IMAGE_SOURCE_KEY = "image_source"
SAMPLE_CLASS_KEY = "sample_class"
SAMPLE_EXAMPLE_KEY = "sample_example"
REGISTRY = "Built-in"  # the model source of the built-in models
SAMPLE = "Sample"  # the image source of the sample images
SEED_GENERATION = "sidebar.seed_generation"  # the seed widget's key generation (see new_seed_widget)


def new_seed_widget() -> None:
    """Start the seed widget afresh (it then shows the choice's seed): a new key, instead of
    writing the value through session state, which Streamlit warns about for a widget with a value."""
    st.session_state[SEED_GENERATION] = st.session_state.get(SEED_GENERATION, 0) + 1


def reset_attack_widgets(choice: runs.AttackChoice) -> None:
    """Put ``choice`` into the attack widgets (call from a callback, before the sidebar is drawn):
    its attack and seed, and its parameters' widgets back to the choice's values."""
    for key in [k for k in st.session_state if isinstance(k, str) and k.startswith(f"attack:{choice.attack}:")]:
        del st.session_state[key]
    st.session_state["attack_name"] = choice.attack
    new_seed_widget()


def choose_sample(model_name: str, true_class: int, example: int) -> None:
    """Put a built-in model and one sample image (the ``example``-th of its class) into the
    sidebar (call from a callback, before the sidebar is drawn)."""
    st.session_state[MODEL_SOURCE_KEY] = REGISTRY
    st.session_state[MODEL_NAME_KEY] = model_name
    st.session_state[IMAGE_SOURCE_KEY] = SAMPLE
    st.session_state[SAMPLE_CLASS_KEY] = true_class
    st.session_state[SAMPLE_EXAMPLE_KEY] = example
