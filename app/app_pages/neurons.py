"""Neurons: how the attack moves the influence of every neuron, and whether a defence moves it back.

NIP (Chen et al., arXiv:2112.13060) observes that attacks suppress the front neurons (most
influential toward the correct class) and lift the tail neurons. Everything here except the input
attributions comes from the session's cached analysis (influence of every probe layer for the
clean, adversarial and restored images, all toward the benign class); the per-layer tables and
the attributions go through ``analysis.memo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st
import torch

from app import components
from app import export_controls as exports
from app import runs as analysis
from neuronviz.core.models import PixelModel
from neuronviz.figures import captions
from neuronviz.figures import neurons as neuron_figures
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import get_attack
from neuronviz.methods.attribution import get_attribution, input_attribution, list_attributions
from neuronviz.methods.defences import get_defence
from neuronviz.methods.influence import (
    DEFAULT_GROUP_FRACTION,
    SIGN_CONVENTION,
    InfluenceMap,
    InfluenceShift,
    LayerInfo,
    NeuronGroups,
    group_sizes,
    influence_shift,
    probe_layers,
)
from neuronviz.workflows import evidence as evidence_lib

AFTER_CONDITIONS = ("adversarial", *analysis.RESTORATIONS)
#: What the one-layer charts may compare the clean image with: the attack, the restorations, or the control.
CHART_CONDITIONS = ("adversarial", analysis.CONTROL, *analysis.RESTORATIONS)
AFTER_COLORS = {"adversarial": "adversarial", "nip-guided": "restored", "pssr": "restored", analysis.CONTROL: "control"}
GROUP_SOURCES = {
    "clean": "the clean image (its own ranking)",
    "reference": "the class over the evaluation set",
}
TAIL_RULES = {
    "bottom": "bottom (the lowest)",
    "next": "next (after the front)",
}

# The page's controls (session_state keys; kept across pages by components.persist).
LAYER_KEY = "neurons.layer"
TAIL_RULE_KEY = "neurons.tail_rule"
AFTER_KEY = "neurons.after"
ATTRIBUTION_METHOD_KEY = "neurons.attribution_method"
ATTRIBUTION_ADVERSARIAL_KEY = "neurons.attribution_adversarial"
GROUPS_KEY = "neurons.groups"
#: Resamples of the one-image ρ's bootstrap interval and permutation p: fewer than stats' default
#: (2000 took 19 s for 64 neurons on the loaded 2-core machine); the result is cached.
RHO_RESAMPLES = 500
KEYS = (LAYER_KEY, components.GROUP_FRACTION_KEY, TAIL_RULE_KEY, AFTER_KEY, ATTRIBUTION_METHOD_KEY, ATTRIBUTION_ADVERSARIAL_KEY,
        GROUPS_KEY)


@dataclass(frozen=True)
class View:
    """What the controls chose: the layer, the front/tail size, the tail rule and the condition compared."""

    layer: str
    size: float
    tail_rule: str
    after: str
    groups: str = "clean"
    labels: dict[str, str] | None = None  # each condition's word (the analysis' restorations: their defences' short labels)

    @property
    def after_label(self) -> str:
        return (self.labels or analysis.CONDITION_LABELS)[self.after]

    @property
    def after_color(self) -> str:
        return AFTER_COLORS.get(self.after, "restored")


def render() -> None:
    st.caption(
        "NIP's observation (Chen et al., arXiv:2112.13060): an attack suppresses the neurons that contribute most "
        "to the correct class (the **front**) and enhances those that contribute least (the **tail**). Every count "
        "is shown beside the same count under the **matched control**: random noise of the attack's norm and size. "
        "Influence of a "
        "neuron = activation × gradient of the benign class's logit, summed over a channel's positions (over the "
        "tokens for a transformer's token layers; its attention heads are neurons too)."
    )
    analysis.method_controls()  # the restorations compared and the influence method: every registered one
    found = components.selection_and_analysis()
    if found is None:
        return
    selection, result = found
    model = selection.model
    infos = {info.name: info for info in probe_layers(model)}

    view = controls(result, infos)
    record = exports.analysis_record(
        selection, result, view={"layer": view.layer, "group_size": view.size, "tail_rule": view.tail_rule, "after": view.after,
                                 "groups": view.groups}
    )
    reference = reference_groups(model, result, view)
    if reference is not None:
        record = {**record, "reference_groups": {"description": reference.description, "images": reference.images}}
    shift = one_layer(model, result, view, record, reference)
    if shift is None:
        return
    tables = across_network(result, view, infos, record, reference)
    restoration_section(tables, view, record)
    st.subheader("Input attributions: clean vs adversarial", divider="gray")
    attributions(model, result, record)


# -- controls -------------------------------------------------------------------------------------


def _layer_label(name: str, infos: dict[str, LayerInfo], default_layer: str) -> str:
    info = infos.get(name)
    if info is None:
        return name
    unit = {"heads": "heads", "tokens": "units"}.get(info.kind, "ch" if len(info.output_shape) > 1 else "units")
    default = " · default" if name == default_layer else ""
    return f"#{info.index + 1} {name} · {info.kind} · {info.channels} {unit}{default}"


def controls(result: analysis.Analysis, infos: dict[str, LayerInfo]) -> View:
    """The layer, front/tail size, tail rule and condition controls (kept across pages)."""
    components.persist(*KEYS)
    if st.session_state.get(LAYER_KEY) not in result.layers:  # first visit, or another model's layer
        st.session_state[LAYER_KEY] = result.default_layer
    if st.session_state.get(components.GROUP_FRACTION_KEY) not in components.GROUP_FRACTIONS:
        st.session_state[components.GROUP_FRACTION_KEY] = components.group_fraction()
        if st.session_state[components.GROUP_FRACTION_KEY] not in components.GROUP_FRACTIONS:
            st.session_state[components.GROUP_FRACTION_KEY] = DEFAULT_GROUP_FRACTION

    with st.container(border=True):
        # Two rows, so that the layer's long label and the radios are never cut at 1280 px.
        first = st.columns([3, 2], gap="medium")
        second = st.columns([2, 3], gap="medium")
        layer = first[0].selectbox(
            "Layer (forward order)",
            result.layers,
            format_func=lambda name: _layer_label(name, infos, result.default_layer),
            key=LAYER_KEY,
            help="Every probe layer of the model, input to output, with its kind and neuron count ('default': the "
            "last feature layer, NIP's choice). A neuron is a channel (ch) of a convolutional layer, its influence "
            "summed over positions, or a unit of a linear layer.",
        )
        size = first[1].select_slider(
            "Front/tail size",
            components.GROUP_FRACTIONS,
            format_func=lambda v: f"{v:.0%}",
            key=components.GROUP_FRACTION_KEY,
            help="Share of the layer's neurons in the front (the most influential on the clean image) and in the "
            f"tail; at least one neuron each. Default {DEFAULT_GROUP_FRACTION:.0%}. The same size is used by the "
            "guided tour, the ε sweep on the Attack page and the Defences page.",
        )
        tail_rule = second[0].radio(
            "Tail rule",
            list(TAIL_RULES),
            format_func=lambda r: TAIL_RULES[r],
            key=TAIL_RULE_KEY,
            horizontal=True,
            help="bottom: the tail is the least influential neurons (NIP's main script); next: the ranks right "
            "after the front (the variant in the authors' second script).",
        )
        after_conditions = chart_conditions(result)
        if st.session_state.get(AFTER_KEY) not in after_conditions:  # a restoration no longer compared
            st.session_state[AFTER_KEY] = "adversarial"
        after = second[1].radio(
            "Compare the clean image with",
            after_conditions,
            format_func=lambda c: result.condition_labels[c],
            key=AFTER_KEY,
            horizontal=True,
            help="The adversarial image, the matched control (random noise of the attack's norm and size), or the "
            "adversarial image after a defence (NIP guided toward the benign class, or PSSR).",
        )
        groups = st.radio(
            "Front and tail chosen on",
            list(GROUP_SOURCES),
            format_func=lambda g: GROUP_SOURCES[g],
            key=GROUPS_KEY,
            horizontal=True,
            help="The clean image's own ranking (NIP's choice), or a ranking independent of the compared pair: the "
            "benign class's mean influence over the evaluation set's images of that class. The evidence table shows both.",
        )
    # A radio with options always has a value; None only if the options were empty.
    return View(layer=str(layer), size=float(size), tail_rule=str(tail_rule or "bottom"), after=str(after or "adversarial"),
                groups=str(groups or "clean"), labels=result.condition_labels)


def chart_conditions(result: analysis.Analysis) -> tuple[str, ...]:
    """What the one-layer charts may compare the clean image with: the attack, the control, and
    this analysis' restorations (every one chosen under Methods, plugins too)."""
    return ("adversarial", analysis.CONTROL, *result.restorations)


