"""Issue 15.2: a targeted attack does not count images already predicted as the target.

Before the fix, PGD targeted at 7 over 50 digits reported every true-7 image as a success (and
as restored). Now such an image is not attacked, is excluded from the success rate, the DSR and
the restored counts, and the number excluded is reported; success + already-target + failed = N.
"""

from __future__ import annotations

import math

import pytest
import torch

from neuronviz.methods.attacks import run_attack
from neuronviz.workflows.batch import batch_images, evaluate_batch
from neuronviz.workflows.defence_table import defence_table
from neuronviz.workflows.sweep import eps_sweep


@pytest.fixture(scope="module")
def fifty(digits_cnn):
    return batch_images(digits_cnn, 50)


@pytest.fixture(scope="module")
def targeted(digits_cnn, fifty):
    return evaluate_batch(digits_cnn, fifty.images, fifty.labels, "pgd", {"steps": 10}, defences=["nip-guided"], target=7, seed=0)


def test_success_plus_already_target_plus_failed_is_n(targeted):
    n = targeted.images
    already = targeted.clean_pred == 7
    assert n == 50 and 0 < int(already.sum()) < n  # the split has sevens the model gets right
    assert torch.equal(targeted.attacked, ~already)
    successes = int((targeted.success & ~already).sum())
    failed = int((~targeted.success & ~already).sum())
    assert successes + int(already.sum()) + failed == n
    assert not bool(targeted.success[already].any())  # an image already 7 is never a success
    assert bool((targeted.l2[already] == 0).all())  # and is left as it was (not attacked)
    summary = targeted.summary()
    assert summary.excluded == int(already.sum()) and summary.attacked == n - summary.excluded
    assert summary.attack_success == pytest.approx(successes / (n - summary.excluded))
    # the page's numbers can no longer add to more than 100%: success among the attacked images,
    # and no excluded image among the "fooled"
    fooled = targeted.success
    assert summary.dsr["nip-guided"] == pytest.approx(
        float((targeted.restored["nip-guided"][fooled] == targeted.clean_pred[fooled]).double().mean())
    )
    assert summary.to_dict()["excluded"] == summary.excluded


def test_the_per_image_table_marks_the_images_left_alone(targeted):
    frame = targeted.to_frame()
    assert frame["attacked"].tolist() == targeted.attacked.tolist()
    restored = frame["nip-guided:restored"]
    # The verdict is text (issue 24.5): images left alone are "not attacked", never counted as restored.
    assert (restored[~frame["attacked"]] == "not attacked").all()
    assert restored[frame["attacked"]].isin(["restored", "not restored", "nothing to restore"]).all()
    per_class = targeted.per_class()
    assert int(per_class["excluded"].sum()) == targeted.excluded
    assert per_class.loc[per_class["class"] != 7, "excluded"].sum() == int(
        ((targeted.clean_pred == 7) & (targeted.labels != 7)).sum()
    )


def test_run_attack_reports_the_same_rule(digits_cnn, fifty):
    x = fifty.images[:20]
    report = run_attack(digits_cnn, x, "pgd", {"steps": 10}, target=7, seed=0)
    already = report.clean_pred == 7
    assert report.excluded == int(already.sum()) > 0
    assert torch.equal(report.attacked, ~already)
    assert torch.equal(report.adversarial[already], x[already])
    assert report.success_rate == pytest.approx(float(report.success[~already].float().mean()))
    assert report.to_dict()["excluded_already_target"] == report.excluded
    assert report.trace is not None and report.trace.loss.shape[1] == 20  # one column per image still


def test_a_batch_where_every_image_already_is_the_target(digits_cnn, fifty):
    sevens = fifty.images[digits_cnn.predict(fifty.images)[0] == 7][:3]
    report = run_attack(digits_cnn, sevens, "pgd", {"steps": 5}, target=7, seed=0)
    assert report.excluded == 3 and math.isnan(report.success_rate) and report.trace is None
    assert torch.equal(report.adversarial, sevens)


def test_untargeted_numbers_are_unchanged(digits_cnn, fifty):
    result = evaluate_batch(digits_cnn, fifty.images[:16], fifty.labels[:16], "fgsm", {"eps": 0.15}, defences=["none"])
    summary = result.summary()
    assert summary.excluded == 0 and bool(result.attacked.all())
    assert summary.attack_success == pytest.approx(float(result.success.double().mean()))
    assert "attacked" not in result.to_frame().columns


def test_defence_table_counts_targeted_attacks_the_same_way(digits_cnn, fifty):
    x, y = fifty.images[:32], fifty.labels[:32]
    table = defence_table(digits_cnn, x, y, [("fgsm", {"eps": 0.2})], ["none"], target=7)
    batch = evaluate_batch(digits_cnn, x, y, "fgsm", {"eps": 0.2}, defences=["none"], target=7).summary()
    row = table.iloc[0]
    assert row["excluded"] == batch.excluded > 0
    assert row["attack_success"] == pytest.approx(batch.attack_success)
    assert row["dsr"] == pytest.approx(batch.dsr["none"]) or (math.isnan(row["dsr"]) and math.isnan(batch.dsr["none"]))
    untargeted = defence_table(digits_cnn, x, y, [("fgsm", {"eps": 0.2})], ["none"])
    assert untargeted.iloc[0]["excluded"] == 0


def test_an_eps_sweep_of_an_image_already_at_the_target_attacks_nothing(digits_cnn, fifty):
    preds = digits_cnn.predict(fifty.images)[0]
    seven = fifty.images[preds == 7][:1]
    sweep = eps_sweep(digits_cnn, seven, "pgd", {"steps": 5}, [0.0, 0.05, 0.1], target=7)
    assert sweep.already_target and not bool(sweep.success.any())
    assert bool((sweep.linf == 0).all())
    other = fifty.images[preds == 3][:1]
    sweep = eps_sweep(digits_cnn, other, "pgd", {"steps": 10}, [0.0, 0.3], target=7)
    assert not sweep.already_target and sweep.success.tolist()[0] is False
