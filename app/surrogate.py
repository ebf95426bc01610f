"""The surrogate of a transfer attack (issue 23): which model crafts the images, chosen in the
sidebar, and that model loaded for the pages that use it (the Batch page: its verdicts, rates and
defences are the victim's, on images crafted on the surrogate).

The sidebar offers the registered models that take the current model's images and classes
(``neuronviz.workflows.batch.check_surrogate``); any other model (a checkpoint, ONNX, timm, a factory) is a
surrogate through the library or ``neuronviz evaluate --surrogate SPEC``, which run no code the
browser sent.
"""

from __future__ import annotations

import streamlit as st

from neuronviz.core.models import EMBEDDED, PixelModel, create_model
from neuronviz.infra.errors import NeuronvizError
from neuronviz.workflows.batch import check_surrogate

KEY = "surrogate.spec"
#: The choice "no surrogate": the attack is white-box on the current model.
WHITE_BOX = "(this model: white-box)"


def candidates(model: PixelModel) -> list[str]:
    """The registered models offered as surrogates for ``model``: the embedded ones with the same
    channels, input size and classes (the current model itself excluded)."""
    if model.channels != 1 or tuple(model.class_names) != tuple(str(i) for i in range(10)):
        return []
    return [name for name in EMBEDDED if name != model.name]


def sidebar_choice(model: PixelModel) -> None:
    """The sidebar's "Images crafted on" choice (one call from app/sidebar.py)."""
    names = candidates(model)
    if not names:
        st.session_state.pop(KEY, None)
        return
    if st.session_state.get(KEY) not in [WHITE_BOX, *names]:
        st.session_state[KEY] = WHITE_BOX  # a choice of another model's list is dropped
    st.selectbox(
        "Images crafted on (transfer)",
        [WHITE_BOX, *names],
        key=KEY,
        help="A transfer attack: the sidebar's attack runs on this surrogate model and the Batch page judges its "
        "images on the current model. White-box: the attack sees the current model.",
    )


@st.cache_resource(max_entries=2, show_spinner="Loading the surrogate…")
def _load(spec: str, device: str) -> PixelModel:
    return create_model(spec, device=device)


def surrogate_for(model: PixelModel) -> PixelModel | None:
    """The sidebar's surrogate for ``model``, loaded on its device; None for the white-box attack
    (or, with a message, when it cannot be loaded or does not fit the model)."""
    spec = st.session_state.get(KEY)
    if not spec or spec == WHITE_BOX or spec not in candidates(model):
        return None
    try:
        found = _load(spec, str(model.device))
        check_surrogate(model, found)
    except NeuronvizError as error:
        st.error(f"Surrogate {spec} not used: {error}", icon=":material/error:")
        return None
    return found
