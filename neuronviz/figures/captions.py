"""Sentences the dashboard shows next to its figures, computed from the numbers they describe.

Every sentence here that states a direction (gained / lost, rose / fell), a count or a
comparison is derived from the same data as the figure beside it, so a caption can never
contradict its figure. Pure functions: no Streamlit, no model; tested in ``tests/test_captions.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neuronviz.methods.attacks import format_eps
from neuronviz.methods.influence import InfluenceMap, InfluenceShift, NeuronGroups


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``"1 pair"``, ``"2 pairs"``, ``"0 images"``: the noun agrees with the count."""
    count = int(count)
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


#: The one k/255 rule (:func:`neuronviz.methods.attacks.format_eps`) under the name the pages use.
eps_label = format_eps


def _majority(count: int, total: int) -> bool:
    return total > 0 and 2 * count > total


def nip_pattern(front_lost: int, front: int, tail_gained: int, tail: int) -> str:
    """Which halves of NIP's observation (front loses influence, tail gains) the counts show.

    A half holds when more than half of its group moved that way.
    """
    front_half, tail_half = _majority(front_lost, front), _majority(tail_gained, tail)
    if front_half and tail_half:
        return "both halves of NIP's observation (the front lost influence and the tail gained)"
    if front_half:
        return "the front half of NIP's observation (the front lost influence), not the tail half (the tail did not gain)"
    if tail_half:
        return "the tail half of NIP's observation (the tail gained influence), not the front half (the front did not lose)"
    return "neither half of NIP's observation (the front did not lose influence and the tail did not gain)"


def group_changes(before: InfluenceMap, after: InfluenceMap, groups: NeuronGroups, image: int = 0) -> dict:
    """Counts of the clean front neurons that lost influence and tail neurons that gained, read
    from the influence values themselves (as the bars draw them), and the tail's sign."""
    front = [int(j) for j in groups.front[image]]
    tail = [int(j) for j in groups.tail[image]]
    b, a = before.values[image], after.values[image]
    return {
        "front": len(front),
        "tail": len(tail),
        "front_lost": sum(1 for j in front if float(a[j]) < float(b[j])),
        "tail_gained": sum(1 for j in tail if float(a[j]) > float(b[j])),
        "tail_negative": sum(1 for j in tail if float(b[j]) < 0),
    }


def group_bars_caption(
    before: InfluenceMap, after: InfluenceMap, groups: NeuronGroups, class_name: str, after_label: str, image: int = 0
) -> str:
    """The caption of :func:`neuronviz.figures.neurons.group_bars`: what moved which way."""
    c = group_changes(before, after, groups, image)
    sign_note = ""
    if c["tail_negative"]:
        which = f"All {c['tail']}" if c["tail_negative"] == c["tail"] else f"{c['tail_negative']} of the {c['tail']}"
        sign_note = (
            f" {which} tail neurons have a negative influence on the clean image: "
            "for them a longer bar (further below zero) means less influence, a shorter one more."
        )
    return (
        f"The clean front and tail neurons one by one, clean bar beside the {after_label} bar. A neuron gained "
        f"influence toward {class_name} when its {after_label} bar is higher (further up the axis) than its clean "
        f"bar, and lost influence when it is lower.{sign_note} Here {c['front_lost']} of the {c['front']} front "
        f"neurons lost influence and {c['tail_gained']} of the {c['tail']} tail neurons gained: "
        f"{nip_pattern(c['front_lost'], c['front'], c['tail_gained'], c['tail'])}."
    )


def scatter_caption(shift: InfluenceShift, after_label: str, image: int = 0) -> str:
    """The caption of the influence scatter: how many front points lie under the line, tail above."""
    k, t = shift.groups_before.front_size, shift.groups_before.tail_size
    lost, gained = int(shift.front_suppressed[image]), int(shift.tail_lifted[image])
    return (
        f"One point per neuron, coloured by its group on the clean image. Points under the dashed line lost "
        f"influence on the {after_label} image, points above it gained. NIP's observation is blue (front) points "
        f"under the line and orange (tail) points above it; here {lost} of {k} front points are under it and "
        f"{gained} of {t} tail points above it: {nip_pattern(lost, k, gained, t)}."
    )


def tour_neurons_heading(shift: InfluenceShift, image: int = 0) -> str:
    """The tour's step-3 title, true of its example."""
    k = shift.groups_before.front_size
    if _majority(int(shift.front_suppressed[image]), k):
        return "3 · Inside the network: the neurons that voted for the answer go quiet"
    return "3 · Inside the network: what happened to the neurons that voted for the answer"


def shift_sentence(shift: InfluenceShift, image: int = 0) -> str:
    """The tour's step-3 numbers in words: counts, NIP's halves and ρ."""
    k, t = shift.groups_before.front_size, shift.groups_before.tail_size
    lost, gained = int(shift.front_suppressed[image]), int(shift.tail_lifted[image])
    rho = float(shift.spearman[image])
    rho_text = "undefined (one of the rankings is constant)" if rho != rho else f"{rho:.2f}"
    return (
        f"Here {lost} of the {k} front neurons lost influence and {gained} of the {t} tail neurons gained some: "
        f"{nip_pattern(lost, k, gained, t)}. The ranking of all channels before and after correlates at "
        f"ρ = {rho_text} (1 would mean unchanged)."
    )


def change_direction(value: float, what: str) -> str:
    """``"the front lost influence (−0.31 on average)"`` from a mean change."""
    value = float(value)
    if value < 0:
        return f"{what} lost influence ({value:+.3g} on average)"
    if value > 0:
        return f"{what} gained influence ({value:+.3g} on average)"
    return f"{what} kept its influence (no change on average)"


def sweep_sentence(layer: str, front_overlap: float, spearman: float, front_change: float, tail_change: float) -> str:
    """The ε-sweep detail at one budget: overlap, ρ, and which way front and tail moved."""
    return (
        f"At `{layer}`: front overlap **{float(front_overlap):.0%}**, Spearman ρ **{float(spearman):.3f}**; "
        f"{change_direction(front_change, 'the front')} and {change_direction(tail_change, 'the tail')}."
    )


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
