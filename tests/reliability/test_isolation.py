"""Two sessions, two models: a long attack in one does not hold up a short attack in the other.

Streamlit runs each browser session in its own thread of one process, and both call the library
with seeds (the app always seeds). Here two threads do exactly that: session A runs a long,
random-start PGD on digits-resnet; while it runs, session B runs short seeded PGDs on digits-cnn
(another model, so no model lock is shared). B may slow down by CPU sharing only:

- B's attacks finish while A is still running (A finishes last);
- B's total time during A is within 3× its total time alone (two busy threads on a small machine
  cost about 2×; a process-wide lock held for A's whole run costs A's remaining time);
- both sessions' results equal their sequential runs bit for bit (seeded randomness is per call,
  not a shared generator that the other session's draws move).
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import torch

from neuronviz.core.models import load_model
from neuronviz.data.images import list_samples, load_sample
from neuronviz.methods.attacks import run_attack

#: A's attack: long enough (several seconds alone on 2 cores) that B's runs all fall inside it.
LONG = ("pgd", {"steps": 300, "random_start": True})
#: B's attack: tens of milliseconds, with a random start (the seed matters).
SHORT = ("pgd", {"steps": 5, "random_start": True})
B_RUNS = 5
ALLOWED_SLOWDOWN = 3.0


@pytest.fixture(scope="module")
def sessions():
    resnet = load_model("digits-resnet", device="cpu")
    cnn = load_model("digits-cnn", device="cpu")
    xa = torch.cat([load_sample(s.id, resnet) for s in list_samples(resnet)[:2]])
    xb = load_sample(list_samples(cnn)[7].id, cnn)
    return resnet, xa, cnn, xb


def _short(cnn, xb, seed: int):
    return run_attack(cnn, xb, SHORT[0], SHORT[1], seed=seed)


def _time_short_alone(cnn, xb) -> list[float]:
    times = []
    for run in range(B_RUNS):
        start = time.perf_counter()
        _short(cnn, xb, seed=100 + run)
        times.append(time.perf_counter() - start)
    return times


def test_a_long_attack_on_one_model_does_not_hold_up_a_short_one_on_another(sessions):
    resnet, xa, cnn, xb = sessions
    _short(cnn, xb, seed=0)  # warm-up (first calls build kernels)
    run_attack(resnet, xa, LONG[0], {**LONG[1], "steps": 2}, seed=0)

    # Sequential references, and B's time alone (before and after, interleaved with the run below).
    expected_b = [_short(cnn, xb, seed=100 + run).adversarial for run in range(B_RUNS)]
    alone = _time_short_alone(cnn, xb)
    start = time.perf_counter()
    expected_a = run_attack(resnet, xa, LONG[0], LONG[1], seed=7).adversarial
    a_alone = time.perf_counter() - start

    finished: dict[str, float] = {}
    result_a: list = []
    a_started = threading.Event()

    def session_a():
        a_started.set()
        result_a.append(run_attack(resnet, xa, LONG[0], LONG[1], seed=7).adversarial)
        finished["a"] = time.perf_counter()

    thread = threading.Thread(target=session_a)
    thread.start()
    a_started.wait()
    time.sleep(0.2)  # A is inside its attack loop
    during, results_b = [], []
    for run in range(B_RUNS):
        begin = time.perf_counter()
        results_b.append(_short(cnn, xb, seed=100 + run).adversarial)
        during.append(time.perf_counter() - begin)
    finished["b"] = time.perf_counter()
    thread.join(timeout=600)
    assert not thread.is_alive()
    alone += _time_short_alone(cnn, xb)

    b_alone = B_RUNS * statistics.mean(alone)  # B's whole work alone (mean of the runs before and after)
    b_during = sum(during)
    report = (
        f"A alone {a_alone:.2f} s; B ({B_RUNS} attacks) alone {1000 * b_alone:.0f} ms, during A "
        f"{1000 * b_during:.0f} ms (slowest attack {1000 * max(during):.0f} ms), ratio {b_during / b_alone:.1f}"
    )
    print(report)
    assert a_alone > 5 * b_alone, f"A is not long enough to test anything: {report}"
    assert finished["b"] < finished["a"], f"B finished after A: held up by A. {report}"
    assert b_during <= ALLOWED_SLOWDOWN * b_alone, f"B slowed by more than CPU sharing: {report}"
    # Same results as the sequential runs: the seeds are per call, undisturbed by the other session.
    assert torch.equal(result_a[0], expected_a)
    for got, want in zip(results_b, expected_b):
        assert torch.equal(got, want)


def test_two_concurrent_seeded_sessions_give_their_sequential_results(sessions, run_in_threads):
    """Four sessions at once (two per model, different seeds): each result equals its lone run."""
    resnet, xa, cnn, xb = sessions
    jobs = [(resnet, xa[:1], 1), (resnet, xa[1:2], 2), (cnn, xb, 3), (cnn, xb, 4)]
    expected = [run_attack(m, x, SHORT[0], SHORT[1], seed=s).adversarial for m, x, s in jobs]
    counter = iter(range(len(jobs)))
    lock = threading.Lock()

    def work():
        with lock:
            index = next(counter)
        model, x, seed = jobs[index]
        return index, run_attack(model, x, SHORT[0], SHORT[1], seed=seed).adversarial

    for index, adversarial in run_in_threads(work, len(jobs)):
        assert torch.equal(adversarial, expected[index]), f"session {index} differs from its sequential run"
    # Different seeds really give different images (the check above could not pass by accident).
    assert not torch.equal(expected[2], expected[3])
