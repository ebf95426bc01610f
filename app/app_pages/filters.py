"""First-layer filters: weights and feature maps, fragile and robust filters, compress/amplify.

Pravin, Martino, Nicosia, Ojha, ICANN 2021 (arXiv:2201.12347), as reconstructed in
:mod:`neuronviz.methods.fragility` (no code is public). Everything heavy goes through ``analysis.memo``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import components, state
from app import export_controls as exports
from app import runs as analysis
from app.evaluation_set import evaluation_images
from neuronviz.core.models import PixelModel
from neuronviz.data import labelled as evalset
from neuronviz.figures import filters as figs
from neuronviz.infra.errors import NeuronvizError
from neuronviz.methods import fragility
from neuronviz.methods.attacks import get_attack

IMAGES = "filters.images"
KEEP_IMAGES = "filters.images_kept"  # plain state: survives visits to other pages (widget state does not)
ATTACK = "filters.attack"
BETA = "filters.beta"
CURVE = "filters.curve"
SHOW = "filters.show"
INPUT_CHANNEL = "filters.input_channel"
PAPER_ATTACK, SIDEBAR_ATTACK = "fgsm", "sidebar"
#: β values of the curve (the slider's value is added to them).
CURVE_BETAS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
#: Above this many filters the grid shows the fragile and robust ones by default.
GRID_LIMIT = 32
DEFAULT_EPS = 0.1


def linf_eps(choice: analysis.AttackChoice, model) -> float | None:
    """The sidebar choice's L∞ budget, or None when its attack has no L∞ ε."""
    info = get_attack(choice.attack)
    try:
        params = choice.params(model)
    except NeuronvizError:  # an invalid choice is reported by the sidebar; fall back to the default
        return None
    eps = params.get("eps")
    norm = params.get("norm", info.norm)
    if norm != "Linf" or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
        return None
    return float(eps)


def fragility_attack(mode: str, choice: analysis.AttackChoice, model) -> tuple[str, float, dict, str]:
    """(attack, eps, other parameters, description) of the attack the dropout runs."""
    if mode == PAPER_ATTACK:
        eps = linf_eps(choice, model)
        source = "the sidebar's L∞ ε" if eps is not None else "the default: the sidebar's attack has no L∞ ε"
        eps = eps if eps is not None else DEFAULT_EPS
        return "fgsm", eps, {}, f"FGSM, ε = {components.eps_label(eps)} ({source}), as in the paper"
    params = choice.params(model)  # InputError for an invalid choice: shown by analysis.attempt
    eps = params.pop("eps", DEFAULT_EPS)
    return choice.attack, float(eps), params, f"{choice.describe(model)} (the sidebar's attack, untargeted here)"


def _check_input_channel(in_channels: int) -> None:
    """A link's or another model's input channel that this first layer does not have: a message,
    and the mean over the channels instead (a selectbox given a value outside its options fails)."""
    value = st.session_state.get(INPUT_CHANNEL)
    if value is not None and value != "mean" and value not in range(in_channels):
        st.warning(
            f"filters.input_channel={value!r} was not used (the first layer has {in_channels} input channels, "
            f"0 to {in_channels - 1}): showing the mean over them.",
            icon=":material/link_off:",
        )
        st.session_state[INPUT_CHANNEL] = "mean"


