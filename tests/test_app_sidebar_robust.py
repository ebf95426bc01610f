"""The sidebar never hands None (or a stale option) to the code after it, refuses out-of-range
attack values with a message that keeps the previous choice, and the banner agrees with it.

Issue 15.1 (a cleared Model box: KeyError, then an Attack box on "None (clean image)" under a
PGD banner, IndexError in the digit picker, TypeError comparing int with None), 15.12 (Upload →
Sample forgot the digit), 11.7 (out-of-range values silently replaced by defaults), 15.7 (one
format for pixel budgets; what an untargeted attack moves away from).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from apptest import MAIN, assert_healthy
from streamlit.testing.v1 import AppTest

from app import runs as analysis
from app import sidebar
from neuronviz.methods.attacks import format_eps, over_255

MODEL_PAGE = "app_pages/model_image.py"


@pytest.fixture()
def at() -> AppTest:
    """The app on the Model & image page (no attack is computed there)."""
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.switch_page(MODEL_PAGE)
    at.run()
    assert_healthy(at)
    return at


def banner(at: AppTest) -> str:
    return " ".join(m.value for m in at.main.markdown if "**Model**" in m.value or "**Image**" in m.value or "**Attack**" in m.value)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def attack_line(at: AppTest) -> str:
    [line] = [m.value for m in at.main.markdown if "**Attack**" in m.value]
    return line


def sidebar_choices(at: AppTest) -> dict[str, object]:
    """Every choice widget of the sidebar: key -> value."""
    found = {}
    for kind in ("selectbox", "radio", "button_group"):
        for widget in getattr(at.sidebar, kind):
            found[widget.key] = widget.value
    return found


def widget(at: AppTest, key: str):
    for kind in ("selectbox", "radio", "button_group"):
        for w in getattr(at.sidebar, kind):
            if w.key == key:
                return w
    raise AssertionError(f"no sidebar widget {key!r}")


# -- cleared choices --------------------------------------------------------------------------------


def test_every_sidebar_choice_cleared_falls_back_to_the_last_good_one(at: AppTest):
    at.button_group(key="sample_class").set_value(4).run()
    assert_healthy(at)
    before = sidebar_choices(at)
    shown = banner(at)
    assert {"model_source", "model_name", "device", "image_source", "sample_class", "sample_example", "attack_name"} <= set(before)
    for key in before:
        widget(at, key).set_value(None)
        at.run()
        assert_healthy(at)
        assert errors(at) == [], (key, errors(at))
        assert sidebar_choices(at) == before, key
        assert banner(at) == shown, key


def test_the_issue_sequence_clear_the_model_then_use_the_sidebar(at: AppTest):
    """Clear the Model box, pick a model again, then Digit and Example: no KeyError, the Attack
    box still shows the attack the banner names, and the digit picker works."""
    at.button_group(key="sample_class").set_value(3).run()
    at.selectbox(key="model_name").set_value(None).run()
    assert_healthy(at)
    assert at.selectbox(key="model_name").value == "digits-cnn"
    at.selectbox(key="model_name").set_value("digits-resnet").run()
    assert_healthy(at)
    assert "`digits-resnet`" in banner(at)
    assert at.selectbox(key="attack_name").value == "pgd" and "PGD" in attack_line(at)
    assert at.button_group(key="sample_class").value == 3  # the digit survived
    at.button_group(key="sample_class").set_value(8).run()
    assert_healthy(at)
    at.button_group(key="sample_example").set_value(1).run()
    assert_healthy(at)
    assert "digit 8" in banner(at)
    assert errors(at) == []


def _stale_script():
    import streamlit as st

    from app import choices

    options = st.session_state.get("options", [0, 1, 2, 3])
    value = choices.choose(st.segmented_control, "Digit", options, key="digit", default=0)
    st.markdown(f"value {value!r} {type(value).__name__}")


def test_a_stale_option_is_replaced_before_the_widget_is_drawn():
    """A value that is no longer an option (another model's classes) never reaches the code:
    the widget shows, and the code gets, the last good choice that is still an option."""
    at = AppTest.from_function(_stale_script)
    at.run()
    at.button_group(key="digit").set_value(3).run()
    assert at.markdown[0].value == "value 3 int"
    at.session_state["options"] = [0, 1, 2]  # 3 is gone
    at.run()
    assert_healthy(at)
    assert at.markdown[0].value == "value 0 int" and at.button_group(key="digit").value == 0
    at.button_group(key="digit").set_value(None).run()  # cleared
    assert at.markdown[0].value == "value 0 int"
    at.button_group(key="digit").set_value(2).run()
    at.button_group(key="digit").set_value(None).run()
    assert at.markdown[0].value == "value 2 int"  # the last good one, not the default


def test_upload_then_sample_keeps_the_chosen_digit(at: AppTest):
    at.button_group(key="sample_class").set_value(6).run()
    at.button_group(key="sample_example").set_value(2).run()
    at.button_group(key="image_source").set_value("Upload").run()
    assert_healthy(at)
    at.button_group(key="image_source").set_value("Sample").run()
    assert_healthy(at)
    assert at.button_group(key="sample_class").value == 6
    assert at.button_group(key="sample_example").value == 2


def test_a_picked_attack_that_has_not_run_says_so(at: AppTest):
    at.selectbox(key="attack_name").set_value("fgsm").run()
    assert_healthy(at)
    assert "PGD" in attack_line(at)  # nothing was run: the banner keeps the choice in use
    pending = [c.value for c in at.sidebar.caption if "Not run yet" in c.value]
    assert pending and "PGD" in pending[0]
    [button] = [b for b in at.sidebar.button if b.label == "Run attack"]
    button.click().run()
    assert_healthy(at)
    assert "FGSM" in attack_line(at)
    assert not [c for c in at.sidebar.caption if "Not run yet" in c.value]


# -- out-of-range values ----------------------------------------------------------------------------


def _submit(at: AppTest, label: str, value) -> AppTest:
    [box] = [w for w in at.sidebar.number_input if w.label == label]
    box.set_value(value)
    [button] = [b for b in at.sidebar.button if b.label == "Run attack"]
    button.click().run()
    assert_healthy(at)
    return at


@pytest.mark.parametrize(
    ("label", "value", "words"),
    [
        ("eps", -1.0, "out of range"),
        ("eps", 1e9, "out of range"),
        ("steps", 0, "out of range"),
        ("steps", -1, "out of range"),
        ("steps", 10**9, "out of range"),
        ("Seed", -1, "seed"),
        ("Seed", 2**40, "seed"),
    ],
)
def test_out_of_range_values_are_refused_and_the_previous_choice_stays(at: AppTest, label, value, words):
    _submit(at, "eps", 0.2)  # a valid choice first: the one to keep
    assert errors(at) == []
    kept = attack_line(at)
    assert "eps 0.2 (51/255)" in kept
    _submit(at, label, value)
    [message] = errors(at)
    assert message.startswith("The attack was not changed") and words in message.lower(), message
    assert "Still using PGD" in message and "eps 0.2" in message
    assert attack_line(at) == kept


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_never_reach_the_attack(at: AppTest, value):
    """Streamlit itself drops a non-finite number from a client and keeps the widget's value,
    which is the choice in use: the choice stays and nothing fails."""
    _submit(at, "eps", 0.2)
    kept = attack_line(at)
    _submit(at, "eps", value)
    assert errors(at) == []
    assert attack_line(at) == kept


# -- words and numbers ------------------------------------------------------------------------------


def test_one_format_for_budgets_and_measured_norms():
    """ε 0.15 was 38.2/255 in the banner and 38.3/255 in the norms (float32 measured L∞)."""
    measured = float(np.float32(0.15))  # what a float32 perturbation of 0.15 measures
    assert format_eps(0.15) == format_eps(measured) == "0.15 (38.25/255)"
    assert format_eps(8 / 255) == "0.03137 (8/255)"
    assert format_eps(float(torch.tensor(8 / 255, dtype=torch.float32))).endswith("(8/255)")
    assert over_255(0.1) == "25.5" and over_255(0) == "0" and over_255(0.01) == "2.55" and over_255(0.002) == "0.51"
    assert "eps 0.15 (38.25/255)" in analysis.AttackChoice.make("pgd", {"eps": 0.15}).describe()


def test_untargeted_wording_matches_what_is_computed(digits_cnn):
    """An untargeted attack moves away from the clean prediction (run_attack's default labels)."""
    from neuronviz.methods.attacks import run_attack

    assert sidebar.AWAY == "away from the clean prediction"
    x = torch.full((1, 1, 28, 28), 0.5)
    report = run_attack(digits_cnn, x, "fgsm", {"eps": 0.0})
    assert torch.equal(report.labels, report.clean_pred)


# -- shared-server mode -------------------------------------------------------------------------------


@pytest.fixture()
def shared_server(monkeypatch):
    """neuronviz.infra.settings.shared_server() (the checkpoints branch's) answering True."""
    import sys
    import types

    import neuronviz

    settings = sys.modules.get("neuronviz.infra.settings")
    if settings is None:
        settings = types.ModuleType("neuronviz.infra.settings")
        monkeypatch.setitem(sys.modules, "neuronviz.infra.settings", settings)
        monkeypatch.setattr(neuronviz.infra, "settings", settings, raising=False)
    monkeypatch.setattr(settings, "shared_server", lambda: True, raising=False)


def test_a_shared_server_offers_no_weight_download_and_says_why(at: AppTest, shared_server):
    at.selectbox(key="model_name").set_value("resnet18").run()
    assert_healthy(at)
    assert not [b for b in at.sidebar.button if b.label == "Download weights"]
    [warning] = [w.value for w in at.sidebar.warning if "resnet18" in w.value]
    assert "downloads are off (shared server)" in warning
    assert at.radio(key="weights:resnet18").value == "random initialisation"


def test_the_download_callback_refuses_on_a_shared_server(shared_server, monkeypatch):
    from app import state

    called = []
    monkeypatch.setattr(state, "fetch_weights", lambda name: called.append(name))
    script = AppTest.from_string(
        "import streamlit as st\nfrom app import sidebar\nsidebar._download('resnet18')\n"
        "st.markdown(repr(st.session_state[sidebar.DOWNLOAD_MESSAGE]))"
    )
    script.run()
    assert called == [] and "Downloads are off on this shared server." in script.markdown[0].value


def test_the_attack_box_shows_the_other_kind_of_models_attack_in_the_browser_too(at: AppTest):
    """Monkey walk (seed 20261201, action 63): AutoAttack run on digits, then a photo model: the
    code used that kind's own choice (PGD) but the browser kept showing AutoAttack, because a new
    index of a widget that keeps its key is not sent to the browser. The value must travel as a
    session-state value (``set_value`` on the element), which the browser applies."""
    at.sidebar.selectbox(key="attack_name").set_value("autoattack")
    at.run()
    [button] = [b for b in at.sidebar.button if b.label == "Run attack"]
    button.click()
    at.run()
    assert_healthy(at)
    assert "AutoAttack" in attack_line(at)
    at.selectbox(key="model_name").set_value("resnet18").run()  # 3 channels: random initialisation offline
    assert_healthy(at)
    box = at.sidebar.selectbox(key="attack_name")
    assert box.value == "pgd" and "PGD" in attack_line(at)
    assert box.proto.set_value, "the browser would keep showing the previous attack"
    at.selectbox(key="model_name").set_value("digits-cnn").run()  # and back: digits' own choice, shown
    box = at.sidebar.selectbox(key="attack_name")
    assert box.value == "autoattack" and box.proto.set_value and "AutoAttack" in attack_line(at)
