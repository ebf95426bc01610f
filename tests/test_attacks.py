"""The attack engine: contract over every registered attack, parity with torchattacks, errors."""

import json

import pytest
import torch
import torchattacks

from neuronviz.core.models import EMBEDDED, load_model
from neuronviz.core.probe import hook_count
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import (
    MAX_BATCH,
    AttackReport,
    format_eps,
    get_attack,
    list_attacks,
    parse_eps,
    resolve_params,
    run_attack,
)
from neuronviz.testing import check_attack

ALL_ATTACKS = [info.name for info in list_attacks()]
ISSUE_ATTACKS = {
    "none", "fgsm", "bim", "pgd", "pgdl2", "mifgsm", "difgsm", "tifgsm", "nifgsm", "rfgsm", "eotpgd", "tpgd",
    "cw", "deepfool", "sparsefool", "jsma", "onepixel", "pixle", "square", "apgd", "fab", "autoattack",
}
# Cheaper settings for the contract test (every attack × every embedded model, run twice).
FAST = {
    "bim": {"steps": 3}, "pgd": {"steps": 3}, "pgdl2": {"steps": 3}, "mifgsm": {"steps": 3}, "difgsm": {"steps": 3},
    "tifgsm": {"steps": 3}, "nifgsm": {"steps": 3}, "rfgsm": {"steps": 3}, "eotpgd": {"steps": 3}, "tpgd": {"steps": 3},
    "cw": {"steps": 5}, "deepfool": {"steps": 5}, "sparsefool": {"steps": 2}, "jsma": {"gamma": 0.02},
    "onepixel": {"steps": 2, "popsize": 4}, "pixle": {"restarts": 2, "max_iterations": 2}, "square": {"n_queries": 50},
    "apgd": {"steps": 3}, "fab": {"steps": 3},
    # AutoAttack has no step count; a wide ball lets its first stage fool every image, so the
    # later stages (thousands of passes on the robust model) have nothing left to do
    "autoattack": {"eps": 0.3},
}
# Attacks expected to fool digits-cnn at default parameters. One-Pixel (one pixel, ten
# generations) is a weak attack by design on clean digits and is left out.
STANDARD = [name for name in ALL_ATTACKS if name not in ("none", "onepixel")]


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name, device="cpu") for name in EMBEDDED}


@pytest.fixture(scope="module")
def batch(digits_test):
    x, y = digits_test
    return x[:4].clone(), y[:4].clone()


def _hook_count(model):
    return hook_count(model)


def test_catalogue_has_every_attack_the_issue_names():
    assert ISSUE_ATTACKS <= set(ALL_ATTACKS)
    for info in list_attacks():
        assert info.label and info.description and info.paper
        for param in info.params:
            assert param.help and param.kind in ("float", "int", "bool", "choice")
            if param.kind in ("float", "int"):
                assert param.low <= param.default <= param.high, (info.name, param.name)
            if param.kind == "choice":
                assert param.default in param.choices


@pytest.mark.parametrize("model_name", list(EMBEDDED))
@pytest.mark.parametrize("attack", ALL_ATTACKS)
def test_contract(attack, model_name, models, batch):
    """The contract every attack keeps (:func:`neuronviz.testing.check_attack`, what plugin authors run)."""
    model, (x, y) = models[model_name], batch
    check_attack(attack, model, x, labels=y, params=FAST.get(attack, {}))
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("attack", STANDARD)
def test_standard_attacks_fool_digits_cnn_at_defaults(attack, models, digits_test):
    x, y = digits_test
    n = 4 if attack == "jsma" else 8  # JSMA works one image at a time
    report = run_attack(models["digits-cnn"], x[:n], attack, labels=y[:n], seed=0)
    assert report.success_rate > 0, attack


def test_defaults_follow_the_kind_of_model(models):
    assert resolve_params(get_attack("pgd"), None, models["digits-cnn"])["eps"] == 0.1
    rgb = load_model("resnet18", weights=None, device="cpu")
    assert resolve_params(get_attack("pgd"), None, rgb)["eps"] == pytest.approx(8 / 255)


# -- parity with torchattacks ------------------------------------------------------------------


def _direct(attack_cls, model, x, y, seed, **kwargs):
    torch.manual_seed(seed)
    return attack_cls(model, **kwargs)(x, y)


