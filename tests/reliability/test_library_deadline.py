"""Issue 24.23: the library is not the server. A library call (``run_attack``, ``restore``) has no
wall-clock deadline unless its caller asks for one; the server's budget
(``NEURONVIZ_TIME_BUDGET_S``) applies only where the dashboard enters it (``budget.limit()``).

Each case runs in a fresh process with the server budget set to 0.001 s: a plain call that takes far
longer than that must finish (no ``TimeLimitError``), while the same call inside ``budget.limit()``
(what the app's worker does) must stop."""

from __future__ import annotations

import pytest
from bounded_run import run_bounded

TINY = {"NEURONVIZ_TIME_BUDGET_S": "0.001"}  # a millisecond: every call below takes longer on any CPU
SETUP = """
import torch
from neuronviz.infra import budget
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences import restore
from neuronviz.data.datasets import digits
from neuronviz.core.models import load_model
model = load_model("digits-cnn", device="cpu")
x, y = digits("test")
x = x[:32]
run_attack(model, x[:2], "fgsm")  # warm
"""


@pytest.mark.slow
def test_a_library_deepfool_call_outlives_a_tiny_server_budget():
    out = run_bounded(
        """
        result = run_attack(model, x, "deepfool", {"steps": 50}, seed=0).adversarial.shape[0]
        """,
        SETUP,
        env=TINY,
    )
    assert out["error"] is None, out
    assert out["result"] == 32
    assert out["seconds"] > 0.001, out  # it ran past the server budget and was not stopped
    assert out["seconds"] < 120 and out["delta_mb"] < 300, out


@pytest.mark.slow
def test_a_library_restore_outlives_a_tiny_server_budget():
    out = run_bounded(
        """
        attacked = run_attack(model, x[:8], "pgd", {"steps": 10}, seed=0).adversarial
        result = restore(model, attacked, "nip-reactive").restored.shape[0]
        """,
        SETUP,
        env=TINY,
    )
    assert out["error"] is None, out
    assert out["result"] == 8
    assert out["seconds"] > 0.001 and out["seconds"] < 120 and out["delta_mb"] < 300, out


@pytest.mark.slow
def test_the_server_budget_still_applies_where_the_app_enters_it():
    """What ``app.runs.run_limited`` does: ``budget.limit(settings.time_budget_s(), cancel=...)``."""
    out = run_bounded(
        """
        from neuronviz.infra import settings
        with budget.limit(settings.time_budget_s()):
            run_attack(model, x, "cw", {"steps": 10_000}, seed=0)
        """,
        SETUP,
        env=TINY,
    )
    assert out["error"] == "TimeLimitError" and "0.001 s time budget" in out["message"], out
    assert out["seconds"] < 10, out

