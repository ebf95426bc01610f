"""Pieces of UI shared by pages: the current-choice banner, messages, prediction summary, model card.

Presentation only: values come from :mod:`app.state` and the model's card; nothing is computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import streamlit as st

from app import analysis, state
from neuronviz import figures
from neuronviz.attacks import format_eps
from neuronviz.images import ImageInfo
from neuronviz.models import ModelInfo, PixelModel


def current_choice(selection: state.Selection | None) -> None:
    """One line at the top of every page: which model (weights, device) and which image."""
    if selection is None:
        st.caption("Nothing to show yet: choose a model and an image in the sidebar.")
        return
    model = selection.model
    with st.container(border=True, horizontal=True, gap="large", vertical_alignment="center"):
        st.markdown(
            f":material/neurology: **Model** `{model.name}` · {_weights_label(selection.model_request)} · "
            f"{model.device.type}"
        )
        st.markdown(f":material/image: **Image** {selection.image_request.label}")
        st.markdown(f":material/bolt: **Attack** {analysis.attack_choice(model).describe(model)}")


def _weights_label(request: state.ModelRequest) -> str:
    if request.upload is not None:
        return f"uploaded checkpoint {request.upload.name}"
    if request.weights is None:
        return "random initialisation"
    return "embedded weights" if request.name.startswith("digits-") else "pretrained weights"


def messages(errors: Iterable[str]) -> None:
    for message in errors:
        st.error(message, icon=":material/error:")


def prediction_summary(prediction: state.Prediction, class_names: tuple[str, ...], true_class: int | None) -> None:
    """Predicted class, its probability and, when known, the true class and whether they agree."""
    columns = st.columns([3, 2, 3])
    predicted = class_names[prediction.predicted]
    columns[0].metric("Prediction", predicted, help=predicted if len(predicted) > 12 else None)
    columns[1].metric("Confidence", f"{100 * prediction.confidence:.1f}%")
    if true_class is None:
        columns[2].metric("True class", "unknown", help="Uploaded images and most photos have no label here.")
        return
    correct = true_class == prediction.predicted
    columns[2].metric(
        "True class",
        class_names[true_class],
        delta="correct" if correct else "misclassified",
        delta_color="green" if correct else "red",
        delta_arrow="off",
    )


def image_notes(info: ImageInfo | None) -> None:
    """How an uploaded image was turned into the model's input (the library's own notes)."""
    if info is None:
        return
    with st.expander(f"How {info.name or 'the upload'} was prepared ({info.width}×{info.height}, {info.mode})"):
        for note in info.notes or ("used as it is",):
            st.markdown(f"- {note}")


# -- model cards ----------------------------------------------------------------------------------


def model_card(model: PixelModel) -> None:
    """The facts of the model's card (accuracy, data, training), or why there is none."""
    card = model.meta.card or {}
    if model.meta.source == "random initialisation":
        st.warning(
            "Random initialisation: the predictions are meaningless; useful to explore the architecture.",
            icon=":material/casino:",
        )
    st.caption(f"{model.meta.description or model.meta.architecture} · source: {model.meta.source or 'unknown'}")
    if not card:
        st.caption("No model card for this model (the embedded models have one; see the About page).")
        return
    facts = card_facts(card)
    columns = st.columns(len(facts))
    for column, (label, value) in zip(columns, facts.items()):
        column.metric(label, value)
    rows = attack_rows(card)
    if rows:
        st.markdown("**Accuracy under attack** (test split)")
        st.dataframe(rows, hide_index=True, width="content")
    if card.get("command"):
        st.markdown(f"Reproduce: `{card['command']}`")
    with st.expander("Full model card"):
        st.json(card, expanded=1)