def reference_groups(model: PixelModel, result: analysis.Analysis, view: View) -> evidence_lib.ReferenceGroups | None:
    """Groups independent of the compared pair (cached), or None with the reason on the page.

    An evaluation set without other images of the benign class is not an error: the groups are
    then not defined, and the page says why (as info) and keeps the clean image's groups."""
    def groups_or_reason() -> evidence_lib.ReferenceGroups | None:
        try:
            return analysis.memo(
                evidence_lib.reference_groups_for, model, result.clean, result.benign_class, list(result.layers),
                view.size, view.size, view.tail_rule,
            )
        except InputError as error:
            st.info(f"Groups from the evaluation set are not defined here: {error}.", icon=":material/info:")
            return None

    return analysis.attempt(groups_or_reason)


def chosen_groups(
    view: View, reference: evidence_lib.ReferenceGroups | None, layer: str
) -> tuple[NeuronGroups | None, str]:
    """The groups the charts use and what they are (the reference groups fall back to the clean
    image's own, named so, when they could not be computed)."""
    if view.groups == "reference" and reference is not None and layer in reference.groups:
        return reference.for_images(layer), "reference"
    return None, "clean"


# -- one layer --------------------------------------------------------------------------------------


def one_layer(
    model: PixelModel, result: analysis.Analysis, view: View, record: dict[str, Any],
    reference: evidence_lib.ReferenceGroups | None = None,
) -> InfluenceShift | None:
    """The chosen layer: captions, the four numbers, scatter, transitions and front/tail bars; None
    (with a message) when the groups or the shift cannot be computed."""
    layer, size, after = view.layer, view.size, view.after
    before_map = result.influence["clean"][layer]
    after_map = result.influence[after][layer]
    counts = analysis.attempt(group_sizes, before_map.neurons, size, size)
    if counts is None:
        return None
    front_count, tail_count = counts
    _layer_caption(model, result, view, reference, before_map.neurons, front_count, tail_count)
    _restoration_notes(result, after)
    groups, source = chosen_groups(view, reference, layer)
    if view.groups == "reference" and source == "clean":
        st.warning("The groups from the evaluation set could not be computed (the reason is above); the charts use "
                   "the clean image's own groups.", icon=":material/warning:")
    shift = analysis.attempt(influence_shift, before_map, after_map, groups=groups, front=size, tail=size, tail_rule=view.tail_rule)
    if shift is None:
        return None
    st.subheader(f"{layer}: influence before and after", divider="gray")
    evidence_section(result, view, reference, record)
    _shift_numbers(shift, before_map, after_map, front_count, view.after_label)
    neurons = exports.influence_rows(before_map, after_map, shift, after)
    _scatter_and_transitions(model, result, view, shift, neurons, record)
    _front_tail_bars(model, result, view, shift, neurons, record)
    return shift


