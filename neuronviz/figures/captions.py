"""Sentences the dashboard shows next to its figures, computed from the numbers they describe.

Every sentence here that states a direction (gained / lost, rose / fell), a count or a
comparison is derived from the same data as the figure beside it, so a caption can never
contradict its figure. Pure functions: no Streamlit, no model; tested in ``tests/test_captions.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from neuronviz.methods.attacks import format_eps
from neuronviz.methods.influence import MEASURE_LABELS, SIGN_CONVENTION, InfluenceMap, InfluenceShift, NeuronGroups


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 pair"``, ``"2 pairs"``, ``"0 images"``: the noun agrees with the count."""
    count = int(count)
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


#: The one k/255 rule (:func:`neuronviz.methods.attacks.format_eps`) under the name the pages use.
eps_label = format_eps


def _majority(count: int, total: int) -> bool:
    return total > 0 and 2 * count > total


#: How each direction measure reads in a sentence (counted neurons, then the rest of the sentence).
MEASURE_WORDS = MEASURE_LABELS


def nip_pattern(front_suppressed: int, front: int, tail_enhanced: int, tail: int, quantity: str = "activation") -> str:
    """Which halves of NIP's observation (front suppressed, tail enhanced: :data:`SIGN_CONVENTION`)
    the counts show; a half holds when more than half of its group moved that way."""
    front_half, tail_half = _majority(front_suppressed, front), _majority(tail_enhanced, tail)
    tail_words = "gained activation" if quantity == "activation" else "fell further below zero"
    if front_half and tail_half:
        return f"both halves of NIP's observation (front suppressed, tail enhanced) in {quantity}"
    if front_half:
        return f"the front half of NIP's observation in {quantity}, not the tail half (most tail neurons did not {tail_words.replace('gained', 'gain').replace('fell', 'fall')})"
    if tail_half:
        return f"the tail half of NIP's observation in {quantity} (the tail {tail_words}), not the front half"
    return f"neither half of NIP's observation in {quantity}"


def group_changes(before: InfluenceMap, after: InfluenceMap, groups: NeuronGroups, image: int = 0) -> dict:
    """Counts of the clean front and tail neurons read from the values themselves (as the bars
    draw them): front influence fell, tail influence fell (the paper's tail half), front
    activation fell, tail activation rose; and how many tail neurons have a negative influence."""
    front = [int(j) for j in groups.front[image]]
    tail = [int(j) for j in groups.tail[image]]
    b, a = before.values[image], after.values[image]
    ba, aa = before.activations[image], after.activations[image]
    return {
        "front": len(front),
        "tail": len(tail),
        "front_suppressed_influence": sum(1 for j in front if float(a[j]) < float(b[j])),
        "tail_enhanced_influence": sum(1 for j in tail if float(a[j]) < float(b[j])),
        "front_suppressed_activation": sum(1 for j in front if float(aa[j]) < float(ba[j])),
        "tail_enhanced_activation": sum(1 for j in tail if float(aa[j]) > float(ba[j])),
        "tail_negative": sum(1 for j in tail if float(b[j]) < 0),
    }


def group_bars_caption(
    before: InfluenceMap, after: InfluenceMap, groups: NeuronGroups, class_name: str, after_label: str, image: int = 0
) -> str:
    """The caption of :func:`neuronviz.figures.neurons.group_bars`: how to read the bars, and the
    influence counts they show (the activation counts and the control are in :func:`evidence_sentence`)."""
    c = group_changes(before, after, groups, image)
    sign_note = ""
    if c["tail_negative"]:
        which = f"All {c['tail']}" if c["tail_negative"] == c["tail"] else f"{c['tail_negative']} of the {c['tail']}"
        sign_note = (
            f" {which} tail neurons have a negative influence on the clean image: a longer {after_label} bar (further "
            "below zero) is the paper's enhanced tail neuron."
        )
    return (
        f"The clean front and tail neurons one by one, their influence toward {class_name}: clean bar beside the "
        f"{after_label} bar.{sign_note} In the bars: {c['front_suppressed_influence']} of the {c['front']} front "
        f"bars are lower after, and {c['tail_enhanced_influence']} of the {c['tail']} tail bars are lower (further "
        f"below zero) after."
    )


def scatter_caption(shift: InfluenceShift, after_label: str, image: int = 0) -> str:
    """The caption of the influence scatter: how to read it (the counts are in :func:`evidence_sentence`)."""
    return (
        f"One point per neuron, coloured by its group on the clean image; across its influence on the clean image, "
        f"up on the {after_label} image. Under the dashed line the influence fell. The paper's direction is blue "
        "(front) points under the line and orange (tail) points under it too: a tail neuron's influence is negative, "
        "and the paper's enhanced tail neuron pushes it further below zero."
    )


