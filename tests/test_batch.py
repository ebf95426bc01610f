"""neuronviz.workflows.batch: the numbers of a batch evaluation, chunk invariance, progress, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences import restore
from neuronviz.workflows import batch
from neuronviz.workflows.batch import BLOCK, BatchResult, batch_images, block_seed, evaluate_batch
from neuronviz.workflows.defence_table import defence_table

N = 40  # three blocks of 16: the last one short


@pytest.fixture(scope="module")
def images(digits_cnn):
    return batch_images(digits_cnn, N)


@pytest.fixture(scope="module")
def pgd(digits_cnn, images):
    """PGD (random start) with both default defences, on 40 digits, chunked by 7 (→ 16)."""
    calls = []
    result = evaluate_batch(
        digits_cnn, images.images, images.labels, "pgd", {"steps": 5}, seed=0, chunk=7,
        progress=lambda done, total: calls.append((done, total)), ids=images.ids,
    )
    return result, calls


# -- images ---------------------------------------------------------------------------------------


def test_batch_images_are_the_first_n_of_the_digits_test_split(digits_cnn, digits_test):
    chosen = batch_images(digits_cnn, 25)
    assert torch.equal(chosen.images, digits_test[0][:25]) and torch.equal(chosen.labels, digits_test[1][:25])
    assert chosen.ids[0] == "digit-test-0" and chosen.ids[-1] == "digit-test-24" and len(chosen.ids) == 25
    assert "first 25 of the 360" in chosen.description and "digits test images" in chosen.description
    assert batch.available_images(digits_cnn) == 360 and batch.is_digits_model(digits_cnn)
    assert batch_images(digits_cnn, 360).images.shape[0] == 360


@pytest.mark.parametrize("n", [0, -5, 361, 2.5, "10", True, None])
def test_bad_number_of_images_raises(digits_cnn, n):
    with pytest.raises(InputError, match="number of images"):
        batch_images(digits_cnn, n)


def test_other_models_use_the_samples_with_a_known_class():
    from neuronviz.core.models import load_model

    model = load_model("resnet18", weights=None, device="cpu")
    assert not batch.is_digits_model(model)
    chosen = batch_images(model, 1)  # only the cat photo has an ImageNet class
    assert chosen.ids == ("photo-chelsea",) and chosen.images.shape == (1, 3, 224, 224)
    assert model.class_names[int(chosen.labels[0])] == "tabby"
    assert batch.available_images(model) == 1 and "Chelsea" in chosen.description
    with pytest.raises(InputError, match=r"1\.\.1"):
        batch_images(model, 2)


# -- the numbers ----------------------------------------------------------------------------------


def test_rows_hold_the_attack_and_each_defence(pgd, images):
    result, _ = pgd
    frame = result.to_frame()
    assert len(frame) == N and result.images == N and frame["image"].tolist() == list(images.ids)
    assert frame["label"].tolist() == images.labels.tolist()
    assert result.defences == ("nip-guided", "pssr")
    assert list(frame.columns) == [
        "image", "label", "clean_pred", "adv_pred", "success",
        "nip-guided", "nip-guided:restored", "nip-guided:clean",
        "pssr", "pssr:restored", "pssr:clean",
        "linf", "l2", "l0",
    ]
    assert frame["success"].tolist() == (result.adv_pred != result.clean_pred).tolist()  # untargeted
    assert float(frame["linf"].max()) <= result.params["eps"] + 1e-6 and result.params["steps"] == 5
    named = result.to_frame([f"class {i}" for i in range(10)])
    assert named["label"].tolist() == [f"class {int(i)}" for i in images.labels]


def test_success_rate_and_accuracies_are_the_means_of_the_rows(pgd):
    result, _ = pgd
    summary = result.summary()
    frame = result.to_frame()
    assert 0 < summary.attack_success < 1  # both kinds of rows are present: the test can fail
    assert summary.attack_success == pytest.approx(frame["success"].mean())
    assert summary.clean_accuracy == pytest.approx((frame["clean_pred"] == frame["label"]).mean())
    assert summary.adversarial_accuracy == pytest.approx((frame["adv_pred"] == frame["label"]).mean())
    for name in result.defences:
        assert summary.accuracy_after[name] == pytest.approx((frame[name] == frame["label"]).mean())
        assert summary.clean_accuracy_after[name] == pytest.approx((frame[f"{name}:clean"] == frame["label"]).mean())
    assert summary.images == N and summary.to_dict()["dsr"] == summary.dsr


def test_dsr_is_the_share_of_fooled_images_restored_to_the_clean_prediction(pgd):
    result, _ = pgd
    frame = result.to_frame()
    fooled = frame[frame["success"]]
    for name in result.defences:
        expected = (fooled[name] == fooled["clean_pred"]).sum() / len(fooled)
        assert result.summary().dsr[name] == pytest.approx(expected)
        # images the attack did not fool do not count, whatever the defence did to them
        assert result.summary().dsr[name] == pytest.approx((fooled[f"{name}:restored"] == "restored").mean())
        # issue 24.5: an image the attack did not fool has its own verdict, never "restored"
        assert set(frame[~frame["success"]][f"{name}:restored"]) <= {"nothing to restore"}


def test_dsr_is_nan_when_the_attack_never_succeeds(digits_cnn, images):
    result = evaluate_batch(digits_cnn, images.images[:8], images.labels[:8], "none", defences=["pssr"])
    summary = result.summary()
    assert summary.attack_success == 0.0 and math.isnan(summary.dsr["pssr"])
    assert summary.adversarial_accuracy == summary.clean_accuracy


def test_rows_equal_the_library_calls_they_are_built_on(pgd, digits_cnn, images):
    """Block 1 (images 16..31) is run_attack with block_seed(0, 1), then restore of each output."""
    result, _ = pgd
    x = images.images[BLOCK : 2 * BLOCK]
    report = run_attack(digits_cnn, x, "pgd", {"steps": 5}, seed=block_seed(0, 1))
    rows = slice(BLOCK, 2 * BLOCK)
    assert torch.equal(result.adv_pred[rows], report.adv_pred) and torch.equal(result.success[rows], report.success)
    assert torch.equal(result.l2[rows], report.l2)
    guided = restore(digits_cnn, report.adversarial, "nip-guided", target=report.clean_pred)
    assert torch.equal(result.restored["nip-guided"][rows], guided.prediction)
    pssr_clean = restore(digits_cnn, x, "pssr")
    assert torch.equal(result.restored_clean["pssr"][rows], pssr_clean.prediction)


def test_deterministic_attack_gives_the_numbers_of_defence_table(digits_cnn, images):
    """With no randomness in the attack, the chunked evaluation equals the one-batch table."""
    x, y = images.images[:24], images.labels[:24]
    result = evaluate_batch(digits_cnn, x, y, "fgsm", {"eps": 0.15})
    table = defence_table(digits_cnn, x, y, [("fgsm", {"eps": 0.15})], ["nip-guided", "pssr"])
    summary = result.summary()
    for row in table.itertuples():
        assert row.attack_success == pytest.approx(summary.attack_success)
        assert row.dsr == pytest.approx(summary.dsr[row.defence])
        assert row.accuracy_adversarial == pytest.approx(summary.accuracy_after[row.defence])
        assert row.accuracy_clean == pytest.approx(summary.clean_accuracy_after[row.defence])


def test_targeted_success_means_reaching_the_target(digits_cnn, images):
    result = evaluate_batch(digits_cnn, images.images[:16], images.labels[:16], "pgd", {"steps": 10}, defences=["pssr"], target=3)
    # an image already predicted as 3 is not attacked and is no success (issue 15.2)
    assert torch.equal(result.attacked, result.clean_pred != 3)
    assert torch.equal(result.success, (result.adv_pred == 3) & result.attacked) and result.target == 3
    assert bool(result.success.any())


def test_per_class_rows_add_up_to_the_summary(pgd):
    result, _ = pgd
    table = result.per_class([str(i) for i in range(10)])
    counts = torch.bincount(result.labels, minlength=10)
    assert table["class"].tolist() == [c for c in range(10) if counts[c] > 0]
    assert table["images"].sum() == N and table["name"].tolist() == [str(c) for c in table["class"]]
    weighted = (table["attack_success"] * table["images"]).sum() / N
    assert weighted == pytest.approx(result.summary().attack_success)
    for cls, row in zip(table["class"], table.itertuples()):
        rows = result.labels == cls
        assert row.adversarial_accuracy == pytest.approx(float((result.adv_pred[rows] == cls).double().mean()))


# -- chunks, seeds, progress ----------------------------------------------------------------------


def test_chunking_does_not_change_the_results(pgd, digits_cnn, images):
    result, _ = pgd  # chunk=7
    other = evaluate_batch(digits_cnn, images.images, images.labels, "pgd", {"steps": 5}, seed=0, chunk=64, ids=images.ids)
    assert other.to_frame().equals(result.to_frame())
    for name in ("labels", "clean_pred", "adv_pred", "success", "l0", "l2", "linf"):
        assert torch.equal(getattr(other, name), getattr(result, name)), name
    for name in result.defences:
        assert torch.equal(other.restored[name], result.restored[name])
        assert torch.equal(other.restored_clean[name], result.restored_clean[name])


def test_same_seed_same_numbers_other_seed_other_perturbations(pgd, digits_cnn, images):
    result, _ = pgd
    x, y = images.images[:16], images.labels[:16]
    again = evaluate_batch(digits_cnn, x, y, "pgd", {"steps": 5}, seed=0)
    other = evaluate_batch(digits_cnn, x, y, "pgd", {"steps": 5}, seed=1)
    assert torch.equal(again.l2, result.l2[:16]) and torch.equal(again.adv_pred, result.adv_pred[:16])
    assert not torch.equal(other.l2, again.l2)  # PGD's random start follows the seed
    assert block_seed(0, 1) != block_seed(1, 0) and block_seed(0, 1) == block_seed(0, 1)


def test_progress_counts_images_up_to_the_total(pgd, digits_cnn, images):
    _, calls = pgd
    assert calls == [(16, N), (32, N), (40, N)]  # chunk 7 is rounded up to one block of 16
    seen = []
    evaluate_batch(digits_cnn, images.images[:20], images.labels[:20], "fgsm", defences=["pssr"], chunk=48,
                   progress=lambda d, t: seen.append((d, t)))
    assert seen == [(20, 20)]
    assert batch.chunk_bounds(100, 32) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    assert batch.chunk_bounds(5, 1) == [(0, 5)]


def test_call_computes_each_chunk(digits_cnn, images):
    """The dashboard passes its cache as ``call``: it gets evaluate_chunk and each chunk's slice."""
    seen = []

    def call(fn, *args, **kwargs):
        seen.append((fn, args[1].shape[0], kwargs["first_block"], kwargs["ids"]))
        return fn(*args, **kwargs)

    result = evaluate_batch(digits_cnn, images.images, images.labels, "fgsm", defences=["pssr"], chunk=32, call=call, ids=images.ids)
    assert [(s[1], s[2]) for s in seen] == [(32, 0), (8, 2)] and all(s[0] is batch.evaluate_chunk for s in seen)
    assert seen[1][3] == images.ids[32:] and result.ids == images.ids


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chunk": 0}, "chunk"),
        ({"seed": -1}, "seed"),
        ({"defences": ["nope"]}, "unknown defence"),
        ({"defences": ["pssr", "pssr"]}, "twice"),
        ({"defences": "pssr"}, "sequence"),
        ({"params": {"eps": 2.0}}, "eps"),
        ({"attack": "deepfool", "target": 3}, "targeted"),
        ({"ids": ("a",)}, "ids"),
    ],
)
def test_bad_settings_raise_before_any_work(digits_cnn, images, kwargs, match, monkeypatch):
    monkeypatch.setattr(batch, "evaluate_chunk", lambda *a, **k: pytest.fail("work started"))
    arguments = {"attack": "fgsm", **kwargs}
    with pytest.raises(InputError, match=match):
        evaluate_batch(digits_cnn, images.images[:4], images.labels[:4], **arguments)


def test_empty_or_mismatched_images_raise(digits_cnn, images):
    with pytest.raises(InputError, match="empty"):
        evaluate_batch(digits_cnn, images.images[:0], images.labels[:0], "fgsm")
    with pytest.raises(InputError, match="labels"):
        evaluate_batch(digits_cnn, images.images[:4], images.labels[:3], "fgsm")


def test_concat_refuses_results_of_different_evaluations(pgd):
    result, _ = pgd
    from dataclasses import replace

    with pytest.raises(InputError):
        BatchResult.concat([result, replace(result, seed=1)])
    with pytest.raises(InputError):
        BatchResult.concat([])
    assert BatchResult.concat([result]).to_frame().equals(result.to_frame())
