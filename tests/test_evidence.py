"""The evidence behind the neuron views: the paper's direction on a hand-set model, the matched
control in the analysis, groups independent of the compared pair, undefined statistics, and the
verdicts of issue 24.5/24.6."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from neuronviz.core.models import wrap_model
from neuronviz.infra.errors import InputError
from neuronviz.methods.influence import (
    MIN_RANK_NEURONS,
    InfluenceMap,
    influence_shift,
    layer_shift_table,
    neuron_influence,
    partition,
)
from neuronviz.workflows import analysis as library
from neuronviz.workflows import evidence

# -- the paper's direction, pinned on a hand-set model ---------------------------------------------------


class Tiny(nn.Module):
    """4 pixels → identity → ReLU → logit 0 = 2·a0 + a1 − a2 − 2·a3 (logit 1 = 0).

    On an image with all four pixels positive, neuron j's activation is pixel j and its influence
    toward class 0 is a_j · w_j with w = (2, 1, −1, −2): neuron 0 is the front, neuron 3 the tail
    (its influence is negative)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 4, bias=False)
        self.relu = nn.ReLU()
        self.out = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.eye(4))
            self.out.weight.copy_(torch.tensor([[2.0, 1.0, -1.0, -2.0], [0.0, 0.0, 0.0, 0.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.relu(self.hidden(x.flatten(1))))


@pytest.fixture(scope="module")
def tiny():
    return wrap_model(Tiny(), mean=[0.0], std=[1.0], input_size=(2, 2), class_names=["a", "b"], name="tiny")


def _image(*pixels: float) -> torch.Tensor:
    return torch.tensor(pixels, dtype=torch.float32).reshape(1, 1, 2, 2)


def _shift(model, clean, after):
    maps = neuron_influence(model, torch.cat([clean, after]), layers=["relu"], target=[0, 0])["relu"]
    return maps, influence_shift(maps.select([0]), maps.select([1]), front=1, tail=1)


def test_hand_set_values(tiny):
    maps, _ = _shift(tiny, _image(0.9, 0.8, 0.3, 0.4), _image(0.9, 0.8, 0.3, 0.4))
    torch.testing.assert_close(maps.activations[0], torch.tensor([0.9, 0.8, 0.3, 0.4]))
    torch.testing.assert_close(maps.values[0], torch.tensor([1.8, 0.8, -0.3, -0.8]))


def test_the_papers_direction_front_suppressed_tail_enhanced(tiny):
    """Front activation falls (0.9 → 0.5) and tail activation rises (0.4 → 0.7): both halves of
    the paper. The tail's influence falls (−0.8 → −1.4: further below zero), the paper's tail half
    in influence; the deprecated ``tail_lifted`` (influence rose) counts 0."""
    maps, shift = _shift(tiny, _image(0.9, 0.8, 0.3, 0.4), _image(0.5, 0.8, 0.3, 0.7))
    assert shift.groups_before.front.tolist() == [[0]] and shift.groups_before.tail.tolist() == [[3]]
    torch.testing.assert_close(maps.values[1], torch.tensor([1.0, 0.8, -0.3, -1.4]))
    assert shift.front_suppressed_activation.tolist() == [1]
    assert shift.tail_enhanced_activation.tolist() == [1]
    assert shift.front_suppressed_influence.tolist() == [1]
    assert shift.tail_enhanced_influence.tolist() == [1]
    with pytest.warns(DeprecationWarning):
        assert shift.tail_lifted.tolist() == [0]


def test_the_opposite_direction_counts_nothing(tiny):
    """Front activation rises, tail activation falls (the tail influence moves toward zero: weakened)."""
    _, shift = _shift(tiny, _image(0.9, 0.8, 0.3, 0.4), _image(1.0, 0.8, 0.3, 0.1))
    for measure in ("front_suppressed_activation", "tail_enhanced_activation", "front_suppressed_influence",
                    "tail_enhanced_influence"):
        assert shift.count(measure).tolist() == [0], measure
    with pytest.warns(DeprecationWarning):
        assert shift.tail_lifted.tolist() == [1]  # the old measure called this "the tail gained"


def test_layer_table_rates_carry_n_and_a_wilson_interval(tiny):
    clean = _image(0.9, 0.8, 0.3, 0.4)
    maps = neuron_influence(tiny, torch.cat([clean, _image(0.5, 0.8, 0.3, 0.7)]), layers=["relu"], target=[0, 0])
    table = layer_shift_table({"relu": maps["relu"].select([0])}, {"relu": maps["relu"].select([1])}, front=1, tail=1)
    row = table.iloc[0]
    assert row["tail_enhanced_activation_share"] == 1.0 and row["tail_enhanced_activation_share_n"] == 1
    # scipy's Wilson interval for 1 of 1: 0.2065 … 1
    assert row["tail_enhanced_activation_share_low"] == pytest.approx(0.2065, abs=1e-3)
    assert row["tail_enhanced_activation_share_high"] == pytest.approx(1.0)
    # 4 neurons: too few for a rank correlation, "not defined" with the reason, never ±1
    assert math.isnan(row["spearman"]) and "needs at least" in row["correlation_note"]


# -- undefined statistics ---------------------------------------------------------------------------------


def _map(rows, layer="l"):
    values = torch.tensor(rows, dtype=torch.float32)
    return InfluenceMap(layer, "grad_x_act", "channel", torch.zeros(values.shape[0], dtype=torch.long), values,
                        values.abs(), (values.shape[1],))


def test_three_heads_with_a_front_of_one_are_not_a_correlation():
    """A 3-head attention layer: ρ can only be ±1 or ±0.5; it is "not defined", and the front
    overlap of a front of one is a rate with n = 1 (interval 0–79%), not a bare 0%/100%."""
    shift = influence_shift(_map([[0.3, 0.2, -0.1]]), _map([[-0.1, 0.2, 0.3]]), front=1, tail=1)
    assert math.isnan(float(shift.spearman[0])) and math.isnan(float(shift.kendall[0]))
    assert shift.correlation_reason(0) == f"3 values; a rank correlation needs at least {MIN_RANK_NEURONS}"
    assert "ρ = not defined (3 values" in shift.summary()
    overlap = shift.overlap_rate(0)
    assert (overlap.k, overlap.n) == (0, 1) and overlap.high == pytest.approx(0.7935, abs=1e-3)


def test_one_non_zero_value_and_constant_rankings_are_not_defined():
    one = influence_shift(_map([[0.0, 0.0, 0.0, 0.0, 0.0, 2.0]]), _map([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]), front=1, tail=1)
    assert math.isnan(float(one.spearman[0])) and "at most one non-zero value" in one.correlation_reason(0)
    flat = influence_shift(_map([[1.0] * 6]), _map([[0.5, 1, 2, 3, 4, 5]]), front=1, tail=1)
    assert "constant" in flat.correlation_reason(0)


def test_undefined_images_are_left_out_of_the_layer_average():
    before = _map([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5], [1.0] * 6])
    after = _map([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5], [0.5, 1, 2, 3, 4, 5]])
    table = layer_shift_table({"l": before}, {"l": after}, front=1, tail=1)
    row = table.iloc[0]
    assert row["spearman"] == pytest.approx(1.0)  # the defined image alone, not (1 + NaN)/2 nor (1 − 1)/2
    assert row["correlation_images"] == 1 and row["correlation_note"].startswith("1 image(s) left out")


def test_digits_cnn_last_layer_is_not_defined(digits_cnn, digits_test):
    """classifier.2: only the benign logit has influence toward it (one non-zero value): the table
    said ρ = τ = −1 before; now "not defined" with that reason."""
    x = digits_test[0][:2]
    result_maps = neuron_influence(digits_cnn, x, layers=["classifier.2"])
    after = neuron_influence(digits_cnn, x.flip(-1), layers=["classifier.2"], target=result_maps["classifier.2"].target)
    shift = influence_shift(result_maps["classifier.2"], after["classifier.2"], front=0.2, tail=0.2)
    assert all(math.isnan(v) for v in shift.spearman.tolist())
    assert all("at most one non-zero value" in r for r in shift.correlation_reasons)
    assert shift.to_dict()["spearman"] == [None, None]


# -- the matched control in the analysis ------------------------------------------------------------------


@pytest.fixture(scope="module")
def result(digits_cnn, digits_test):
    return library.compute_analysis(digits_cnn, digits_test[0][4:5].clone(), library.default_choice())


def test_the_analysis_carries_its_matched_control(result, digits_cnn):
    from neuronviz.methods.controls import matched_control

    control = result.control
    assert control is not None and control.norm == "Linf" and control.seed == 0
    assert control.attack_size == pytest.approx(float(result.report.linf[0]))
    assert control.size == pytest.approx(control.attack_size, abs=1e-6)  # clipping at 0/1 keeps a pixel at ε
    expected = matched_control(result.clean, result.adversarial, "Linf", seed=0)
    torch.testing.assert_close(control.image, expected)
    # its prediction and its influence, from the same model, toward the benign class
    with torch.no_grad():
        assert control.prediction == int(digits_cnn(expected).argmax())
    layer = result.default_layer
    own = neuron_influence(digits_cnn, expected, layers=[layer], target=[result.benign_class])[layer]
    torch.testing.assert_close(result.influence[library.CONTROL][layer].values, own.values, rtol=1e-4, atol=1e-5)
    assert library.provenance(digits_cnn, result, "digit")["attacks"][0]["matched_control"]["norm"] == "Linf"


def test_analysis_evidence_compares_attack_and_control_on_the_same_groups(result):
    ev = evidence.analysis_evidence(result, front=0.2, tail=0.2)
    assert torch.equal(ev.attack.groups_before.front, ev.control.groups_before.front)
    front = ev.measure("front_suppressed_activation")
    layer = result.default_layer
    clean, noise = result.influence["clean"][layer], result.influence[library.CONTROL][layer]
    members = ev.attack.groups_before.front[0]
    assert front.control.k == int((noise.activations[0, members] < clean.activations[0, members]).sum())
    assert front.attack.n == front.control.n == len(members) and front.images == 1
    rows = evidence.evidence_rows({"clean": ev})
    assert len(rows) == 4 and rows[0]["attack_k"] == front.attack.k and "n = " in rows[0]["attack"]


def test_reference_groups_leave_the_analysed_image_out(digits_cnn, digits_test):
    x, y = digits_test
    benign = int(y[4])
    ref = evidence.reference_groups(digits_cnn, x[:60], y[:60], benign, ["features.7"], front=0.2, tail=0.2,
                                    exclude=x[4:5])
    chosen = x[:60][(y[:60] == benign)]
    chosen = chosen[[not torch.equal(img, x[4]) for img in chosen]]
    with torch.no_grad():
        chosen = chosen[digits_cnn(chosen).argmax(1) == benign]
    assert ref.images == chosen.shape[0] > 0
    mean = neuron_influence(digits_cnn, chosen, layers=["features.7"], target=[benign] * chosen.shape[0])["features.7"]
    expected = partition(mean.values.mean(0, keepdim=True), 0.2, 0.2)
    assert ref.groups["features.7"].front.tolist() == expected.front.tolist()
    assert ref.for_images("features.7", 3).front.shape == (3, expected.front_size)
    with pytest.raises(InputError, match="no image of class"):
        evidence.reference_groups(digits_cnn, x[4:5], y[4:5], benign, ["features.7"], exclude=x[4:5])


# -- 24.5 / 24.6: nothing to restore ----------------------------------------------------------------------


def test_nothing_to_restore_is_its_own_verdict():
    assert library.restoration_outcome(False, 3, 3) == library.NOTHING_TO_RESTORE
    assert library.restoration_outcome(False, 5, 3) == library.NOTHING_TO_RESTORE
    assert library.restoration_outcome(True, 3, 3) == library.RESTORED
    assert library.restoration_outcome(True, 5, 3) == library.NOT_RESTORED
    assert "nothing to restore" in library.restoration_verdict(library.NOTHING_TO_RESTORE, "3", "5")
    assert library.restoration_verdict(library.RESTORED, "3") == ":green[restored]"


def test_progress_line_counts_the_analysis_steps():
    from app.runs import _short_name, progress_text

    assert _short_name(library.compute_analysis).startswith("the attack, its matched control")
    text = progress_text(_short_name(library.compute_analysis), 6.2, (1, len(library.ANALYSIS_STEPS), "matched control"))
    assert "step 2 of 5 (matched control), 6 s" in text and "compute analysis" not in text
    seen = []
    library.compute_analysis(*_tiny_args(), progress=lambda i, n, name: seen.append((i, n, name)))
    assert [s[2] for s in seen] == list(library.ANALYSIS_STEPS)


def _tiny_args():
    from neuronviz.core.models import load_model
    from neuronviz.data.datasets import digits

    model = load_model("digits-cnn", device="cpu")
    return model, digits("test")[0][:1].clone(), library.AttackChoice.make("fgsm", {})
