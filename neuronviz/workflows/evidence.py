"""An attack's effect on neurons beside its matched control, on groups that do not make the effect.

METHODS.md, "Measuring a claim": front and tail neurons chosen on the clean image drift toward
the middle under *any* change of the image (selection toward the middle: the neurons picked for
an extreme clean value are, on average, less extreme on any other image), so an attack's effect
on them means something only beside the same measure under a perturbation that is as large but
carries no information about the model (:func:`neuronviz.methods.controls.matched_control`, computed
in :func:`neuronviz.workflows.analysis.compute_analysis`).

- :class:`ShiftEvidence`: one layer of one analysis, attack and control on the same groups,
  each of the paper's four direction measures (:data:`neuronviz.methods.influence.DIRECTION_MEASURES`)
  as a :class:`~neuronviz.methods.stats.Rate` (n = neuron × image pairs) for both, and, over several
  images, the paired difference (:func:`neuronviz.methods.stats.paired_difference`).
- :func:`reference_groups`: front and tail chosen independently of the compared pair, from the
  benign class's mean influence over the evaluation set's images of that class (the analysed
  image itself left out), so the selection cannot make the effect.
- :func:`story_counts` / :func:`choose_story_example`: the start-up example, chosen by the
  control-adjusted measure.

No Streamlit; the sentences are in :mod:`neuronviz.figures.captions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from neuronviz.infra.errors import InputError
from neuronviz.methods.influence import (
    DEFAULT_GROUP_FRACTION,
    DIRECTION_MEASURES,
    MEASURE_LABELS,
    InfluenceMap,
    InfluenceShift,
    NeuronGroups,
    influence_shift,
    neuron_influence,
    partition,
)
from neuronviz.methods.stats import Difference, Rate, paired_difference, rate

#: The measure the dashboard leads with for each half: activations, as the paper's observation.
HEADLINE_MEASURES = ("front_suppressed_activation", "tail_enhanced_activation")
#: Group choices: each image's own clean ranking, or the class's mean over the evaluation set.
GROUP_SOURCES = ("clean", "reference")
#: At most this many images of the benign class go into the reference ranking.
MAX_REFERENCE_IMAGES = 64
#: Why groups chosen on the clean image drift under any change (the Neurons page shows it).
SELECTION_NOTE = (
    "Front and tail chosen on the clean image are its most extreme neurons; on any other image, even one with "
    "random noise added, the same neurons are on average less extreme (selection toward the middle), so the front "
    "tends to fall and the tail to rise whatever changed the image. The matched control measures that drift; the "
    "attack's effect is the part beyond it."
)


# -- attack beside control ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasureEvidence:
    """One direction measure under the attack and under the control: two rates on the same
    neurons, and over several images the paired difference of the per-image shares."""

    measure: str
    attack: Rate
    control: Rate
    difference: Difference | None
    images: int

    @property
    def group(self) -> str:
        return DIRECTION_MEASURES[self.measure][0]

    @property
    def quantity(self) -> str:
        return DIRECTION_MEASURES[self.measure][1]

    @property
    def beyond_control(self) -> bool | None:
        """True: the attack's share exceeds the control's and the difference's interval excludes 0
        (several images). False: the attack's share is no higher than the control's. None: higher,
        but one image cannot tell them apart (its neurons are not independent observations)."""
        if self.attack.share is None or self.control.share is None:
            return None
        if self.attack.share <= self.control.share:
            return False
        if self.difference is None or not self.difference.defined:
            return None
        return bool(self.difference.distinguishable and (self.difference.value or 0.0) > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "group": self.group,
            "quantity": self.quantity,
            "attack": self.attack.to_dict(),
            "control": self.control.to_dict(),
            "difference": None if self.difference is None else self.difference.to_dict(),
            "images": self.images,
            "beyond_control": self.beyond_control,
        }


@dataclass(frozen=True)
class ShiftEvidence:
    """One layer: the attack's and the control's shifts on the same before-groups."""

    layer: str
    attack: InfluenceShift
    control: InfluenceShift
    group_source: str = "clean"

    @property
    def images(self) -> int:
        return int(self.attack.spearman.shape[0])

    def measure(self, measure: str, image: int | None = None) -> MeasureEvidence:
        """A measure of :data:`DIRECTION_MEASURES` for all images (or one)."""
        attack_pairs = self.attack.pairs(measure)
        control_pairs = self.control.pairs(measure)
        if image is not None:
            attack_pairs, control_pairs = attack_pairs[image : image + 1], control_pairs[image : image + 1]
        images = int(attack_pairs.shape[0])
        difference = None
        if images >= 2:
            difference = paired_difference(attack_pairs.float(), control_pairs.float())
        return MeasureEvidence(
            measure=measure,
            attack=rate(int(attack_pairs.sum()), int(attack_pairs.numel())),
            control=rate(int(control_pairs.sum()), int(control_pairs.numel())),
            difference=difference,
            images=images,
        )

    def measures(self, image: int | None = None) -> dict[str, MeasureEvidence]:
        return {name: self.measure(name, image) for name in DIRECTION_MEASURES}

    def to_dict(self, image: int | None = None) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "groups": self.group_source,
            "front_size": self.attack.groups_before.front_size,
            "tail_size": self.attack.groups_before.tail_size,
            "tail_rule": self.attack.groups_before.tail_rule,
            **{name: m.to_dict() for name, m in self.measures(image).items()},
        }


def shift_evidence(
    before: InfluenceMap,
    attack: InfluenceMap,
    control: InfluenceMap,
    front: int | float = DEFAULT_GROUP_FRACTION,
    tail: int | float = DEFAULT_GROUP_FRACTION,
    tail_rule: str = "bottom",
    groups: NeuronGroups | None = None,
) -> ShiftEvidence:
    """The attack's and the control's shift of one layer on the same groups (the clean image's
    own, or ``groups`` chosen elsewhere, e.g. :func:`reference_groups`)."""
    source = "clean" if groups is None else "given"
    chosen = groups or partition(before, front, tail, tail_rule)
    return ShiftEvidence(
        layer=before.layer,
        attack=influence_shift(before, attack, groups=chosen),
        control=influence_shift(before, control, groups=chosen),
        group_source=source,
    )


def analysis_evidence(
    result: Any,
    layer: str | None = None,
    front: int | float = DEFAULT_GROUP_FRACTION,
    tail: int | float = DEFAULT_GROUP_FRACTION,
    tail_rule: str = "bottom",
    groups: NeuronGroups | None = None,
    after: str = "adversarial",
) -> ShiftEvidence:
    """:func:`shift_evidence` of a :class:`neuronviz.workflows.analysis.Analysis` at ``layer`` (default:
    its default layer): ``after`` (the adversarial image, or a restoration) beside the control."""
    from neuronviz.workflows.analysis import CONTROL

    layer = layer or result.default_layer
    if CONTROL not in result.influence:
        raise InputError("this analysis has no matched control (it was made by an older version): compute it again")
    before = result.influence["clean"][layer]
    chosen = groups or partition(before, front, tail, tail_rule)
    return ShiftEvidence(
        layer=layer,
        attack=influence_shift(before, result.influence[after][layer], groups=chosen),
        control=influence_shift(before, result.influence[CONTROL][layer], groups=chosen),
        group_source="clean" if groups is None else "reference",
    )


def evidence_table(
    before: Mapping[str, InfluenceMap],
    attack: Mapping[str, InfluenceMap],
    control: Mapping[str, InfluenceMap],
    front: int | float = DEFAULT_GROUP_FRACTION,
    tail: int | float = DEFAULT_GROUP_FRACTION,
    tail_rule: str = "bottom",
    groups: Mapping[str, NeuronGroups] | None = None,
):
    """The per-layer table of :func:`neuronviz.methods.influence.layer_shift_table` for the attack, with
    the control's columns beside it (``control_`` prefix) and, for each direction measure, the
    attack − control share difference in points (``<measure>_beyond``)."""
    from neuronviz.methods.influence import layer_shift_table

    attack_table = layer_shift_table(before, attack, front, tail, tail_rule, groups=groups)
    control_table = layer_shift_table(before, control, front, tail, tail_rule, groups=groups)
    keep = [c for c in control_table.columns if c not in ("layer", "neurons", "front_size", "tail_size")]
    merged = attack_table.join(control_table[keep].add_prefix("control_"))
    for measure in DIRECTION_MEASURES:
        merged[f"{measure}_beyond"] = merged[f"{measure}_share"] - merged[f"control_{measure}_share"]
    return merged


# -- groups independent of the compared pair ------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceGroups:
    """Front and tail per layer from the benign class's mean influence over ``images`` images of
    the evaluation set (true class and clean prediction both the benign class; the analysed
    image left out). ``groups[layer]`` has one row; :meth:`for_images` repeats it."""

    benign_class: int
    images: int
    description: str
    groups: dict[str, NeuronGroups]
    mean_influence: dict[str, torch.Tensor]

    def for_images(self, layer: str, n: int = 1) -> NeuronGroups:
        """The layer's groups repeated for ``n`` images (what :func:`influence_shift` takes)."""
        g = self.groups[layer]
        return NeuronGroups(
            layer=g.layer, front=g.front.expand(n, -1).clone(), tail=g.tail.expand(n, -1).clone(),
            labels=g.labels.expand(n, -1).clone(), tail_rule=g.tail_rule,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"benign_class": self.benign_class, "images": self.images, "description": self.description,
                "groups": {name: g.to_dict() for name, g in self.groups.items()}}


