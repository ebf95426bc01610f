"""Defences held to the field's standard (issue 23): the baseline defences, the attacker who knows
each defence (BPDA / EoT), transfer attacks, masking checks and the intervals of every rate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuronviz.data import labelled as evalset
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences import get_defence, list_defences
from neuronviz.methods.defences.adaptive import adaptive_attack, defended_model, method
from neuronviz.methods.stats import rate
from neuronviz.workflows import batch
from neuronviz.workflows import evaluate as ev

BASELINES = ("jpeg", "bit-depth", "median", "random-resize-pad")


@pytest.fixture(scope="module")
def x16(digits_test):
    return digits_test[0][:16], digits_test[1][:16]


# -- the baselines ------------------------------------------------------------------------------------


def test_baselines_are_registry_entries_with_paper_params_and_adaptive_needs():
    names = [d.name for d in list_defences()]
    for name in BASELINES:
        assert name in names
        entry = get_defence(name)
        assert entry.paper and entry.params and entry.deployable and entry.description
    assert {n: method(get_defence(n)) for n in BASELINES} == {
        "jpeg": "BPDA", "bit-depth": "BPDA", "median": "BPDA", "random-resize-pad": "EoT",
    }
    assert method(get_defence("pssr")) == "BPDA on the mask" and method(get_defence("nip-guided")) == "BPDA"
    assert method(get_defence("none")) == "white-box"


def test_bit_depth_and_median_do_what_their_papers_say(digits_cnn):
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    one_bit = get_defence("bit-depth").restore(digits_cnn, x, {"bits": 1}).restored
    assert torch.equal(one_bit, (x >= 0.5).float())  # round(x·1)/1 (0.5 rounds to even: 0 — measure-zero here)
    assert get_defence("bit-depth").defaults(digits_cnn) == {"bits": 1}  # the paper's MNIST setting
    salt = torch.zeros(1, 1, 28, 28)
    salt[0, 0, 10, 10] = 1.0
    assert float(get_defence("median").restore(digits_cnn, salt, {"size": 3}).restored.max()) == 0.0


def test_jpeg_follows_quality_and_resize_pad_is_seeded(digits_cnn, x16):
    x = x16[0][:4]
    near = get_defence("jpeg").restore(digits_cnn, x, {"quality": 100}).restored
    far = get_defence("jpeg").restore(digits_cnn, x, {"quality": 5}).restored
    assert float((near - x).abs().mean()) < float((far - x).abs().mean())
    rrp = get_defence("random-resize-pad")
    a, b = rrp.restore(digits_cnn, x, {"seed": 3}).restored, rrp.restore(digits_cnn, x, {"seed": 3}).restored
    c = rrp.restore(digits_cnn, x, {"seed": 4}).restored
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- the attacker who knows the defence ------------------------------------------------------------------


def test_bpda_forward_is_the_defence_backward_the_identity(digits_cnn, x16):
    x = x16[0][:2].clone().requires_grad_(True)
    through = defended_model(digits_cnn, "bit-depth", {"bits": 1})
    logits = through(x)
    squeezed = get_defence("bit-depth").restore(digits_cnn, x.detach(), {"bits": 1}).restored
    assert torch.allclose(logits, digits_cnn(squeezed), atol=1e-5)
    logits[:, 0].sum().backward()
    xs = squeezed.clone().requires_grad_(True)
    digits_cnn(xs)[:, 0].sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, xs.grad, atol=1e-6)  # the gradient at D(x), passed through


def test_the_adaptive_attack_breaks_bit_depth_where_the_plain_one_does_not(digits_cnn, x16):
    x, y = x16
    plain = run_attack(digits_cnn, x, "fgsm", {"eps": 0.1}).adversarial
    benign = digits_cnn.predict(x)[0]
    entry = get_defence("bit-depth")
    plain_acc = float((entry.restore_for(digits_cnn, plain, benign=benign, clean=x).prediction == y).float().mean())
    chosen = adaptive_attack(digits_cnn, x, "pgd", {"eps": 0.3, "steps": 10, "alpha": 0.05}, "bit-depth", plain=plain)
    adaptive_acc = float((entry.restore_for(digits_cnn, chosen.adversarial, benign=benign, clean=x).prediction == y).float().mean())
    assert adaptive_acc < plain_acc and adaptive_acc <= 0.25


@pytest.mark.slow
def test_every_adaptive_row_is_at_least_as_strong_as_the_plain_one(digits_cnn):
    data = ev.load_dataset("digits", digits_cnn, limit=16)
    result = ev.evaluate(digits_cnn, data, ["fgsm"], defences=["all"], eps=[0.1], adaptive=True, progress=False)
    rows = result.rows
    plain = {r["defence"]: r for r in rows if r["mode"] == "white-box"}
    adaptive = {r["defence"]: r for r in rows if r["mode"] == "adaptive"}
    assert set(plain) == set(adaptive) and len(plain) == len(list_defences())  # labels may name a variant
    for name, row in plain.items():
        strong = adaptive[name]
        assert row["dsr_adaptive"] == strong["dsr"] and row["accuracy_adversarial_adaptive"] == strong["accuracy_adversarial"]
        slack = 1 / 16 if name == get_defence("random-resize-pad").short else 0.0  # the one random defence
        assert strong["accuracy_adversarial"] <= row["accuracy_adversarial"] + slack, name
        assert np.isnan(strong["dsr"]) or np.isnan(row["dsr"]) or strong["dsr"] <= row["dsr"] + slack, name
        assert strong["accuracy_clean"] == row["accuracy_clean"]  # the same clean images


# -- transfer, intervals, masking -------------------------------------------------------------------------


def test_a_transfer_row_reports_the_victims_numbers(digits_cnn, x16):
    from neuronviz.core.models import load_model

    surrogate = load_model("digits-cnn-robust", device="cpu")
    data = ev.load_dataset("digits", digits_cnn, limit=16)
    result = ev.evaluate(digits_cnn, data, ["fgsm"], defences=["none", "median"], eps=[0.2], surrogate=surrogate, progress=False)
    rows = [r for r in result.rows if r["mode"] == "transfer"]
    assert [r["attack"] for r in rows] == ["FGSM · transfer from digits-cnn-robust"] * 2
    x, y = x16
    crafted = run_attack(surrogate, x, "fgsm", {"eps": 0.2}).adversarial
    clean, adv = digits_cnn.predict(x)[0], digits_cnn.predict(crafted)[0]
    assert rows[0]["attack_success"] == pytest.approx(float((adv != clean).float().mean()))
    assert rows[0]["accuracy_adversarial"] == pytest.approx(float((adv == y).float().mean()))
    assert result.provenance["extra"]["surrogate"]["name"] == "digits-cnn-robust"
    from torch import nn

    from neuronviz.core.models.pixel import ModelMeta, PixelModel
    from neuronviz.infra.errors import InputError

    colour = PixelModel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 28 * 28, 10)), [0.0] * 3, [1.0] * 3, (28, 28),
                        [str(i) for i in range(10)], ModelMeta(name="rgb", architecture="linear", source="test"))
    with pytest.raises(InputError, match="a transfer attack needs the same"):
        batch.check_surrogate(digits_cnn, colour)


def test_every_rate_carries_n_and_its_wilson_interval(digits_cnn):
    data = ev.load_dataset("digits", digits_cnn, limit=16)
    result = ev.evaluate(digits_cnn, data, ["fgsm"], defences=["none", "bit-depth"], eps=[0.1], progress=False)
    row = result.rows[1]
    k = round(row["dsr"] * row["dsr_n"])
    assert row["dsr_n"] == row["fooled"] and (row["dsr_low"], row["dsr_high"]) == pytest.approx((rate(k, row["fooled"]).low, rate(k, row["fooled"]).high))
    assert row["accuracy_clean_n"] == row["images"] == 16
    md = ev.to_markdown(result.rows)
    assert f"({100 * row['dsr_low']:.1f}–{100 * row['dsr_high']:.1f})" in md.splitlines()[3]


def _row(attack, eps, acc, mode="white-box", defence="JPEG", steps=None, n=100):
    params = {"eps": eps} | ({"steps": steps} if steps else {})
    return {"attack": attack, "attack_id": attack, "eps": eps, "params": json.dumps(params, sort_keys=True), "target": "none",
            "defence": defence, "mode": mode, "accuracy_adversarial": acc, "accuracy_adversarial_n": n}


def test_the_masking_checks_fire_on_what_they_describe_and_only_then():
    rows = [
        _row("fgsm", 0.1, 0.20), _row("pgd", 0.1, 0.40, steps=10), _row("pgd", 0.1, 0.50, steps=40),
        _row("pgd", 0.3, 0.35, steps=10), _row("fgsm", 0.1, 0.10, mode="transfer"),
    ]
    flags = [f for f in ev.masking_checks(rows) if f["rows"]]
    fired: dict[str, list[list[int]]] = {}
    for f in flags:
        fired.setdefault(f["check"], []).append(f["rows"])
    assert fired == {
        "iterative<fgsm": [[1, 0], [2, 0]], "more-steps-weaker": [[2, 1]], "large-eps": [[3]], "transfer>white-box": [[4, 0]],
    }
    assert all("rerun with --adaptive" in f["see"] and f["suggests"] for f in flags)
    clean = [_row("fgsm", 0.1, 0.30), _row("pgd", 0.1, 0.05, steps=10), _row("pgd", 0.3, 0.0, steps=10)]
    checks = ev.masking_checks(clean)
    assert not [f for f in checks if f["rows"]]
    assert {f["check"] for f in checks} == {"not run: transfer>white-box", "not run: more-steps-weaker"}


# -- the Batch side: one definition, nothing to restore, unseen only when known -------------------------


def test_batch_verdicts_rates_and_the_unseen_claim(digits_cnn):
    images = batch.batch_images(digits_cnn, 16)
    result = batch.evaluate_batch(digits_cnn, images.images, images.labels, "fgsm", {"eps": 0.05}, defences=("bit-depth",))
    frame = result.to_frame()
    fooled = result.success.tolist()
    assert all((v == "nothing to restore") == (not f) for v, f in zip(frame["bit-depth:restored"], fooled, strict=True))
    rates = result.rates()
    assert rates.dsr["bit-depth"].n == sum(fooled) and rates.attack_success.n == 16
    assert rates.attack_success.share == pytest.approx(result.summary().attack_success)
    assert "(never seen in training)" in images.description
    import dataclasses

    stranger = digits_cnn.copy()  # a digits-shaped model of unknown training data
    stranger.meta = dataclasses.replace(stranger.meta, card={})
    assert evalset.is_digits_model(stranger) and "never seen" not in evalset.evaluation_set(stranger, 4).description
