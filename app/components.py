"""Pieces of UI shared by pages: the current-choice banner, messages, prediction summary, model card.

Presentation only: values come from :mod:`app.state` and the model's card; nothing is computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import streamlit as st

from app import model_facts, state
from app import runs as analysis
from app.columns import columns
from neuronviz import figures
from neuronviz.core.models import ModelInfo, PixelModel, source_for
from neuronviz.data.images import ImageInfo
from neuronviz.figures.captions import eps_label, plural  # noqa: F401 - the one k/255 and plural rule of the pages
from neuronviz.infra.errors import NeuronvizError
from neuronviz.methods.attacks import format_eps
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION


def current_choice(selection: state.Selection | None) -> None:
    """One line at the top of every page: which model (weights, device) and which image."""
    if selection is None:
        st.caption("Nothing to show yet: choose a model and an image in the sidebar.")
        return
    # One paragraph that wraps like text: three flex items broke into rows with a gap between them
    # when the attack's description was long.
    with st.container(border=True):
        st.markdown(banner_text(selection))


def banner_text(selection: state.Selection) -> str:
    """The banner's one paragraph: model (weights, device), image, attack."""
    model = selection.model
    gap = "&emsp;"
    return (
        f":material/neurology: **Model** `{model.name}` · {_weights_label(selection.model_request)} · "
        f"{model.device.type}{gap}:material/image: **Image** {selection.image_request.label}{gap}"
        f":material/bolt: **Attack** {analysis.attack_choice(model).describe(model)}"
    ) + model_facts.banner_note(model)


# -- front/tail size: one value for every view ---------------------------------------------------------

#: The session_state key of the front/tail size (the Neurons page's control; every view reads it).
GROUP_FRACTION_KEY = "group_fraction"
#: The sizes the control offers (shares of a layer's neurons).
GROUP_FRACTIONS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)


def group_fraction() -> float:
    """The session's front/tail size (a share of the layer), :data:`DEFAULT_GROUP_FRACTION` until the
    user changes it on the Neurons page; the tour, Neurons, the ε sweep and Defences all use it."""
    value = st.session_state.get(GROUP_FRACTION_KEY)
    if value is None:
        value = st.session_state.get(KEPT_CONTROLS_KEY, {}).get(GROUP_FRACTION_KEY, DEFAULT_GROUP_FRACTION)
    return float(value)


def group_fraction_note() -> str:
    """Where the front/tail size comes from, for a caption on a page without the control."""
    fraction = group_fraction()
    origin = "the default" if fraction == DEFAULT_GROUP_FRACTION else "set on the Neurons page"
    return f"front/tail size {fraction:.0%} of the layer's neurons ({origin}; change it on the Neurons page)"


def _weights_label(request: state.ModelRequest) -> str:
    if request.upload is not None:
        # A checkpoint is weights for a known architecture; an ONNX (or other source's) file is the whole model.
        kind = "checkpoint" if request.source in ("", "checkpoint") else "model file"
        return f"uploaded {kind} {request.upload.name}"
    if request.weights is None:
        return "random initialisation"
    try:
        return source_for(request.name).weights_word
    except NeuronvizError:
        return "pretrained weights"


def class_name(names: Sequence[str], index: int) -> str:
    """A class as it follows the words "Benign class" or "true class": its name, or its number when
    the name is only the generic ``class <index>`` (an upload without class names): never "class class 0"."""
    name = names[index]
    return str(index) if name.strip().lower() == f"class {index}" else name


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
    for column, (label, value) in zip(columns(len(facts)), facts.items()):
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
    elif isinstance(training.get("method"), str) and training["method"].strip():
        # the recipe's own name, as the card states it (SNS: "SNS fine-tuning (reconstruction; ...)")
        facts["Training"] = training["method"].split(" (")[0].removesuffix(" fine-tuning").strip()
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


NO_SELECTION_NOTE = "No model or image is loaded: see the messages above and choose a model and an image in the sidebar."


