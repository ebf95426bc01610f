"""Issue 24's page defects (items 2, 3, 4, 7, 8, 14, 22), one AppTest each for the class of defect:

- 2: a failure inside the error boundary is logged (traceback and the session's settings) on the
  server's standard error; the library's logger stays handler-free;
- 3: settings that belong to a model (its layers) are dropped when the model changes: not in the
  link, the session file, nor the pages' kept values;
- 4: the script that turns a query-only history push into a replace is on every page;
- 7: each model source keeps its own last choice (typed timm name, ONNX file and fields);
- 8: an ONNX upload keeps the chosen image, matches class names written as words to the digits,
  a link to it names the file (not ``upload <hash>``) and says it is in use; "Benign class 0";
- 14: the scroll-to-top uses ``st.html`` (no deprecated ``components.v1.html`` iframe);
- 22: a link whose model cannot load really falls back to the model it announces.
"""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from pathlib import Path

import pytest
import torch
from apptest import MAIN, assert_healthy
from streamlit.testing.v1 import AppTest
from torch import nn

from app import boundary, components
from app import url_state as session

ONNX_CLASSES = "zero, one, two, three, four, five, six, seven, eight, nine"


def _at(page: str | None = None, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=240)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    if page is not None:
        at.switch_page(page)
    at.run()
    assert_healthy(at)
    return at


def _healthy(at: AppTest) -> None:
    """No exception, and none that the error boundary caught either (those are messages)."""
    assert_healthy(at)
    caught = [e.value for e in at.error if "failed with an unexpected error" in e.value]
    assert not caught, caught


def _banner(at: AppTest) -> str:
    return " ".join(m.value for m in at.main.markdown if "**Model**" in m.value)