def tour_neurons_heading(evidence: Any, image: int = 0) -> str:
    """The tour's step-3 title, true of its example beside its control (:class:`neuronviz.workflows.evidence.ShiftEvidence`)."""
    front = evidence.measure("front_suppressed_activation", image)
    tail = evidence.measure("tail_enhanced_activation", image)
    if front.attack.k > front.control.k and tail.attack.k > tail.control.k:
        return "3 · Inside the network: the attack quiets the front neurons more than random noise does"
    return "3 · Inside the network: the attack beside random noise of the same size"


def measure_sentence(measure: Any, attack_label: str, control_label: str) -> str:
    """``"12 of 13 front neurons lost activation under PGD; 7 of 13 under noise of the same L∞"``
    (one image: counts; several: shares of neuron × image pairs with their intervals)."""
    group, words = MEASURE_WORDS[measure.measure]
    if measure.images == 1:
        return (
            f"{measure.attack.k} of {measure.attack.n} {group} neurons {words} under {attack_label}; "
            f"{measure.control.k} of {measure.control.n} under {control_label}"
        )
    return (
        f"{group} neurons {words} in {measure.attack.text()} of neuron × image pairs under {attack_label}; "
        f"{measure.control.text()} under {control_label}"
    )


def beyond_sentence(measures: Sequence[Any]) -> str:
    """Whether the attack's effect can be told from the control's (METHODS.md "Measuring a claim")."""
    names = [f"the {MEASURE_WORDS[m.measure][0]} half" for m in measures]
    verdicts = [m.beyond_control for m in measures]
    images = measures[0].images if measures else 0
    not_beyond = [n for n, v in zip(names, verdicts) if v is False]
    parts = []
    if not_beyond:
        parts.append(
            f"Under the attack {' and '.join(not_beyond)} moved no more than under the noise: no effect beyond the control."
        )
    if images == 1:
        more = [n for n, v in zip(names, verdicts) if v is None]
        if more:
            parts.append(
                f"{' and '.join(more).capitalize()} moved more under the attack than under the noise, but one image "
                "cannot tell the two apart (its neurons are not independent observations): measure it over a data "
                "set (`neuronviz neurons`)."
            )
    else:
        for m, name in zip(measures, names):
            if m.difference is not None and m.beyond_control is not None:
                told = "beyond the control" if m.beyond_control else "not told apart from the control"
                parts.append(f"{name.capitalize()}: attack − control {m.difference.text('points')}, {told}.")
            elif m.beyond_control is None and m.attack.share is not None and m.control.share is not None \
                    and m.attack.share > m.control.share:
                parts.append(f"{name.capitalize()}: the attack and the control cannot be told apart.")
    return " ".join(parts)


def evidence_sentence(evidence: Any, attack_label: str, control_label: str, image: int | None = 0,
                      quantity: str = "activation") -> str:
    """The attack's effect beside the control on one layer (:class:`neuronviz.workflows.evidence.ShiftEvidence`),
    on activations (or influence), with the sign convention and whether the two can be told apart."""
    measures = [evidence.measure(f"front_suppressed_{quantity}", image), evidence.measure(f"tail_enhanced_{quantity}", image)]
    counts = "; ".join(measure_sentence(m, attack_label, control_label) for m in measures[:1])
    counts += ". " + measure_sentence(measures[1], attack_label, control_label)
    return f"{counts}. {beyond_sentence(measures)} {SIGN_CONVENTION}".replace("  ", " ")


def shift_sentence(shift: InfluenceShift, image: int = 0, correlation: Any = None) -> str:
    """The rank correlation of all neurons before and after, in words (or why it is not defined);
    with ``correlation`` (a :class:`neuronviz.methods.stats.Correlation` of the same values) its bootstrap
    interval over the neurons and permutation p."""
    rho = float(shift.spearman[image])
    if rho != rho:
        return f"The ranking of all neurons before and after: ρ not defined ({shift.correlation_reason(image)})."
    if correlation is not None and correlation.defined:
        return f"The ranking of all neurons before and after: {correlation.text()} (1 would mean unchanged)."
    return f"The ranking of all neurons before and after correlates at ρ = {rho:.2f} (1 would mean unchanged)."


def transition_caption(shift: InfluenceShift, after_label: str, image: int = 0) -> str:
    """The caption of the transition heat map: how to read it and how many front neurons kept their group."""
    k = shift.groups_before.front_size
    kept = int(shift.transition[image, 0, 0])
    return (
        f"Rows: group before; columns: group on the {after_label} image (same sizes). The diagonal counts neurons "
        f"that kept their group: here {kept} of the {k} front neurons stayed front. Choose “matched noise” above to "
        "see the same table under the control."
    )


