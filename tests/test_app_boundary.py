"""Every page body runs inside an error boundary (app/boundary.py): a failing page (a figure
builder that raises included) shows a message, the sidebar and the banner stay, the next page
works, and the image choice survives. A model becomes the session's last good model only after
a prediction with finite outputs (issue 11.4)."""

from __future__ import annotations

import json

import pytest
from apptest import MAIN, assert_healthy
from safetensors.torch import save
from streamlit.testing.v1 import AppTest

from app import boundary
from neuronviz.core.models import load_model

MODEL_PAGE = "app_pages/model_image.py"


def banner(at: AppTest) -> str:
    return " ".join(m.value for m in at.main.markdown if "**Model**" in m.value or "**Image**" in m.value)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _safetensors(state: dict, **meta) -> bytes:
    return save(state, metadata={k: (v if isinstance(v, str) else json.dumps(v)) for k, v in meta.items()})


def _cnn_state() -> dict:
    return {k: v.clone().contiguous() for k, v in load_model("digits-cnn", device="cpu").net.state_dict().items()}


def test_a_figure_builder_that_raises_keeps_the_sidebar_and_the_next_page_works(monkeypatch):
    from neuronviz.figures import attack as attack_figures

    def broken(*args, **kwargs):
        raise RuntimeError("figure exploded")

    at = AppTest.from_file(MAIN, default_timeout=240)
    at.switch_page(MODEL_PAGE)
    at.run()
    at.button_group(key="sample_class").set_value(5).run()
    assert_healthy(at)
    monkeypatch.setattr(attack_figures, "panel_bars", broken)
    at.switch_page("app_pages/attack.py")
    at.run()
    assert_healthy(at)  # no traceback: the boundary turned it into a message
    [message] = [e for e in errors(at) if "figure exploded" in e]
    assert message.startswith("This page failed with an unexpected error (RuntimeError: figure exploded)")
    assert "choices are kept" in message
    assert at.sidebar.selectbox(key="model_name").value == "digits-cnn"  # the sidebar is there
    assert "digit 5" in banner(at)
    at.switch_page(MODEL_PAGE)
    at.run()
    assert_healthy(at)
    assert errors(at) == []
    assert "digit 5" in banner(at) and at.button_group(key="sample_class").value == 5


def test_a_library_error_that_no_page_caught_is_shown_in_its_words():
    from neuronviz.infra.errors import InputError

    message = boundary.failure_message("This page", InputError("steps must be at most 10"))
    assert message == "This page stopped: Steps must be at most 10"


def _upload_checkpoint(at: AppTest, name: str, data: bytes) -> AppTest:
    at.button_group(key="model_source").set_value("Your checkpoint").run()
    at.file_uploader(key="checkpoint_upload").upload(name, data, "application/octet-stream")
    at.run()
    assert_healthy(at)
    return at


@pytest.fixture()
def at() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=240)
    at.switch_page(MODEL_PAGE)
    at.run()
    at.button_group(key="sample_class").set_value(7).run()
    assert_healthy(at)
    return at


def test_a_checkpoint_with_non_finite_outputs_never_becomes_the_last_good_model(at: AppTest):
    state = _cnn_state()
    first = next(k for k in state if k.endswith("weight"))
    state[first].mul_(1e37)  # finite weights (the loader accepts them), activations overflow to inf
    _upload_checkpoint(at, "nan.safetensors", _safetensors(state, architecture="digits-cnn", mean=[0.3054], std=[0.3247]))
    [message] = errors(at)
    assert "nan.safetensors" in message and "not finite" in message and "Still showing digits-cnn" in message
    assert "`digits-cnn`" in banner(at) and "digit 7" in banner(at)
    from app import state as app_state

    assert at.session_state[app_state.GOOD_MODEL].upload is None  # still the registry model
    # and every page still works on the kept model
    at.switch_page("app_pages/attack.py").run()
    assert_healthy(at)
    assert "digit 7" in banner(at)


@pytest.mark.parametrize(("field", "value"), [("std", [float("nan")]), ("mean", 0.5), ("mean", ["a"]), ("std", [0.0])])
def test_broken_normalisation_metadata_is_a_message_and_keeps_model_and_image(at: AppTest, field, value):
    meta = {"architecture": "digits-cnn", "mean": [0.3054], "std": [0.3247]}
    meta[field] = value
    data = save(_cnn_state(), metadata={k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()})
    _upload_checkpoint(at, "meta.safetensors", data)
    [message] = errors(at)
    assert message.startswith("Could not load the model meta.safetensors") and "Still showing digits-cnn" in message
    assert "`digits-cnn`" in banner(at) and "digit 7" in banner(at)
    assert at.button_group(key="sample_class").value == 7


def test_a_checkpoint_error_is_shown_with_its_hint_for_the_dashboard():
    """The loader's CheckpointError carries ``ui_hint`` (what to do in the dashboard, not the API's
    words): the sidebar shows it after the message."""
    from app import state
    from neuronviz.infra.errors import CheckpointError

    error = CheckpointError("mine.pt: the architecture cannot be inferred (closest: vgg19, 0% of tensors agree)")
    assert state.error_text(error) == str(error)
    error.ui_hint = "Pick its architecture in the Architecture box above the upload."
    assert state.error_text(error) == (
        "mine.pt: the architecture cannot be inferred (closest: vgg19, 0% of tensors agree). "
        "Pick its architecture in the Architecture box above the upload."
    )
