"""Attack: the image before and after the attack and each restoration of the analysis (NIP (guided),
PSSR and the defences chosen in the Methods box), the attack's trajectory, and how prediction and the
front/tail ranking move with the attack's budget (ε sweep)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
import torch

from app import components, state
from app import export_controls as exports
from app import runs as analysis
from app.columns import columns as column_layout
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
#: Image panels per row: clean, perturbation, adversarial and two restorations fit 1280 px; more wrap.
PANELS_PER_ROW = 5


def eps_key(attack: str, chosen: float) -> str:
    """The session_state key of the ε-sweep slider for this attack and chosen budget (the link
    carries its value as ``attack.sweep_eps``: :func:`app.url_state.sweep_eps_key`)."""
    from app import url_state

    return url_state.sweep_eps_key(attack, chosen)


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
    """``**7** · 97.0% · restored`` (or not restored, or nothing to restore when the attack did not fool)."""
    from neuronviz.workflows.analysis import restoration_verdict

    p = result.probabilities(condition)
    predicted = int(p.argmax())
    judged = restoration_verdict(result.outcome(condition), names[result.benign_class], names[predicted])
    return f"**{names[predicted]}** · {_share(float(p[predicted]))} · {judged}"


def control_verdict(result: analysis.Analysis, names: tuple[str, ...]) -> str:
    """The matched control's prediction beside the attack's: did noise of the same size fool the model?"""
    control = result.control
    if control is None:
        return ""
    p = control.probs
    predicted = control.prediction
    judged = ":red[changed the prediction]" if predicted != result.benign_class else ":green[did not change the prediction]"
    return (
        f"Matched noise ({control.symbol} {control.size:.3g}, the attack's {control.attack_size:.3g}): "
        f"**{names[predicted]}** · {_share(float(p[predicted]))} · {judged}"
    )


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
    # Drawn before the analysis runs: the clean image needs none of it, and on a fresh server the
    # browser starts loading its chart library (about a second) while the analysis is computed.
    notice = st.empty()  # the note of an attack that changed nothing goes above the images
    cells = layout_cells(len(analysis.analysis_methods()[0]))  # one cell per restoration the analysis makes
    with cells[0]:
        clean_image(selection.image)
    result = components.current_analysis(selection)
    if result is None:
        return
    info = get_attack(result.choice.attack)
    record = exports.analysis_record(selection, result)
    panels(selection, result, info, record, cells, notice)
    trajectory(result, info, selection.model.class_names, record)
    sweep_section(selection, result, info, record)


def clean_image(image: torch.Tensor) -> None:
    """The clean image (the analysis' ``clean``: the image on the CPU), as the first panel."""
    components.chart(
        components.figure(figures.image_figure, image.cpu(), title="Clean", height=IMAGE_HEIGHT),
        "clean-image",
        key="attack.image.clean",
    )


def panels(selection: state.Selection, result: analysis.Analysis, info: AttackInfo, record: dict[str, Any],
           cells: list[Any], notice: Any) -> None:
    """The images (clean, perturbation, adversarial, and each restoration of the analysis: NIP (guided),
    PSSR and the defences chosen under Methods) with their verdicts, in ``cells`` (the first already
    holds the clean image); ``notice`` holds the note of an attack that changed nothing."""
    names = selection.model.class_names
    true_class = selection.true_class
    benign = result.benign_class
    report = result.report
    target = int(report.target[0]) if report.target is not None else None
    unchanged = captions.unchanged_attack_note(float(report.l2[0]), float(report.linf[0]), info.label, result.params)
    if unchanged is not None:
        notice.warning(unchanged, icon=":material/info:")
    # full_analysis makes one restoration per defence of analysis_methods(), which laid out the cells
    assert len(cells) == 3 + len(result.restorations), (len(cells), list(result.restorations))
    with cells[0]:
        bars(result.probabilities("clean"), names, true_class, "clean", "clean", record, verdict=clean_verdict(result, names, true_class))
    with cells[1]:
        perturbation_panel(result, record)
    with cells[2]:
        components.chart(
            components.figure(figures.image_figure, result.adversarial, title="Adversarial", height=IMAGE_HEIGHT),
            "adversarial-image",
            key="attack.image.adversarial",
        )
        verdict = adversarial_verdict(result.probabilities("adversarial"), result.attack_succeeded, target, benign, names)
        bars(result.probabilities("adversarial"), names, true_class, "adversarial", "adversarial", record, verdict=verdict)
        noise = control_verdict(result, names)
        if noise:
            st.caption(noise)
    for cell, condition in zip(cells[3:], result.restorations, strict=False):
        with cell:
            restoration_panel(result, condition, names, true_class, record)
    st.caption(
        f"The last {restoration_count(len(result.restorations))} the adversarial image after each restoration "
        f"({', '.join(result.condition_labels[c] for c in result.restorations)}); when the attack did not fool the "
        "model there is nothing to restore (such an image is left out of the defence success rate). Under the "
        "adversarial image: the same model on the matched control, random noise of the attack's norm and size."
        " Bars: the five most probable classes (the true class is outlined and marked when known). NIP (guided) "
        "is told the benign class, so it is an analysis tool, not a deployable defence; PSSR is this project's "
        "reconstruction of the paper. The Defences page shows each restoration in detail, with its parameters."
    )
    st.caption(
        f"Benign class **{components.class_name(names, benign)}** (the clean prediction): the restorations aim at it and influence is computed "
        f"toward it. :material/timer: The analysis took {sum(result.seconds.values()):.2f} s ("
        + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in result.seconds.items())
        + "); rerunning with the same model, image and attack reads it from the cache instead of recomputing it."
    )


