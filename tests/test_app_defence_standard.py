"""The pages of issue 23 under AppTest: the baselines beside NIP and PSSR, the attacker who knows
the defence, intervals and the one definition of success on the Batch page, transfer from the
sidebar's surrogate."""

from __future__ import annotations

import pytest
from apptest import assert_healthy, errors, open_page

from neuronviz.methods.defences import list_defences
from neuronviz.workflows import batch


def _run_batch(at, n: int = 10):
    at.slider(key="batch.n").set_value(n)
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    return at


@pytest.mark.slow
def test_the_defences_page_shows_every_defence_and_the_adaptive_attacker():
    at = open_page("app_pages/defences.py")
    assert errors(at) == []
    headings = [m.value for m in at.main.markdown]
    for defense in list_defences(include_none=False):
        assert f"##### {defense.short}" in headings
    toggle = at.toggle(key="defences.adaptive")
    assert toggle.label == "The attacker knows the defence" and not toggle.value
    toggle.set_value(True)
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    lines = [m.value for m in at.main.markdown if m.value.startswith("Attacker knows it (")]
    assert len(lines) == len(list_defences(include_none=False))
    assert any("(BPDA on the mask)" in line for line in lines) and any("(EoT)" in line for line in lines)


def test_the_batch_page_states_its_definition_and_intervals():
    at = _run_batch(open_page("app_pages/batch.py"))
    captions = [c.value for c in at.caption]
    assert any(batch.ATTACK_SUCCESS_DEFINITION in c for c in captions)
    assert any("(never seen in training)" in c for c in captions)  # digits-cnn: trained on the other split
    assert sum("95% CI" in c for c in captions) == 3 + 3 * 2  # success and 2 accuracies, then 3 per defence (NIP, PSSR)
    [table] = [d.value for d in at.dataframe if "pssr:restored" in d.value.columns]
    verdicts = set(table["pssr:restored"])
    assert verdicts <= {"restored", "not restored", "nothing to restore"}


def test_the_sidebars_surrogate_makes_the_batch_a_transfer_run():
    at = open_page("app_pages/batch.py")
    at.selectbox(key="surrogate.spec").set_value("digits-cnn-robust")
    at.run()
    at = _run_batch(at, 10)
    assert errors(at) == []
    assert any("crafted on **digits-cnn-robust**" in c.value for c in at.caption)
    assert any("images crafted on digits-cnn-robust (transfer)" in c.value for c in at.caption)