@pytest.mark.parametrize(
    "name,params,cls,kwargs",
    [
        ("fgsm", {"eps": 0.1}, torchattacks.FGSM, {"eps": 0.1}),
        ("pgd", {"eps": 0.1, "alpha": 0.01, "steps": 20}, torchattacks.PGD, {"eps": 0.1, "alpha": 0.01, "steps": 20, "random_start": True}),
        ("cw", {"c": 1.0, "steps": 30, "lr": 0.01}, torchattacks.CW, {"c": 1.0, "kappa": 0.0, "steps": 30, "lr": 0.01}),
        ("deepfool", {"steps": 50, "overshoot": 0.02}, torchattacks.DeepFool, {"steps": 50, "overshoot": 0.02}),
    ],
)
@pytest.mark.parametrize("model_name", ["digits-cnn", "digits-resnet"])
def test_parity_with_torchattacks(name, params, cls, kwargs, model_name, models, digits_test):
    model = models[model_name]
    n = 6 if name == "deepfool" else 16  # DeepFool takes one Jacobian per image and class
    x, y = digits_test[0][:n], digits_test[1][:n]
    ours = run_attack(model, x, name, params, labels=y, seed=3).adversarial
    theirs = _direct(cls, model, x, y, 3, **kwargs)
    assert torch.equal(ours, theirs.detach().clamp(0, 1))


def test_targeted_parity_and_success(models, digits_test):
    model = models["digits-cnn"]
    x = digits_test[0][:16]
    report = run_attack(model, x, "pgd", {"steps": 20}, target=3, seed=1)
    # images already predicted as 3 are not attacked (issue 15.2): torchattacks gets the others
    attacked = report.clean_pred != 3
    assert 0 < int((~attacked).sum()) < 16 and report.excluded == int((~attacked).sum())
    torch.manual_seed(1)
    direct = torchattacks.PGD(model, eps=0.1, alpha=0.01, steps=20)
    direct.set_mode_targeted_by_label(quiet=True)
    assert torch.equal(report.adversarial[attacked], direct(x[attacked], torch.full((int(attacked.sum()),), 3)))
    assert torch.equal(report.adversarial[~attacked], x[~attacked])
    assert report.targeted and report.target.tolist() == [3] * 16
    assert torch.equal(report.success, (report.adv_pred == 3) & attacked) and report.success_rate > 0.5


def test_least_likely_target(models, digits_test):
    model = models["digits-cnn"]
    report = run_attack(model, digits_test[0][:8], "bim", target="least-likely", seed=0)
    assert torch.equal(report.target, report.clean_probs.argmin(1))


# -- the report ---------------------------------------------------------------------------------


def test_trace_is_per_step_and_batched(models, digits_test):
    model = models["digits-cnn"]
    x, y = digits_test[0][:8], digits_test[1][:8]
    report = run_attack(model, x, "pgd", {"steps": 12}, labels=y, seed=0)
    trace = report.trace
    assert trace.unit == "step" and trace.loss.shape == (12, 8) and trace.predicted.shape == (12, 8)
    # one batched pass per step (no Python loop over images); the untargeted loss rises
    assert float(trace.loss[-1].mean()) > float(trace.loss[0].mean())
    targeted = run_attack(model, x, "pgd", {"steps": 12}, target=2, seed=0).trace
    assert float(targeted.loss[-1].mean()) < float(targeted.loss[0].mean())


def test_report_norms_and_export(models, digits_test):
    model = models["digits-cnn"]
    x, y = digits_test[0][:4], digits_test[1][:4]
    report = run_attack(model, x, "onepixel", {"pixels": 2, "steps": 2, "popsize": 4}, labels=y, seed=0)
    assert isinstance(report, AttackReport)
    assert int(report.l0.max()) <= 2  # two pixel positions (l0 counts positions, not channels)
    frame = report.to_frame()
    assert list(frame["label"]) == y.tolist() and set(frame.columns) >= {"clean_pred", "adv_pred", "success", "l0", "l2", "linf"}
    exported = json.loads(json.dumps(report.to_dict()))
    assert exported["attack"] == "onepixel" and exported["params"]["pixels"] == 2 and len(exported["images"]) == 4
    assert report.seconds > 0 and report.device == "cpu"
    none = run_attack(model, x, "none")
    assert torch.equal(none.adversarial, x) and none.success_rate == 0 and none.trace is None


