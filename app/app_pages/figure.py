"""Figure: compose a paper figure from the current analysis and download it with its provenance.

The figure is :func:`neuronviz.figures.compose.compose_figure` of the session's cached analysis
(the same numbers as the Attack and Neurons pages and as ``python -m neuronviz figure``); PDF,
SVG and PNG are rendered on the server by :mod:`neuronviz.workflows.export` when a download is clicked,
each with the provenance record embedded; the record and the numbers behind the figure
(CSV, JSON) download beside them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st

from app import components, model_facts
from app import export_controls as exports
from app import runs as analysis
from app import url_state as sessions_app
from app.columns import columns as column_layout
from neuronviz.figures import compose, page_controls
from neuronviz.infra.errors import NeuronvizError
from neuronviz.workflows import analysis as library
from neuronviz.workflows import export

WIDTHS = {"single": "Single column (85 mm)", "double": "Double column (178 mm)", "custom": "Custom"}
KEYS = (
    "figure.panels", "figure.charts", "figure.layer", "figure.after", "figure.tail_rule",
    "figure.width_preset", "figure.width_value.mm", "figure.width_value.in", "figure.unit", "figure.auto_height",
    "figure.height_value.mm", "figure.height_value.in",
    "figure.font", "figure.letters", "figure.dpi",
)
#: The text height of a journal page (mm), roughly: a taller figure does not fit one page.
PAGE_HEIGHT_MM = 240.0


def render() -> None:
    st.caption(
        "A paper figure of the current analysis: choose the panels and charts, the size and the font; the preview "
        "is drawn at the printed size. Files are rendered on the server with the provenance record inside."
    )
    loaded = components.selection_and_analysis()
    if loaded is None:
        return
    selection, result = loaded
    _start_controls(result)
    dpi = _controls(result)
    # The spec from the controls' values, as `python -m neuronviz figure --session` builds it from a session file.
    spec = page_controls.figure_spec({key: st.session_state[key] for key in KEYS if key in st.session_state},
                                group_size=components.group_fraction())
    spec, data = _chart_data(selection.model, result, spec)
    try:
        fig = components.figure(compose.compose_figure, result, selection.model.class_names, spec, true_class=selection.true_class, data=data)
        numbers = compose.figure_numbers(result, selection.model.class_names, spec, data)
    except NeuronvizError as error:
        st.warning(analysis.error_message(error), icon=":material/warning:")
        return
    width_mm, height_mm = compose.size_mm(fig)
    image_name = _image_name(selection)
    shown_defences = [r for r in result.restorations if r in spec.panels or r == spec.after] or list(library.RESTORATIONS)
    record = library.provenance(
        selection.model, result, image_name, defences=shown_defences,
        extra={"figure": {"panels": list(spec.panels), "charts": list(spec.charts), "layer": numbers["layer"],
                          "after": spec.after, "group_size": spec.group_size, "tail_rule": spec.tail_rule,
                          "width_mm": width_mm, "height_mm": height_mm, "font_pt": spec.font_pt, "dpi": int(dpi)},
               "image_label": selection.image_request.label},
    )
    stem = f"neuronviz-{selection.model.name}-{image_name}-{result.choice.attack}".replace("/", "_").replace(" ", "_")

    st.subheader(f"Preview: {width_mm:.0f} × {height_mm:.0f} mm", divider="gray")
    _page_height_check(selection, result, spec, data, height_mm)
    st.caption(
        f"Drawn at the printed size ({width_mm / export.MM_PER_INCH:.2f} × {height_mm / export.MM_PER_INCH:.2f} in, "
        f"{spec.font_pt:g} pt text). {result.choice.describe(selection.model)} on {selection.image_request.label}."
        + model_facts.caption_note(selection.model)
    )
    components.chart(fig, stem, key="figure.preview", width="content")
    _restoration_verdicts(selection, result, spec)
    _downloads(fig, (width_mm, height_mm), int(dpi), record, numbers, stem)
    _command(selection.model, result, spec, numbers, image_name, shown_defences, (width_mm, height_mm), int(dpi))
    session_text, session_stem = sessions_app.session_file(selection)
    st.download_button(
        "Download session", session_text, f"{session_stem}.json", "application/json", icon=":material/download:",
        key="figure.session",
    )


# -- the controls ---------------------------------------------------------------------------------------


def panel_choices(result) -> tuple[str, ...]:
    """The image panels this analysis can draw: clean, perturbation, adversarial and each of its
    restorations (NIP (guided), PSSR and the defences chosen under Methods), in drawing order."""
    return tuple(p for p in page_controls.panel_options() if p in compose.PANELS or p in result.restorations)


def after_choices(result) -> tuple[str, ...]:
    """The conditions this analysis can compare with the clean image: the attack and each restoration."""
    return tuple(c for c in page_controls.after_options() if c == "adversarial" or c in result.restorations)


def panel_label(result, panel: str) -> str:
    """A panel's name on the page; a restoration's with its outcome ("JPEG · restored")."""
    if panel in result.restorations:
        return f"{compose.PANEL_LABELS.get(panel) or result.condition_labels[panel]} · {result.outcome(panel)}"
    return compose.PANEL_LABELS[panel]


def _start_controls(result) -> None:
    """Keep the controls across pages; a layer of this analysis; first visits from FIGURE_DEFAULTS;
    panels and comparisons of restorations this analysis did not run (no longer chosen under Methods) dropped."""
    components.persist(*KEYS)
    if st.session_state.get("figure.layer") not in result.layers:
        st.session_state["figure.layer"] = result.default_layer
    if "figure.panels" in st.session_state:
        st.session_state["figure.panels"] = [p for p in st.session_state["figure.panels"] if p in panel_choices(result)]
    if st.session_state.get("figure.after", "adversarial") not in after_choices(result):
        st.session_state["figure.after"] = "adversarial"
    # First visits start from these values (through session state, so no widget also gets a default).
    for key, value in page_controls.FIGURE_DEFAULTS.items():
        st.session_state.setdefault(key, list(value) if isinstance(value, list) else value)


def _controls(result) -> int:
    """What to draw (panels, charts, layer, comparison) and how large; returns the PNG resolution."""
    # The pills take the whole width: in a half-width column the row is cut at 1280 px.
    st.pills(
        "Image panels", panel_choices(result), selection_mode="multi", format_func=lambda p: panel_label(result, p),
        key="figure.panels",
        help="Each image is titled with its prediction and confidence; the perturbation with its L∞ norm. The "
        "restorations are those of the analysis (NIP (guided), PSSR and the defences chosen under Methods on "
        "the Neurons page), each with its outcome.",
    )
    st.pills(
        "Charts", compose.CHARTS, selection_mode="multi", format_func=lambda c: compose.CHART_LABELS[c], key="figure.charts",
        help="The ε sweep runs the attack at 9 more budgets (from 0 to twice the chosen one) and is cached; the "
        "filters are the first convolution's, those the attack shifts most.",
    )
    left, right = st.columns(2, gap="large")
    with left:
        _what_controls(result)
    with right:
        return _size_controls()


def _what_controls(result) -> None:
    columns = st.columns(2)
    columns[0].selectbox(
        "Layer", list(result.layers), key="figure.layer",
        format_func=lambda name: f"{name} (default)" if name == result.default_layer else name,
        help="The layer of the front/tail chart, shaded in the layer charts.",
    )
    columns[1].selectbox(
        "Compare the clean image with", after_choices(result), format_func=lambda c: result.condition_labels[c], key="figure.after",
    )
    pair = st.columns(2)
    note = components.group_fraction_note()
    pair[0].caption(f"{note[0].upper()}{note[1:]}.")
    pair[1].radio("Tail rule", ("bottom", "next"), key="figure.tail_rule", horizontal=True)


def _size_controls() -> int:
    preset = st.radio("Width", list(WIDTHS), format_func=WIDTHS.get, key="figure.width_preset", horizontal=True)
    pair = st.columns(2)
    unit = pair[1].radio("Unit", ("mm", "in"), key="figure.unit", horizontal=True, disabled=preset != "custom")
    factor = 1.0 if unit == "mm" else export.MM_PER_INCH
    if preset == "custom":
        pair[0].number_input(
            f"Width ({unit})", min_value=20.0 / factor, max_value=500.0 / factor,
            step=1.0 if unit == "mm" else 0.1, key=f"figure.width_value.{unit}",
        )
    else:
        preset_mm = export.WIDTH_PRESETS[preset]
        pair[0].metric("Width", f"{preset_mm:.0f} mm", help=f"{preset_mm / export.MM_PER_INCH:.2f} in")
    auto_height = st.checkbox("Height from the content", key="figure.auto_height")
    if not auto_height:
        st.number_input(
            f"Height ({unit})", min_value=20.0 / factor, max_value=600.0 / factor,
            step=1.0 if unit == "mm" else 0.1, key=f"figure.height_value.{unit}",
        )
    triple = st.columns(3)
    triple[0].number_input("Font size (pt)", min_value=5.0, max_value=14.0, step=0.5, key="figure.font")
    triple[1].checkbox("Panel letters", key="figure.letters")
    return int(triple[2].selectbox("PNG resolution", export.DPI_CHOICES, key="figure.dpi", format_func=lambda d: f"{d} dpi"))


def _restoration_verdicts(selection, result, spec: compose.FigureSpec) -> None:
    """Under the preview: each drawn restoration's label and outcome verdict (restored, not restored,
    nothing to restore), as on the Attack page."""
    names = selection.model.class_names
    shown = [p for p in spec.panels if p in result.restorations]
    if not shown:
        return
    verdicts = []
    for condition in shown:
        predicted = result.prediction(condition)
        verdict = library.restoration_verdict(result.outcome(condition), names[result.benign_class], names[predicted])
        verdicts.append(f"**{result.condition_labels[condition]}**: {verdict}")
    st.markdown(" · ".join(verdicts))


# -- the figure's data and size --------------------------------------------------------------------------


def _chart_data(model, result, spec: compose.FigureSpec) -> tuple[compose.FigureSpec, dict[str, Any]]:
    """The ε sweep's and the filters' data when those charts are chosen (cached); on a library
    error the figure is drawn without them, and the page says so."""
    if not any(chart in spec.charts for chart in compose.EXTRA_CHARTS):
        return spec, {}
    with st.spinner("Computing the ε sweep and the first-layer maps (cached)…"):
        try:
            return spec, compose.chart_data(model, result, spec, run=analysis.memo)
        except NeuronvizError as error:
            dropped = [c for c in compose.EXTRA_CHARTS if c in spec.charts]
            st.warning(
                f"{analysis.error_message(error)} The figure is drawn without: {', '.join(compose.CHART_LABELS[c] for c in dropped)}.",
                icon=":material/warning:",
            )
            return compose.FigureSpec(**{**spec.__dict__, "charts": tuple(c for c in spec.charts if c not in dropped)}), {}


def _height_of(selection, result, spec: compose.FigureSpec, data) -> float:
    """The height (mm) of the figure ``spec`` draws (composed once per content, cached)."""
    fig = components.figure(compose.compose_figure, result, selection.model.class_names, spec, true_class=selection.true_class, data=data)
    return compose.size_mm(fig)[1]


def fitting_layouts(selection, result, spec: compose.FigureSpec, data) -> list[tuple[str, dict[str, Any], float]]:
    """Layouts near ``spec`` whose height (from the content) fits :data:`PAGE_HEIGHT_MM`:
    ``(label, the controls' new values, height mm)``: the double column at the same content (when
    narrower), and the fewest charts dropped (last ones first) at the same width."""
    natural = compose.FigureSpec(**{**spec.__dict__, "height_mm": None})
    offers: list[tuple[str, dict[str, Any], float]] = []
    double = export.WIDTH_PRESETS["double"]
    if spec.width_mm < double:
        height = _height_of(selection, result, compose.FigureSpec(**{**natural.__dict__, "width_mm": double}), data)
        if height <= PAGE_HEIGHT_MM:
            offers.append((f"Double column ({double:.0f} × {height:.0f} mm)",
                           {"figure.width_preset": "double", "figure.auto_height": True}, height))
    charts = list(spec.charts)
    while charts:
        charts.pop()
        if "top5" in charts and not [p for p in spec.panels if p != "perturbation"]:
            continue
        if not charts and not spec.panels:
            break
        height = _height_of(selection, result, compose.FigureSpec(**{**natural.__dict__, "charts": tuple(charts)}), data)
        if height <= PAGE_HEIGHT_MM:
            kept = ", ".join(compose.CHART_LABELS[c] for c in charts) or "no chart"
            offers.append((f"Keep only {kept} ({spec.width_mm:.0f} × {height:.0f} mm)",
                           {"figure.charts": list(charts), "figure.auto_height": True}, height))
            break
    return offers


def _apply(values: dict[str, Any]) -> None:
    for key, value in values.items():
        st.session_state[key] = value


def _page_height_check(selection, result, spec: compose.FigureSpec, data, height_mm: float) -> None:
    """A figure taller than a journal page: say so, and offer layouts that fit (buttons)."""
    if height_mm <= PAGE_HEIGHT_MM:
        return
    offers = fitting_layouts(selection, result, spec, data)
    st.warning(
        f"The figure is {height_mm:.0f} mm tall: more than a journal page's text height (about {PAGE_HEIGHT_MM:.0f} mm), "
        + ("so it would not fit one page. Layouts that fit:" if offers else
           "so it would not fit one page. Choose fewer charts or a wider figure."),
        icon=":material/height:",
    )
    if offers:
        columns = column_layout(len(offers))
        for index, (label, values, _) in enumerate(offers):
            columns[index].button(label, key=f"figure.fit.{index}", on_click=_apply, args=(values,), icon=":material/fit_page:")


# -- downloads and the command line -------------------------------------------------------------------------


def _downloads(fig, size: tuple[float, float], dpi: int, record: dict, numbers: dict, stem: str) -> None:
    width_mm, height_mm = size

    def rendered(fmt: str) -> Callable[[], bytes]:
        def build() -> bytes:  # run only when the download is clicked
            return export.export_figure(fig, fmt, width_mm, height_mm, dpi=dpi, provenance=record)

        return build

    buttons = st.columns(6)
    if export.available():
        buttons[0].download_button("PDF", rendered("pdf"), f"{stem}.pdf", "application/pdf", icon=":material/picture_as_pdf:", key="figure.pdf")
        buttons[1].download_button("SVG", rendered("svg"), f"{stem}.svg", "image/svg+xml", icon=":material/draw:", key="figure.svg")
        buttons[2].download_button(f"PNG {dpi} dpi", rendered("png"), f"{stem}.png", "image/png", icon=":material/image:", key="figure.png")
    else:
        st.warning(
            "No chromium was found on this server, so the figure cannot be rendered here as PDF, SVG or PNG. The "
            "camera button of the preview's toolbar still downloads an SVG from your browser.",
            icon=":material/warning:",
        )
    buttons[3].download_button(
        "Provenance", json.dumps(record, indent=2, ensure_ascii=False), f"{stem}.provenance.json", "application/json",
        icon=":material/fingerprint:", key="figure.provenance",
    )
    buttons[4].download_button("Numbers (CSV)", numbers_csv(numbers, record, stem), f"{stem}.numbers.csv", "text/csv",
                               icon=":material/table:", key="figure.csv")
    buttons[5].download_button(
        "Numbers (JSON)", json.dumps({"provenance": record, **numbers}, indent=2, ensure_ascii=False, default=str),
        f"{stem}.numbers.json", "application/json", icon=":material/data_object:", key="figure.json",
    )
    with st.expander("The numbers behind the figure"):
        st.dataframe(compose.numbers_rows(numbers), hide_index=True, key="figure.numbers")


def numbers_csv(numbers: dict, record: dict, stem: str) -> str:
    """The figure's numbers as CSV with the provenance record in its leading ``# `` lines (as every
    other CSV of the dashboard: :func:`app.export_controls.csv_text`, read back by ``exports.read_csv``)."""
    import pandas as pd

    frame = pd.DataFrame(compose.numbers_rows(numbers), columns=list(compose.NUMBER_COLUMNS))
    return exports.csv_text(frame, stem, record)


def _command(model, result, spec: compose.FigureSpec, numbers: dict, image_name: str, defences: list[str],
             size: tuple[float, float], dpi: int) -> None:
    width_mm, height_mm = size
    choice = result.choice
    command = [f"python -m neuronviz figure --model {model.name} --image {image_name} --attack {choice.attack}"]
    command += [f"--param {key}={value}" for key, value in choice.overrides]
    if choice.target is not None:
        command.append(f"--target {choice.target}")
    command.append(f"--seed {choice.seed} --defences {','.join(defences)} --panels {','.join(spec.panels) or 'none'}")
    command.append(f"--charts {','.join(spec.charts) or 'none'} --layer {numbers['layer']} --after {spec.after}")
    command.append(f"--group-size {spec.group_size} --tail-rule {spec.tail_rule} --width {width_mm:.4g}mm")
    if spec.height_mm is not None:
        command.append(f"--height {height_mm:.4g}mm")
    command.append(f"--font-size {spec.font_pt:g} --dpi {dpi}" + ("" if spec.letters else " --no-letters") + " --out fig.pdf")
    st.caption(
        "PDF, SVG and PNG carry the provenance record inside (PDF Info, SVG metadata, PNG text chunk): model and "
        "content hash, image and content hash, attack and parameters, target, seed, defences, device, versions, time. "
        "The same figure from the command line (a registered model and a sample image):"
    )
    st.code(" \\\n    ".join(command), language="bash")
    st.caption(
        "Or the whole session (sidebar and this page's controls, uploads by SHA-256), also under the sidebar's "
        "Session expander; `python -m neuronviz figure --session session.json --out fig.pdf` renders it:"
    )


def _image_name(selection) -> str:
    request = selection.image_request
    return request.sample_id or (request.upload.name if request.upload is not None else request.label)


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
