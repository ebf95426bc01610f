"""Model & image: the chosen image, what the model predicts for it, and the model's card."""

from __future__ import annotations

import streamlit as st

from app import components, model_facts, state
from app import export_controls as exports
from neuronviz import figures


def render() -> None:
    selection = components.loaded_selection()
    if selection is None:
        return

    prediction = state.predict(selection.model, selection.image)
    class_names = selection.model.class_names

    image_column, prediction_column = st.columns([2, 3], gap="large")
    with image_column:
        components.chart(figures.image_figure(selection.image, title=selection.image_request.label), "input-image", key="input_image")
        components.image_notes(selection.image_info)
    with prediction_column:
        components.prediction_summary(prediction, class_names, selection.true_class)
        fig = figures.prediction_bars(
            prediction.probabilities, class_names, k=5, title="Top-5 prediction", true_class=selection.true_class
        )
        components.chart(fig, "top5-prediction", key="prediction_bars")
        rows = exports.top_rows(prediction.probabilities, class_names, true_class=selection.true_class)
        exports.export_controls(fig, rows, "top5-prediction", exports.image_record(selection), key="model_image.export.bars")

    st.subheader("Model facts", divider="gray")
    model_facts.render_facts(selection.model)

    st.subheader("Model card", divider="gray")
    components.model_card(selection.model)


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