def _layer_caption(
    model: PixelModel, result: analysis.Analysis, view: View, reference: evidence_lib.ReferenceGroups | None,
    neuron_count: int, front_count: int, tail_count: int,
) -> None:
    """Which class the influence is toward, how the front and tail are picked, and the predictions."""
    class_names = model.class_names
    after, after_label = view.after, view.after_label
    st.caption(
        f"Influence toward class **{class_names[result.benign_class]}** (the clean prediction) for every image. At "
        f"**{view.layer}** ({neuron_count} neurons) the front is the top {front_count} and the tail the "
        f"{'bottom' if view.tail_rule == 'bottom' else 'next'} {tail_count} on "
        + ("the class's mean over the evaluation set. " if view.groups == "reference" and reference is not None
           else "the clean image. ")
        + f"The adversarial image is predicted **{class_names[result.prediction('adversarial')]}**"
        + ("" if result.attack_succeeded else " (the attack did not change the prediction)")
        + (f"; {after_label} gives **{class_names[result.prediction(after)]}**." if after != "adversarial" else ".")
    )


def _restoration_notes(result: analysis.Analysis, after: str) -> None:
    """When the image after is a restoration: what of its defence is reconstructed, and its fallback."""
    if after in result.restorations:
        defense = get_defence(after)
        if defense.reconstruction:
            st.caption(f":material/construction: {defense.label} is partly a reconstruction: {defense.reconstruction}")
        if components.used_fallback(result.restorations[after]):
            components.restoration_notes(result.restorations[after])


