"""Neurons of a data set: what the sidebar's attack does to every neuron over the evaluation images,
beside a matched control (:mod:`neuronviz.workflows.population`). Everything heavy goes through ``analysis.memo``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app import components
from app import export_controls as exports
from app import runs as analysis
from app.evaluation_set import evaluation_images
from neuronviz.figures import population as figs
from neuronviz.infra.errors import NeuronvizError
from neuronviz.methods.controls import control_norm_for
from neuronviz.methods.influence import default_layer, probe_layers
from neuronviz.workflows import population

IMAGES = "population.images"
KEEP_IMAGES = "population.images_kept"
LAYER = "population.layer"
FRACTION = "population.fraction"
DETAIL_LAYER = "population.detail_layer"
QUANTITY = "population.quantity"
ALL = "all"
DEFAULT_IMAGES = 100

SHARE_COLUMNS = {
    "front_suppressed": "front activation fell",
    "tail_enhanced": "tail activation rose",
    "front_suppressed_influence": "front influence fell",
    "tail_enhanced_influence": "tail influence fell",
}


def rate_text(rate: dict[str, Any]) -> str:
    """``81% [76–85%] n=1220`` or ``not defined (reason)``."""
    if rate.get("share") is None:
        return f"not defined ({rate.get('reason')})"
    return f"{100 * rate['share']:.0f}% [{100 * rate['low']:.0f}–{100 * rate['high']:.0f}%] n={rate['n']}"


def summary_frame(result: population.Population) -> pd.DataFrame:
    """The per-layer table the page shows: each count as attack | noise (share [95% CI] n), the
    difference, and the median Spearman of each perturbation."""
    rows = []
    for name, layer in result.layers.items():
        row: dict[str, Any] = {"layer": name, "neurons": layer.neurons}
        for key, words in SHARE_COLUMNS.items():
            entry = layer.counts[key]
            row[f"{words}: attack"] = rate_text(entry["attack"])
            row[f"{words}: noise"] = rate_text(entry["control"])
            diff = entry["difference"]
            row[f"{words}: attack − noise"] = (f"{100 * diff['difference']:+.0f} pp" + (
                f" [{100 * diff['low']:+.0f}, {100 * diff['high']:+.0f}]" if diff.get("low") is not None else "")) \
                if diff.get("difference") is not None else f"not defined ({diff.get('reason')})"
        for side, words in (("attack", "attack"), ("control", "noise")):
            s = layer.spearman[side]
            row[f"median ρ clean vs {words}"] = (f"{s['median']:.2f}" + (f" [{s['low']:.2f}, {s['high']:.2f}]" if s.get("low") is not None else "")
                                                  + (f" ({s['left_out']} undefined left out)" if s.get("left_out") else "")) \
                if s["median"] is not None else f"not defined ({s.get('reason')})"
        row["neurons moved beyond noise"] = sum(1 for r in layer.table if r["consistent"])
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(result: population.Population, layer: str) -> str:
    """One computed sentence per layer: the front and tail halves, attack vs noise, told apart or not."""
    entry = result.layers[layer]
    parts = []
    for key, words in (("front_suppressed", "front activations fell"), ("tail_enhanced", "tail activations rose")):
        count = entry.counts[key]
        attack, control, diff = count["attack"], count["control"], count["difference"]
        if attack.get("share") is None:
            parts.append(f"{words}: not defined ({attack.get('reason')})")
            continue
        told = diff.get("low") is not None and (diff["low"] > 0 or diff["high"] < 0)
        parts.append(
            f"{words} in {100 * attack['share']:.0f}% of pairs under {result.attack.upper()} and {100 * control['share']:.0f}% "
            f"under noise of the same size ({'the difference is beyond chance' if told else 'the two cannot be told apart'})"
        )
    return f"**{layer}**: " + "; ".join(parts) + "."


def render() -> None:
    started = components.page_start()
    if started is None:
        return
    selection, model, choice = started
    st.caption(
        "What the sidebar's attack does to every neuron over the evaluation images, beside a **matched control**: "
        "random noise of the attack's own size (L∞: random signs × the attack's L∞ per image). Neurons are grouped on "
        "the clean image, so any change moves them toward the middle; the attack's effect is the part beyond the "
        "noise. NIP's observation (Chen et al., arXiv:2112.13060): attacks suppress the front (highest influence "
        f"toward the clean prediction) and enhance the tail. {population.SIGN_CONVENTION}"
    )
    components.persist(LAYER, FRACTION, DETAIL_LAYER, QUANTITY)
    controls = st.columns([2, 2, 1])
    with controls[0]:
        chosen = evaluation_images(model, count_key=IMAGES, keep_key=KEEP_IMAGES, default=DEFAULT_IMAGES,
                                   purpose="the neurons' changes are measured on")
    if not chosen.available or chosen.images is None:
        return
    names = [info.name for info in (analysis.attempt(probe_layers, model) or [])]
    default = analysis.attempt(default_layer, model)
    options = [ALL, *names]
    if st.session_state.get(LAYER) not in (None, *options):  # a layer of the previous model
        del st.session_state[LAYER]
    layer = controls[1].selectbox(
        "Layer", options, index=options.index(default) if default in options else 0, key=LAYER,
        format_func=lambda n: "every layer (slower)" if n == ALL else n,
        help="One layer, or every layer in one summary.",
    )
    fraction = controls[2].slider("Front / tail share", 0.05, 0.45, population.DEFAULT_FRACTION, 0.05, key=FRACTION)
    try:
        params = choice.params(model)
    except NeuronvizError as error:
        st.error(f"The sidebar's attack cannot run: {error}")
        return
    if choice.target is not None:
        st.info("This page runs the sidebar's attack untargeted (away from the clean prediction).")
    evaluation = chosen.images
    st.caption(f"Images: {evaluation.description}. Attack: {choice.describe(model)}; control: "
               f"{control_norm_for(choice.attack).replace('Linf', 'L∞')} noise of the same size, seed {choice.seed}.")
    with st.spinner(f"Attacking {components.plural(evaluation.size, 'image')}, adding the matched noise and computing every "
                    "neuron's activation and influence…"):
        result = analysis.attempt(analysis.memo, population.population, model, evaluation.images, evaluation.labels,
                                  choice.attack, params, layers=ALL if layer == ALL else [layer], fraction=float(fraction),
                                  seed=choice.seed, ids=list(evaluation.ids) or None)
    if result is None:
        return
    record = exports.set_record(model, evaluation.images, evaluation.labels, evaluation.description, result.attack,
                                result.params, None, result.seed, ids=evaluation.ids, page="population",
                                layer=layer, fraction=float(fraction), control_norm=result.control_norm)
    rates = result.rates()
    fooled = rates["fooled"]
    cells = st.columns(3)
    cells[0].metric("Fooled by the attack", rate_text(fooled).split(" n=")[0], help=population.FOOLED_DEFINITION)
    cells[1].metric("Prediction changed by the noise", rate_text(rates["control_changed_prediction"]).split(" n=")[0])
    cells[2].metric("Images", str(result.images))
    st.caption(f"Fooled: {population.FOOLED_DEFINITION}; {fooled['k']} of {fooled['n']} images. The shares below are over "
               "the neuron × image pairs of the fooled images; brackets: 95% Wilson intervals; attack − noise: the mean "
               "per-image difference with a bootstrap interval.")
    summary_section(result, model.name, record)
    distribution_section(result, model.name, record)
    consistent_section(result, evaluation, model.name, record)


def summary_section(result: population.Population, model_name: str, record: dict[str, Any]) -> None:
    st.subheader("Per layer: attack vs matched noise", divider="gray")
    if result.fooled_count == 0:
        st.info("The attack fooled none of these images: there is nothing to count. Raise ε or use more images.")
        return
    frame = summary_frame(result)
    st.dataframe(frame, hide_index=True, width="stretch")
    exports.export_controls(None, pd.DataFrame(result.summary_rows()), f"{model_name}-neurons-layers", record, key="population.export.layers")
    for name in result.layers:
        st.markdown(verdict(result, name))
    fig = analysis.attempt(components.figure, figs.layer_counts_figure, result)
    if fig is not None:
        components.chart(fig, f"{model_name}-neurons-layers", key="population.counts")


def distribution_section(result: population.Population, model_name: str, record: dict[str, Any]) -> None:
    st.subheader("Per neuron: the change under the attack and under the noise", divider="gray")
    if result.fooled_count == 0:
        return
    cols = st.columns(2)
    layers = list(result.layers)
    if st.session_state.get(DETAIL_LAYER) not in (None, *layers):  # a layer of another analysis
        del st.session_state[DETAIL_LAYER]
    layer = cols[0].selectbox("Layer shown", layers, key=DETAIL_LAYER) if len(layers) > 1 else layers[0]
    if layer not in result.layers:
        layer = layers[0]
    quantity = cols[1].segmented_control("Quantity", ["activation", "influence"], default="activation", required=True, key=QUANTITY) \
        or "activation"
    fig = analysis.attempt(components.figure, figs.neuron_distributions, result, layer, quantity)
    if fig is not None:
        components.chart(fig, f"{model_name}-neurons-{layer}", key="population.distributions")
    st.caption(
        "Each neuron's change (perturbed − clean) over the fooled images: boxes span the quartiles, whiskers 1.5 IQR. "
        "A neuron marked * is moved beyond the noise: a paired t-test of its attack change against its noise change "
        f"over the fooled images, corrected for the false discovery rate over every neuron analysed (q < {result.alpha:g})."
    )
    table = pd.DataFrame(result.layers[layer].table)
    with st.expander(f"Every neuron of {layer}"):
        st.dataframe(table, hide_index=True, width="stretch")
        exports.export_controls(None, table, f"{model_name}-neurons-{layer}-table", record, key="population.export.neurons")


def consistent_section(result: population.Population, evaluation, model_name: str, record: dict[str, Any]) -> None:
    st.subheader("Neurons the attack moves beyond the noise", divider="gray")
    consistent = [r for r in result.neuron_rows() if r["consistent"]]
    if not consistent:
        st.info("No neuron is moved beyond the matched noise at this false discovery rate: the attack's effect on single "
                "neurons cannot be told from noise of its size here.")
        return
    lowered = sum(1 for r in consistent if r["direction"] == "lowered")
    st.markdown(
        f"{components.plural(len(consistent), 'neuron')} of {sum(layer.neurons for layer in result.layers.values())} "
        f"moved beyond the noise ({lowered} lowered, {len(consistent) - lowered} raised). The strongest "
        f"{len(result.details)} (by |d_z|): their top-activating images of the set (outlined: the input region that reaches "
        "the neuron's strongest position, for layers with a spatial output) and their mean activation against ε "
        f"(on the first {result.eps_curve.get('images', 0)} images)."
    )
    if result.eps_curve.get("reason"):
        st.caption(f"No ε curve: {result.eps_curve['reason']}.")
    for detail in result.details:
        fig = analysis.attempt(components.figure, figs.neuron_detail_figure, detail, evaluation.images)
        if fig is not None:
            components.chart(fig, f"{model_name}-{detail.layer}-{detail.neuron}", key=f"population.detail.{detail.layer}.{detail.neuron}")
    exports.export_controls(None, pd.DataFrame(consistent), f"{model_name}-neurons-consistent", record, key="population.export.consistent")


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