def layer_overview_caption(frame: Any, layer: str, after_label: str, control_label: str) -> str:
    """The caption of :func:`neuronviz.figures.neurons.layer_overview`: what the lines are, the
    selected layer's shares beside the control's, and the layers where ρ is not defined."""
    text = (
        f"Every probe layer, input (left) to output (right); {layer} is highlighted. Solid: clean → {after_label}"
    )
    has_control = "control_front_overlap" in getattr(frame, "columns", [])
    if has_control:
        text += f"; dashed with open markers: clean → {control_label}"
    text += ". Error bars: 95% Wilson intervals over each group's neurons."
    rows = frame[frame["layer"] == layer]
    if has_control and not rows.empty:
        row = rows.iloc[0]
        n_front, n_tail = int(row["front_suppressed_activation_share_n"]), int(row["tail_enhanced_activation_share_n"])
        text += (
            f" At {layer}: front lost activation in {_share(row['front_suppressed_activation_share'])} of {n_front} "
            f"(noise: {_share(row['control_front_suppressed_activation_share'])}), tail gained activation in "
            f"{_share(row['tail_enhanced_activation_share'])} of {n_tail} (noise: "
            f"{_share(row['control_tail_enhanced_activation_share'])})."
        )
    columns = list(getattr(frame, "columns", []))
    undefined = frame[frame["spearman"].isna()] if "spearman" in columns else None
    if undefined is not None and len(undefined):
        names = ", ".join(str(v) for v in undefined["layer"])
        reason = str(undefined.iloc[0].get("correlation_note", "")) or "not defined"
        text += f" ρ is not defined at {names} ({reason.removeprefix('not defined: ')}): a gap, left out of any average."
    return text


def _share(value: Any) -> str:
    value = float(value)
    return "not defined" if value != value else f"{value:.0%}"


def change_direction(value: float, what: str) -> str:
    """``"the front lost influence (−0.31 on average)"`` from a mean change of influence values
    (for a tail of negative influence, "lost" is the paper's enhancement: see :data:`SIGN_CONVENTION`)."""
    value = float(value)
    if value < 0:
        return f"{what} lost influence ({value:+.3g} on average)"
    if value > 0:
        return f"{what} gained influence ({value:+.3g} on average)"
    return f"{what} kept its influence (no change on average)"


def sweep_sentence(sweep: Any, index: int) -> str:
    """The ε-sweep detail at one budget: the front overlap (k of n, Wilson interval) and ρ (bootstrap
    interval, permutation p, n; "not defined" with the reason) under the attack beside the matched
    control of that size, how far the attack is beyond the control, and the paper's two halves on
    activations with their rates beside the control's."""
    if not getattr(sweep, "overlap", ()):
        return _sweep_sentence_values(sweep, index)
    layer = sweep.layer
    overlap, control_overlap = sweep.overlap[index], sweep.control_overlap[index]
    rho, control_rho = sweep.correlations[index], sweep.control_correlations[index]
    text = (
        f"At `{layer}`: front overlap **{overlap.text()}** under the attack; noise of the same size: "
        f"{control_overlap.text()} ({_beyond_points(overlap.share, control_overlap.share, 'stays front')}). "
        f"Rank correlation: **{rho.text()}**; under the noise {control_rho.text()}"
        f"{_beyond_rho(rho.value, control_rho.value)}."
    )
    for measure, what in (("front_suppressed_activation", "front neurons lost activation"),
                          ("tail_enhanced_activation", "tail neurons gained activation")):
        evidence = sweep.measure(measure, index)
        text += (f" {evidence.attack.k} of {evidence.attack.n} {what} ({evidence.control.k} under the noise): "
                 f"{evidence.attack.text()} against {evidence.control.text()}.")
    return text + (" One image: its neurons are not independent observations, so the difference from the noise is "
                   "described, not tested.")


def _beyond_points(attack: float | None, control: float | None, what: str) -> str:
    if attack is None or control is None:
        return "the difference is not defined"
    points = round(100 * (attack - control))
    if points == 0:
        return f"the share that {what} is the same as under the noise"
    return f"the share that {what} is {abs(points)} points {'higher' if points > 0 else 'lower'} than under the noise"


def _beyond_rho(attack: float | None, control: float | None) -> str:
    if attack is None or control is None:
        return " (the difference is not defined)"
    difference = attack - control
    if abs(difference) < 0.005:
        return " (the same as under the noise)"
    return f" ({abs(difference):.2f} {'higher' if difference > 0 else 'lower'} under the attack than under the noise)"