def render() -> None:
    started = components.page_start()
    if started is None:
        return
    selection, model, choice = started
    st.caption(
        "Fragile and robust neurons of the first convolution, after Pravin, Martino, Nicosia, Ojha, "
        "*Adversarial Robustness in Deep Learning: Attacks on Fragile Neurons* (ICANN 2021, arXiv:2201.12347). "
        "The paper's code is not public: nodal dropout, targeting, the fragility score and compress/amplify "
        "are a **reconstruction** (docs/fragility.md)."
    )

    components.persist(ATTACK, BETA, CURVE, SHOW, INPUT_CHANNEL)
    controls = st.columns([2, 3])
    with controls[0]:  # the labelled images (built-in or the user's) and how many: kept across pages
        chosen = evaluation_images(
            model, count_key=IMAGES, keep_key=KEEP_IMAGES, purpose="the nodal dropout and compress/amplify are measured on"
        )
    too_few = components.too_few_labelled(model, chosen.available, "the nodal dropout (and compress/amplify)")
    if too_few is not None:
        st.warning(too_few, icon=":material/label_off:")
    if not chosen.available:
        return
    mode = controls[1].radio(
        "Attack for the fragility analysis",
        [PAPER_ATTACK, SIDEBAR_ATTACK],
        format_func=lambda m: "FGSM (the paper's attack)" if m == PAPER_ATTACK else f"the sidebar's attack ({get_attack(choice.attack).label})",
        horizontal=True,
        key=ATTACK,
    )
    evaluation = chosen.images
    spec = analysis.attempt(fragility_attack, mode, choice, model)
    report = None
    record: dict[str, Any] = {}
    if evaluation is not None and spec is not None and too_few is None:
        attack, eps, params, attack_text = spec
        st.caption(f"Images: {evaluation.description}. Attack: {attack_text}.")
        layer_name = analysis.attempt(fragility.first_conv, model)
        if layer_name is not None:
            with st.spinner(
                f"Nodal dropout: dropping each filter of {layer_name} in turn on {evaluation.size} clean and "
                f"{evaluation.size} attacked images…"
            ):
                report = analysis.attempt(
                    analysis.memo,
                    fragility.first_layer_fragility,
                    model,
                    evaluation.images,
                    evaluation.labels,
                    attack=attack,
                    eps=eps,
                    params=params,
                    seed=choice.seed,
                )
        record = exports.set_record(
            model, evaluation.images, evaluation.labels, evaluation.description, attack, {"eps": eps, **params}, None,
            choice.seed, ids=evaluation.ids, page="filters", layer=layer_name,
        )

    grid_section(selection, choice, report)
    dropout_section(model, report, too_few, record)
    rescale_section(model, choice, report, evaluation, record)


# -- the filter grid ---------------------------------------------------------------------------------


def grid_section(selection: state.Selection, choice: analysis.AttackChoice, report: fragility.FragilityReport | None) -> None:
    """Each first-layer filter: its weights and its maps on the clean and the adversarial image."""
    model = selection.model
    st.subheader("Filters, clean vs adversarial", divider="gray")
    current = components.current_analysis(selection)
    if current is not None:
        maps = analysis.attempt(analysis.memo, fragility.first_layer_maps, model, current.clean, current.adversarial)
        if maps is not None:
            count, in_channels = int(maps.weights.shape[0]), int(maps.weights.shape[1])
            shown = None
            options = st.columns(2)
            if count > GRID_LIMIT and report is not None and (report.fragile or report.robust):
                which = options[0].segmented_control(
                    "Filters shown", ["fragile and robust", "all"], default="fragile and robust", required=True, key=SHOW
                )
                if which != "all":
                    shown = sorted(report.fragile + report.robust)
            input_channel = None
            if in_channels > 1:
                _check_input_channel(in_channels)
                picked = options[1].selectbox(
                    "Weights of input channel",
                    ["mean", *range(in_channels)],
                    format_func=lambda c: "mean over the input channels" if c == "mean" else f"channel {c}",
                    key=INPUT_CHANNEL,
                )
                input_channel = None if picked == "mean" else int(picked)
            grid = analysis.attempt(
                components.figure,
                figs.filter_grid,
                maps,
                labels=report.labels if report is not None else None,
                filters=shown,
                per_row=4,
                input_channel=input_channel,
            )
            frame = maps.to_frame()
            if report is not None:
                frame["label"] = list(report.labels)
            grid_record = exports.analysis_record(selection, current, page="filters", filters_shown=shown)
            if grid is not None:
                components.chart(grid, f"{model.name}-first-layer-filters", key="filters.grid")
                exports.export_controls(grid, frame, f"{model.name}-first-layer-filters", grid_record, key="filters.export.grid")
            st.caption(
                f"Each filter of {maps.layer}: its weights (blue negative, vermillion positive, one scale for all), then its "
                "feature map on the clean image and on the adversarial image of the sidebar's attack "
                f"({choice.describe(model)}), both on one scale. Outlined "
                ":red[**vermillion**]: fragile; :blue[**blue**]: robust (from the nodal dropout below). "
                "*shift* = mean |a(x′) − a(x)| / mean |a(x)| of the filter's map on this image: how much the attack "
                "moved it, relative to its size."
            )
            with st.expander("Per-filter numbers on this image"):
                st.dataframe(frame, hide_index=True, width="stretch")
                exports.export_controls(None, frame, f"{model.name}-filter-shift-table", grid_record, key="filters.export.grid_table")
    else:
        st.info("The filter grid needs the current image's attack, which did not run (see the message above).")