def loaded_selection() -> state.Selection | None:
    """The sidebar's selection, or None with a note when nothing could load (the page then returns)."""
    selection = state.selection()
    if selection is None:
        st.info(NO_SELECTION_NOTE)
    return selection


def require_selection() -> state.Selection:
    """The sidebar's selection, or stop the script with a note when nothing could load (for code
    that cannot return to its page's top level; a page's ``render()`` uses :func:`loaded_selection`)."""
    selection = loaded_selection()
    if selection is None:
        st.stop()
    return selection


def page_start() -> tuple[state.Selection, PixelModel, analysis.AttackChoice] | None:
    """A page's first lines: the sidebar's selection, its model and attack choice (``app/main.py`` has
    drawn the page title); None (with the note of :func:`loaded_selection`) when nothing could load,
    and the page returns."""
    selection = loaded_selection()
    if selection is None:
        return None
    return selection, selection.model, analysis.attack_choice(selection.model)


def current_analysis(selection: state.Selection) -> analysis.Analysis | None:
    """The full analysis (attack, NIP, PSSR, influence) of the selection under the session's attack
    choice: cached, with a spinner when it has to be computed; None (and a message) on failure."""
    choice = analysis.attack_choice(selection.model)
    with st.spinner(f"Running {choice.describe(selection.model)}, both restorations and neuron influence…"):
        return analysis.attempt(
            analysis.full_analysis, selection.model, selection.image, choice
        )


def selection_and_analysis() -> tuple[state.Selection, analysis.Analysis] | None:
    """The preamble of an analysis page: the selection and its analysis, or None when either is
    missing (a note or the error is shown; the page returns). One ``if`` narrows both types."""
    selection = loaded_selection()
    if selection is None:
        return None
    result = current_analysis(selection)
    if result is None:
        return None
    return selection, result


def chart(fig, filename: str, key: str | None = None, **kwargs) -> None:
    """``st.plotly_chart`` with the project's export config (SVG download) and no Streamlit theme,
    so the figure looks the same on the page and in the exported file."""
    st.plotly_chart(fig, config=figures.export_config(filename), theme=None, key=key, **kwargs)


@st.cache_resource(max_entries=256, show_spinner=False)
def _cached_figure(builder: str, key: str, _build, _args: tuple, _kwargs: dict):
    return _build(*_args, **_kwargs)


def figure(build, *args, **kwargs):
    """``build(*args, **kwargs)`` (a figure builder of :mod:`neuronviz.figures`), built once per
    full content of its arguments (:func:`app.runs.digest`) and shared by reruns and sessions.

    Building a plotly figure costs tens of milliseconds (validation of every property), so a page
    of a dozen figures would spend most of a rerun rebuilding identical ones. Figures are kept by
    ``st.cache_resource`` without copying: they are only read (``st.plotly_chart`` serialises them).
    """
    name = f"{build.__module__}.{build.__qualname__}"
    return _cached_figure(name, analysis.digest(*args, **kwargs), build, args, kwargs)


KEPT_CONTROLS_KEY = "components.kept_controls"  # persist()'s store of page controls (app/url_state.py reads it too)


def persist(*keys: str) -> None:
    """Keep these page controls' values while the user visits other pages.

    Streamlit forgets a widget's value when a run does not draw it (another page was shown), so a
    page calls this before drawing its controls: a value present now is remembered, a value that
    was forgotten is put back. A page copes with a value that no longer fits (another model's
    layer) as it does when the model changes under it.
    """
    kept = st.session_state.setdefault(KEPT_CONTROLS_KEY, {})
    for key in keys:
        if key in st.session_state:
            kept[key] = st.session_state[key]
        elif key in kept:
            st.session_state[key] = kept[key]