def layout_cells(restorations: int) -> list[Any]:
    """One cell per image (clean, perturbation, adversarial, then each restoration), in rows of
    :data:`PANELS_PER_ROW` columns: five panels fit a 1280 px wide page, so the first row is as
    before with NIP (guided) and PSSR, and further restorations wrap into rows below."""
    count = 3 + restorations
    cells: list[Any] = []
    for start in range(0, count, PANELS_PER_ROW):
        cells.extend(column_layout(PANELS_PER_ROW, gap="small")[: count - start])
    return cells


def restoration_count(count: int) -> str:
    """``"two images are"`` / ``"image is"``: how the caption counts the restorations."""
    words = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
    return "image is" if count == 1 else f"{words.get(count, str(count))} images are"


def perturbation_panel(result: analysis.Analysis, record: dict[str, Any]) -> None:
    """The perturbation (amplified colours), its norms and its colour range."""
    report = result.report
    delta = result.perturbation
    amplification = attack_figures.perturbation_amplification(delta)
    color_range = attack_figures.perturbation_range(delta)
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


def restoration_panel(result: analysis.Analysis, condition: str, names: tuple[str, ...], true_class: int | None,
                      record: dict[str, Any]) -> None:
    """A restoration's image titled with its defence's label and outcome, its top-5 bars and verdict."""
    title = result.condition_labels[condition]
    figure = components.figure(figures.image_figure, result.image(condition), title=title, height=IMAGE_HEIGHT + 18)
    # the same outcome as the verdict below it, as a subtitle (the panel is too narrow for one line)
    figure.update_layout(title_subtitle_text=result.outcome(condition), margin_t=74)
    components.chart(
        figure,
        f"{condition}-restored-image",
        key=f"attack.image.{condition}",
    )
    bars(result.probabilities(condition), names, true_class, "restored", condition, record,
         verdict=restored_verdict(result, condition, names))
    if components.used_fallback(result.restorations[condition]):
        components.restoration_notes(result.restorations[condition])


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
    chart = components.figure(attack_figures.trajectory_figure, trace, class_names, benign_class=benign, targeted=report.targeted,
                              target_class=int(report.target[0]) if report.target is not None else None)
    components.chart(chart, "attack-trajectory", key="attack.trajectory")
    exports.export_controls(chart, exports.trace_rows(trace, class_names), "attack-trajectory", record, key="attack.export.trajectory")
    direction = captions.trajectory_direction(trace.loss, report.targeted)
    target = int(report.target[0]) if report.target is not None else None
    reference = captions.trajectory_reference(report.targeted, class_names[benign],
                                              None if target is None else class_names[target])
    st.caption(
        f"Top: cross-entropy to the {reference}; here it {direction}. Bottom: "
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
    chosen = float(result.params[info.budget_param])
    eps_values = sweep_budgets(info, result, model)
    sweep_args = (model, selection.image, info.name, result.params, eps_values)
    # Away from the clean prediction, as the analysis above (labels=None).
    fraction = components.group_fraction()  # the one front/tail size of every view
    sweep_kwargs: dict[str, Any] = {"target": result.choice.target, "seed": result.choice.seed,
                                    "layer": result.default_layer, "front": fraction, "tail": fraction}
    estimate = sweep_estimate(info, result, eps_values)
    if not sweep_allowed(model, info, result, estimate, analysis.digest(*sweep_args, **sweep_kwargs), eps_values):
        return
    with st.spinner(f"Running {info.label} at {len(eps_values)} budgets and one influence pass (about {estimate:.0f} s)…"):
        sweep = analysis.attempt(analysis.memo, eps_sweep, *sweep_args, **sweep_kwargs)
    if sweep is None:
        return
    values = [float(v) for v in sweep.eps.tolist()]
    sweep_record = {**record, "eps_sweep": {"budget_param": info.budget_param, "values": values, "layer": sweep.layer,
                                             "front": fraction, "tail": fraction}}
    chart_column, detail_column = st.columns([3, 2], gap="large")
    with detail_column:
        selected = sweep_detail(selection, result, info, sweep, values, sweep_record)
    with chart_column:
        chart = components.figure(attack_figures.eps_sweep_figure, sweep, model.class_names, selected_eps=selected, chosen_eps=chosen)
        components.chart(chart, "eps-sweep", key="attack.sweep.chart")
        exports.export_controls(chart, lambda: exports.sweep_rows(sweep, model.class_names), "eps-sweep", sweep_record, key="attack.export.sweep")
    st.caption(sweep_caption(result, info, sweep, values, fraction, model.class_names))


def sweep_budgets(info: AttackInfo, result: analysis.Analysis, model: Any) -> list[float]:
    """:data:`SWEEP_POINTS` budgets from 0 to 2× the chosen one (capped at the attack's maximum), with
    the chosen one among them."""
    assert info.budget_param is not None
    budget = info.param(info.budget_param)
    chosen = float(result.params[info.budget_param])
    top = 2 * chosen if chosen > 0 else 2 * float(budget.default_for(model))
    if budget.high is not None:
        top = min(top, float(budget.high))
    return sorted({round(float(v), 6) for v in np.linspace(0.0, top, SWEEP_POINTS)} | {round(chosen, 6)})


def sweep_label(info: AttackInfo, value: float) -> str:
    """A budget as the slider and caption show it (pixel units when the budget is on the pixel scale)."""
    assert info.budget_param is not None
    return components.eps_label(value) if info.param(info.budget_param).pixel_scale else f"{value:.4g}"


def sweep_estimate(info: AttackInfo, result: analysis.Analysis, eps_values: list[float]) -> float:
    """Seconds the sweep should take: every non-zero budget is one more attack. The estimate takes the
    analysis' influence pass (one forward and one backward over 4 images) as the cost of a model pass."""
    seconds_per_pass = result.seconds.get("influence", result.report.seconds) / 8
    budgets = sum(1 for value in eps_values if value > 0)
    return estimate_work(info, result.params, 1) * seconds_per_pass * budgets


def sweep_allowed(model: Any, info: AttackInfo, result: analysis.Analysis, estimate: float, sweep_key: str,
                  eps_values: list[float]) -> bool:
    """Whether the sweep runs now: on a large model a long one waits for a click (a notice and a button).

    Small inputs (digits, CIFAR-size) always run: their sweep costs well under a second on a CPU, and
    a timing-based estimate is unreliable there (the first attack and influence pass of a process
    carry one-off start-up costs)."""
    limit = st.session_state.get(AUTO_SWEEP_KEY)  # a session's own limit replaces the rule
    if limit is None:
        waits = model.input_size[0] * model.input_size[1] > SMALL_INPUT_PIXELS and estimate > AUTO_SWEEP_SECONDS
    else:
        waits = estimate > limit
    requested: set[str] = st.session_state.setdefault(SWEEPS_REQUESTED, set())
    if not waits or sweep_key in requested:
        return True
    budgets = sum(1 for value in eps_values if value > 0)
    notice = st.empty()  # the notice and its button go once the sweep is asked for
    with notice.container():
        st.info(
            f"The sweep runs {info.label} at {budgets} more budgets: about {estimate:.0f} s on this model "
            f"(the attack above took {result.report.seconds:.1f} s).",
            icon=":material/hourglass:",
        )
        clicked = st.button("Run the ε sweep", icon=":material/play_arrow:", key="attack.sweep.run")
    if not clicked:
        return False
    requested.add(sweep_key)
    notice.empty()
    return True


def sweep_detail(selection: state.Selection, result: analysis.Analysis, info: AttackInfo, sweep: Any,
                 values: list[float], sweep_record: dict[str, Any]) -> float:
    """The budget slider and, at the chosen budget, the adversarial image, its bars and verdicts;
    returns the budget shown."""
    names = selection.model.class_names
    report = result.report
    target = int(report.target[0]) if report.target is not None else None
    chosen = float(result.params[str(info.budget_param)])
    slider_key = eps_key(info.name, chosen)
    components.persist(slider_key)
    asked = st.session_state.get(slider_key)
    if asked is not None and not any(abs(float(asked) - v) <= 1e-9 for v in values):  # a link's or a session file's
        st.warning(f"The budget {info.budget_param} = {float(asked):.6g} asked for (link or session file) is not one of "
                   f"the sweep's {len(values)} budgets: showing the chosen {sweep_label(info, chosen)}.",
                   icon=":material/link_off:")
        st.session_state[slider_key] = values[sweep.index(chosen)]
    elif asked is not None and values[sweep.index(float(asked))] != asked:
        st.session_state[slider_key] = values[sweep.index(float(asked))]  # the computed value itself
    # a value in session state (the user's, a link's) is the widget's; else the chosen budget (passing both
    # would make Streamlit warn that a widget had a default and a Session State value)
    start = {} if slider_key in st.session_state else {"value": values[sweep.index(chosen)]}
    selected = st.select_slider(
        f"{info.budget_param} (budget)",
        options=values,
        **start,
        format_func=lambda value: sweep_label(info, value),
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
            sweep.probs[index], names, selection.true_class, "adversarial" if bool(sweep.success[index]) else "clean", "sweep",
            {**sweep_record, "eps_selected": selected},
        )
    st.markdown(adversarial_verdict(sweep.probs[index], bool(sweep.success[index]), target, result.benign_class, names))
    st.markdown(captions.sweep_sentence(sweep, index))
    return float(selected)


def sweep_caption(result: analysis.Analysis, info: AttackInfo, sweep: Any, values: list[float], fraction: float,
                  names: tuple[str, ...]) -> str:
    """What the sweep's chart shows, how it was computed and how long it took."""
    chosen = float(result.params[str(info.budget_param)])
    benign = result.benign_class
    return (
        f"{len(values)} budgets from 0 to 2× the chosen {info.budget_param} = {sweep_label(info, chosen)} "
        f"(capped at the attack's maximum), the other parameters as chosen and the same seed {result.choice.seed}. "
        f"Top: probability of the benign class {names[benign]}; a cross marks a budget where the attack succeeds. "
        f"Bottom: how much of the clean image's front (top {fraction:.0%} of the channels of `{sweep.layer}` by "
        f"influence toward {names[benign]}) stays front, and the rank correlation ρ of all channels' influence with the "
        f"clean image's (tail: bottom {fraction:.0%}; {components.group_fraction_note()}); dotted: the same under "
        "the matched control at each ε (random noise of the attack's norm and of its size there)."
        + captions.sweep_interval_note(sweep)
        + f" Computed in {sum(sweep.seconds.values()):.2f} s "
        f"(attacks {sweep.seconds['attacks']:.2f} s, one batched influence pass {sweep.seconds['influence']:.3f} s"
        + (f", intervals {sweep.seconds['statistics']:.2f} s" if "statistics" in sweep.seconds else "")
        + ") and cached: the slider recomputes nothing."
    )

if __name__ == "__main__":  # st.navigation runs a page as __main__; an import only defines it
    render()
