"""Defences: every registered defence (NIP in its three modes, PSSR, the baselines JPEG, bit depth,
median, random resize-and-pad, plugins') on the current adversarial image, next to each other, with
their parameters (from each defence's schema), NIP's steps, PSSR's surgery, the numbers that decide
success, and — with the toggle — what an attacker who knows each defence achieves (BPDA / EoT)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from app import components, pssr_training, state
from app import export_controls as exports
from app import runs as analysis
from app.columns import columns
from neuronviz import figures
from neuronviz.core.models import PixelModel
from neuronviz.figures import attack as attack_figures
from neuronviz.infra.errors import NeuronvizError
from neuronviz.infra.schema import Param
from neuronviz.methods.defences import Defence, Restoration, get_defence, list_defences, restore_for
from neuronviz.methods.defences.adaptive import KnownDefenceOutcome, attack_knowing_defence
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION
from neuronviz.workflows.analysis import restoration_outcome, restoration_verdict

IMAGE_HEIGHT = 240


#: Defences per row of columns: four keep a defence's name, restored image and top-5 bars legible at 1280 px.
DEFENCES_PER_ROW = 4

def shown_defences() -> list[Defence]:
    """The defences shown side by side: every registered one but the identity, in registry order
    (NIP guided, oracle, reactive, PSSR, then plugins')."""
    return list_defences(include_none=False)


def applied_key(name: str, model: PixelModel) -> str:
    """The session_state key of the parameters last submitted for defence ``name`` on this model."""
    return f"defences.applied.{name}.{model.content_hash[:12]}"


def widget_key(name: str, param: str, model: PixelModel) -> str:
    """The session_state key of a defence parameter's widget on this model."""
    return f"defences.{name}.{param}.{model.content_hash[:12]}"


def applied(name: str, model: PixelModel) -> dict[str, Any]:
    """The parameters last submitted for a defence on this model ({} = the schema's defaults)."""
    return dict(st.session_state.get(applied_key(name, model), {}))


def param_widget(param: Param, name: str, current: dict[str, Any], model: PixelModel, result: analysis.Analysis) -> Any:
    key = widget_key(name, param.name, model)
    default = param.default_for(model)
    if param.name in current:
        try:  # a kept value the schema refuses is shown as the default (the run below reports it)
            default = param.validate(current[param.name], name)
        except NeuronvizError:
            pass
    return components.param_widget(param, key, default, layers=result.layers, default_layer=result.default_layer)


def parameter_form(name: str, model: PixelModel, result: analysis.Analysis) -> None:
    """The defence's parameters in a form; a submission is validated by the defence's schema and
    kept only when valid (an invalid one leaves the last good parameters and says why)."""
    defense = get_defence(name)
    current = applied(name, model)
    with st.form(f"defences.form.{name}", border=False, enter_to_submit=False):
        values = {param.name: param_widget(param, name, current, model, result) for param in defense.params}
        submitted = st.form_submit_button("Restore", icon=":material/healing:", width="stretch")
    if submitted:
        try:
            defense.resolve(values, model)
        except NeuronvizError as error:
            st.error(f"Parameters not changed: {error}", icon=":material/error:")
        else:
            st.session_state[applied_key(name, model)] = values


def run(name: str, model: PixelModel, result: analysis.Analysis) -> Restoration | None:
    """The defence's restoration of the adversarial image (cached), or None with a message."""
    defense = get_defence(name)
    params = applied(name, model)
    if name in result.restorations:
        try:
            same = defense.resolve(params, model) == result.restorations[name].params
        except NeuronvizError:
            same = False  # restore_for() below reports the problem
        if same:  # the analysis already has it (the Attack page shows the same result)
            return result.restorations[name]
    return analysis.attempt(
        analysis.memo, restore_for, name, model, result.adversarial, benign=result.benign_class, clean=result.clean,
        params=params,
    )


def knowing(name: str, model: PixelModel, result: analysis.Analysis) -> KnownDefenceOutcome | None:
    """The attack of the current analysis made again by an attacker who knows defence ``name``
    (cached), or None with a message."""
    choice = result.choice
    try:
        attack_params = choice.params(model)
    except NeuronvizError as error:
        st.error(str(error), icon=":material/error:")
        return None
    return analysis.attempt(
        analysis.memo, attack_knowing_defence, model, result.clean, choice.attack, attack_params, name, applied(name, model),
        plain=result.adversarial, seed=choice.seed,
    )


def render() -> None:
    selection = components.loaded_selection()
    if selection is None:
        return
    result = components.current_analysis(selection)
    if result is None:
        return
    model = selection.model
    _introduction(model, result)
    _clean_and_adversarial(result)
    pssr_training.render(model)  # your evaluation images: train PSSR's regenerator, reactive NIP's profiles
    # -- the defences side by side (one row of columns per kind of element, so the rows line up), at
    # most DEFENCES_PER_ROW to a row so that names, images and bars stay legible at 1280 px -----------
    shown = shown_defences()
    order = [d.name for d in shown]  # the page's order of names
    restorations: dict[str, Restoration | None] = {}
    for start in range(0, len(shown), DEFENCES_PER_ROW):
        group = shown[start:start + DEFENCES_PER_ROW]
        names = [d.name for d in group]
        _headings_row(group)
        _parameters_row(names, model, result)
        restored = _restored_row(group, model, result)
        restorations.update(restored)
        _predictions_row(names, selection, result, restored, _record(selection, result, restored))
        _notes_row(names, restored)
    record = _record(selection, result, restorations)
    attacker_knows(model, result, order, restorations)
    nip_steps(selection, result, restorations, record)
    pssr_section(result, restorations, record)
    decision_numbers(selection, result, restorations, record)


def _record(selection: state.Selection, result: analysis.Analysis, restorations: dict[str, Restoration | None]) -> dict:
    """The provenance record of the analysis with the parameters of these restorations."""
    return exports.analysis_record(
        selection, result, restored={name: dict(r.params) for name, r in restorations.items() if r is not None}
    )


def _introduction(model: PixelModel, result: analysis.Analysis) -> None:
    """What the defences restore and what success means (the front/tail note first)."""
    names = model.class_names
    st.caption(
        f":material/tune: NIP's front and tail sets are its own parameters (front, tail under *Parameters*); their "
        f"default is the dashboard's one front/tail size, {DEFAULT_GROUP_FRACTION:.0%} of the layer's neurons. The "
        f"views of the other pages use {components.group_fraction_note()}."
    )
    st.markdown(
        f"Each defence restores the adversarial image of the current analysis "
        f"(**{result.choice.describe(model)}**), predicted **{names[result.prediction('adversarial')]}**. Success "
        f"means the restored image is predicted as the benign class **{names[result.benign_class]}** (the clean "
        f"prediction)."
    )


def _clean_and_adversarial(result: analysis.Analysis) -> None:
    """The expander with the clean and the adversarial image."""
    with st.expander("The clean and the adversarial image", icon=":material/compare:"):
        left, right, _ = st.columns([1, 1, 2])
        with left:
            components.chart(
                components.figure(figures.image_figure, result.clean, title="Clean", height=IMAGE_HEIGHT),
                "clean-image",
                key="defences.clean",
            )
        with right:
            components.chart(
                components.figure(figures.image_figure, result.adversarial, title="Adversarial", height=IMAGE_HEIGHT),
                "adversarial-image",
                key="defences.adversarial",
            )


def _headings_row(shown: list[Defence]) -> None:
    """Each defence's short name and summary."""
    for column, defense in zip(columns(len(shown), gap="medium"), shown):
        # A short name as the heading, what it needs and is underneath: long headings wrapped to five lines.
        column.markdown(f"##### {defense.short}")
        column.caption(defense.summary)


def _parameters_row(order: list[str], model: PixelModel, result: analysis.Analysis) -> None:
    """Each defence's parameter form, in a popover."""
    for column, name in zip(columns(len(order), gap="medium"), order):
        # A popover, not an expander: opening it covers the page instead of pushing its row down.
        with column, st.popover("Parameters", icon=":material/tune:", width="stretch"):
            parameter_form(name, model, result)


def _restored_row(
    shown: list[Defence], model: PixelModel, result: analysis.Analysis
) -> dict[str, Restoration | None]:
    """Run each defence and show its restored image (or why it does not apply to this model).
    Returns the restorations by name (None: not available, or it failed)."""
    restorations: dict[str, Restoration | None] = {}
    short = {d.name: d.short for d in shown}
    for column, name in zip(columns(len(shown), gap="medium"), [d.name for d in shown]):
        with column:
            reason = get_defence(name).unavailable(model)
            if reason is not None:  # not for this model at all: say why instead of an error
                st.info(reason, icon=":material/block:")
                restorations[name] = None
                continue
            with st.spinner(f"Running {short[name]}…"):
                restoration = restorations[name] = run(name, model, result)
            if restoration is not None:
                outcome = restoration_outcome(result.attack_succeeded, int(restoration.prediction[0]), result.benign_class)
                components.chart(
                    components.figure(
                        figures.image_figure,
                        restoration.restored[:1],
                        title=f"{short[name]}: {outcome}",
                        height=IMAGE_HEIGHT,
                    ),
                    f"{name}-restored",
                    key=f"defences.image.{name}",
                )
    return restorations


def _predictions_row(
    order: list[str],
    selection: state.Selection,
    result: analysis.Analysis,
    restorations: dict[str, Restoration | None],
    record: dict[str, Any],
) -> None:
    """Each restoration's top-5 bars, prediction, confidence and verdict, with their export."""
    names, benign = selection.model.class_names, result.benign_class
    for column, name in zip(columns(len(order), gap="medium"), order):
        restoration = restorations[name]
        if restoration is None:
            continue
        with column:
            bars = components.figure(
                attack_figures.panel_bars,
                restoration.probs[0],
                names,
                title="Top-5",
                color_key="restored",
                true_class=selection.true_class,
            )
            components.chart(bars, f"{name}-top5", key=f"defences.bars.{name}")
            predicted = int(restoration.prediction[0])
            confidence = float(restoration.probs[0, predicted])
            verdict = restoration_verdict(restoration_outcome(result.attack_succeeded, predicted, benign), names[benign], names[predicted])
            st.markdown(f"**{names[predicted]}** · {100 * confidence:.1f}% · {verdict}")
            exports.export_controls(
                bars, exports.top_rows(restoration.probs[0], names, condition=name, true_class=selection.true_class),
                f"{name}-top5", record, key=f"defences.export.bars.{name}", width_mm=exports.NARROW_MM,
            )


def _notes_row(order: list[str], restorations: dict[str, Restoration | None]) -> None:
    """Each defence's notes, time, paper and what is reconstructed."""
    for column, name in zip(columns(len(order), gap="medium"), order):
        defense, restoration = get_defence(name), restorations[name]
        with column:
            if restoration is not None:
                for note in restoration.notes:
                    st.caption(note)
                st.caption(f":material/timer: {restoration.seconds:.3f} s")
            st.caption(f"Paper: {defense.paper}")
            st.caption(f"Reconstruction: {defense.reconstruction}" if defense.reconstruction else "Reconstruction: none.")


# -- the attacker who knows the defence (issue 23) ------------------------------------------------------------


def attacker_knows(model: PixelModel, result: analysis.Analysis, order: list[str], restorations: dict[str, Restoration | None]) -> None:
    """With the toggle on: per defence, the same attack made through the defence (BPDA for steps
    without a useful gradient, EoT over a random defence's draws; the image kept is the one the
    defence handles worse of that and the plain attack's), and the defence's verdict on it."""
    names = model.class_names
    benign = result.benign_class
    on = st.toggle(
        "The attacker knows the defence",
        key="defences.adaptive",
        help="Carlini et al. 2019, Athalye et al. 2018: a defence is evaluated against an attacker who attacks the "
        "defended model. Off: the attack ignores the defences (the columns above).",
    )
    if not on:
        st.caption(
            "The verdicts above are against an attacker who ignores the defence. Turn on the toggle to attack each "
            "defence through itself; `neuronviz evaluate --adaptive` does it over a data set with intervals."
        )
        return
    if result.choice.target is not None:
        st.info("The adaptive attack is untargeted; this analysis is targeted, so it moves away from the benign class "
                "instead of toward the target.", icon=":material/info:")
    cells = [cell for start in range(0, len(order), DEFENCES_PER_ROW)
             for cell in columns(len(order[start:start + DEFENCES_PER_ROW]), gap="medium")]
    for column, name in zip(cells, order):
        with column:
            if restorations.get(name) is None:
                continue
            with st.spinner(f"Attacking through {get_defence(name).short}…"):
                outcome = knowing(name, model, result)
            if outcome is None:
                continue
            predicted = int(outcome.restoration.prediction[0])
            adv_pred = int(outcome.adv_pred[0])
            st.markdown(
                f"Attacker knows it ({outcome.method}): undefended **{names[adv_pred]}**, after the defence "
                f"**{names[predicted]}** · {restoration_verdict(restoration_outcome(adv_pred != benign, predicted, benign), names[benign], names[predicted])}"
            )
    st.caption(
        "Per defence, the analysis's attack with the same parameters and seed, run on defence → classifier: BPDA "
        "(the defence's forward pass, the identity in the backward pass) for JPEG, bit depth, the median, NIP and "
        "pixel surgery (PSSR: BPDA on its mask only), EoT (logits averaged over the defence's random draws) for "
        "random resize-and-pad. The image kept is the one the defence handles worse of this and the plain attack's."
    )


# -- NIP's steps --------------------------------------------------------------------------------------------


def nip_steps(
    selection: state.Selection, result: analysis.Analysis, restorations: dict[str, Restoration | None], record: dict[str, Any]
) -> None:
    """NIP guided's objective per step, the oracle's sign, the reactive mode's candidates."""
    names = selection.model.class_names
    benign = result.benign_class
    st.subheader("NIP's steps", divider="gray")
    guided_column, other_column = st.columns([3, 2], gap="large")
    with guided_column:
        guided = restorations.get("nip-guided")
        if guided is not None:
            steps = components.figure(attack_figures.nip_steps_figure, guided, benign, names, title="NIP guided: objective per step")
            components.chart(steps, "nip-guided-steps", key="defences.nip.steps")
            exports.export_controls(steps, exports.nip_step_rows(guided, names), "nip-guided-steps", record, key="defences.export.nip.steps")
            st.caption(
                "Top: the objective NIP ascends, Σ activation of the front neurons − Σ of the tail neurons at the "
                f"layer, re-ranked at every step. Bottom: the predicted class, green once it is the benign class "
                f"{names[benign]}; the dotted line marks that step (the image stops moving there)."
            )
    with other_column:
        oracle = restorations.get("nip-oracle")
        if oracle is not None:
            sign = float(oracle.trace["sign"][0, 0])
            st.markdown(
                f"**NIP oracle**: one move of the benign image's direction, sign **{'+' if sign > 0 else '−'}** "
                + (
                    "(+s·g restored the benign prediction)."
                    if sign > 0
                    else "(+s·g did not restore the benign prediction, so −s·g was used)."
                )
                + f" Benign objective {float(oracle.trace['benign_objective'][0, 0]):.4g}."
            )
        reactive = restorations.get("nip-reactive")
        if reactive is not None:
            st.markdown("**NIP reactive**: the candidate classes it tried, scored by their restored influence profile")
            candidates = attack_figures.candidate_rows(reactive, names)
            st.dataframe(
                candidates,
                hide_index=True,
                width="stretch",
                column_config={"cosine score": st.column_config.NumberColumn(format="%.4f")},
                key="defences.nip.candidates",
            )
            scores = components.figure(
                attack_figures.reactive_scores_figure,
                reactive,
                names,
                title="NIP reactive: candidate scores",
                height=300,
            )
            components.chart(scores, "nip-reactive-scores", key="defences.nip.scores")
            exports.export_controls(scores, candidates, "nip-reactive-scores", record, key="defences.export.nip.scores",
                                    width_mm=exports.NARROW_MM)
            st.caption(
                "For each of the most probable classes, guided NIP toward it; the class whose restored neuron "
                "influence profile is closest (cosine) to its profile on benign training images wins. Measured on "
                "digits-cnn (docs/defences.md): adversarial images' profiles match their adversarial class about as "
                "well as benign images match theirs, which is why this mode is weak there."
            )


# -- PSSR -----------------------------------------------------------------------------------------------------


def pssr_section(result: analysis.Analysis, restorations: dict[str, Restoration | None], record: dict[str, Any]) -> None:
    """PSSR's salient score, mask, surgery and regenerated image."""
    st.subheader("PSSR: surgery and regeneration", divider="gray")
    pssr = restorations.get("pssr")
    if pssr is not None:
        score, mask, surgery = pssr.extras["score"][:1], pssr.extras["mask"][:1], pssr.extras["surgery"][:1]
        panels = st.columns(4, gap="small")
        with panels[0]:
            components.chart(
                components.figure(attack_figures.score_map_figure, score, title="Salient score", height=IMAGE_HEIGHT),
                "pssr-score",
                key="defences.pssr.score",
            )
        with panels[1]:
            components.chart(
                components.figure(attack_figures.mask_figure, result.adversarial, mask, height=IMAGE_HEIGHT),
                "pssr-mask",
                key="defences.pssr.mask",
            )
        with panels[2]:
            components.chart(
                components.figure(figures.image_figure, surgery, title="Removed pixels (surgery)", height=IMAGE_HEIGHT),
                "pssr-surgery",
                key="defences.pssr.surgery",
            )
        with panels[3]:
            components.chart(
                components.figure(figures.image_figure, pssr.restored[:1], title="Regenerated", height=IMAGE_HEIGHT),
                "pssr-regenerated",
                key="defences.pssr.regenerated",
            )
        exports.export_controls(
            None, lambda: exports.pssr_map_rows(score, mask), "pssr-score-and-mask", record, key="defences.export.pssr"
        )
        st.caption(
            f"Score: |∂p/∂x| of the predicted class's probability, summed over colour channels. Mask: pixels whose score "
            f"is at least α = {pssr.params['alpha']:g} × the mean score are removed (vermillion). Surgery: the adversarial "
            "image with them set to 0. Regenerated: the network trained for this model (or, without one, the named "
            "inpainting fallback) fills them in. " + " ".join(pssr.notes)
        )


# -- the numbers ----------------------------------------------------------------------------------------------


def decision_numbers(
    selection: state.Selection, result: analysis.Analysis, restorations: dict[str, Restoration | None], record: dict[str, Any]
) -> None:
    """One row per image: prediction, confidence, distances to the clean and the adversarial image."""
    names = selection.model.class_names
    benign = result.benign_class
    adversarial_prediction = result.prediction("adversarial")
    st.subheader("The numbers that decide success", divider="gray")
    true_text = (
        f"; true class **{components.class_name(names, selection.true_class)}**" if selection.true_class is not None else "; true class unknown"
    )
    st.markdown(
        f"Benign class **{components.class_name(names, benign)}** (the clean prediction){true_text}; adversarial prediction "
        f"**{names[adversarial_prediction]}**."
    )
    short = {name: get_defence(name).short for name in restorations}  # shown, in the page's order
    failed = [short[name] for name in restorations if restorations.get(name) is None]
    rows = attack_figures.decision_rows(
        result.clean,
        result.adversarial,
        result.probabilities("adversarial"),
        benign,
        {short[name]: r for name, r in restorations.items() if r is not None},
        names,
    )
    distance = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        key="defences.numbers",
        column_config={
            "confidence (%)": st.column_config.NumberColumn(format="%.1f"),
            "= benign": st.column_config.CheckboxColumn("= benign"),
            "L∞ to clean": distance,
            "L2 to clean": distance,
            "L∞ to adversarial": distance,
            "L2 to adversarial": distance,
        },
    )
    exports.export_controls(None, rows, "defence-metrics", record, key="defences.export.numbers")
    st.caption(
        "One row per image: its prediction and confidence, whether that is the benign class, and how far it is from "
        "the clean and from the adversarial image (pixel units [0, 1]; L∞ = largest pixel change, L2 = Euclidean)."
        + (
            f" No row for {', '.join(failed)}: {'it' if len(failed) == 1 else 'they'} failed (the message is above, "
            "under the defence's column); change its parameters and press Restore."
            if failed
            else ""
        )
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