def reference_groups(
    model: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    benign_class: int,
    layers: Sequence[str],
    front: int | float = DEFAULT_GROUP_FRACTION,
    tail: int | float = DEFAULT_GROUP_FRACTION,
    tail_rule: str = "bottom",
    exclude: torch.Tensor | None = None,
    source: str = "the evaluation set",
    max_images: int = MAX_REFERENCE_IMAGES,
) -> ReferenceGroups:
    """Groups from the mean influence toward ``benign_class`` over the images of that class.

    ``images (N, C, H, W)`` and ``labels (N,)``: a labelled set (e.g.
    :func:`neuronviz.data.labelled.evaluation_set`); those whose true class is ``benign_class`` and that
    the model also predicts as it are used, at most ``max_images`` (bounded before any pass),
    leaving out any image equal to ``exclude`` (the analysed image). Raises
    :class:`~neuronviz.infra.errors.InputError` when no such image exists.
    """
    if images.dim() != 4 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
        raise InputError(f"images must be (N, C, H, W) with labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}")
    if not isinstance(max_images, int) or max_images < 1:
        raise InputError(f"max_images must be a positive integer, got {max_images!r}")
    pick = labels == int(benign_class)
    if exclude is not None:
        same = (images.reshape(images.shape[0], -1) == exclude.reshape(1, -1).to(images.dtype)).all(1)
        pick &= ~same
    candidates = images[pick][: 4 * max_images]
    name = model.class_names[benign_class]
    if candidates.shape[0] == 0:
        raise InputError(f"{source} has no image of class {name} (other than the analysed one) to choose groups from")
    with model.lock, torch.no_grad():
        predicted = model(candidates.to(model.device)).argmax(1).cpu()
    chosen = candidates[predicted == int(benign_class)][:max_images]
    if chosen.shape[0] == 0:
        raise InputError(f"the model classifies none of the images of class {name} in {source} as {name}")
    maps = neuron_influence(model, chosen, layers=list(layers), target=[int(benign_class)] * chosen.shape[0])
    mean = {layer: m.values.mean(0, keepdim=True) for layer, m in maps.items()}
    groups = {layer: _rename(partition(values, front, tail, tail_rule), layer) for layer, values in mean.items()}
    described = (
        f"the mean influence toward {name} over {chosen.shape[0]} image{'s' if chosen.shape[0] != 1 else ''} of "
        f"class {name} from {source} that the model classifies as {name} (the analysed image left out)"
    )
    return ReferenceGroups(int(benign_class), int(chosen.shape[0]), described, groups, {k: v[0] for k, v in mean.items()})


