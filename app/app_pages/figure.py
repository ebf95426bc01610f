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

from app import components
from app import runs as analysis
from app import url_state as sessions_app
from neuronviz.figures import compose
from neuronviz.infra.errors import NeuronvizError
from neuronviz.workflows import analysis as library
from neuronviz.workflows import export
from neuronviz.workflows import session_record as sessions

WIDTHS = {"single": "Single column (85 mm)", "double": "Double column (178 mm)", "custom": "Custom"}
KEYS = (
    "figure.panels", "figure.charts", "figure.layer", "figure.after", "figure.tail_rule",
    "figure.width_preset", "figure.width_value.mm", "figure.width_value.in", "figure.unit", "figure.auto_height",
    "figure.height_value.mm", "figure.height_value.in",
    "figure.font", "figure.letters", "figure.dpi",
)

def render() -> None:
    st.title("Figure")
    st.caption(
        "A paper figure of the current analysis: choose the panels and charts, the size and the font; the preview "
        "is drawn at the printed size. Files are rendered on the server with the provenance record inside."
    )

    loaded = components.selection_and_analysis()
    if loaded is None:
        return
    selection, result = loaded
    model = selection.model
    layer_options: list[str] = list(result.layers)

    components.persist(*KEYS)
    if st.session_state.get("figure.layer") not in result.layers:
        st.session_state["figure.layer"] = result.default_layer
    # First visits start from these values (through session state, so no widget also gets a default).
    for key, value in sessions.FIGURE_DEFAULTS.items():
        st.session_state.setdefault(key, list(value) if isinstance(value, list) else value)

    # -- what to draw ----------------------------------------------------------------------------------
    # The pills take the whole width: in a half-width column the row is cut at 1280 px.
    st.pills(
        "Image panels",
        compose.PANELS,
        selection_mode="multi",
        format_func=lambda p: compose.PANEL_LABELS[p],
        key="figure.panels",
        help="Each image is titled with its prediction and confidence; the perturbation with its L∞ norm.",
    )
    st.pills(
        "Charts",
        compose.CHARTS,
        selection_mode="multi",
        format_func=lambda c: compose.CHART_LABELS[c],
        key="figure.charts",
        help="The ε sweep runs the attack at 9 more budgets (from 0 to twice the chosen one) and is cached; the "
        "filters are the first convolution's, those the attack shifts most.",
    )
    left, right = st.columns(2, gap="large")
    with left:
        columns = st.columns(2)
        columns[0].selectbox(
            "Layer",
            layer_options,
            key="figure.layer",
            format_func=lambda name: f"{name} (default)" if name == result.default_layer else name,
            help="The layer of the front/tail chart, shaded in the layer charts.",
        )
        columns[1].selectbox(
            "Compare the clean image with",
            compose.AFTER,
            format_func=lambda c: library.CONDITION_LABELS[c],
            key="figure.after",
        )
        pair = st.columns(2)
        size = components.group_fraction()  # the one front/tail size of every view
        note = components.group_fraction_note()
        pair[0].caption(f"{note[0].upper()}{note[1:]}.")
        pair[1].radio("Tail rule", ("bottom", "next"), key="figure.tail_rule", horizontal=True)
    with right:
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
        dpi = triple[2].selectbox("PNG resolution", export.DPI_CHOICES, key="figure.dpi", format_func=lambda d: f"{d} dpi")

    # The spec from the controls' values, as `python -m neuronviz figure --session` builds it from a session file.
    spec = sessions.figure_spec({key: st.session_state[key] for key in KEYS if key in st.session_state}, group_size=size)
    data: dict[str, Any] = {}
    if any(chart in spec.charts for chart in compose.EXTRA_CHARTS):
        with st.spinner("Computing the ε sweep and the first-layer maps (cached)…"):
            try:
                data = compose.chart_data(model, result, spec, run=analysis.memo)
            except NeuronvizError as error:
                dropped = [c for c in compose.EXTRA_CHARTS if c in spec.charts]
                st.warning(
                    f"{analysis.error_message(error)} The figure is drawn without: {', '.join(compose.CHART_LABELS[c] for c in dropped)}.",
                    icon=":material/warning:",
                )
                spec = compose.FigureSpec(**{**spec.__dict__, "charts": tuple(c for c in spec.charts if c not in dropped)})
    try:
        fig = components.figure(compose.compose_figure, result, model.class_names, spec, true_class=selection.true_class, data=data)
        numbers = compose.figure_numbers(result, model.class_names, spec, data)
    except NeuronvizError as error:
        st.warning(analysis.error_message(error), icon=":material/warning:")
        return

    width_mm, height_mm = compose.size_mm(fig)
    image_name = selection.image_request.sample_id or (
        selection.image_request.upload.name if selection.image_request.upload is not None else selection.image_request.label
    )
    shown_defences = [p for p in spec.panels if p in library.RESTORATIONS] or list(library.RESTORATIONS)
    record = library.provenance(
        model,
        result,
        image_name,
        defences=shown_defences,
        extra={"figure": {"panels": list(spec.panels), "charts": list(spec.charts), "layer": numbers["layer"],
                          "after": spec.after, "group_size": spec.group_size, "tail_rule": spec.tail_rule,
                          "width_mm": width_mm, "height_mm": height_mm, "font_pt": spec.font_pt, "dpi": int(dpi)},
               "image_label": selection.image_request.label},
    )
    stem = f"neuronviz-{model.name}-{image_name}-{result.choice.attack}".replace("/", "_").replace(" ", "_")

    # -- preview and downloads --------------------------------------------------------------------------
    st.subheader(f"Preview: {width_mm:.0f} × {height_mm:.0f} mm", divider="gray")
    st.caption(
        f"Drawn at the printed size ({width_mm / export.MM_PER_INCH:.2f} × {height_mm / export.MM_PER_INCH:.2f} in, "
        f"{spec.font_pt:g} pt text). {result.choice.describe(model)} on {selection.image_request.label}."
    )
    components.chart(fig, stem, key="figure.preview", width="content")


    def _rendered(fmt: str) -> Callable[[], bytes]:
        def build() -> bytes:  # run only when the download is clicked
            return export.export_figure(fig, fmt, width_mm, height_mm, dpi=int(dpi), provenance=record)

        return build


    buttons = st.columns(6)
    if export.available():
        buttons[0].download_button("PDF", _rendered("pdf"), f"{stem}.pdf", "application/pdf", icon=":material/picture_as_pdf:", key="figure.pdf")
        buttons[1].download_button("SVG", _rendered("svg"), f"{stem}.svg", "image/svg+xml", icon=":material/draw:", key="figure.svg")
        buttons[2].download_button(f"PNG {dpi} dpi", _rendered("png"), f"{stem}.png", "image/png", icon=":material/image:", key="figure.png")
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
    buttons[4].download_button("Numbers (CSV)", compose.numbers_csv(numbers), f"{stem}.numbers.csv", "text/csv", icon=":material/table:", key="figure.csv")
    buttons[5].download_button(
        "Numbers (JSON)", json.dumps(numbers, indent=2, ensure_ascii=False), f"{stem}.numbers.json", "application/json",
        icon=":material/data_object:", key="figure.json",
    )
    with st.expander("The numbers behind the figure"):
        st.dataframe(compose.numbers_rows(numbers), hide_index=True, key="figure.numbers")
    choice = result.choice
    command = [f"python -m neuronviz figure --model {model.name} --image {image_name} --attack {choice.attack}"]
    command += [f"--param {key}={value}" for key, value in choice.overrides]
    if choice.target is not None:
        command.append(f"--target {choice.target}")
    command.append(f"--seed {choice.seed} --defences {','.join(shown_defences)} --panels {','.join(spec.panels) or 'none'}")
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
    session_text, session_stem = sessions_app.session_file(selection)
    st.download_button(
        "Download session", session_text, f"{session_stem}.json", "application/json", icon=":material/download:",
        key="figure.session",
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
