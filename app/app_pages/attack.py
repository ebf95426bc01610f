"""Attack: the image before and after the attack and both restorations, the attack's trajectory,
and how prediction and the front/tail ranking move with the attack's budget (ε sweep)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
import torch

from app import components, state
from app import export_controls as exports
from app import runs as analysis
from neuronviz import figures
from neuronviz.figures import attack as attack_figures
from neuronviz.figures import captions
from neuronviz.methods.attacks import AttackInfo, estimate_work, get_attack
from neuronviz.workflows.sweep import eps_sweep

#: Budgets of the ε sweep: evenly spaced from 0 to 2× the chosen ε.
SWEEP_POINTS = 9
#: On a model with inputs larger than SMALL_INPUT_PIXELS, a sweep expected to take longer than
#: AUTO_SWEEP_SECONDS waits for a click; a session may set its own limit (for every model) in
#: ``st.session_state[AUTO_SWEEP_KEY]``.
AUTO_SWEEP_SECONDS = 10.0
AUTO_SWEEP_KEY = "attack.auto_sweep_seconds"
SWEEPS_REQUESTED = "attack.sweeps_requested"  # session_state: digests of the sweeps asked for by a click
SMALL_INPUT_PIXELS = 64 * 64
IMAGE_HEIGHT = 200  # with the top-5 bars and verdicts, the five panels fit a 1280×800 screen


def eps_key(attack: str, chosen: float) -> str:
    """The session_state key of the ε-sweep slider for this attack and chosen budget."""
    return f"attack.eps.{attack}.{chosen:.6g}"


def _share(p: float) -> str:
    return f"{100 * p:.1f}%"


def clean_verdict(result: analysis.Analysis, names: tuple[str, ...], true_class: int | None) -> str:
    p = result.probabilities("clean")
    predicted = int(p.argmax())
    if true_class is None:
        judged = "true class unknown"
    elif predicted == true_class:
        judged = ":green[correct]"
    else:
        judged = f":red[wrong: the true class is {names[true_class]}]"
    return f"**{names[predicted]}** · {_share(float(p[predicted]))} · {judged}"


def adversarial_verdict(probs: torch.Tensor, success: bool, target: int | None, benign: int, names: tuple[str, ...]) -> str:
    predicted = int(probs.argmax())
    if target is not None and target == benign:
        judged = f"already the target {names[target]}: not attacked"
    elif target is not None:
        judged = f":red[reached target {names[target]}]" if success else f":green[missed target {names[target]}]"
    else:
        judged = ":red[fooled]" if success else ":green[not fooled]"
    return f"**{names[predicted]}** · {_share(float(probs[predicted]))} · {judged}"


def restored_verdict(result: analysis.Analysis, condition: str, names: tuple[str, ...]) -> str:
    p = result.probabilities(condition)
    predicted = int(p.argmax())
    benign = result.benign_class
    judged = ":green[restored]" if predicted == benign else f":red[not restored (benign: {names[benign]})]"
    return f"**{names[predicted]}** · {_share(float(p[predicted]))} · {judged}"


def bars(
    probs: torch.Tensor,
    names: tuple[str, ...],
    true_class: int | None,
    color_key: str,
    key: str,
    record: dict[str, Any],
    title: str = "Top-5",
    verdict: str = "",
) -> None:
    """A condition's top-5 bars, its verdict, and under them the numbers and the chart to download
    (below the verdict: the five panels and their verdicts fit a 1280×800 screen)."""
    fig = components.figure(attack_figures.panel_bars, probs, names, title=title, color_key=color_key, true_class=true_class)
    components.chart(fig, f"top5-{key}", key=f"attack.bars.{key}")
    if verdict:
        st.markdown(verdict)
    rows = exports.top_rows(probs, names, condition=key, true_class=true_class)
    exports.export_controls(fig, rows, f"top5-{key}", record, key=f"attack.export.bars.{key}", width_mm=exports.NARROW_MM)


def render() -> None:
    components.scroll_to_top_if_requested()
    selection = components.loaded_selection()
    if selection is None:
        return
    st.title("Attack")
    result = components.current_analysis(selection)
    if result is None:
        return
    info = get_attack(result.choice.attack)
    record = exports.analysis_record(selection, result)
    panels(selection, result, info, record)
    trajectory(result, info, selection.model.class_names, record)
    sweep_section(selection, result, info, record)


def panels(selection: state.Selection, result: analysis.Analysis, info: AttackInfo, record: dict[str, Any]) -> None:
    """The five images (clean, perturbation, adversarial, both restorations) with their verdicts."""
    names = selection.model.class_names
    true_class = selection.true_class
    benign = result.benign_class
    report = result.report
    target = int(report.target[0]) if report.target is not None else None
    unchanged = captions.unchanged_attack_note(float(report.l2[0]), float(report.linf[0]), info.label, result.params)
    if unchanged is not None:
        st.warning(unchanged, icon=":material/info:")

    delta = result.perturbation
    amplification = attack_figures.perturbation_amplification(delta)
    color_range = attack_figures.perturbation_range(delta)
    columns = st.columns(5, gap="small")
    with columns[0]:
        components.chart(
            components.figure(figures.image_figure, result.clean, title="Clean", height=IMAGE_HEIGHT),
            "clean-image",
            key="attack.image.clean",
        )
        bars(result.probabilities("clean"), names, true_class, "clean", "clean", record, verdict=clean_verdict(result, names, true_class))
    with columns[1]:
        perturbation = components.figure(
            attack_figures.perturbation_figure, delta, title=f"Perturbation ×{amplification:.3g}", height=IMAGE_HEIGHT
        )
        components.chart(perturbation, "perturbation", key="attack.image.perturbation")
        linf = float(report.linf[0])
        st.markdown(
            f"**Norms** (pixel units)  \nL0 **{int(report.l0[0])}** px of {delta.shape[-1] * delta.shape[-2]}  \n"
            f"L2 **{float(report.l2[0]):.3f}**  \nL∞ **{components.eps_label(linf)}**"
        )
        st.caption(
            f"Colours amplified ×{amplification:.3g}: full colour is a change of ±{color_range:.3g} (the largest here); "
            "vermillion = brighter, blue = darker, white = unchanged."
        )
        norms = {**exports.norm_rows(result), "amplification": amplification, "color_range": color_range}
        exports.export_controls(perturbation, norms, "perturbation", record, key="attack.export.perturbation", width_mm=exports.NARROW_MM)
    with columns[2]:
        components.chart(
            components.figure(figures.image_figure, result.adversarial, title="Adversarial", height=IMAGE_HEIGHT),
            "adversarial-image",
            key="attack.image.adversarial",
        )
        verdict = adversarial_verdict(result.probabilities("adversarial"), result.attack_succeeded, target, benign, names)
        bars(result.probabilities("adversarial"), names, true_class, "adversarial", "adversarial", record, verdict=verdict)
    for column, condition, title in ((columns[3], "nip-guided", "NIP (guided)"), (columns[4], "pssr", "PSSR")):
        with column:
            components.chart(
                components.figure(figures.image_figure, result.image(condition), title=title, height=IMAGE_HEIGHT),
                f"{condition}-restored-image",
                key=f"attack.image.{condition}",
            )
            bars(result.probabilities(condition), names, true_class, "restored", condition, record,
                 verdict=restored_verdict(result, condition, names))
            if components.used_fallback(result.restorations[condition]):
                components.restoration_notes(result.restorations[condition])
    st.caption(
        "The last two images are the adversarial image after each restoration. Bars: the five most probable classes (the true class is outlined and marked when known). NIP (guided) "
        "is told the benign class, so it is an analysis tool, not a deployable defence; PSSR is this project's "
        "reconstruction of the paper. The Defences page shows both in detail, with their parameters."
    )
    st.caption(
        f"Benign class **{names[benign]}** (the clean prediction): the restorations aim at it and influence is computed "
        f"toward it. :material/timer: The analysis took {sum(result.seconds.values()):.2f} s ("
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.seconds.items())
        + "); rerunning with the same model, image and attack reads it from the cache instead of recomputing it."
    )


def trajectory(result: analysis.Analysis, info: AttackInfo, class_names: tuple[str, ...], record: dict[str, Any]) -> None:
    """The attack's loss and predicted class per step (when the attack records a trace)."""
    st.subheader("The attack's trajectory", divider="gray")
    report = result.report
    trace = report.trace
    benign = result.benign_class
    if trace is None:
        st.info(f"{info.label} records no per-step trace: there is no trajectory to draw.", icon=":material/info:")
        return
    if trace.loss.shape[0] < 2:
        st.info(
            f"{info.label} takes one gradient step from the clean image: no trajectory to draw.", icon=":material/info:"
        )
        return
    if trace.unit != "step":
        st.caption(
            f"{info.label} is not a plain gradient iteration: each point is one forward pass of the attack "
            "through the model, not one iteration."
        )
    chart = components.figure(attack_figures.trajectory_figure, trace, class_names, benign_class=benign, targeted=report.targeted)
    components.chart(chart, "attack-trajectory", key="attack.trajectory")
    exports.export_controls(chart, exports.trace_rows(trace, class_names), "attack-trajectory", record, key="attack.export.trajectory")
    direction = captions.trajectory_direction(trace.loss, report.targeted)
    st.caption(
        f"Top: cross-entropy to the {'target class' if report.targeted else f'clean prediction {class_names[benign]}'}; "
        f"here it {direction}. Bottom: "
        f"the predicted class at each {trace.unit}, green while it is still the benign class "
        f"{class_names[benign]}; the dotted line marks the first {trace.unit} that leaves it."
        + (" The trace was truncated (too many passes)." if trace.truncated else "")
    )