def test_seed_leaves_global_generators_alone(models, digits_test):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    run_attack(models["digits-cnn"], digits_test[0][:2], "pgd", {"steps": 2}, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_concurrent_sessions_get_sequential_results(models, digits_test, run_in_threads):
    model = models["digits-resnet"]
    x = digits_test[0][:8]
    expected = run_attack(model, x, "pgd", {"steps": 5}, seed=11).adversarial
    results = run_in_threads(lambda: run_attack(model, x, "pgd", {"steps": 5}, seed=11).adversarial, 4)
    assert all(torch.equal(r, expected) for r in results)


# -- errors -------------------------------------------------------------------------------------


def test_eps_units():
    assert parse_eps("8/255") == pytest.approx(0.0313725, abs=1e-6)
    assert parse_eps("0.03") == 0.03 and parse_eps(0.5) == 0.5
    assert format_eps(8 / 255) == "0.03137 (8/255)"
    assert format_eps(0.1) == "0.1 (25.5/255)"
    with pytest.raises(InputError, match="8/255"):
        parse_eps("eight")


def test_eps_given_as_a_fraction_string(models, digits_test):
    report = run_attack(models["digits-cnn"], digits_test[0][:2], "fgsm", {"eps": "8/255"})
    assert report.params["eps"] == pytest.approx(8 / 255)
    assert float(report.linf.max()) <= 8 / 255 + 1e-6


@pytest.mark.parametrize(
    "name,params,kwargs,message",
    [
        ("pgd", {"eps": -0.1}, {}, r"'eps' = -0.1 .* out of range \[0, 1\]"),
        ("pgd", {"eps": 2.0}, {}, r"'eps' = 2 .*out of range"),
        ("pgd", {"steps": 0}, {}, r"'steps' = 0 is out of range \[1, 1000\]"),
        ("pgd", {"steps": 10**6}, {}, r"'steps' = 1e\+06 is out of range"),
        ("pgd", {"steps": 2.5}, {}, "whole number"),
        ("pgd", {"alpha": "fast"}, {}, "not a budget"),
        ("pgd", {"alpha": float("nan")}, {}, "finite"),
        ("pgd", {"random_start": "yes"}, {}, "true or false"),
        ("pgd", {"gamma": 0.1}, {}, r"no parameter\(s\) \['gamma'\]"),
        ("square", {"norm": "L1"}, {}, r"one of \['Linf', 'L2'\]"),
        ("tifgsm", {"len_kernel": 4}, {}, "odd"),
        ("deepfool", {}, {"target": 3}, "no targeted mode"),
        ("pgd", {}, {"target": 10}, r"target class 10 is outside the model's classes 0..9"),
        ("pgd", {}, {"target": [1, 2, 3]}, "3 classes for 4 images"),
        ("pgd", {}, {"target": "most-likely"}, "least-likely"),
        ("pgd", {}, {"labels": torch.tensor([0, 1, 2, 12])}, r"labels class 12 is outside the model's classes 0..9"),
        ("pgd", {}, {"seed": -1}, "non-negative"),
        ("madeup", {}, {}, "unknown attack 'madeup'"),
    ],
)
def test_each_invalid_request_has_its_own_message(name, params, kwargs, message, models, batch):
    with pytest.raises(InputError, match=message):
        run_attack(models["digits-cnn"], batch[0], name, params, **kwargs)


def test_bad_pixels_and_caps(models, batch):
    model = models["digits-cnn"]
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        run_attack(model, batch[0] * 255, "fgsm")
    with pytest.raises(InputError, match="channels"):
        run_attack(model, torch.rand(1, 3, 28, 28), "fgsm")
    with pytest.raises(InputError, match=f"cap is {MAX_BATCH}"):
        run_attack(model, torch.rand(MAX_BATCH + 1, 1, 28, 28), "fgsm")
    with pytest.raises(InputError, match="model evaluations; one request may ask for at most"):
        run_attack(model, torch.rand(400, 1, 28, 28), "autoattack")  # 400 × about 5,500 at most


def test_seeded_attacks_on_two_models_at_once_equal_one_at_a_time(digits_cnn, digits_test):
    """Two sessions attacking two different models (two model locks) share the global generators:
    the seeded section is serialised, so each result equals its single-thread run."""
    import threading

    from neuronviz.core.models import load_model

    robust = load_model("digits-cnn-robust", device="cpu")
    x = digits_test[0][:16]
    params = {"eps": 0.1, "alpha": 0.01, "steps": 30, "random_start": True}
    alone = {m.name: run_attack(m, x, "pgd", params, seed=0).adversarial for m in (digits_cnn, robust)}
    results: dict = {}
    start = threading.Barrier(2)

    def work(model):
        start.wait()
        results[model.name] = run_attack(model, x, "pgd", params, seed=0).adversarial

    for _ in range(3):
        threads = [threading.Thread(target=work, args=(m,)) for m in (digits_cnn, robust)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for name, adversarial in alone.items():
            assert torch.equal(results[name], adversarial), name