# -- nodal dropout -----------------------------------------------------------------------------------


def dropout_section(model: PixelModel, report: fragility.FragilityReport | None, too_few: str | None, record: dict[str, Any]) -> None:
    """The nodal dropout: accuracies and targeting per dropped filter, fragile and robust filters."""
    st.subheader("Nodal dropout: which filters does the attack rely on?", divider="gray")
    if report is not None:
        dropout = analysis.attempt(components.figure, figs.dropout_chart, report)
        if dropout is not None:
            components.chart(dropout, f"{model.name}-nodal-dropout", key="filters.dropout")
            exports.export_controls(dropout, report.to_frame(), f"{model.name}-nodal-dropout", record, key="filters.export.dropout")
        st.caption(
            "Each filter's output channel is zeroed in turn. Top: the change of clean accuracy; middle: the change "
            "of accuracy on the attacked images (positive = the attack loses a channel it relies on); bottom: the "
            "attack's *targeting*, the share of the total change of the first layer's output that falls on the filter "
            "(black diamonds: the same for noise of the attack's size, the control). "
            f"Fragile: dropping it changes an accuracy by more than {100 * report.tolerance:.0f} pp and its score "
            f"(mean of |Δ adv. acc.| and targeting, each ÷ its maximum) is at least {report.fragile_threshold:g}; "
            f"robust: dropping it changes neither accuracy by more than {100 * report.tolerance:.0f} pp."
        )
        rho = report.rho()
        if not rho.defined:
            st.caption(
                f"ρ is not defined ({rho.reason}): with too few filters, or when dropping any filter changes the "
                "adversarial accuracy by the same amount, there is no ranking to correlate. More evaluation images give "
                "finer accuracy steps."
            )
        cells = st.columns(4)
        cells[0].metric(
            "Spearman ρ (dropout vs targeting)",
            "not defined" if not rho.defined else f"{rho.value:.3f}",
            help="Rank correlation between |Δ adversarial accuracy| when a filter is dropped and its targeting: "
            "the paper's claim is that the attack targets the filters whose removal matters (ρ > 0).",
        )
        cells[1].metric("Clean accuracy", f"{100 * report.clean_accuracy:.1f}%")
        cells[2].metric(f"Accuracy under {report.attack.upper()}", f"{100 * report.adv_accuracy:.1f}%",
                        help="Adversarial predictions equal to the true label, over all the images.")
        success = report.success
        cells[3].metric("Fragile / robust filters", f"{len(report.fragile)} / {len(report.robust)}")
        st.markdown(f"**ρ (dropout vs the attack's targeting)**: {rho.text()}.")
        if success is not None:
            st.markdown(
                f"**Attack success**: {success.text()}: {report.attack.upper()} changed the prediction on {success.k} "
                f"of the {success.n} images. Definition (the same as on the Batch page and in `evaluate`): "
                f"{fragility.SUCCESS_DEFINITION}. Here the attack pushes away from the true label (dropout measures "
                "accuracy); the Batch page's pushes away from the clean prediction, so on images the model already "
                "misclassifies the two attacks differ."
            )
        control_section(report)
        st.markdown(
            f"**Fragile** (most fragile first): {', '.join(map(str, report.fragile)) or 'none'} · "
            f"**Robust**: {', '.join(map(str, report.robust)) or 'none'} · "
            f"{components.plural(report.filters, 'filter')} of `{report.layer}`, {components.plural(report.images, 'image')}."
        )
        with st.expander("The numbers per filter"):
            st.dataframe(report.to_frame(), hide_index=True, width="stretch")
            exports.export_controls(None, report.to_frame(), f"{model.name}-fragility-table", record, key="filters.export.dropout_table")
    elif too_few is not None:
        st.info("No nodal dropout: too few labelled images (see the message at the top).")
    else:
        st.info("No dropout result to show (see the message above).")


