"""Every caption that states a direction, a count or a comparison is derived from its numbers.

Each test builds data where the sentence must say one thing and data where it must say the
opposite, computes the claim independently from the same data, and checks the sentence.
"""

from __future__ import annotations

import re

import pytest
import torch

from neuronviz.figures import captions
from neuronviz.methods.influence import InfluenceMap, influence_shift, partition


def _map(values, layer: str = "features.7") -> InfluenceMap:
    v = torch.tensor([values], dtype=torch.float32)
    return InfluenceMap(
        layer=layer, method="grad_x_act", granularity="channel", target=torch.tensor([0]), values=v,
        activations=v.abs(), shape=(v.shape[1], 1, 1),
    )


# ten neurons, front = top 2 (indices 0, 1), tail = bottom 2 (indices 9, 8); tail influences negative
CLEAN = [5.0, 4.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, -1.0, -2.0]


def _nip_after():
    """Front lost influence, tail gained (tail bars shorter: less negative)."""
    after = list(CLEAN)
    after[0], after[1] = 1.0, 0.5  # front down
    after[8], after[9] = -0.2, -0.1  # tail up (shorter negative bars)
    return after


def _anti_after():
    """Front gained, tail lost (tail bars longer: more negative) — the issue's "growing tail bars"."""
    after = list(CLEAN)
    after[0], after[1] = 7.0, 6.0
    after[8], after[9] = -3.0, -4.0
    return after


def _counts(before, after, fraction=0.2):
    b, a = _map(before), _map(after)
    groups = partition(b, fraction, fraction)
    front = [int(j) for j in groups.front[0]]
    tail = [int(j) for j in groups.tail[0]]
    lost = sum(after[j] < before[j] for j in front)
    gained = sum(after[j] > before[j] for j in tail)
    return b, a, groups, lost, len(front), gained, len(tail)


@pytest.mark.parametrize("after, lost_expected, gained_expected", [(_nip_after(), 2, 2), (_anti_after(), 0, 0)])
def test_group_bars_caption_counts_and_direction(after, lost_expected, gained_expected):
    b, a, groups, lost, k, gained, t = _counts(CLEAN, after)
    assert (lost, gained) == (lost_expected, gained_expected)
    text = captions.group_bars_caption(b, a, groups, "0", "adversarial")
    assert f"{lost} of the {k} front neurons lost influence" in text
    assert f"{gained} of the {t} tail neurons gained" in text
    if lost_expected == k and gained_expected == t:
        assert "both halves of NIP's observation" in text
    else:
        assert "neither half of NIP's observation" in text
        assert "both halves" not in text
    # the tail is negative here: the caption must say what a longer negative bar means
    assert "All 2 tail neurons have a negative influence" in text
    assert "a longer bar (further below zero) means less influence" in text
    # the old, wrong rule is gone
    assert "growing on the right is NIP's pattern" not in text


def test_group_bars_caption_positive_tail_has_no_sign_note():
    before = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5]
    after = [1.0, 1.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 3.0, 2.0]
    b, a, groups, lost, k, gained, t = _counts(before, after)
    text = captions.group_bars_caption(b, a, groups, "3", "PSSR")
    assert "negative influence" not in text
    assert (lost, gained) == (2, 2) and "both halves" in text


def test_caption_agrees_with_the_shift_summary_and_metrics():
    """The caption, the metric tiles (front_suppressed, tail_lifted) and the summary sentence say the same."""
    for after in (_nip_after(), _anti_after()):
        b, a = _map(CLEAN), _map(after)
        shift = influence_shift(b, a, front=0.2, tail=0.2)
        bars = captions.group_bars_caption(b, a, shift.groups_before, "0", "adversarial")
        scatter = captions.scatter_caption(shift, "adversarial")
        lost, gained = int(shift.front_suppressed[0]), int(shift.tail_lifted[0])
        assert f"{lost} of the 2 front neurons lost influence" in bars
        assert f"{lost} of 2 front points are under it and {gained} of 2 tail points above it" in scatter
        assert f"{lost} of 2 front neurons lost influence" in shift.summary()


@pytest.mark.parametrize(
    "lost, k, gained, t, expected",
    [
        (5, 7, 6, 7, "both halves"),
        (5, 7, 0, 7, "the front half of NIP's observation"),
        (0, 7, 6, 7, "the tail half of NIP's observation"),
        (3, 7, 3, 7, "neither half"),
        (1, 2, 1, 2, "neither half"),  # exactly half is not "most"
    ],
)
def test_nip_pattern(lost, k, gained, t, expected):
    assert captions.nip_pattern(lost, k, gained, t).startswith(expected)