def _rename(groups: NeuronGroups, layer: str) -> NeuronGroups:
    return NeuronGroups(layer=layer, front=groups.front, tail=groups.tail, labels=groups.labels, tail_rule=groups.tail_rule)


# -- the start-up example --------------------------------------------------------------------------------


#: The criterion :func:`choose_story_example` applies, in words (the Learn page shows it).
STORY_CRITERION = (
    "among the sample digits that the model classifies correctly, that the attack fools (and its matched noise "
    "does not) and that NIP (guided) restores, the one whose smaller margin over the matched noise — front neurons "
    "that lost activation, tail neurons that gained activation, each under the attack minus under the noise — is "
    "largest (ties: the first in the sample list)"
)


def story_counts(result: Any, fraction: float | None = None) -> dict[str, Any]:
    """NIP's two halves on one analysis at its default layer and the given front/tail size
    (default :data:`DEFAULT_GROUP_FRACTION`), on activations, under the attack and under its
    matched control, and whether the attack fooled the model and NIP (guided) restored it.

    ``score``: the smaller of the two halves' margins beyond the control (share under the attack
    minus share under the control), the control-adjusted measure the start-up example is chosen by.
    """
    fraction = DEFAULT_GROUP_FRACTION if fraction is None else fraction
    evidence = analysis_evidence(result, front=fraction, tail=fraction)
    front_m = evidence.measure("front_suppressed_activation")
    tail_m = evidence.measure("tail_enhanced_activation")
    k, t = front_m.attack.n, tail_m.attack.n
    margins = (front_m.attack.k - front_m.control.k) / k, (tail_m.attack.k - tail_m.control.k) / t
    return {
        "layer": evidence.layer,
        "front": k,
        "tail": t,
        "front_lost": front_m.attack.k,
        "tail_gained": tail_m.attack.k,
        "control_front_lost": front_m.control.k,
        "control_tail_gained": tail_m.control.k,
        "front_lost_influence": int(evidence.attack.front_suppressed_influence[0]),
        "tail_fell_influence": int(evidence.attack.tail_enhanced_influence[0]),
        "fooled": result.attack_succeeded,
        "control_fooled": result.control_changed_prediction,
        "restored": result.prediction("nip-guided") == result.benign_class,
        # both halves hold when more than half of each group moved the paper's way under the attack
        "both_halves": 2 * front_m.attack.k > k and 2 * tail_m.attack.k > t,
        "beyond_control": margins[0] > 0 and margins[1] > 0,
        "score": min(margins),
    }


