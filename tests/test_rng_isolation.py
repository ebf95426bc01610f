"""Issue 11.1: one session's attack must not stall another's, and seeded attacks stay reproducible.

Before the fix every seeded attack held one process-wide lock for its whole run: an FGSM on
digits-cnn waited for a C&W on digits-resnet to finish. Now an attack that draws no random numbers
takes no process-wide lock, and a random one borrows the global generators only while its own
code runs (never during a model evaluation; for PGD-like attacks only until the first gradient
pass). These tests check the declarations against torchattacks itself, the timing, and that the
same seed still gives the same result, also while other threads attack.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch

from neuronviz.core.models import load_model
from neuronviz.methods import attacks as attacks_module
from neuronviz.methods.attacks import get_attack, list_attacks, resolve_params, run_attack

# Cheap settings (the same spirit as tests/test_attacks.py FAST)
FAST = {
    "bim": {"steps": 3}, "pgd": {"steps": 3}, "pgdl2": {"steps": 3}, "mifgsm": {"steps": 3}, "difgsm": {"steps": 3},
    "tifgsm": {"steps": 3}, "nifgsm": {"steps": 3}, "rfgsm": {"steps": 3}, "eotpgd": {"steps": 3}, "tpgd": {"steps": 3},
    "cw": {"steps": 5}, "deepfool": {"steps": 3}, "sparsefool": {"steps": 1}, "jsma": {"gamma": 0.02},
    "onepixel": {"steps": 2, "popsize": 4}, "pixle": {"restarts": 2, "max_iterations": 2}, "square": {"n_queries": 30},
    "apgd": {"steps": 3}, "fab": {"steps": 3}, "autoattack": {"eps": 0.3},
}


@pytest.fixture(scope="module")
def resnet():
    return load_model("digits-resnet", device="cpu")


def _global_state():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_state(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.parametrize("name", [i.name for i in list_attacks() if i.randomness == "none"])
def test_attacks_declared_without_randomness_draw_nothing(name, digits_cnn, digits_test):
    """Run unseeded (no generator is swapped in): the global generators must be untouched."""
    info = get_attack(name)
    n = 2 if name in ("deepfool", "sparsefool", "jsma") else 4
    x = digits_test[0][:n]
    targets = [None] + ([5] if info.targeted else [])
    for target in targets:
        before = _global_state()
        run_attack(digits_cnn, x, name, FAST.get(name), target=target, seed=None)
        assert _same_state(before, _global_state()), f"{name} (target={target}) drew random numbers"


@pytest.mark.parametrize("name", ["pgd", "pgdl2", "eotpgd"])
def test_switching_the_random_start_off_declares_no_randomness(name, digits_cnn, digits_test):
    info = get_attack(name)
    params = resolve_params(info, {**FAST[name], "random_start": False}, digits_cnn)
    assert info.draws(params) == "none" and info.draws(resolve_params(info, FAST[name], digits_cnn)) == "start"
    before = _global_state()
    run_attack(digits_cnn, digits_test[0][:4], name, {**FAST[name], "random_start": False}, seed=None)
    assert _same_state(before, _global_state())


class _Watcher(torch.nn.Module):
    """Records the global generator state at the first forward pass that builds a graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.channels, self.num_classes = model.channels, model.num_classes
        self.at_first_gradient_pass = None

    def forward(self, x):
        if self.at_first_gradient_pass is None and torch.is_grad_enabled() and x.requires_grad:
            self.at_first_gradient_pass = _global_state()
        return self.model(x)


@pytest.mark.parametrize("name", [i.name for i in list_attacks() if i.randomness == "start"])
def test_attacks_declared_start_draw_nothing_after_their_first_gradient_pass(name, digits_cnn, digits_test):
    """A "start" attack gives the generators back at its first gradient pass: nothing may be
    drawn after it (checked on torchattacks' own object, untargeted and targeted)."""
    info = get_attack(name)
    params = resolve_params(info, FAST[name], digits_cnn)
    x = digits_test[0][:4]
    for targeted in [False] + ([True] if info.targeted else []):
        watcher = _Watcher(digits_cnn)
        attack = info.build(watcher, params, 0)
        labels = torch.full((4,), 5) if targeted else digits_cnn.predict(x)[0]
        if targeted:
            attack.set_mode_targeted_by_label(quiet=True)
        before = _global_state()
        attack(x, labels)
        assert watcher.at_first_gradient_pass is not None
        assert not _same_state(before, watcher.at_first_gradient_pass), f"{name} drew nothing before its first pass"
        assert _same_state(watcher.at_first_gradient_pass, _global_state()), f"{name} drew after its first gradient pass"


def test_a_seeded_run_leaves_the_global_generators_as_they_were(digits_cnn, digits_test):
    for name in ("pgd", "difgsm", "square"):
        before = _global_state()
        run_attack(digits_cnn, digits_test[0][:4], name, FAST[name], seed=7)
        assert _same_state(before, _global_state()), name