def _sweep_sentence_values(sweep: Any, index: int) -> str:
    """:func:`sweep_sentence` for a sweep without intervals (made by an older version): the values."""
    layer = sweep.layer
    rho = float(sweep.spearman[index])
    rho_text = "not defined" if rho != rho else f"{rho:.3f}"
    text = f"At `{layer}`: front overlap **{float(sweep.front_overlap[index]):.0%}**, Spearman ρ **{rho_text}**"
    if sweep.control_front_overlap is not None:
        crho = float(sweep.control_spearman[index])
        text += (
            f" (noise of the same size: {float(sweep.control_front_overlap[index]):.0%}, "
            f"ρ {'not defined' if crho != crho else f'{crho:.3f}'})"
        )
    text += "."
    if sweep.directions and sweep.front_size:
        k, t = sweep.front_size, sweep.tail_size
        front, tail = sweep.directions["front_suppressed_activation"][index], sweep.directions["tail_enhanced_activation"][index]
        cfront = sweep.control_directions["front_suppressed_activation"][index]
        ctail = sweep.control_directions["tail_enhanced_activation"][index]
        text += (
            f" {int(front)} of {k} front neurons lost activation ({int(cfront)} under the noise); "
            f"{int(tail)} of {t} tail neurons gained activation ({int(ctail)} under the noise)."
        )
    return text


def sweep_interval_note(sweep: Any) -> str:
    """What the sweep chart's error bars are, and the budgets where ρ is not defined (and why)."""
    from neuronviz.workflows.sweep import RHO_RESAMPLES

    if not getattr(sweep, "overlap", ()):
        return ""
    front = sweep.overlap[0].n
    neurons = sweep.correlations[0].n
    text = (f" Error bars: 95% intervals, the front overlap's Wilson interval over the front's {front} neuron"
            f"{'s' if front != 1 else ''} and ρ's bootstrap interval over the layer's {neurons} neurons "
            f"({RHO_RESAMPLES} resamples); the noise's points sit slightly right of their ε so that both bars "
            "show. One image's neurons are not independent observations, so the bars "
            "describe the spread, they do not test the attack against the noise.")
    for side, rhos in (("the attack", sweep.correlations), ("the noise", sweep.control_correlations)):
        undefined = [i for i, c in enumerate(rhos) if not c.defined]
        if undefined:
            budgets = ", ".join(f"{float(sweep.eps[i]):.4g}" for i in undefined)
            text += (f" Under {side}, ρ is not defined at {sweep.budget_param} = {budgets} "
                     f"({rhos[undefined[0]].reason}): a gap in the line.")
        no_interval = [i for i, c in enumerate(rhos) if c.defined and c.low is None]
        if no_interval:
            budgets = ", ".join(f"{float(sweep.eps[i]):.4g}" for i in no_interval)
            why = getattr(rhos[no_interval[0]], "interval_reason", None) or "no interval"
            text += f" Under {side}, ρ has no interval at {sweep.budget_param} = {budgets} ({why}): no error bar there."
    return text


def trajectory_reference(targeted: bool, benign_name: str | None = None, target_name: str | None = None) -> str:
    """What the attack trace's loss is measured against (:func:`neuronviz.methods.attacks.run_attack`'s
    trace: cross-entropy to the target when targeted, else to the label it moves away from, the
    clean prediction in the dashboard): the trajectory's axis title and its caption both use it."""
    if targeted:
        return "target class" + (f" {target_name}" if target_name is not None else "")
    return "clean prediction" + (f" {benign_name}" if benign_name is not None else "")


def trajectory_direction(loss: torch.Tensor | Sequence[float], targeted: bool, image: int = 0) -> str:
    """How the attack's loss moved from its first to its last recorded pass (``loss (T, N)``)."""
    values = torch.as_tensor(loss, dtype=torch.float64)
    if values.dim() == 2:
        values = values[:, image]
    first, last = float(values[0]), float(values[-1])
    moved = "rose" if last > first else "fell" if last < first else "stayed"
    sense = "toward the target" if targeted else "away from the clean prediction"
    wanted = (last < first) if targeted else (last > first)
    outcome = "as an attack moving " + sense + " does" if wanted else "so the attack did not move " + sense
    if moved == "stayed":
        return f"stayed at {first:.3g}, so the attack did not move {sense}"
    return f"{moved} from {first:.3g} to {last:.3g}, {outcome}"


def unchanged_attack_note(l2: float, linf: float, attack_label: str, params: dict) -> str | None:
    """A hint when an attack returned the clean image (no pixel changed); None otherwise."""
    if float(l2) > 0 or float(linf) > 0:
        return None
    knobs = [name for name in ("c", "steps", "eps", "lr", "overshoot") if name in params]
    hint = (
        "raise " + " or ".join(f"{name} (now {params[name]})" for name in knobs)
        if knobs
        else "choose another attack or stronger parameters"
    )
    return (
        f"{attack_label} changed no pixel (L2 = 0): the adversarial image is the clean image, so every panel "
        f"below shows the clean image's story. To get a perturbation, {hint} in the sidebar and press Run attack."
    )