def _shift_numbers(
    shift: InfluenceShift, before_map: InfluenceMap, after_map: InfluenceMap, front_count: int, after_label: str
) -> None:
    """The front overlap and the rank correlation (with its interval when defined), and their sentence."""
    metrics = st.columns(2)
    overlap = shift.overlap_rate(0)
    metrics[0].metric(
        "Front overlap",
        f"{overlap.share:.0%}" if overlap.share is not None else "not defined",
        help=f"Share of the {front_count} front neurons that are still front on the {after_label} image: "
        f"{overlap.text()} (Wilson interval over the front's neurons).",
    )
    rho = float(shift.spearman[0])
    metrics[1].metric(
        "Rank correlation ρ",
        "not defined" if rho != rho else f"{rho:.2f}",
        help="Spearman correlation of the neurons' influence, clean vs after: 1 = same order, 0 = unrelated."
        + (f" Not defined here: {shift.correlation_reason(0)}." if rho != rho else ""),
    )
    correlation = None
    if rho == rho:  # defined: its bootstrap interval over the neurons and permutation p (cached)
        from neuronviz.methods.stats import correlation as rank_correlation

        correlation = analysis.attempt(analysis.memo, rank_correlation, before_map.values[0], after_map.values[0],
                                       resamples=RHO_RESAMPLES)
    st.caption(f"Front overlap {overlap.text()}. {captions.shift_sentence(shift, correlation=correlation)}")


def _scatter_and_transitions(
    model: PixelModel, result: analysis.Analysis, view: View, shift: InfluenceShift, neurons: pd.DataFrame, record: dict[str, Any]
) -> None:
    """The influence scatter (clean vs after) beside the group-transition heatmap, each with its export."""
    layer, after, after_label = view.layer, view.after, view.after_label
    before_map, after_map = result.influence["clean"][layer], result.influence[after][layer]
    left, right = st.columns([3, 2], gap="medium")
    with left:
        name = f"influence-{layer}-clean-vs-{after}"
        scatter = components.figure(
            neuron_figures.influence_scatter, before_map, after_map, shift, model.class_names[result.benign_class],
            after_label=after_label,
        )
        components.chart(scatter, name, key="neurons.scatter")
        exports.export_controls(scatter, neurons, name, record, key="neurons.export.scatter")
        st.caption(captions.scatter_caption(shift, after_label))
    with right:
        name = f"transition-{layer}-clean-vs-{after}"
        heatmap = components.figure(neuron_figures.transition_heatmap, shift.transition, after_label=after_label)
        components.chart(heatmap, name, key="neurons.transition")
        exports.export_controls(
            heatmap, exports.transition_rows(shift, after), name, record, key="neurons.export.transition", width_mm=exports.NARROW_MM
        )
        st.caption(captions.transition_caption(shift, after_label))


