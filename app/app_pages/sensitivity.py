"""Neuron sensitivity: per layer, per channel, the most sensitive channels' maps, and the
standard vs adversarially trained vs SNS model comparison.

Zhang, Liu, Liu et al., IEEE TIP 30:1291–1304, 2021 (arXiv:1909.06978), as implemented in
:mod:`neuronviz.methods.sensitivity`. Everything heavy goes through ``analysis.memo``.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import components, state
from app import export_controls as exports
from app import runs as analysis
from app.evaluation_set import evaluation_images
from neuronviz.core.models import PixelModel, list_models
from neuronviz.data import labelled as evalset
from neuronviz.figures import sensitivity as figs
from neuronviz.methods import feature_maps, sensitivity
from neuronviz.methods.sensitivity import SensitivityMap

IMAGES = "sensitivity.images"
KEEP_IMAGES = "sensitivity.images_kept"  # plain state: survives visits to other pages
LAYER = "sensitivity.layer"
SOURCE = "sensitivity.source"
TOP_K = "sensitivity.top_k"
#: Pairs a page measures by default (the evaluation set and the comparison).
DEFAULT_IMAGES = 100
#: The comparison: the embedded models of this architecture (standard, PGD-trained, SNS-trained).
COMPARED_ARCHITECTURE = "digits-cnn"
COMPARISON_COLORS = {"digits-cnn": "tail", "digits-cnn-robust": "front", "digits-cnn-sns": "restored"}
IMAGE, SET = "image", "set"
#: compare_models attacks sets untargeted, against the true labels.
TARGET_NOTE = " (sets are attacked untargeted, away from the true class: the target applies to the single image)"

def render() -> None:
    started = components.page_start()
    if started is None:
        return
    selection, model, choice = started
    st.caption(
        "Zhang, Liu, Liu et al., *Interpreting and Improving Adversarial Robustness of Deep Neural Networks with "
        "Neuron Sensitivity* (IEEE TIP 2021, arXiv:1909.06978). The sensitivity of channel m of layer l over pairs "
        "(x, x′) is σ = mean over pairs of ‖F(x) − F(x′)‖₁ / dim(F), as in the authors' lab code: how far the attack "
        "moves the channel, per element. The SNS fine-tuning of the third model below is a **reconstruction** "
        "(docs/sensitivity.md)."
    )

    with st.columns([1, 2])[0]:  # the labelled images (built-in or the user's) and how many: kept across pages
        chosen = evaluation_images(
            model, count_key=IMAGES, keep_key=KEEP_IMAGES, default=DEFAULT_IMAGES,
            purpose="are attacked to measure sensitivity over a set of pairs",
        )
    too_few = components.too_few_labelled(
        model,
        chosen.available,
        "a sensitivity set",
        "a mean over so few pairs is not a set's profile (with one labelled image the \"set\" is a single image, "
        "drawn as a second curve next to this image's)",
    )
    if too_few is not None:
        st.warning(too_few + " Only this image's sensitivity is shown.", icon=":material/label_off:")

    current, one, set_result, record = per_layer(selection, choice, chosen.images if too_few is None else None)
    per_channel(model, current, one, set_result, record)
    comparison_section(selection)


# -- per layer ---------------------------------------------------------------------------------------


def per_layer(
    selection: state.Selection, choice: analysis.AttackChoice, evaluation: evalset.EvaluationSet | None
) -> tuple[analysis.Analysis | None, dict[str, SensitivityMap] | None, sensitivity.SensitivityComparison | None, dict[str, Any]]:
    """σ per layer on this image and on the evaluation set; returns (analysis, this image's map,
    the set's result, the provenance record of both)."""
    model = selection.model
    st.subheader("Sensitivity per layer", divider="gray")
    current = components.current_analysis(selection)
    one = None
    if current is not None:
        one = analysis.attempt(analysis.memo, sensitivity.neuron_sensitivity, model, current.clean, current.adversarial)

    set_result = None
    params = analysis.attempt(choice.params, model)
    if params is not None:
        if evaluation is not None:
            with st.spinner(f"Attacking {components.plural(evaluation.size, 'image')} ({choice.describe(model)}) and measuring every layer…"):
                set_result = analysis.attempt(
                    analysis.memo,
                    sensitivity.compare_models,
                    {model.name: model},
                    evaluation.images,
                    evaluation.labels,
                    attack=choice.attack,
                    params=params,
                    seed=choice.seed,
                )

    record = sensitivity_record(selection, choice, current, evaluation if set_result is not None else None, params)
    profiles = {}
    if one is not None:
        profiles[f"this image ({components.plural(1, 'pair')})"] = one
    if set_result is not None:
        profiles[f"evaluation set ({components.plural(set_result.images, 'pair')})"] = set_result.profiles[model.name]
    if profiles:
        fig = analysis.attempt(
            components.figure,
            figs.layer_profile_chart,
            profiles,
            colors=dict(zip(profiles, ("adversarial", "front"))),
            title=f"Sensitivity per layer of {model.name}",
        )
        if fig is not None:
            components.chart(fig, f"{model.name}-sensitivity-per-layer", key="sensitivity.layers")
            exports.export_controls(
                fig, exports.profile_rows(profiles), f"{model.name}-sensitivity-per-layer", record, key="sensitivity.export.layers"
            )
        st.caption(
            "Top: the mean σ of each layer's channels, layers in forward order. Bottom: the *relative* σ, σ divided "
            "by the layer's mean clean activation size (not in the paper): it compares layers and models whose "
            "activations have different magnitudes. "
            f"Attack: {choice.describe(model)}."
            + (
                f" Set: {evaluation.description}{TARGET_NOTE if choice.target is not None else ''}."
                if set_result is not None and evaluation is not None
                else ""
            )
        )
        if set_result is not None:
            cells = st.columns(3)
            cells[0].metric("Evaluation pairs", set_result.images)
            cells[1].metric("Clean accuracy (set)", f"{100 * set_result.clean_accuracy[model.name]:.1f}%")
            cells[2].metric(f"Accuracy under {choice.attack.upper()} (set)", f"{100 * set_result.adv_accuracy[model.name]:.1f}%")
    else:
        st.info("No sensitivity to show: the attack did not run (see the message above).")
    return current, one, set_result, record


def sensitivity_record(
    selection: state.Selection,
    choice: analysis.AttackChoice,
    current: analysis.Analysis | None,
    evaluation: evalset.EvaluationSet | None,
    params: dict[str, Any] | None,
) -> dict[str, Any]:
    """Provenance of this page's per-layer and per-channel numbers: the image's analysis (when it
    ran) and the evaluation set with the attack it was measured under (when it was)."""
    set_entry = None
    if evaluation is not None and params is not None:
        set_entry = exports.set_record(
            selection.model, evaluation.images, evaluation.labels, evaluation.description, choice.attack, params,
            choice.target, choice.seed, ids=evaluation.ids,
        )
        set_entry = {"dataset": set_entry["dataset"], "attacks": set_entry["attacks"]}
    if current is not None:
        return exports.analysis_record(selection, current, page="sensitivity", evaluation_set=set_entry)
    if set_entry is not None and evaluation is not None and params is not None:
        return exports.set_record(
            selection.model, evaluation.images, evaluation.labels, evaluation.description, choice.attack, params,
            choice.target, choice.seed, ids=evaluation.ids, page="sensitivity",
        )
    return exports.image_record(selection, page="sensitivity")


# -- per channel -------------------------------------------------------------------------------------


def per_channel(
    model: PixelModel,
    current: analysis.Analysis | None,
    one: dict[str, SensitivityMap] | None,
    set_result: sensitivity.SensitivityComparison | None,
    record: dict[str, Any],
) -> None:
    """σ of every channel of one layer, and the most sensitive channels' maps on this image."""
    st.subheader("Sensitivity per channel", divider="gray")
    sources = {}
    if one is not None:
        sources[IMAGE] = one
    if set_result is not None:
        sources[SET] = set_result.profiles[model.name]
    if not sources:
        st.info("No per-channel sensitivity to show.")
        return
    controls = st.columns([3, 3, 2])
    layer, source = _layer_and_source(controls, current, sources, set_result)
    smap = sources[source]
    _channel_bars(model, layer, source, smap[layer], record)
    # -- the most sensitive channels' maps ----------------------------------------------------------
    st.subheader("The most sensitive channels on this image", divider="gray")
    if current is None:
        st.info("The feature maps need the current image's attack, which did not run.")
    else:
        _sensitive_maps(model, current, layer, source, smap[layer], controls[2], record)


def _layer_and_source(
    controls: list[Any],
    current: analysis.Analysis | None,
    sources: dict[str, dict[str, SensitivityMap]],
    set_result: sensitivity.SensitivityComparison | None,
) -> tuple[str, str]:
    """The layer picker and the "measured on" switch (this image or the evaluation set)."""
    layers = list(next(iter(sources.values())))  # forward order (probe_layers)
    default = current.default_layer if current is not None and current.default_layer in layers else layers[0]
    components.persist(LAYER, SOURCE)
    if st.session_state.get(LAYER) not in layers:
        st.session_state[LAYER] = default
    layer = controls[0].selectbox(
        "Layer (forward order)",
        layers,
        format_func=lambda name: f"{layers.index(name) + 1}. {name}",
        key=LAYER,
    )
    if st.session_state.get(SOURCE) not in sources:
        st.session_state[SOURCE] = next(iter(sources))
    set_label = "the evaluation set" + (f" ({components.plural(set_result.images, 'pair')})" if set_result is not None else "")
    source = controls[1].segmented_control(
        "Measured on",
        list(sources),
        format_func=lambda s: "this image" if s == IMAGE else set_label,
        required=True,
        key=SOURCE,
    ) or next(iter(sources))  # required: never None
    return layer, source


def _channel_bars(model: PixelModel, layer: str, source: str, smap: SensitivityMap, record: dict[str, Any]) -> None:
    """σ of every channel of the layer, most sensitive first, with its export and caption."""
    bars = analysis.attempt(components.figure, figs.channel_bars, smap)
    if bars is not None:
        components.chart(bars, f"{model.name}-{layer}-channel-sensitivity", key="sensitivity.channels")
        exports.export_controls(
            bars, exports.channel_rows(smap).assign(measured_on=source), f"{model.name}-{layer}-channel-sensitivity",
            record, key="sensitivity.export.channels",
        )
    top = [int(j) for j in smap.top.tolist()]
    st.caption(
        f"σ of every channel of {layer}, most sensitive first; in vermillion the top "
        f"{round(100 * smap.top_fraction)}% ({len(top)}: {', '.join(map(str, top[:12]))}"
        f"{'…' if len(top) > 12 else ''}), the set the paper and SNS training single out. "
        f"Layer mean σ {smap.mean:.4g}; relative σ {smap.relative_mean:.3g}."
    )


def _sensitive_maps(
    model: PixelModel, current: analysis.Analysis, layer: str, source: str, smap: SensitivityMap,
    slider_column: Any, record: dict[str, Any],
) -> None:
    """The most sensitive channels' outputs on the clean and adversarial image and their difference
    (a table where the layer has no spatial maps)."""
    ranked = sorted(range(smap.neurons), key=lambda j: -float(smap.values[j]))
    if len(ranked) > 1 and int(st.session_state.get(TOP_K, 1)) > min(8, len(ranked)):  # a link's or another layer's count
        st.session_state[TOP_K] = min(8, len(ranked))
    k = slider_column.slider("Channels to show", 1, min(8, len(ranked)), min(4, len(ranked)), key=TOP_K) if len(ranked) > 1 else 1
    channels = ranked[:k]
    maps = analysis.attempt(
        analysis.memo, feature_maps.channel_maps, model, current.clean, current.adversarial, layer, channels
    )
    if maps is not None and len(maps.spatial) == 2:
        fig = analysis.attempt(components.figure, figs.channel_maps_figure, maps, smap)
        if fig is not None:
            components.chart(fig, f"{model.name}-{layer}-sensitive-maps", key="sensitivity.maps")
            exports.export_controls(
                fig, lambda: exports.channel_map_rows(maps, smap), f"{model.name}-{layer}-sensitive-maps",
                record, key="sensitivity.export.maps",
            )
        st.caption(
            f"The {k} most sensitive channels of {layer} (ranked on "
            f"{'this image' if source == IMAGE else 'the evaluation set'}): their output on the clean image, "
            "on the adversarial image (one shared scale), and the difference (blue: the attack lowered the "
            "activation, vermillion: raised it)."
        )
    elif maps is not None:
        st.caption(f"{layer} has no spatial maps: each channel is one number.")
        st.dataframe(
            {
                "channel": list(maps.channels),
                "clean": maps.clean.tolist(),
                "adversarial": maps.adversarial.tolist(),
                "difference": maps.difference.tolist(),
                "σ": [float(smap.values[c]) for c in maps.channels],
            },
            hide_index=True,
        )
        exports.export_controls(
            None, exports.channel_map_rows(maps, smap), f"{model.name}-{layer}-sensitive-channels", record,
            key="sensitivity.export.maps",
        )


# -- standard vs robust vs SNS ---------------------------------------------------------------------


def comparison_section(selection: state.Selection) -> None:
    """The embedded digits-cnn models (standard, PGD-trained, SNS-trained) compared on one set."""
    st.subheader("Standard vs adversarially trained vs SNS-trained", divider="gray")
    models = _compared_models(selection)
    if len(models) < 2:
        st.info(f"The comparison needs at least two embedded {COMPARED_ARCHITECTURE} models; found {len(models)}.")
        return
    reference = next(iter(models.values()))
    compare_choice = analysis.attack_choice(reference)
    compare_params = analysis.attempt(compare_choice.params, reference)
    pool = analysis.attempt(analysis.memo, evalset.available_images, reference)
    wanted = int(st.session_state.get(KEEP_IMAGES, DEFAULT_IMAGES))
    compare_set = None
    if pool and compare_params is not None:
        compare_set = analysis.attempt(analysis.memo, evalset.evaluation_set, reference, min(wanted, pool))
    if compare_set is None or compare_params is None:
        return
    comparison = _compare(models, compare_set, compare_choice, compare_params, reference)
    if comparison is not None:
        _show_comparison(comparison, models, reference, compare_set, compare_choice, compare_params)


def _compared_models(selection: state.Selection) -> dict[str, PixelModel]:
    """The embedded models of the compared architecture whose weights load, by name."""
    infos = [
        info
        for info in list_models()
        if info.kind == "embedded" and info.architecture == COMPARED_ARCHITECTURE and info.weights_available
    ]
    models = {}
    for info in infos:
        loaded = analysis.attempt(
            state.load_requested_model, state.ModelRequest(name=info.name, device=selection.model_request.device)
        )
        if loaded is not None:
            models[info.name] = loaded
    return models


def _compare(
    models: dict[str, PixelModel], compare_set: Any, compare_choice: analysis.AttackChoice, compare_params: Any,
    reference: PixelModel,
) -> sensitivity.SensitivityComparison | None:
    """Every model's sensitivity profile and accuracies on the set, with a progress bar; None (with a
    message) when one model's part fails."""
    # One cached call per model, with the same key as the evaluation set's call above: the
    # selected model's part (digits-cnn by default) is computed once for both sections.
    parts = {}
    progress = st.progress(0.0, text="Comparing the models…")
    for number, (name, compared) in enumerate(models.items()):
        progress.progress(
            number / len(models),
            text=f"Attacking {components.plural(compare_set.size, 'image')} on {name} ({number + 1} of {len(models)}, "
            f"{compare_choice.describe(reference)}) and measuring every layer…",
        )
        part = analysis.attempt(
            analysis.memo,
            sensitivity.compare_models,
            {name: compared},
            compare_set.images,
            compare_set.labels,
            attack=compare_choice.attack,
            params=compare_params,
            seed=compare_choice.seed,
        )
        if part is None:
            break
        parts[name] = part
    progress.empty()
    if len(parts) != len(models):
        return None
    return sensitivity.SensitivityComparison(
        attack=compare_choice.attack,
        params=dict(compare_params),
        profiles={name: part.profiles[name] for name, part in parts.items()},
        clean_accuracy={name: part.clean_accuracy[name] for name, part in parts.items()},
        adv_accuracy={name: part.adv_accuracy[name] for name, part in parts.items()},
        images=compare_set.size,
    )


def _show_comparison(
    comparison: sensitivity.SensitivityComparison, models: dict[str, PixelModel], reference: PixelModel,
    compare_set: Any, compare_choice: analysis.AttackChoice, compare_params: Any,
) -> None:
    """The per-layer profiles of the models, their accuracies, and what was measured offline."""
    fig = analysis.attempt(
        components.figure,
        figs.layer_profile_chart,
        comparison.profiles,
        colors={name: COMPARISON_COLORS.get(name, "middle") for name in comparison.profiles},
        title=f"Sensitivity per layer: {', '.join(comparison.profiles)}",
    )
    compare_record = exports.set_record(
        reference, compare_set.images, compare_set.labels, compare_set.description, compare_choice.attack,
        compare_params, None, compare_choice.seed, ids=compare_set.ids, page="sensitivity",
        models={name: compared.content_hash for name, compared in models.items()},
    )
    if fig is not None:
        components.chart(fig, "sensitivity-model-comparison", key="sensitivity.comparison")
        exports.export_controls(
            fig, exports.profile_rows(comparison.profiles), "sensitivity-model-comparison", compare_record,
            key="sensitivity.export.comparison",
        )
    st.caption(
        f"A fixed comparison of the embedded {COMPARED_ARCHITECTURE} models, whatever model is selected: "
        f"{compare_set.description}, each model attacked white-box by {compare_choice.describe(reference)}"
        f"{TARGET_NOTE if compare_choice.target is not None else ''}. The paper's claim: adversarial training "
        "works by lowering neuron sensitivity."
    )
    accuracy = figs.accuracy_rows(comparison)
    st.dataframe(
        accuracy,
        hide_index=True,
        width="stretch",
        column_config={name: st.column_config.NumberColumn(format="%.1f") for name in accuracy[0] if name.endswith("(%)")},
    )
    exports.export_controls(
        None, accuracy, "sensitivity-model-accuracy", compare_record, key="sensitivity.export.comparison_table"
    )
    st.markdown(
        "**Measured** (docs/sensitivity.md, all 360 test images, PGD-20 ε = 0.1): from the last convolution "
        "on, the adversarially trained model is 1.9–3.8× less sensitive than the standard one, as the paper "
        "claims, but it is *more* sensitive in the early layers in absolute terms (its activations are larger; "
        "relative σ is lower). SNS fine-tuning gives the lowest σ in every layer, yet the adversarially trained "
        "model stays more robust (73.9% vs 50.6% under PGD-20): lower absolute sensitivity alone does not buy "
        "robustness here."
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