def test_tour_heading_only_says_go_quiet_when_the_front_lost():
    quiet = influence_shift(_map(CLEAN), _map(_nip_after()), front=0.2, tail=0.2)
    loud = influence_shift(_map(CLEAN), _map(_anti_after()), front=0.2, tail=0.2)
    assert "go quiet" in captions.tour_neurons_heading(quiet)
    assert "go quiet" not in captions.tour_neurons_heading(loud)
    assert "0 of the 2 front neurons lost influence and 0 of the 2 tail neurons gained" in captions.shift_sentence(loud)


@pytest.mark.parametrize(
    "front, tail, expected",
    [(-0.3, 0.2, ("the front lost influence", "the tail gained influence")),
     (0.4, -0.1, ("the front gained influence", "the tail lost influence"))],
)
def test_sweep_sentence_direction_from_the_sign(front, tail, expected):
    text = captions.sweep_sentence("features.7", 0.5, 0.9, front, tail)
    for part in expected:
        assert part in text
    assert f"{front:+.3g}" in text and f"{tail:+.3g}" in text
    assert "front overlap **50%**" in text


@pytest.mark.parametrize(
    "loss, targeted, moved, succeeded",
    [
        ([[0.1], [0.5], [2.0]], False, "rose", True),
        ([[2.0], [1.0], [0.5]], False, "fell", False),
        ([[3.0], [1.0], [0.2]], True, "fell", True),
        ([[0.2], [0.4], [0.9]], True, "rose", False),
    ],
)
def test_trajectory_direction_from_the_loss(loss, targeted, moved, succeeded):
    text = captions.trajectory_direction(torch.tensor(loss), targeted)
    first, last = loss[0][0], loss[-1][0]
    assert text.startswith(f"{moved} from {first:.3g} to {last:.3g}")
    assert ("did not move" in text) != succeeded


def test_plural():
    assert captions.plural(1, "pair") == "1 pair"
    assert captions.plural(2, "pair") == "2 pairs"
    assert captions.plural(0, "image") == "0 images"
    assert captions.plural(3, "class", "classes") == "3 classes"


@pytest.mark.parametrize("value", [0.15, 0.1, 8 / 255, 0.0314, 1 / 255, 0.15000001, 0.1499999])
def test_eps_label_one_rounding(value):
    text = captions.eps_label(value)
    k = re.search(r"\(([\d.]+)/255\)", text).group(1)
    assert abs(float(k) - value * 255) <= 0.005 + 1e-9
    # a budget and the measured L∞ a float hair away print the same k/255 (38.25, not 38.2 vs 38.3)
    assert captions.eps_label(0.15) == captions.eps_label(0.15000001) == "0.15 (38.25/255)"
    assert captions.eps_label(8 / 255).endswith("(8/255)")


def test_unchanged_attack_note():
    assert captions.unchanged_attack_note(0.3, 0.1, "C&W (L2)", {"c": 1.0, "steps": 50}) is None
    note = captions.unchanged_attack_note(0.0, 0.0, "C&W (L2)", {"c": 1.0, "steps": 50, "kappa": 0.0})
    assert "changed no pixel (L2 = 0)" in note
    assert "raise c (now 1.0) or steps (now 50)" in note


def test_captions_on_the_real_start_up_example():
    """The start-up example's captions, recomputed from the library's influence: both halves hold."""
    from app import components, state
    from app import runs as analysis

    model = state.load_requested_model(state.ModelRequest(name=state.DEFAULT_MODEL))
    [sample] = [s for s in state.samples_for(model) if s.id == analysis.DEFAULT_SAMPLE_ID]
    image, _ = state.load_requested_image(state.ImageRequest.for_sample(sample), model)
    result = analysis.compute_analysis(model, image, analysis.default_choice())
    layer = result.default_layer
    before, after = result.influence["clean"][layer], result.influence["adversarial"][layer]
    shift = influence_shift(before, after, front=components.DEFAULT_GROUP_FRACTION, tail=components.DEFAULT_GROUP_FRACTION)
    lost = int((after.values[0, shift.groups_before.front[0]] < before.values[0, shift.groups_before.front[0]]).sum())
    gained = int((after.values[0, shift.groups_before.tail[0]] > before.values[0, shift.groups_before.tail[0]]).sum())
    k, t = shift.groups_before.front_size, shift.groups_before.tail_size
    assert 2 * lost > k and 2 * gained > t  # the reason it is the start-up example
    text = captions.group_bars_caption(before, after, shift.groups_before, "9", "adversarial")
    assert f"{lost} of the {k} front neurons lost influence and {gained} of the {t} tail neurons gained" in text
    assert "both halves of NIP's observation" in text
    counts = components.story_counts(result)
    assert (counts["front_lost"], counts["tail_gained"], counts["both_halves"]) == (lost, gained, True)
    assert counts["fooled"] and counts["restored"]