def _front_tail_bars(
    model: PixelModel, result: analysis.Analysis, view: View, shift: InfluenceShift, neurons: pd.DataFrame, record: dict[str, Any]
) -> None:
    """The front and tail neurons' influence, clean vs after (and the matched control), with its export."""
    layer, after, after_label = view.layer, view.after, view.after_label
    before_map, after_map = result.influence["clean"][layer], result.influence[after][layer]
    benign_name = model.class_names[result.benign_class]
    name = f"front-tail-{layer}-clean-vs-{after}"
    bars = components.figure(
        neuron_figures.group_bars,
        before_map,
        after_map,
        shift.groups_before,
        benign_name,
        after_label=after_label,
        after_color=view.after_color,
        control=result.influence.get("control", {}).get(layer) if after == "adversarial" else None,
        control_label=result.control.label if result.control is not None else "noise of the same size",
    )
    components.chart(bars, name, key="neurons.bars")
    shown = neurons[neurons["group_clean"] != "middle"].sort_values("rank_clean")  # the bars: the clean front and tail
    exports.export_controls(bars, shown, name, record, key="neurons.export.bars")
    st.caption(captions.group_bars_caption(before_map, after_map, shift.groups_before, benign_name, after_label))


def evidence_section(
    result: analysis.Analysis, view: View, reference: evidence_lib.ReferenceGroups | None, record: dict[str, Any]
) -> None:
    """The attack beside its matched control on this layer, on both group choices, with n and intervals."""
    if result.control is None:
        st.info("This analysis has no matched control; run the attack again to compute one.", icon=":material/info:")
        return
    layer = view.layer
    evidences = {"clean": evidence_lib.analysis_evidence(result, layer, view.size, view.size, view.tail_rule)}
    if reference is not None and layer in reference.groups:
        evidences["reference"] = evidence_lib.analysis_evidence(
            result, layer, view.size, view.size, view.tail_rule, groups=reference.for_images(layer)
        )
    attack_label = get_attack(result.choice.attack).label
    shown = evidences.get(view.groups, evidences["clean"])
    st.markdown(captions.evidence_sentence(shown, attack_label, result.control.label))
    rows = pd.DataFrame(evidence_lib.evidence_rows(evidences))
    st.dataframe(
        rows[["what", "chosen on", "attack_short", "control_short", "verdict"]],
        hide_index=True,
        key="neurons.evidence",
        column_config={
            "what": st.column_config.TextColumn("measure", help=SIGN_CONVENTION),
            "chosen on": st.column_config.TextColumn("groups chosen on"),
            "attack_short": st.column_config.TextColumn(
                f"{attack_label}", help="k of n neurons, the share and its 95% Wilson interval"
            ),
            "control_short": st.column_config.TextColumn(f"{result.control.label}"),
            "verdict": st.column_config.TextColumn(
                "verdict", help="One image: its neurons are not independent observations, so no test is made; "
                "the neurons of a data set (`neuronviz neurons`) can tell the attack from the control."
            ),
        },
    )
    exports.export_controls(None, rows, f"evidence-{layer}", {**record, "matched_control": result.control.to_dict()},
                            key="neurons.export.evidence")
    st.caption(
        f"{evidence_lib.SELECTION_NOTE} Matched control: {result.control.description} "
        f"({result.control.symbol} {result.control.size:.3g}; the attack's {result.control.attack_size:.3g}), seed "
        f"{result.control.seed}; it {'changed' if result.control_changed_prediction else 'did not change'} the prediction."
        + (f" Groups from the evaluation set: {reference.description}." if reference is not None else "")
    )