def sweep_section(selection: state.Selection, result: analysis.Analysis, info: AttackInfo, record: dict[str, Any]) -> None:
    """How prediction and the front/tail ranking move with the attack's budget."""
    st.subheader("Attack strength: the ε sweep", divider="gray")
    if info.budget_param is None:
        st.info(
            f"{info.label} has no budget parameter (it looks for its own perturbation size), so there is no ε to sweep. "
            "Choose FGSM, PGD, BIM, MI-FGSM, … in the sidebar.",
            icon=":material/info:",
        )
        return
    model = selection.model
    names = model.class_names
    true_class = selection.true_class
    benign = result.benign_class
    report = result.report
    target = int(report.target[0]) if report.target is not None else None

    budget = info.param(info.budget_param)
    chosen = float(result.params[info.budget_param])
    top = 2 * chosen if chosen > 0 else 2 * float(budget.default_for(model))
    if budget.high is not None:
        top = min(top, float(budget.high))
    eps_values = sorted({round(float(v), 6) for v in np.linspace(0.0, top, SWEEP_POINTS)} | {round(chosen, 6)})

    def eps_label(value: float) -> str:
        return components.eps_label(value) if budget.pixel_scale else f"{value:.4g}"

    sweep_args = (model, selection.image, info.name, result.params, eps_values)
    # Away from the clean prediction, as the analysis above (labels=None).
    sweep_kwargs: dict[str, Any] = {"target": result.choice.target, "seed": result.choice.seed}
    sweep_kwargs["layer"] = result.default_layer
    fraction = components.group_fraction()  # the one front/tail size of every view
    sweep_kwargs["front"] = sweep_kwargs["tail"] = fraction
    # Every budget is one more attack: on a large model that is long, so it waits for a click there.
    # Small inputs (digits, CIFAR-size) always run: their sweep costs well under a second on a CPU, and
    # a timing-based estimate is unreliable there (the first attack and influence pass of a process
    # carry one-off start-up costs). For larger ones the estimate takes the analysis' influence pass
    # (one forward and one backward over 4 images) as the cost of a model pass.
    seconds_per_pass = result.seconds.get("influence", report.seconds) / 8
    budgets = sum(1 for value in eps_values if value > 0)
    estimate = estimate_work(info, result.params, 1) * seconds_per_pass * budgets
    limit = st.session_state.get(AUTO_SWEEP_KEY)  # a session's own limit replaces the rule
    if limit is None:
        waits = model.input_size[0] * model.input_size[1] > SMALL_INPUT_PIXELS and estimate > AUTO_SWEEP_SECONDS
    else:
        waits = estimate > limit
    requested: set[str] = st.session_state.setdefault(SWEEPS_REQUESTED, set())
    sweep_key = analysis.digest(*sweep_args, **sweep_kwargs)
    if waits and sweep_key not in requested:
        notice = st.empty()  # the notice and its button go once the sweep is asked for
        with notice.container():
            st.info(
                f"The sweep runs {info.label} at {budgets} more budgets: about {estimate:.0f} s on this model "
                f"(the attack above took {report.seconds:.1f} s).",
                icon=":material/hourglass:",
            )
            clicked = st.button("Run the ε sweep", icon=":material/play_arrow:", key="attack.sweep.run")
        if not clicked:
            return
        requested.add(sweep_key)
        notice.empty()
    with st.spinner(f"Running {info.label} at {len(eps_values)} budgets and one influence pass (about {estimate:.0f} s)…"):
        sweep = analysis.attempt(analysis.memo, eps_sweep, *sweep_args, **sweep_kwargs)
    if sweep is None:
        return

    values = [float(v) for v in sweep.eps.tolist()]
    sweep_record = {**record, "eps_sweep": {"budget_param": info.budget_param, "values": values, "layer": sweep.layer,
                                             "front": fraction, "tail": fraction}}
    chart_column, detail_column = st.columns([3, 2], gap="large")
    with detail_column:
        slider_key = eps_key(info.name, chosen)
        components.persist(slider_key)
        selected = st.select_slider(
            f"{info.budget_param} (budget)",
            options=values,
            value=values[sweep.index(chosen)],
            format_func=eps_label,
            key=slider_key,
            help="Every value was computed once, together; moving the slider only shows another one.",
        )
        index = sweep.index(selected)
        image_column, bars_column = st.columns([2, 3], gap="small")
        with image_column:
            components.chart(
                components.figure(
                    figures.image_figure,
                    sweep.adversarial[index : index + 1],
                    title=f"ε = {selected:.3g}",
                    height=IMAGE_HEIGHT,
                ),
                "sweep-image",
                key="attack.sweep.image",
            )
        with bars_column:
            bars(
                sweep.probs[index], names, true_class, "adversarial" if bool(sweep.success[index]) else "clean", "sweep",
                {**sweep_record, "eps_selected": selected},
            )
        st.markdown(adversarial_verdict(sweep.probs[index], bool(sweep.success[index]), target, benign, names))
        st.markdown(
            captions.sweep_sentence(
                sweep.layer,
                float(sweep.front_overlap[index]),
                float(sweep.spearman[index]),
                float(sweep.front_influence_change[index]),
                float(sweep.tail_influence_change[index]),
            )
        )
    with chart_column:
        chart = components.figure(attack_figures.eps_sweep_figure, sweep, names, selected_eps=selected, chosen_eps=chosen)
        components.chart(chart, "eps-sweep", key="attack.sweep.chart")
        exports.export_controls(chart, exports.sweep_rows(sweep, names), "eps-sweep", sweep_record, key="attack.export.sweep")
    st.caption(
        f"{len(values)} budgets from 0 to 2× the chosen {info.budget_param} = {eps_label(chosen)} "
        f"(capped at the attack's maximum), the other parameters as chosen and the same seed {result.choice.seed}. "
        f"Top: probability of the benign class {names[benign]}; a cross marks a budget where the attack succeeds. "
        f"Bottom: how much of the clean image's front (top {fraction:.0%} of the channels of `{sweep.layer}` by "
        f"influence toward {names[benign]}) stays front, and the rank correlation ρ of all channels' influence with the "
        f"clean image's (tail: bottom {fraction:.0%}; {components.group_fraction_note()}). Computed in {sum(sweep.seconds.values()):.2f} s "
        f"(attacks {sweep.seconds['attacks']:.2f} s, one batched influence pass {sweep.seconds['influence']:.3f} s) and "
        "cached: the slider recomputes nothing."
    )


if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
