"""neuronviz.workflows.sweep.eps_sweep: what is guaranteed at every budget, on the embedded digits-cnn.

Not guaranteed (and not tested): that success or the shift grow monotonically with ε.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.influence import default_layer, influence_shift, neuron_influence
from neuronviz.workflows.sweep import DEFAULT_FRONT, EpsSweep, eps_sweep

EPS = [0.0, 0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def image(digits_test) -> tuple[torch.Tensor, int]:
    images, labels = digits_test
    return images[:1], int(labels[0])


@pytest.fixture(scope="module")
def pgd_sweep(digits_cnn, image) -> EpsSweep:
    x, label = image
    return eps_sweep(digits_cnn, x, "pgd", {"steps": 10, "alpha": 0.02}, EPS, labels=label, seed=3)


def test_shapes_and_order(pgd_sweep: EpsSweep, digits_cnn, image):
    x, _ = image
    e, k = len(EPS), digits_cnn.num_classes
    assert len(pgd_sweep) == e
    assert pgd_sweep.eps.tolist() == EPS
    assert pgd_sweep.adversarial.shape == (e, *x.shape[1:])
    assert pgd_sweep.probs.shape == (e, k)
    for name in ("prediction", "success", "linf", "l2", "front_overlap", "spearman"):
        assert getattr(pgd_sweep, name).shape == (e,), name
    assert pgd_sweep.success.dtype == torch.bool
    torch.testing.assert_close(pgd_sweep.probs.sum(1), torch.ones(e))
    assert pgd_sweep.prediction.tolist() == pgd_sweep.probs.argmax(1).tolist()
    assert pgd_sweep.layer == default_layer(digits_cnn)
    assert pgd_sweep.budget_param == "eps" and pgd_sweep.norm == "Linf"
    assert pgd_sweep.params == {"alpha": 0.02, "steps": 10, "random_start": True}  # eps is the swept one
    frame = pgd_sweep.to_frame()
    assert list(frame["eps"]) == EPS and len(frame) == e


def test_eps_zero_is_the_clean_image_and_no_success(pgd_sweep: EpsSweep, digits_cnn, image):
    x, _ = image
    assert torch.equal(pgd_sweep.adversarial[0], x[0])
    assert float(pgd_sweep.linf[0]) == 0.0 and float(pgd_sweep.l2[0]) == 0.0
    _, probs = digits_cnn.predict(x)
    torch.testing.assert_close(pgd_sweep.probs[0], probs[0])
    assert int(pgd_sweep.prediction[0]) == pgd_sweep.benign_class
    assert not bool(pgd_sweep.success[0])  # the clean image is predicted as its label
    assert float(pgd_sweep.benign_confidence[0]) == pytest.approx(float(probs[0].max()))


def test_the_shift_at_eps_zero_is_the_identity(pgd_sweep: EpsSweep):
    assert float(pgd_sweep.front_overlap[0]) == 1.0
    assert float(pgd_sweep.spearman[0]) == pytest.approx(1.0)
    assert float(pgd_sweep.front_influence_change[0]) == 0.0
    assert float(pgd_sweep.tail_influence_change[0]) == 0.0


def test_every_perturbation_stays_in_its_budget(pgd_sweep: EpsSweep, image):
    x, _ = image
    delta = (pgd_sweep.adversarial - x).flatten(1)
    assert bool((pgd_sweep.adversarial >= 0).all() and (pgd_sweep.adversarial <= 1).all())
    for eps, linf, measured in zip(EPS, pgd_sweep.linf.tolist(), delta.abs().max(1).values.tolist()):
        assert linf <= eps + 1e-6
        assert linf == pytest.approx(measured)
    torch.testing.assert_close(pgd_sweep.l2, delta.norm(dim=1))
    assert float(pgd_sweep.linf[-1]) > 0.0  # the attack did move the image at the largest budget


def test_each_budget_equals_run_attack_with_the_same_seed(pgd_sweep: EpsSweep, digits_cnn, image):
    x, label = image
    for position, eps in enumerate(EPS[1:], start=1):
        report = run_attack(
            digits_cnn, x, "pgd", {"eps": eps, "steps": 10, "alpha": 0.02}, labels=torch.tensor([label]), seed=3
        )
        torch.testing.assert_close(pgd_sweep.adversarial[position], report.adversarial[0])
        torch.testing.assert_close(pgd_sweep.probs[position], report.adv_probs[0])
        assert bool(pgd_sweep.success[position]) == bool(report.success[0])


def test_the_shift_is_influence_shift_toward_the_benign_class(pgd_sweep: EpsSweep, digits_cnn, image):
    x, _ = image
    layer = pgd_sweep.layer
    before = neuron_influence(digits_cnn, x, layers=layer, target=pgd_sweep.benign_class)[layer]
    after = neuron_influence(digits_cnn, pgd_sweep.adversarial[-1:], layers=layer, target=pgd_sweep.benign_class)[layer]
    shift = influence_shift(before, after, front=DEFAULT_FRONT, tail=DEFAULT_FRONT)
    assert float(pgd_sweep.front_overlap[-1]) == pytest.approx(float(shift.front_overlap[0]))
    assert float(pgd_sweep.spearman[-1]) == pytest.approx(float(shift.spearman[0]), abs=1e-6)
    assert float(pgd_sweep.front_influence_change[-1]) == pytest.approx(
        float(shift.front_influence_change[0]), rel=1e-4
    )
    assert float(pgd_sweep.tail_influence_change[-1]) == pytest.approx(float(shift.tail_influence_change[0]), rel=1e-4)


def test_the_influence_of_all_budgets_is_one_batched_call(digits_cnn, image, monkeypatch):
    import neuronviz.workflows.sweep as sweep_module

    calls: list[int] = []
    original = sweep_module.neuron_influence

    def counting(model, x, *args, **kwargs):
        calls.append(x.shape[0])
        return original(model, x, *args, **kwargs)

    monkeypatch.setattr(sweep_module, "neuron_influence", counting)
    x, _ = image
    eps_sweep(digits_cnn, x, "fgsm", {}, [0.0, 0.1, 0.3])
    assert calls == [7]  # the clean image, the three budgets and their three matched controls, together


def test_values_are_sorted_and_deduplicated_and_accept_tensors(digits_cnn, image):
    x, _ = image
    sweep = eps_sweep(digits_cnn, x, "fgsm", None, torch.tensor([0.2, 0.0, 0.1, 0.2]))
    assert sweep.eps.tolist() == pytest.approx([0.0, 0.1, 0.2])
    assert sweep.index(0.11) == 1 and sweep.index(1.0) == 2


def test_fgsm_moves_every_pixel_it_can_by_eps(digits_cnn, image):
    x, _ = image
    sweep = eps_sweep(digits_cnn, x, "fgsm", None, [0.1])
    assert float(sweep.linf[0]) == pytest.approx(0.1, abs=1e-6)


def test_l2_budgets_are_bounded_in_l2(digits_cnn, image):
    x, _ = image
    sweep = eps_sweep(digits_cnn, x, "pgdl2", {"steps": 5, "alpha": 0.5}, [0.0, 0.5, 1.5])
    assert sweep.norm == "L2"
    assert all(l2 <= eps + 1e-4 for l2, eps in zip(sweep.l2.tolist(), [0.0, 0.5, 1.5]))
    assert float(sweep.front_overlap[0]) == 1.0


def test_targeted_sweep_judges_success_by_the_target(digits_cnn, image):
    x, _ = image
    sweep = eps_sweep(digits_cnn, x, "pgd", {"steps": 10, "alpha": 0.03}, [0.0, 0.3], target=3, seed=0)
    assert sweep.target is not None and int(sweep.target[0]) == 3
    assert sweep.success.tolist() == [int(p) == 3 for p in sweep.prediction]
    assert not bool(sweep.success[0])


def test_result_pickles_for_the_dashboard_cache(pgd_sweep: EpsSweep):
    copy = pickle.loads(pickle.dumps(pgd_sweep))
    assert torch.equal(copy.adversarial, pgd_sweep.adversarial)
    assert copy.benign_class == pgd_sweep.benign_class


@pytest.mark.parametrize(
    ("attack", "values", "kwargs", "match"),
    [
        ("deepfool", [0.1], {}, "no budget parameter"),
        ("cw", [0.1], {}, "no budget parameter"),
        ("fgsm", [], {}, "empty"),
        ("fgsm", [-0.1], {}, "≥ 0"),
        ("fgsm", [float("nan")], {}, "finite"),
        ("fgsm", [1.5], {}, "out of the attack's range"),
        ("fgsm", ["0.1"], {}, "numbers"),
        ("fgsm", [i / 1000 for i in range(65)], {}, "cap"),
        ("fgsm", [0.1], {"layer": "no.such.layer"}, "no.such.layer"),
        ("pgd", [0.1], {"params": {"steps": 0}}, "steps"),
        ("tpgd", [0.1], {"target": 1}, "no targeted mode"),
        ("fgsm", [0.1], {"target": "most-likely"}, "least-likely"),
    ],
)
def test_refusals(digits_cnn, image, attack, values, kwargs, match):
    x, _ = image
    params = kwargs.pop("params", None)
    with pytest.raises(InputError, match=match):
        eps_sweep(digits_cnn, x, attack, params, values, **kwargs)


def test_refuses_a_batch(digits_cnn, digits_test):
    images, _ = digits_test
    with pytest.raises(InputError, match="one image"):
        eps_sweep(digits_cnn, images[:2], "fgsm", None, [0.1])


# -- uncertainty beside the matched control (issue 21: every rate with n and a 95% interval) ---------------


def test_every_budget_has_rates_and_correlations_for_attack_and_control(pgd_sweep: EpsSweep):
    e, k = len(pgd_sweep), pgd_sweep.front_size
    assert len(pgd_sweep.overlap) == len(pgd_sweep.control_overlap) == e
    assert len(pgd_sweep.correlations) == len(pgd_sweep.control_correlations) == e
    for i in range(e):
        for rate_, point in ((pgd_sweep.overlap[i], pgd_sweep.front_overlap[i]),
                             (pgd_sweep.control_overlap[i], pgd_sweep.control_front_overlap[i])):
            assert rate_.n == k  # k of the front's neurons
            assert rate_.share == pytest.approx(float(point)) and rate_.k == round(float(point) * k)
            assert rate_.low <= rate_.share <= rate_.high
        for rho, point in ((pgd_sweep.correlations[i], pgd_sweep.spearman[i]),
                           (pgd_sweep.control_correlations[i], pgd_sweep.control_spearman[i])):
            assert rho.defined and rho.value == pytest.approx(float(point))
            assert rho.n == pgd_sweep.evidence.attack.groups_before.labels.shape[1]  # the layer's neurons
            assert rho.low - 1e-9 <= rho.value <= rho.high + 1e-9 and 0 <= rho.p <= 1
    # ε = 0: attack and control are both the clean image
    assert pgd_sweep.overlap[0].k == k and pgd_sweep.control_overlap[0].k == k
    assert pgd_sweep.correlations[0].value == pytest.approx(1.0) and pgd_sweep.correlations[0].low == pytest.approx(1.0)


def test_the_frame_carries_intervals_n_and_the_control(pgd_sweep: EpsSweep):
    frame = pgd_sweep.to_frame()
    k = pgd_sweep.front_size
    for prefix in ("", "control_"):
        assert (frame[f"{prefix}front_overlap_n"] == k).all()
        assert (frame[f"{prefix}front_overlap_low"] <= frame[f"{prefix}front_overlap"]).all()
        assert (frame[f"{prefix}front_overlap"] <= frame[f"{prefix}front_overlap_high"]).all()
        assert (frame[f"{prefix}spearman_low"] <= frame[f"{prefix}spearman"] + 1e-9).all()
        assert (frame[f"{prefix}spearman"] <= frame[f"{prefix}spearman_high"] + 1e-9).all()
        assert (frame[f"{prefix}spearman_n"] > 0).all() and (frame[f"{prefix}spearman_note"] == "").all()
        for measure in ("front_suppressed_activation", "tail_enhanced_activation"):
            n = k if measure.startswith("front") else pgd_sweep.tail_size
            assert (frame[f"{prefix}{measure}_n"] == n).all()
            assert (frame[f"{prefix}{measure}_low"] <= frame[f"{prefix}{measure}_share"]).all()
            assert (frame[f"{prefix}{measure}_share"] <= frame[f"{prefix}{measure}_high"]).all()
    counts = frame["front_suppressed_activation_count"]
    assert (frame["front_suppressed_activation_k"] == counts).all()  # the same count, as a rate
    assert frame["front_overlap_minus_control"].tolist() == pytest.approx(
        (frame["front_overlap"] - frame["control_front_overlap"]).tolist())
    assert frame["spearman_minus_control"].tolist() == pytest.approx((frame["spearman"] - frame["control_spearman"]).tolist())


def test_the_direction_rates_are_the_evidence_views(pgd_sweep: EpsSweep, digits_cnn, image):
    """At each ε the rates are evidence.shift_evidence's on that ε's adversarial image and its control."""
    from neuronviz.methods.controls import matched_control
    from neuronviz.workflows.evidence import shift_evidence

    x, _ = image
    i = 2
    adversarial = pgd_sweep.adversarial[i : i + 1]
    control = matched_control(x, adversarial, pgd_sweep.control_norm, seed=3)
    batch = torch.cat([x, adversarial, control])
    maps = neuron_influence(digits_cnn, batch, layers=[pgd_sweep.layer], target=[pgd_sweep.benign_class] * 3)[pgd_sweep.layer]
    evidence = shift_evidence(maps.select([0]), maps.select([1]), maps.select([2]), DEFAULT_FRONT, DEFAULT_FRONT)
    for measure in ("front_suppressed_activation", "tail_enhanced_activation", "front_suppressed_influence"):
        expected, got = evidence.measure(measure), pgd_sweep.measure(measure, i)
        assert (got.attack.k, got.attack.n) == (expected.attack.k, expected.attack.n)
        assert (got.control.k, got.control.n) == (expected.control.k, expected.control.n)
        assert got.attack.low == pytest.approx(expected.attack.low)


def test_an_undefined_correlation_says_not_defined_with_its_reason(digits_cnn, image):
    """digits-cnn's logits: toward one class only its own logit has influence, so ρ is not defined."""
    x, _ = image
    sweep = eps_sweep(digits_cnn, x, "fgsm", {}, [0.0, 0.1], layer="classifier.2")
    for rho in (*sweep.correlations, *sweep.control_correlations):
        assert not rho.defined and rho.value is None and rho.low is None and rho.reason
        assert rho.text().startswith("ρ not defined (")
    frame = sweep.to_frame()
    assert frame["spearman"].isna().all() and frame["spearman_low"].isna().all()
    assert frame["spearman_note"].str.startswith("not defined (").all()
    assert frame["spearman_minus_control"].isna().all()
    assert (frame["front_overlap_n"] == sweep.front_size).all()  # the overlap stays defined


def test_a_pickled_sweep_keeps_its_intervals(pgd_sweep: EpsSweep):
    copy = pickle.loads(pickle.dumps(pgd_sweep))
    assert copy.overlap == pgd_sweep.overlap and copy.correlations == pgd_sweep.correlations
