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
    """The paper's direction: front influence down, tail influence down (further below zero: enhanced)."""
    after = list(CLEAN)
    after[0], after[1] = 1.0, 0.5  # front down
    after[8], after[9] = -3.0, -4.0  # tail further below zero (longer negative bars): enhanced
    return after


def _anti_after():
    """The opposite: front up, tail toward zero (shorter negative bars: weakened)."""
    after = list(CLEAN)
    after[0], after[1] = 7.0, 6.0
    after[8], after[9] = -0.2, -0.1
    return after


def _counts(before, after, fraction=0.2):
    b, a = _map(before), _map(after)
    groups = partition(b, fraction, fraction)
    front = [int(j) for j in groups.front[0]]
    tail = [int(j) for j in groups.tail[0]]
    lost = sum(after[j] < before[j] for j in front)
    fell = sum(after[j] < before[j] for j in tail)  # the paper's tail half in influence
    return b, a, groups, lost, len(front), fell, len(tail)


@pytest.mark.parametrize("after, lost_expected, fell_expected", [(_nip_after(), 2, 2), (_anti_after(), 0, 0)])
def test_group_bars_caption_counts_and_direction(after, lost_expected, fell_expected):
    b, a, groups, lost, k, fell, t = _counts(CLEAN, after)
    assert (lost, fell) == (lost_expected, fell_expected)
    text = captions.group_bars_caption(b, a, groups, "0", "adversarial")
    assert f"{lost} of the {k} front bars are lower after, and {fell} of the {t} tail bars are lower" in text
    # the tail is negative here: the caption says what a longer negative bar means (the paper's enhancement)
    assert "All 2 tail neurons have a negative influence" in text
    assert "further below zero) is the paper's enhanced tail neuron" in text


def test_group_bars_caption_positive_tail_has_no_sign_note():
    before = [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5]
    after = [1.0, 1.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 3.0, 2.0]
    b, a, groups, lost, k, fell, t = _counts(before, after)
    text = captions.group_bars_caption(b, a, groups, "3", "PSSR")
    assert "negative influence" not in text
    assert (lost, fell) == (2, 0) and "2 of the 2 front bars are lower" in text and "0 of the 2 tail bars" in text


def test_caption_agrees_with_the_shift_summary():
    """The bars caption, the summary sentence and the shift's counts say the same."""
    for after in (_nip_after(), _anti_after()):
        b, a = _map(CLEAN), _map(after)
        shift = influence_shift(b, a, front=0.2, tail=0.2)
        bars = captions.group_bars_caption(b, a, shift.groups_before, "0", "adversarial")
        lost, fell = int(shift.front_suppressed_influence[0]), int(shift.tail_enhanced_influence[0])
        assert f"{lost} of the 2 front bars are lower after, and {fell} of the 2 tail bars" in bars
        assert f"({lost} lost influence;" in shift.summary()
        assert f"({fell} fell further below zero in influence)" in shift.summary()


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


def _evidence(after, control):
    from neuronviz.workflows.evidence import shift_evidence

    return shift_evidence(_map(CLEAN), _map(after), _map(control), front=0.2, tail=0.2)


def test_tour_heading_says_quiet_only_beyond_the_control():
    # activations are |influence| here: the paper's direction on activations is front |I| down, tail |I| up
    beyond = _evidence(_nip_after(), CLEAN)  # the control changed nothing
    assert "quiets the front neurons more than random noise" in captions.tour_neurons_heading(beyond)
    same = _evidence(_nip_after(), _nip_after())  # noise did just as much
    assert "more than random noise" not in captions.tour_neurons_heading(same)
    assert "go quiet" not in captions.tour_neurons_heading(same)


def test_evidence_sentence_states_attack_and_control_and_whether_they_differ():
    beyond = _evidence(_nip_after(), CLEAN)
    text = captions.evidence_sentence(beyond, "PGD (L∞)", "noise of the same L∞")
    assert "2 of 2 front neurons lost activation under PGD (L∞); 0 of 2 under noise of the same L∞" in text
    assert "2 of 2 tail neurons gained activation under PGD (L∞); 0 of 2 under noise of the same L∞" in text
    assert "one image cannot tell the two apart" in text  # one image: counts and the plain statement
    assert captions.SIGN_CONVENTION in text
    same = captions.evidence_sentence(_evidence(_nip_after(), _nip_after()), "PGD (L∞)", "noise of the same L∞")
    assert "moved no more than under the noise: no effect beyond the control" in same
    assert "cannot tell the two apart" not in same


