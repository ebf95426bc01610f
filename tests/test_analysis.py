"""app/runs.py: full-content cache keys, memoisation, the attack choice and the full analysis."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import streamlit as st
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import runs as analysis  # noqa: E402
from neuronviz.infra.errors import InputError  # noqa: E402
from neuronviz.methods.attacks import run_attack  # noqa: E402
from neuronviz.methods.defences import restore  # noqa: E402
from neuronviz.methods.influence import neuron_influence, probe_layers  # noqa: E402


@pytest.fixture(autouse=True)
def _empty_cache():
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture(scope="module")
def image(digits_test):
    images, labels = digits_test
    return images[:1].clone(), int(labels[0])


CALLS: list[int] = []


def _count_and_sum(x: torch.Tensor, scale: float = 1.0) -> float:
    CALLS.append(1)
    return float(x.sum()) * scale


# -- keys -------------------------------------------------------------------------------------------


def test_content_key_sees_every_element_of_a_large_tensor():
    big = torch.zeros(4_000_000)
    changed = big.clone()
    changed[2_345_677] = 1e-7  # one element, deep inside: a sampled hash would miss it
    assert analysis.digest(big) != analysis.digest(changed)
    assert analysis.digest(big) == analysis.digest(big.clone())


def test_content_key_distinguishes_models_values_and_types(digits_cnn):
    twin = digits_cnn.copy()
    assert analysis.digest(digits_cnn) == analysis.digest(twin)  # same weights, same key
    with torch.no_grad():
        twin.layer("features.0").weight[0, 0, 0, 0] += 1e-3  # changed in place after hashing
    assert analysis.digest(digits_cnn) != analysis.digest(twin)
    import dataclasses

    renamed = digits_cnn.copy()
    renamed.meta = dataclasses.replace(renamed.meta, name="mine")  # same weights, another name:
    assert renamed.content_hash == digits_cnn.content_hash  # PSSR finds no regenerator for "mine"
    assert analysis.digest(renamed) != analysis.digest(digits_cnn)
    assert analysis.digest(1) != analysis.digest(1.5) != analysis.digest("1")
    assert analysis.digest({"a": 1, "b": 2}) == analysis.digest({"b": 2, "a": 1})
    assert analysis.digest(analysis.AttackChoice()) != analysis.digest(analysis.AttackChoice(seed=1))
    with pytest.raises(TypeError, match="no content key for object"):
        analysis.digest(object())


def test_content_key_of_frames_sees_values_columns_and_index():
    import pandas as pd

    frame = pd.DataFrame({"layer": ["a", "b"], "rho": [0.5, 0.25]})
    assert analysis.digest(frame) == analysis.digest(frame.copy())
    changed = frame.copy()
    changed.loc[1, "rho"] = 0.2500001
    assert analysis.digest(frame) != analysis.digest(changed)
    assert analysis.digest(frame) != analysis.digest(frame.rename(columns={"rho": "spearman"}))
    assert analysis.digest(frame) != analysis.digest(frame.set_axis([5, 6]))
    assert analysis.digest(frame["rho"]) != analysis.digest(changed["rho"])


def test_memo_computes_once_per_content():
    CALLS.clear()
    x = torch.arange(10.0)
    assert analysis.memo(_count_and_sum, x) == 45.0
    assert analysis.memo(_count_and_sum, x.clone()) == 45.0  # same content: cached
    assert len(CALLS) == 1
    y = x.clone()
    y[3] = 4.0
    assert analysis.memo(_count_and_sum, y) == 46.0  # one value changed: computed again
    assert analysis.memo(_count_and_sum, x, scale=2.0) == 90.0  # another keyword
    assert len(CALLS) == 3


def test_memo_does_not_cache_errors():
    CALLS.clear()
    with pytest.raises(AttributeError):
        analysis.memo(_count_and_sum, "not a tensor")
    with pytest.raises(AttributeError):
        analysis.memo(_count_and_sum, "not a tensor")
    assert len(CALLS) == 2


# -- the attack choice ------------------------------------------------------------------------------


def test_attack_choice_resolves_against_the_model(digits_cnn):
    choice = analysis.AttackChoice()
    params = choice.params(digits_cnn)
    assert params["steps"] == 10 and params["eps"] == pytest.approx(0.1) and params["random_start"] is True
    assert "PGD (L∞) · eps 0.1 (25.5/255)" in choice.describe(digits_cnn)
    assert choice.with_params(eps=0.2).params(digits_cnn)["eps"] == pytest.approx(0.2)
    with pytest.raises(InputError, match="out of range"):
        choice.with_params(eps=2.0).params(digits_cnn)
    with pytest.raises(InputError, match="unknown attack"):
        analysis.AttackChoice.make("no-such-attack", {})
    assert analysis.AttackChoice.make("PGD", {"steps": 3}).attack == "pgd"


# -- the full analysis ------------------------------------------------------------------------------


def test_full_analysis_equals_the_library_called_directly(digits_cnn, image):
    x, _ = image
    choice = analysis.AttackChoice.make("pgd", {"steps": 5}, seed=3)
    result = analysis.full_analysis(digits_cnn, x, choice)
    direct = run_attack(digits_cnn, x, "pgd", choice.params(digits_cnn), seed=3)
    assert torch.equal(result.adversarial, direct.adversarial)
    assert result.benign_class == int(direct.clean_pred[0])
    nip = restore(digits_cnn, direct.adversarial, "nip-guided", target=result.benign_class)
    pssr = restore(digits_cnn, direct.adversarial, "pssr")
    assert torch.equal(result.image("nip-guided"), nip.restored)
    assert torch.equal(result.image("pssr"), pssr.restored)
    assert result.layers == tuple(info.name for info in probe_layers(digits_cnn))
    for condition, pixels in [("clean", x), ("adversarial", direct.adversarial), ("pssr", pssr.restored)]:
        maps = neuron_influence(digits_cnn, pixels, target=result.benign_class)
        for layer in result.layers:
            got = result.influence[condition][layer]
            assert got.values.shape == maps[layer].values.shape == (1, maps[layer].neurons)
            torch.testing.assert_close(got.values, maps[layer].values, rtol=1e-4, atol=1e-6)
    assert result.prediction("adversarial") == int(direct.adv_pred[0])
    torch.testing.assert_close(result.perturbation, direct.adversarial - x)
    assert set(result.seconds) == {"attack", "control", "nip-guided", "pssr", "influence"}  # the matched control is part of the analysis


def test_full_analysis_is_cached_and_sessions_get_copies(digits_cnn, image):
    x, _ = image
    first = analysis.full_analysis(digits_cnn, x, analysis.AttackChoice())
    second = analysis.full_analysis(digits_cnn, x.clone(), analysis.AttackChoice())
    assert first is not second  # a pickled copy per call: one session cannot change another's
    assert torch.equal(first.adversarial, second.adversarial)
    assert first.seconds == second.seconds  # the same computation, not a new one


# -- errors -----------------------------------------------------------------------------------------


def test_error_messages_for_users():
    assert analysis.error_message(InputError("eps is out of range")) == "Eps is out of range"
    assert "ran out of memory" in analysis.error_message(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert "Choose the CPU" in analysis.error_message(RuntimeError("CUDA error: device-side assert"))
    assert analysis.error_message(ValueError("a bug")) is None


def test_attempt_shows_library_errors_and_reraises_bugs(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(analysis.st, "error", lambda message, icon=None: shown.append(message))

    def refuse():
        raise InputError("steps must be at least 1")

    assert analysis.attempt(refuse) is None
    assert shown == ["Steps must be at least 1"]
    with pytest.raises(ZeroDivisionError):
        analysis.attempt(lambda: 1 / 0)
    assert analysis.attempt(lambda a, b=0: a + b, 2, b=3) == 5