def test_a_short_fgsm_is_not_held_up_by_a_long_cw_on_another_model(digits_cnn, resnet, digits_test):
    """Issue 11.1 as the issue measured it: session B's FGSM on digits-cnn while session A runs a
    long C&W on digits-resnet. B finishes within 3× its time alone, and before A."""
    x = digits_test[0][:32]
    run_attack(digits_cnn, x, "fgsm", seed=0)  # warm-up
    alone = []
    for _ in range(3):
        started = time.perf_counter()
        run_attack(digits_cnn, x, "fgsm", seed=0)
        alone.append(time.perf_counter() - started)
    alone_s = sorted(alone)[1]

    running = threading.Event()
    finished: dict = {}

    class Flag(torch.nn.Module):  # noqa: D401 - marks that C&W has started evaluating the model
        pass

    def long_cw():
        original = resnet.net.forward

        def forward(z):
            running.set()
            return original(z)

        resnet.net.forward = forward
        try:
            run_attack(resnet, digits_test[0][:32], "cw", {"steps": 400}, seed=0)
        finally:
            del resnet.net.forward
            finished["cw"] = time.perf_counter()

    thread = threading.Thread(target=long_cw)
    thread.start()
    assert running.wait(30)
    while_cw = []
    for _ in range(3):
        started = time.perf_counter()
        report = run_attack(digits_cnn, x, "fgsm", seed=0)
        while_cw.append(time.perf_counter() - started)
    fgsm_done = time.perf_counter()
    cw_running_after = thread.is_alive()
    thread.join()
    concurrent_s = sorted(while_cw)[1]
    assert cw_running_after and fgsm_done < finished["cw"], "the FGSM should finish while the C&W still runs"
    assert concurrent_s < 3 * alone_s + 0.05, f"FGSM {concurrent_s:.3f} s beside C&W vs {alone_s:.3f} s alone"
    assert torch.equal(report.adversarial, run_attack(digits_cnn, x, "fgsm", seed=0).adversarial)


def test_the_generator_lock_is_free_while_a_long_pgd_runs(digits_cnn, digits_test):
    """PGD draws its random start before the first gradient pass; after that it holds no
    process-wide lock, so another thread can take it at once (before: held for the whole run)."""
    running = threading.Event()
    original = digits_cnn.net.forward
    calls = {"n": 0}

    def forward(z):
        calls["n"] += 1
        if calls["n"] > 5:
            running.set()
        return original(z)

    digits_cnn.net.forward = forward
    try:
        thread = threading.Thread(target=run_attack, args=(digits_cnn, digits_test[0][:16], "pgd", {"steps": 200}), kwargs={"seed": 0})
        thread.start()
        assert running.wait(30)
        free = []
        for _ in range(20):
            got = attacks_module.RNG_LOCK.acquire(timeout=0.05)
            free.append(got)
            if got:
                attacks_module.RNG_LOCK.release()
        alive = thread.is_alive()
        thread.join()
    finally:
        del digits_cnn.net.forward
    assert alive and all(free)


@pytest.mark.parametrize("name,params", [("pgd", {"steps": 15}), ("difgsm", {"steps": 10}), ("square", {"n_queries": 60}), ("rfgsm", {"steps": 10})])
def test_same_seed_same_result_also_concurrently(name, params, digits_cnn, resnet, digits_test):
    """Random attacks on two models in two threads at once (and draws under the lock in a third)
    give exactly their single-thread results."""
    x = digits_test[0][:8]
    alone = {m.name: run_attack(m, x, name, params, seed=3).adversarial for m in (digits_cnn, resnet)}
    assert not torch.equal(alone["digits-cnn"], run_attack(digits_cnn, x, name, params, seed=4).adversarial) or name == "square"
    results: dict = {}
    errors: list = []
    start = threading.Barrier(3)
    stop = threading.Event()

    def work(model):
        try:
            start.wait()
            for _ in range(2):
                results.setdefault(model.name, []).append(run_attack(model, x, name, params, seed=3).adversarial)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def noise():  # other code drawing from the global generators meanwhile, by the rule: under the lock
        start.wait()
        while not stop.is_set():
            with attacks_module.RNG_LOCK:
                torch.rand(100)
                np.random.rand(10)
            time.sleep(0.001)

    threads = [threading.Thread(target=work, args=(m,)) for m in (digits_cnn, resnet)] + [threading.Thread(target=noise)]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join()
    stop.set()
    threads[2].join()
    assert not errors, errors
    for model_name, adversarial in alone.items():
        for got in results[model_name]:
            assert torch.equal(got, adversarial), model_name


def test_an_attack_stopped_midway_gives_the_lock_back(digits_cnn, digits_test):
    from neuronviz.infra import budget
    from neuronviz.infra.errors import TimeLimitError

    started = time.perf_counter()
    run_attack(digits_cnn, digits_test[0][:16], "difgsm", {"steps": 10}, seed=0)
    ten = time.perf_counter() - started  # ten steps on this machine: the budget below is ~50 of 1,000
    with pytest.raises(TimeLimitError):
        with budget.limit(5 * ten):
            run_attack(digits_cnn, digits_test[0][:16], "difgsm", {"steps": 1000}, seed=0)
    assert attacks_module.RNG_LOCK.acquire(blocking=False)
    attacks_module.RNG_LOCK.release()
    acquired = threading.Event()
    threading.Thread(target=lambda: (digits_cnn.lock.acquire(), acquired.set(), digits_cnn.lock.release())).start()
    assert acquired.wait(5)


def test_no_defence_draws_random_numbers(digits_cnn, digits_test):
    """docs/defences.md says no defence takes the generator lock because none draws: checked."""
    from neuronviz.methods.defences import list_defences, restore

    x = digits_test[0][:4]
    benign = digits_cnn.predict(x)[0]
    for defense in list_defences():
        before = _global_state()
        restore(digits_cnn, x, defense.name, target=benign if defense.needs_target else None,
                reference=x if defense.needs_reference else None)
        assert _same_state(before, _global_state()), defense.name