def param_widget(param, key: str, default, layers: Sequence[str] = (), default_layer: str | None = None, bounded: bool = True):
    """One control for a schema parameter (:class:`neuronviz.infra.schema.Param`) of an attack or a
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


# -- the start-up example: the one that shows NIP's observation ------------------------------------------


from neuronviz.workflows import evidence as _evidence  # noqa: E402 - the start-up example's logic lives in the library


def story_counts(result: analysis.Analysis, fraction: float | None = None) -> dict[str, Any]:
    """:func:`neuronviz.workflows.evidence.story_counts`: NIP's two halves under the attack and its matched control."""
    from neuronviz.workflows import evidence

    return evidence.story_counts(result, fraction)


#: The criterion :func:`choose_story_example` applies, in words (the Learn page shows it).
STORY_CRITERION = _evidence.STORY_CRITERION


def choose_story_example(model: PixelModel, samples: Sequence, choices: Sequence[analysis.AttackChoice], load_image):
    """:func:`neuronviz.workflows.evidence.choose_story_example` over the cached analyses of ``samples`` × ``choices``."""
    from neuronviz.workflows import evidence

    return evidence.choose_story_example(
        samples, choices, lambda sample, choice: analysis.full_analysis(model, load_image(sample), choice)
    )


# -- small shared pieces ------------------------------------------------------------------------------------

_SCROLL = "components.scroll_to_top"
#: Scrolls the app's main area to its top (a few times: the page grows while it draws).
SCROLL_TO_TOP_SCRIPT = """<script>
(() => {
  const scroll = () => {
    for (const el of document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppViewContainer"], section.main, .main')) {
      el.scrollTop = 0;
    }
    window.scrollTo(0, 0);
  };
  scroll(); setTimeout(scroll, 50); setTimeout(scroll, 300);
})();
</script>"""


def request_scroll_to_top() -> None:
    """Ask the next page drawn to open at its top (``st.switch_page`` keeps the scroll position)."""
    st.session_state[_SCROLL] = True


def scroll_to_top_if_requested() -> bool:
    """Scroll the page to its top when :func:`request_scroll_to_top` asked for it (once)."""
    if not st.session_state.pop(_SCROLL, False):
        return False
    # st.html runs in the page itself (not an iframe); unsafe_allow_javascript is Streamlit's own
    # switch for a script (streamlit.components.v1.html, an iframe, is deprecated).
    st.html(SCROLL_TO_TOP_SCRIPT, unsafe_allow_javascript=True, width="content")
    return True


def restoration_notes(restoration, icon_fallback: str = ":material/warning:") -> None:
    """A restoration's notes (how it was made); a fallback (PSSR's inpainting without a trained
    regenerator) is marked so that it is never silent."""
    for note in getattr(restoration, "notes", ()) or ():
        if note.lower().startswith("fallback"):
            st.caption(f"{icon_fallback} {note}")
        else:
            st.caption(note)


def used_fallback(restoration) -> bool:
    """Whether a restoration's notes name a fallback."""
    return any(note.lower().startswith("fallback") for note in (getattr(restoration, "notes", ()) or ()))


#: Fewer labelled images than this and a set measurement (nodal dropout, a sensitivity set) says
#: nothing: accuracies move in steps of 1/n and a "set" of one pair is one image.
MIN_LABELLED_IMAGES = 10


def too_few_labelled(model: PixelModel, available: int, what: str, why: str | None = None) -> str | None:
    """Why ``what`` is not measured with only ``available`` labelled images (``why``, default: the
    accuracy steps of 1/n), and what the user can do; None when there are enough."""
    if available >= MIN_LABELLED_IMAGES:
        return None
    have = "no labelled image" if available == 0 else f"only {plural(available, 'labelled image')}"
    why = why or "with n images every accuracy moves in steps of 1/n, so the measurement would say nothing"
    return (
        f"{model.name} has {have} here (a sample whose true class is known), and {what} needs at least "
        f"{MIN_LABELLED_IMAGES}: {why}. What you can do: upload images in the sidebar and give each its true class, or choose a model "
        "with a labelled test split (the embedded digits models have 360 test images)."
    )