# -- the whole network ----------------------------------------------------------------------------

#: How the per-layer table's columns are shown.
TABLE_COLUMNS: dict[str, Any] = {
    "layer": st.column_config.TextColumn("layer"),
    "kind": st.column_config.TextColumn("kind"),
    "neurons": st.column_config.NumberColumn("neurons", format="%d"),
    "spearman": st.column_config.NumberColumn("Spearman ρ", format="%.2f"),
    "kendall": st.column_config.NumberColumn("Kendall τ", format="%.2f"),
    "front_overlap": st.column_config.NumberColumn("front overlap", format="percent"),
    "front_suppressed_activation_share": st.column_config.NumberColumn(
        "front lost activation", format="percent", help="Share of the front's neurons whose activation fell (n in the CSV)."
    ),
    "control_front_suppressed_activation_share": st.column_config.NumberColumn("… under noise", format="percent"),
    "tail_enhanced_activation_share": st.column_config.NumberColumn(
        "tail gained activation", format="percent", help="Share of the tail's neurons whose activation rose."
    ),
    "control_tail_enhanced_activation_share": st.column_config.NumberColumn("… under noise", format="percent"),
    "correlation_note": st.column_config.TextColumn("ρ note"),
    "front_influence_change": st.column_config.NumberColumn(
        "front Δ influence (logit)", format="%.3g", help="Mean change (after − clean) over the clean front."
    ),
    "tail_influence_change": st.column_config.NumberColumn(
        "tail Δ influence (logit)", format="%.3g", help="Mean change (after − clean) over the clean tail."
    ),
}


def shift_table(
    result: analysis.Analysis, condition: str, view: View, reference: evidence_lib.ReferenceGroups | None = None
) -> pd.DataFrame | None:
    """The per-layer shift clean → ``condition`` beside the matched control (cached), or None with a message."""
    groups = None
    if view.groups == "reference" and reference is not None:
        groups = {layer: reference.for_images(layer) for layer in reference.groups}
    return analysis.attempt(
        analysis.memo,
        evidence_lib.evidence_table,
        result.influence["clean"],
        result.influence[condition],
        result.influence[analysis.CONTROL],
        front=view.size,
        tail=view.size,
        tail_rule=view.tail_rule,
        groups=groups,
    )


def with_kinds(overview: pd.DataFrame, infos: dict[str, LayerInfo]) -> pd.DataFrame:
    """The per-layer table with each layer's kind after its name (the table the page shows)."""
    shown = overview.assign(kind=[infos[name].kind if name in infos else "" for name in overview["layer"]])
    return shown[["layer", "kind", *[c for c in overview.columns if c != "layer"]]]


def across_network(
    result: analysis.Analysis, view: View, infos: dict[str, LayerInfo], record: dict[str, Any],
    reference: evidence_lib.ReferenceGroups | None = None,
) -> dict[str, pd.DataFrame | None]:
    """The layer overview of the chosen condition and its table; returns every condition's table."""
    st.subheader("Across the network", divider="gray")
    layer, after_label = view.layer, view.after_label
    tables = {condition: shift_table(result, condition, view, reference) for condition in chart_conditions(result)}
    overview = tables[view.after]
    if overview is not None:
        name = f"layers-clean-vs-{view.after}"
        chart = components.figure(
            neuron_figures.layer_overview, overview, layer, after_label=after_label, after_color=view.after_color
        )
        components.chart(chart, name, key="neurons.layers")
        table = with_kinds(overview, infos)
        exports.export_controls(chart, table, name, record, key="neurons.export.layers")
        st.caption(captions.layer_overview_caption(overview, layer, after_label, result.control.label
                                                   if result.control is not None else "the matched control"))
        with st.expander(f"Table: the shift clean → {after_label} in every layer"):
            st.dataframe(table, hide_index=True, key="neurons.table", column_config=TABLE_COLUMNS)
            exports.export_controls(None, table, f"layer-shift-table-clean-vs-{view.after}", record, key="neurons.export.table")
    return tables