def choose_story_example(
    samples: Sequence[Any], choices: Sequence[Any], analyse: Callable[[Any, Any], Any]
) -> tuple[Any, Any, dict[str, Any] | None, list[dict[str, Any]]]:
    """Scan ``samples`` × ``choices`` and return ``(sample, choice, counts, rows)``: the best by
    :data:`STORY_CRITERION`, and one row per pair. ``analyse(sample, choice)`` returns the
    :class:`~neuronviz.workflows.analysis.Analysis` (the dashboard passes its cached one)."""
    rows: list[dict[str, Any]] = []
    best: tuple[Any, Any, dict[str, Any]] | None = None
    for choice in choices:
        for sample in samples:
            result = analyse(sample, choice)
            counts = story_counts(result)
            correct = sample.true_class is None or result.benign_class == sample.true_class
            eligible = (correct and counts["fooled"] and not counts["control_fooled"] and counts["restored"]
                        and counts["both_halves"] and counts["beyond_control"])
            rows.append({"sample": sample.id, "attack": choice.attack, **counts, "eligible": eligible})
            if eligible and (best is None or counts["score"] > best[2]["score"]):
                best = (sample, choice, counts)
    if best is None:
        return None, None, None, rows
    return best[0], best[1], best[2], rows


# -- tables --------------------------------------------------------------------------------------------

#: How the rows of :func:`evidence_rows` name the group choices.
GROUP_SOURCE_LABELS = {"clean": "the clean image's own ranking", "reference": "the class's mean over the evaluation set",
                       "given": "given groups"}
#: The same, short (a table column at 1280 px).
GROUP_SOURCE_SHORT = {"clean": "clean image", "reference": "class mean (evaluation set)", "given": "given"}


def rate_short(value: Rate) -> str:
    """``"13/13 · 100% (77–100%)"``: k of n, the share and its 95% Wilson interval, for a narrow column."""
    if value.share is None:
        return f"not defined ({value.reason})"
    return f"{value.k}/{value.n} · {value.share:.0%} ({value.low or 0:.0%}–{value.high or 0:.0%})"


def evidence_rows(evidences: Mapping[str, ShiftEvidence], image: int | None = 0) -> list[dict[str, Any]]:
    """One row per (group choice, direction measure): the attack's and the control's rate (k, n,
    share, 95% Wilson interval), and whether the attack moved more neurons than the control."""
    rows = []
    for source, evidence in evidences.items():
        for name, m in evidence.measures(image).items():
            verdict = {True: "beyond the control", False: "not beyond the control",
                       None: "more, but one image cannot tell"}[m.beyond_control]
            if m.images > 1 and m.beyond_control is None:
                verdict = "cannot be told apart"
            rows.append({
                "groups": GROUP_SOURCE_LABELS.get(source, source),
                "chosen on": GROUP_SOURCE_SHORT.get(source, source),
                "layer": evidence.layer,
                "measure": name,
                "what": f"{MEASURE_LABELS[name][0]} neurons that {MEASURE_LABELS[name][1]}",
                "attack": m.attack.text(),
                "control": m.control.text(),
                "attack_short": rate_short(m.attack),
                "control_short": rate_short(m.control),
                "attack_k": m.attack.k, "attack_n": m.attack.n, "attack_share": m.attack.share,
                "attack_low": m.attack.low, "attack_high": m.attack.high,
                "control_k": m.control.k, "control_n": m.control.n, "control_share": m.control.share,
                "control_low": m.control.low, "control_high": m.control.high,
                "images": m.images,
                "verdict": verdict,
            })
    return rows


def reference_groups_for(
    model: Any,
    clean: torch.Tensor,
    benign_class: int,
    layers: Sequence[str],
    front: int | float = DEFAULT_GROUP_FRACTION,
    tail: int | float = DEFAULT_GROUP_FRACTION,
    tail_rule: str = "bottom",
    images: int | None = None,
) -> ReferenceGroups:
    """:func:`reference_groups` over the model's built-in evaluation set
    (:func:`neuronviz.data.labelled.evaluation_set`: the digits test split for a digits model, the
    labelled sample images otherwise), leaving ``clean`` out."""
    from neuronviz.data.labelled import DEFAULT_IMAGES, available_images, evaluation_set

    data = evaluation_set(model, images or max(DEFAULT_IMAGES, available_images(model)))
    return reference_groups(model, data.images, data.labels, benign_class, layers, front, tail, tail_rule,
                            exclude=clean, source=data.description)