def control_section(report: fragility.FragilityReport) -> None:
    """The targeting of matched noise beside the attack's, and whether the fragile filters are specific to the attack."""
    control = report.control
    if control is None:
        return
    norm = control.norm.replace("Linf", "L∞")
    st.markdown(
        f"**Control: noise of the same {norm}** (random signs × the attack's {norm} on every pixel, per image, seeded). "
        "A first layer's filters move under *any* change of the image in proportion to their own size, so the "
        "attack's targeting means something about the attack only where it differs from the noise's."
    )
    cells = st.columns(3)
    cells[0].metric("ρ dropout vs noise's targeting", "not defined" if not control.dropout_vs_control.defined
                    else f"{control.dropout_vs_control.value:.3f}")
    cells[1].metric("ρ attack's vs noise's targeting", "not defined" if not control.attack_vs_control.defined
                    else f"{control.attack_vs_control.value:.3f}")
    cells[2].metric("Accuracy under the noise", f"{100 * control.control_accuracy:.1f}%")
    st.markdown(
        f"- ρ of dropout vs the noise's targeting: {control.dropout_vs_control.text()}\n"
        f"- ρ of the attack's targeting vs the noise's: {control.attack_vs_control.text()}\n"
        f"- Share of the first layer's change that falls on the fragile filters, attack − noise (per image): "
        f"{control.specificity.text()}"
    )
    st.markdown(f"**{specificity_sentence(report)}**")


def specificity_sentence(report: fragility.FragilityReport) -> str:
    """The page's verdict: are the fragile filters specific to the attack? (computed, never fixed text)."""
    control = report.control
    if control is None:
        return "No control was computed."
    if not report.fragile:
        return "No filter is fragile here, so there is nothing to test for specificity."
    diff = control.specificity
    if not diff.defined:
        return f"Whether the fragile filters are specific to the attack is not defined ({diff.reason})."
    points = f"{100 * (diff.value or 0.0):+.1f} points"
    if report.specific_to_attack():
        return (f"The fragile filters are specific to the attack: they take {points} more of its change than of the "
                "matched noise's, and the interval lies above zero.")
    if diff.distinguishable:
        return (f"The fragile filters are not specific to the attack: they take {points} of its change relative to the "
                "matched noise's, i.e. less than the noise, and the interval lies below zero.")
    return (f"The fragile filters are not specific to the attack: the difference from the matched noise ({points}) "
            "cannot be told from zero.")


# -- compress / amplify -------------------------------------------------------------------------------


def rescale_section(
    model: PixelModel,
    choice: analysis.AttackChoice,
    report: fragility.FragilityReport | None,
    evaluation: evalset.EvaluationSet | None,
    record: dict[str, Any],
) -> None:
    """Compress the robust filters and amplify the fragile ones: accuracies at one β and over β."""
    st.subheader("Compress robust filters, amplify fragile ones", divider="gray")
    if report is None or evaluation is None:
        st.info("Compress/amplify needs the dropout result above.")
        return
    beta = st.slider(
        "β (rescaling strength)",
        min_value=0.0,
        max_value=1.0,
        value=0.2,
        step=0.05,
        key=BETA,
        help="Fragile filter i is multiplied by 1 + β·rᵢ, robust ones by 1 − β·rᵢ (rᵢ its normalised score); "
        "on a copy of the model, never on the shared one.",
    )
    chosen = _rescaled_accuracies(model, choice, report, evaluation, float(beta))
    show_curve = st.toggle(f"Curve over β ({', '.join(f'{b:g}' for b in CURVE_BETAS)})", value=True, key=CURVE)
    if show_curve and chosen is not None:
        _rescale_curve(model, choice, report, evaluation, float(beta), chosen, record)
    st.info(
        "**The paper's gain is not reproduced by this reconstruction.** On the embedded digits models "
        "(docs/fragility.md; first 200 digits test images, FGSM ε = 0.1, β = 0.2) accuracies move by at most "
        "±2.5 points: digits-cnn clean 98.0% → 97.5%, FGSM white-box 9.5% → 7.0%, transfer 9.5% → 10.5%. "
        "The paper's normalisation of rᵢ or a retraining step may be missing.",
        icon=":material/science:",
    )