def test_evidence_sentence_over_several_images_uses_the_paired_difference():
    from neuronviz.workflows.evidence import shift_evidence

    clean = torch.tensor([CLEAN] * 6)
    attack = torch.tensor([_nip_after()] * 6)
    noise = torch.tensor([CLEAN, _nip_after(), CLEAN, CLEAN, CLEAN, CLEAN])

    def many(v):
        return InfluenceMap("features.7", "grad_x_act", "channel", torch.zeros(6, dtype=torch.long), v.float(),
                            v.float().abs(), (10, 1, 1))

    evidence = shift_evidence(many(clean), many(attack), many(noise), front=0.2, tail=0.2)
    measure = evidence.measure("front_suppressed_activation", image=None)
    assert (measure.attack.k, measure.attack.n, measure.control.k, measure.control.n) == (12, 12, 2, 12)
    assert measure.difference is not None and measure.difference.n == 6
    assert measure.beyond_control is True
    text = captions.evidence_sentence(evidence, "PGD", "noise", image=None)
    assert "100% (95% CI" in text and "n = 12)" in text and "beyond the control" in text


def test_sweep_sentence_reads_the_attack_beside_its_control(digits_cnn, digits_test):
    from neuronviz.workflows.sweep import eps_sweep

    x = digits_test[0][:1]
    sweep = eps_sweep(digits_cnn, x, "fgsm", {}, [0.0, 0.1], front=0.2, tail=0.2)
    text = captions.sweep_sentence(sweep, 1)
    k = sweep.front_size
    front = int(sweep.directions["front_suppressed_activation"][1])
    noise = int(sweep.control_directions["front_suppressed_activation"][1])
    assert f"{front} of {k} front neurons lost activation ({noise} under the noise)" in text
    assert f"front overlap **{sweep.overlap[1].text()}**" in text  # k of n with its Wilson interval
    assert f"noise of the same size: {sweep.control_overlap[1].text()}" in text
    assert sweep.correlations[1].text() in text and sweep.control_correlations[1].text() in text
    assert f"n = {k})" in text and "95% CI" in text
    zero = captions.sweep_sentence(sweep, 0)  # ε = 0: the clean image, nothing moved, nor under a zero-size control
    assert f"0 of {k} front neurons lost activation (0 under the noise)" in zero


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
    """The start-up example, recomputed from the library: both halves, each beyond its matched control."""
    from app import components, state
    from app import runs as analysis

    model = state.load_requested_model(state.ModelRequest(name=state.DEFAULT_MODEL))
    [sample] = [s for s in state.samples_for(model) if s.id == analysis.DEFAULT_SAMPLE_ID]
    image, _ = state.load_requested_image(state.ImageRequest.for_sample(sample), model)
    result = analysis.compute_analysis(model, image, analysis.default_choice())
    layer = result.default_layer
    before, after = result.influence["clean"][layer], result.influence["adversarial"][layer]
    noise = result.influence[analysis.CONTROL][layer]
    shift = influence_shift(before, after, front=components.DEFAULT_GROUP_FRACTION, tail=components.DEFAULT_GROUP_FRACTION)
    front, tail = shift.groups_before.front[0], shift.groups_before.tail[0]
    lost = int((after.activations[0, front] < before.activations[0, front]).sum())
    gained = int((after.activations[0, tail] > before.activations[0, tail]).sum())
    noise_lost = int((noise.activations[0, front] < before.activations[0, front]).sum())
    noise_gained = int((noise.activations[0, tail] > before.activations[0, tail]).sum())
    k, t = shift.groups_before.front_size, shift.groups_before.tail_size
    assert 2 * lost > k and 2 * gained > t and lost > noise_lost and gained > noise_gained  # why it is the example
    counts = components.story_counts(result)
    assert (counts["front_lost"], counts["tail_gained"]) == (lost, gained)
    assert (counts["control_front_lost"], counts["control_tail_gained"]) == (noise_lost, noise_gained)
    assert counts["score"] == pytest.approx(min((lost - noise_lost) / k, (gained - noise_gained) / t))
    assert counts["fooled"] and counts["restored"] and not counts["control_fooled"] and counts["beyond_control"]