# -- back to the clean ranking? ------------------------------------------------------------------


def restoration_section(tables: dict[str, pd.DataFrame | None], view: View, record: dict[str, Any]) -> None:
    st.subheader("Does the defence restore the clean ranking?", divider="gray")
    compared = [c for c in tables if c != analysis.CONTROL]  # the attack and every restoration of the analysis
    frames = {condition: tables[condition] for condition in compared if tables.get(condition) is not None}
    if len(frames) != len(compared):
        return
    chart = components.figure(neuron_figures.restoration_overview, frames, view.layer, labels=view.labels)
    components.chart(chart, "restoration-by-layer", key="neurons.restoration")
    exports.export_controls(chart, exports.layer_rows(frames), "restoration-by-layer", record, key="neurons.export.restoration")
    st.markdown(neuron_figures.restoration_sentence(frames, view.layer, labels=view.labels))
    st.caption(
        "The ranking of each image's neurons compared with the clean image's, layer by layer. A defence that "
        "undoes the attack brings its line up toward ρ = 1 and 100% front overlap; the restored images' "
        "predictions are on the Attack page."
    )


# -- input attributions ---------------------------------------------------------------------------


@st.fragment
def attributions(model: PixelModel, result: analysis.Analysis, record: dict[str, Any]) -> None:
    """Method picker and heat maps; a fragment, so switching the method reruns only this section."""
    class_names = model.class_names
    adversarial_class = result.prediction("adversarial")
    methods = [entry.name for entry in list_attributions()]  # the registry: built-ins and plugins
    columns = st.columns([3, 2], vertical_alignment="bottom")
    method = columns[0].radio(
        "Method",
        methods,
        format_func=lambda m: get_attribution(m).label,
        horizontal=True,
        key=ATTRIBUTION_METHOD_KEY,
    )
    toward_adversarial = columns[1].checkbox(
        f"Also toward the adversarial class ({class_names[adversarial_class]})",
        value=False,
        key=ATTRIBUTION_ADVERSARIAL_KEY,
        disabled=adversarial_class == result.benign_class,
    )
    method = method or methods[0]
    entry = get_attribution(method)
    st.caption(entry.caption(model) + ". Both maps of a pair share one colour scale.")
    pair = torch.cat([result.clean, result.adversarial])
    targets = [(result.benign_class, "benign")]
    if toward_adversarial and adversarial_class != result.benign_class:
        targets.append((adversarial_class, "adversarial"))
    label = entry.label
    for target, role in targets:
        with st.spinner(f"Computing {label} toward class {class_names[target]}…"):
            attribution = analysis.attempt(
                analysis.memo,
                input_attribution,
                model,
                pair,
                method=method,
                target=target,
            )  # the method's own layer rule (Grad-CAM: a CNN's last feature layer, a ViT's last norm1)
        if attribution is None:
            continue
        name = f"{method}-toward-{class_names[target]}"
        maps = components.figure(
            neuron_figures.attribution_pair,
            attribution.values[0],
            attribution.values[1],
            method,
            class_names[target],
            title=f"{label} toward the {role} class {class_names[target]}",
        )
        components.chart(maps, name, key=f"neurons.attribution.{role}")
        values = attribution.values

        def pixels(values: torch.Tensor = values, method: str = method, target: int = target) -> pd.DataFrame:
            return exports.attribution_rows(values).assign(method=method, target_class=target)

        exports.export_controls(maps, pixels, name, {**record, "attribution": {"method": method, "target": target}},
                                key=f"neurons.export.attribution.{role}")
    st.caption(
        "Where in the input the evidence for the class sits, on the clean image (left) and the adversarial image "
        "(right). A scale shared by the two maps shows how much evidence the attack removed or moved."
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