def card_facts(card: Mapping[str, Any]) -> dict[str, str]:
    """Headline facts of a model card, formatted for display (only those present)."""
    metrics = card.get("metrics", {}) or {}
    training = card.get("training", {}) or {}
    facts: dict[str, str] = {}
    if isinstance(metrics.get("clean_accuracy"), (int, float)):
        facts["Clean accuracy"] = f"{100 * metrics['clean_accuracy']:.1f}%"
    if metrics.get("test_images"):
        facts["Test images"] = f"{metrics['test_images']:,}"
    if card.get("parameters"):
        facts["Parameters"] = f"{card['parameters']:,}"
    if "adversarial" in training:
        facts["Training"] = "adversarial (PGD)" if training["adversarial"] else "standard"
    elif "lam" in training and "top_fraction" in training:  # the SNS recipe (neuronviz/training/sns.py)
        facts["Training"] = "SNS"  # the description says it is a reconstruction
    if training.get("epochs"):
        facts["Epochs"] = str(training["epochs"])
    return facts


def attack_rows(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card's accuracy-under-attack entries as table rows."""
    rows = []
    for entry in (card.get("metrics", {}) or {}).get("attacks", []) or []:
        if not isinstance(entry, Mapping):
            continue
        rows.append(
            {
                "attack": str(entry.get("attack", "?")),
                "ε (L∞)": entry.get("eps"),
                "steps": entry.get("steps", 1),
                "accuracy": _percent(entry.get("accuracy")),
            }
        )
    return rows


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "—"


def embedded_table(infos: Iterable[ModelInfo]) -> list[dict[str, Any]]:
    """One row per embedded model: what it is and its card's headline numbers."""
    rows = []
    for info in infos:
        if info.kind != "embedded":
            continue
        card = info.card or {}
        row: dict[str, Any] = {
            "model": info.name,
            "description": info.description,
            "weights": "present" if info.weights_available else "missing",
        }
        facts = card_facts(card)
        for label in ("Clean accuracy", "Parameters", "Training"):
            row[label] = facts.get(label, "—")
        rows.append(row)
    return rows


def training_commands(infos: Iterable[ModelInfo]) -> list[str]:
    """The command that rebuilds each embedded model (from its card, else the CLI's default)."""
    return [
        (info.card or {}).get("command", f"python -m neuronviz train {info.name}")
        for info in infos
        if info.kind == "embedded"
    ]


def robustness_table(infos: Iterable[ModelInfo]) -> list[dict[str, Any]]:
    """Accuracy under attack: one row per attack setting, one column per embedded model."""
    table: dict[tuple[str, Any, Any], dict[str, Any]] = {}
    for info in infos:
        if info.kind != "embedded" or not info.card:
            continue
        for entry in attack_rows(info.card):
            key = (entry["attack"], entry["ε (L∞)"], entry["steps"])
            row = table.setdefault(key, {"attack": key[0], "ε (L∞)": key[1], "steps": key[2]})
            row[info.name] = entry["accuracy"]
    return list(table.values())


def zoo_table(infos: Iterable[ModelInfo]) -> list[dict[str, Any]]:
    return [
        {
            "model": info.name,
            "description": info.description,
            "input": f"{info.channels}×{info.input_size[0]}×{info.input_size[1]}",
            "pretrained weights": "cached" if info.weights_available else "not cached",
        }
        for info in infos
        if info.kind == "zoo"
    ]


# -- shared by the analysis pages --------------------------------------------------------------------


def require_selection() -> state.Selection:
    """The sidebar's selection, or stop the page with a note when nothing could load."""
    selection = state.selection()
    if selection is None:
        st.info("No model or image is loaded: see the messages above and choose a model and an image in the sidebar.")
        st.stop()
    return selection


def current_analysis(selection: state.Selection) -> analysis.Analysis | None:
    """The full analysis (attack, NIP, PSSR, influence) of the selection under the session's attack
    choice: cached, with a spinner when it has to be computed; None (and a message) on failure."""
    choice = analysis.attack_choice(selection.model)
    with st.spinner(f"Running {choice.describe(selection.model)}, both restorations and neuron influence…"):
        return analysis.attempt(
            analysis.full_analysis, selection.model, selection.image, choice
        )


def chart(fig, filename: str, key: str | None = None, **kwargs) -> None:
    """``st.plotly_chart`` with the project's export config (SVG download) and no Streamlit theme,
    so the figure looks the same on the page and in the exported file."""
    st.plotly_chart(fig, config=figures.export_config(filename), theme=None, key=key, **kwargs)


@st.cache_resource(max_entries=256, show_spinner=False)
def _cached_figure(builder: str, key: str, _build, _args: tuple, _kwargs: dict):
    return _build(*_args, **_kwargs)


def figure(build, *args, **kwargs):
    """``build(*args, **kwargs)`` (a figure builder of :mod:`neuronviz.figures`), built once per
    full content of its arguments (:func:`app.analysis.digest`) and shared by reruns and sessions.

    Building a plotly figure costs tens of milliseconds (validation of every property), so a page
    of a dozen figures would spend most of a rerun rebuilding identical ones. Figures are kept by
    ``st.cache_resource`` without copying: they are only read (``st.plotly_chart`` serialises them).
    """
    name = f"{build.__module__}.{build.__qualname__}"
    return _cached_figure(name, analysis.digest(*args, **kwargs), build, args, kwargs)


_KEPT = "components.kept_controls"


def persist(*keys: str) -> None:
    """Keep these page controls' values while the user visits other pages.

    Streamlit forgets a widget's value when a run does not draw it (another page was shown), so a
    page calls this before drawing its controls: a value present now is remembered, a value that
    was forgotten is put back. A page copes with a value that no longer fits (another model's
    layer) as it does when the model changes under it.
    """
    kept = st.session_state.setdefault(_KEPT, {})
    for key in keys:
        if key in st.session_state:
            kept[key] = st.session_state[key]
        elif key in kept:
            st.session_state[key] = kept[key]


def param_widget(param, key: str, default, layers: Sequence[str] = (), default_layer: str | None = None, bounded: bool = True):
    """One control for a schema parameter (:class:`neuronviz.schema.Param`) of an attack or a
    defence: a checkbox, a select box (choices; a ``layer`` among ``layers``, "" = the default
    layer), or a number input bounded by the schema; pixel budgets step by 1/255 and show k/255.

    ``bounded=False``: the number input has no min/max (the range is in its help) and its value is
    returned as it came, for the caller to validate with the schema. Streamlit silently resets a
    bounded input's out-of-range value (from a crafted client) to the default; unbounded, such a
    value reaches the schema, which refuses it with a message (the sidebar's attack form)."""
    label = param.name.replace("_", " ")
    help_text = param.help + (f" ({param.unit})" if param.unit else "")
    if param.kind == "layer":
        options = ["", *layers]
        return st.selectbox(
            label,
            options,
            index=options.index(default) if default in options else 0,
            key=key,
            help=help_text,
            format_func=lambda layer: f"default ({default_layer})" if layer == "" else layer,
        )
    if param.kind == "bool":
        return st.checkbox(label, value=bool(default), key=key, help=help_text)
    if param.kind == "choice":
        choices = list(param.choices)
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0, key=key, help=help_text)
    low = None if param.low is None else (int(param.low) if param.kind == "int" else float(param.low))
    high = None if param.high is None else (int(param.high) if param.kind == "int" else float(param.high))
    if not bounded:
        if low is not None or high is not None:
            help_text += f". Allowed: {'−∞' if low is None else f'{low:g}'} to {'∞' if high is None else f'{high:g}'}"
        low = high = None
    if param.kind == "int":
        value = st.number_input(label, min_value=low, max_value=high, value=int(default), step=1, key=key, help=help_text)
        return int(value) if bounded else value
    if param.pixel_scale:
        help_text += ". Shown also as k/255, the unit most papers use."
    value = st.number_input(
        label, min_value=low, max_value=high, value=float(default), step=(1 / 255 if param.pixel_scale else None),
        format="%.4f", key=key, help=help_text,
    )
    if bounded:
        value = float(value)
    if param.pixel_scale and isinstance(value, (int, float)) and value == value:
        st.caption(f"{label} = {format_eps(value)}")
    return value