class _TinyDigits(nn.Module):
    """A small 1×28×28 → 10 network exported to ONNX by the tests (ReLU layers named relu_*)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4 * 14 * 14, 10)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.relu(self.conv(x)), 1))


def tiny_onnx() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _TinyDigits().eval(), (torch.rand(1, 1, 28, 28),), buffer, dynamo=False, input_names=["image"],
            output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    return buffer.getvalue()


def _upload_onnx(at: AppTest, classes: str = ONNX_CLASSES, name: str = "tiny-digits.onnx") -> AppTest:
    at.button_group(key="model_source").set_value("ONNX upload").run()
    at.text_input(key="onnx_mean").set_value("0.5")
    at.text_input(key="onnx_std").set_value("0.5")
    at.text_input(key="onnx_input_size").set_value("28")
    at.text_input(key="onnx_classes").set_value(classes)
    at.file_uploader(key="onnx_upload").upload(name, tiny_onnx(), "application/octet-stream")
    at.run()
    _healthy(at)
    return at


# -- 2: the boundary logs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_failure_is_logged_with_its_traceback_and_the_sessions_settings(monkeypatch):
    from neuronviz.figures import attack as attack_figures

    def broken(*args, **kwargs):
        raise RuntimeError("figure exploded")

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    boundary.LOG.addHandler(handler)
    try:
        at = _at("app_pages/model_image.py", {"attack": "fgsm", "seed": "5"})
        monkeypatch.setattr(attack_figures, "panel_bars", broken)
        at.switch_page("app_pages/attack.py").run()
        assert_healthy(at)
    finally:
        boundary.LOG.removeHandler(handler)
    assert any("The details are in the server's log" in e.value for e in at.error)
    [record] = [r for r in records if r.exc_info is not None]
    assert record.exc_info[1].args == ("figure exploded",)
    text = record.getMessage()
    assert text.startswith("This page failed; session settings:")
    assert "'attack': 'fgsm'" in text and "'seed': '5'" in text and "digits-cnn" in text
    # The app's handler writes to standard error; the library configures nothing.
    [stream] = [h for h in boundary.LOG.handlers if getattr(h, "_neuronviz_app", False)]
    assert isinstance(stream, logging.StreamHandler) and boundary.configure_logging() is stream
    assert all(isinstance(h, logging.NullHandler) for h in logging.getLogger("neuronviz").handlers)


def test_the_log_line_reaches_standard_error():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(boundary.LOG_FORMAT))
    boundary.LOG.addHandler(handler)
    try:
        boundary.guard("The test", lambda: 1 / 0)  # outside Streamlit: the message is a no-op, the log is not
    finally:
        boundary.LOG.removeHandler(handler)
    text = stream.getvalue()
    assert "ERROR neuronviz.app: The test failed; session settings:" in text
    assert "ZeroDivisionError: division by zero" in text and "Traceback" in text


# -- 3: settings of a model go with it ------------------------------------------------------------------


def test_a_layer_of_the_previous_model_leaves_the_link_and_the_session_file():
    at = _at("app_pages/neurons.py", {"neurons.layer": "features.3", "figure.layer": "features.3"})
    assert at.query_params["neurons.layer"] == "features.3"
    at.sidebar.selectbox(key="model_name").set_value("digits-resnet").run()
    assert_healthy(at)
    assert "digits-resnet" in _banner(at)
    assert "neurons.layer" not in at.query_params and "figure.layer" not in at.query_params
    kept = at.session_state[components.KEPT_CONTROLS_KEY]
    assert "neurons.layer" not in kept and "figure.layer" not in kept
    record = json.loads(session.session_file(at.session_state["state.selection"])[0])
    assert "neurons.layer" not in record["page"] and "figure.layer" not in record["page"]
    assert not [w.value for w in at.warning if "not a layer" in w.value]
    # Back on digits-cnn, the layer is the default again (it was dropped, not carried over).
    at.sidebar.selectbox(key="model_name").set_value("digits-cnn").run()
    assert "neurons.layer" not in at.query_params


def test_a_link_keeps_its_own_layer_on_its_own_model():
    at = _at("app_pages/neurons.py", {"model": "digits-resnet", "neurons.layer": "layer1.0"})
    if at.query_params.get("neurons.layer") is None:  # the link's layer must be a digits-resnet layer
        pytest.fail(f"the link's layer was dropped: {dict(at.query_params)}, {[w.value for w in at.warning]}")
    assert at.selectbox(key="neurons.layer").value == "layer1.0"


# -- 4 and 14: scripts through st.html ---------------------------------------------------------------


def test_the_history_script_is_on_every_page_and_no_iframe_is_used():
    at = _at("app_pages/about.py")
    bodies = [element.proto.body for element in at.get("html")]
    assert session.REPLACE_QUERY_SCRIPT in bodies
    assert all(element.proto.unsafe_allow_javascript for element in at.get("html") if element.proto.body == session.REPLACE_QUERY_SCRIPT)
    assert not at.get("iframe")


def test_scroll_to_top_uses_st_html(monkeypatch):
    import streamlit.components.v1 as deprecated

    def refuse(*args, **kwargs):
        raise AssertionError("streamlit.components.v1.html is deprecated")

    monkeypatch.setattr(deprecated, "html", refuse)
    at = _at("app_pages/learn.py")
    [button] = [b for b in at.button if b.key == "learn.load_example"]
    button.click().run()
    assert_healthy(at)
    assert components.SCROLL_TO_TOP_SCRIPT in [element.proto.body for element in at.get("html")]
    assert not at.get("iframe")


# -- 7 and 8: model sources keep their choices; ONNX uploads ----------------------------------------------


def test_each_model_source_keeps_its_last_choice():
    at = _at("app_pages/about.py")
    at.sidebar.selectbox(key="model_name").set_value("timm:*").run()
    at.text_input(key="timm_spec").set_value("resnet10t").run()
    assert at.text_input(key="timm_spec").value == "resnet10t"
    _upload_onnx(at)
    assert "tiny-digits" in _banner(at) and "uploaded model file tiny-digits.onnx" in _banner(at)
    at.button_group(key="model_source").set_value("Built-in").run()
    assert at.text_input(key="timm_spec").value == "resnet10t"  # not the pre-filled convnext_atto
    at.button_group(key="model_source").set_value("ONNX upload").run()
    assert_healthy(at)
    assert at.text_input(key="onnx_classes").value == ONNX_CLASSES and at.text_input(key="onnx_input_size").value == "28"
    assert any("Using **tiny-digits.onnx**, uploaded earlier" in c.value for c in at.sidebar.caption)
    assert "tiny-digits" in _banner(at)


def test_an_onnx_upload_keeps_the_image_and_matches_digit_words():
    at = _at("app_pages/model_image.py")
    at.button_group(key="sample_class").set_value(7).run()
    before = at.session_state["state.selection"].image_request.sample_id
    _upload_onnx(at)
    selection = at.session_state["state.selection"]
    assert selection.model.name == "tiny-digits"
    assert selection.image_request.sample_id == before  # uploading a model does not change the image
    assert selection.true_class == 7 and selection.model.class_names[7] == "seven"
    assert at.button_group(key="sample_class").value == 7


def test_an_onnx_model_without_class_names_keeps_the_digit_picker_and_says_benign_class_0():
    at = _at("app_pages/model_image.py")
    before = at.session_state["state.selection"].image_request.sample_id
    _upload_onnx(at, classes="")
    selection = at.session_state["state.selection"]
    assert selection.model.class_names[0] == "class 0"
    assert selection.image_request.sample_id == before and selection.true_class is None
    at.switch_page("app_pages/attack.py").run()
    assert_healthy(at)
    captions = " ".join(c.value for c in at.caption)
    assert "Benign class **" in captions and "Benign class **class " not in captions


def test_a_link_to_an_onnx_upload_names_the_file_and_says_it_is_in_use():
    at = _upload_onnx(_at("app_pages/about.py"))
    query = dict(at.query_params)
    assert query["model"].startswith("sha256:") and query["source"] == "onnx"
    again = _at("app_pages/about.py", query)  # the same server (the bytes are in its store)
    selection = again.session_state["state.selection"]
    assert selection.model_request.upload.name == "tiny-digits.onnx"
    assert "tiny-digits" in _banner(again) and "upload_" not in _banner(again)
    captions = [c.value for c in again.sidebar.caption]
    assert not any("No file uploaded yet" in c for c in captions)
    assert any("Using **tiny-digits.onnx**" in c for c in captions)


# -- 22: the announced fallback happens ------------------------------------------------------------------


def test_a_link_whose_model_cannot_load_uses_the_model_it_announces(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no cached timm weights
    at = _at("app_pages/attack.py", {"model": "timm:convnext_atto", "attack": "fgsm"})
    warnings_ = [w.value for w in at.warning]
    assert any("could not be loaded" in w and "using digits-cnn instead" in w for w in warnings_), warnings_
    assert not [i.value for i in at.info if i.value == components.NO_SELECTION_NOTE]
    assert at.session_state["state.selection"].model.name == "digits-cnn"
    assert at.sidebar.selectbox(key="model_name").value == "digits-cnn"
    assert "digits-cnn" in _banner(at)
    assert at.query_params.get("model") is None and at.query_params["attack"] == "fgsm"  # the rest of the link applies


# -- 10: the Figure page ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_figure_taller_than_a_page_says_so_and_offers_layouts_that_fit():
    from app.app_pages import figure

    at = _at("app_pages/figure.py", {"figure.width_preset": "single", "figure.charts": "top5,front-tail,layers,restoration"})
    [subheader] = [h.value for h in at.subheader if h.value.startswith("Preview")]
    height = float(re.search(r"× (\d+) mm", subheader).group(1))
    assert height > figure.PAGE_HEIGHT_MM
    [warning] = [w.value for w in at.warning if "journal page" in w.value]
    assert f"{height:.0f} mm tall" in warning and "Layouts that fit" in warning
    offers = [b for b in at.button if b.key and b.key.startswith("figure.fit.")]
    assert offers and all(re.search(r"\((\d+) × (\d+) mm\)", b.label) for b in offers)
    for offer in offers:  # each offer names a height that fits
        assert float(re.search(r"× (\d+) mm\)", offer.label).group(1)) <= figure.PAGE_HEIGHT_MM
    label = offers[-1].label
    offers[-1].click().run()
    assert_healthy(at)
    [subheader] = [h.value for h in at.subheader if h.value.startswith("Preview")]
    assert re.search(r"× (\d+) mm", subheader).group(1) == re.search(r"× (\d+) mm\)", label).group(1)
    assert not [w.value for w in at.warning if "journal page" in w.value]


def test_the_figure_numbers_csv_carries_the_provenance():
    from app import export_controls as exports
    from app.app_pages import figure

    record = {"model": {"name": "digits-cnn", "content_hash": "abc"}, "attacks": [{"attack": "pgd"}]}
    numbers = {"panels": {"clean": {"class_name": "9", "confidence": 0.98, "top5": [{"class_name": "9", "probability": 0.98}]}}}
    text = figure.numbers_csv(numbers, record, "stem")
    assert text.startswith("# ")
    table, back = exports.read_csv(text)
    assert back == record
    assert list(table.columns) == list(figure.compose.NUMBER_COLUMNS) and table["value"].tolist() == [0.98, 0.98]