def _rescaled_accuracies(
    model: PixelModel,
    choice: analysis.AttackChoice,
    report: fragility.FragilityReport,
    evaluation: evalset.EvaluationSet,
    beta: float,
) -> fragility.RescaleEvaluation | None:
    """The three accuracies (clean, white-box, transfer) of the copy rescaled at ``beta``, against the
    unchanged model; returns the result (None if it failed)."""
    with st.spinner(f"Rescaling the first layer (β = {beta:g}) and attacking the copy on {components.plural(evaluation.size, 'image')}…"):
        chosen = analysis.attempt(
            analysis.memo, fragility.evaluate_rescaled, model, evaluation.images, evaluation.labels, report,
            beta=beta, seed=choice.seed,
        )
    if chosen is not None:
        cells = st.columns(3)
        for cell, (label, before, after) in zip(
            cells,
            [
                ("Clean accuracy", chosen.clean_before, chosen.clean_after),
                ("Adversarial, white-box", chosen.adv_before, chosen.adv_after),
                ("Adversarial, transfer", chosen.adv_before, chosen.adv_transfer_after),
            ],
        ):
            cell.metric(
                f"{label} (β = {beta:g})",
                f"{100 * after:.1f}%",
                delta=f"{100 * (after - before):+.1f} pp vs {100 * before:.1f}%",
                delta_color="normal",
            )
        st.caption(
            "White-box: the rescaled copy is attacked again; transfer: the copy is fed the adversarial images made "
            "against the original model. Before = the model unchanged (β = 0)."
        )
    return chosen


def _rescale_curve(
    model: PixelModel,
    choice: analysis.AttackChoice,
    report: fragility.FragilityReport,
    evaluation: evalset.EvaluationSet,
    beta: float,
    chosen: fragility.RescaleEvaluation,
    record: dict[str, Any],
) -> None:
    """The accuracies over β (the curve's βs and the chosen one), with the best values measured."""
    betas = sorted(set(CURVE_BETAS) | {beta})
    progress = st.progress(0.0, text="Compress/amplify over β…")
    points = []
    for i, b in enumerate(betas):
        progress.progress(i / len(betas), text=f"Compress/amplify at β = {b:g} ({i + 1} of {len(betas)})…")
        point = analysis.attempt(
            analysis.memo, fragility.evaluate_rescaled, model, evaluation.images, evaluation.labels, report,
            beta=float(b), seed=choice.seed,
        )
        if point is None:
            break
        points.append(point)
    progress.empty()
    if len(points) != len(betas):
        return
    curve = analysis.attempt(components.figure, figs.rescale_curve, points, beta=beta)
    if curve is not None:
        components.chart(curve, f"{model.name}-compress-amplify", key="filters.curve_chart")
        exports.export_controls(
            curve, exports.rescale_rows(points), f"{model.name}-compress-amplify", record, key="filters.export.curve"
        )
    best = max(points, key=lambda p: p.adv_after)
    best_transfer = max(points, key=lambda p: p.adv_transfer_after)
    st.markdown(
        f"**Measured here** ({components.plural(evaluation.size, 'image')}, {report.attack.upper()}): unchanged, "
        f"{100 * chosen.adv_before:.1f}% adversarial accuracy; the best white-box value over these β is "
        f"{100 * best.adv_after:.1f}% (β = {best.beta:g}), the best transfer value "
        f"{100 * best_transfer.adv_transfer_after:.1f}% (β = {best_transfer.beta:g}); clean accuracy goes from "
        f"{100 * chosen.clean_before:.1f}% to {100 * min(p.clean_after for p in points):.1f}% at worst."
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
