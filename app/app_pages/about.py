"""About: what neuronviz shows, and the models it offers (the embedded ones with their cards)."""

from __future__ import annotations

import streamlit as st

from app import components
from neuronviz.core.models import list_models


def render() -> None:
    st.markdown(
        "neuronviz shows what adversarial attacks do to an image classifier's neurons, and what "
        "defences undo. Everything runs offline on a CPU with the embedded models below; the "
        "torchvision ImageNet zoo is available once its weights are downloaded."
    )

    infos = list_models()
    st.subheader("Embedded models", divider="gray")
    st.caption("Small models trained by this project on scikit-learn's handwritten digits; each has a model card.")
    # A static table wraps the long descriptions: a data grid ran past the column at 1280 px.
    st.table(components.embedded_table(infos), border="horizontal", hide_index=True)
    robustness = components.robustness_table(infos)
    if robustness:
        st.markdown("**Accuracy under attack** on the digits test split (from each model's card)")
        st.dataframe(robustness, hide_index=True, width="content")
    st.markdown("**Rebuild them** (seeded; each card records the data split and hyper-parameters):")
    st.code("\n".join(components.training_commands(infos)), language="bash")
    st.subheader("torchvision ImageNet zoo", divider="gray")
    st.caption(
        "Pretrained weights are read from the torch hub cache and downloaded only when you click "
        "'Download weights' in the sidebar; random initialisation works offline."
    )
    st.table(components.zoo_table(infos), border="horizontal", hide_index=True)


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
