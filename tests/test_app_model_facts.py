"""Model & image with an ONNX model (issue 24.1: it crashed for every ONNX model on ``st.columns([])``)
and the facts of a model shown with their origin, assumed ones marked (issue 22.2); no
``st.columns`` in app/ takes a spec that could be empty."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
import torch
from apptest import MAIN, ROOT, assert_healthy, clear_caches
from streamlit.testing.v1 import AppTest
from torch import nn


class Grey(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _onnx_bytes() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.onnx.export(Grey().eval(), (torch.zeros(2, 1, 28, 28),), buffer, dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    return buffer.getvalue()


def _banner(at: AppTest) -> str:
    return " ".join(m.value for m in at.main.markdown if "**Model**" in m.value)


@pytest.fixture
def onnx_page() -> AppTest:
    clear_caches()
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.run()
    assert_healthy(at)
    at.switch_page("app_pages/model_image.py").run()
    at.button_group(key="model_source").set_value("ONNX upload").run()
    at.file_uploader(key="onnx_upload").upload("grey.onnx", _onnx_bytes(), "application/octet-stream").run()
    assert_healthy(at)
    return at


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_model_and_image_shows_an_onnx_model_and_marks_what_was_assumed(onnx_page: AppTest):
    at = onnx_page
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "`grey`" in _banner(at)
    assert "assumed: mean, std, classes" in _banner(at)  # the banner says which facts are a guess
    [facts] = [frame.value for frame in at.dataframe if "origin" in frame.value.columns]
    origins = dict(zip(facts["fact"], facts["origin"], strict=True))
    assert origins == {
        "Mean": "assumed", "Std": "assumed", "Input size": "read from the network", "Channels": "read from the network", "Classes": "assumed",
    }
    assert dict(zip(facts["fact"], facts["value"], strict=True))["Mean"] == "0.1307"  # a grey model: MNIST's, no ImageNet statistics
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Assumed, not known: mean 0.1307; std 0.3081; classes class 0") for w in warnings), warnings
    assert any("conv: folded" in m.value for m in at.main.markdown)  # its batch norm went into the convolution

    # Given in the sidebar's fields, the facts are the user's and the marks go
    at.text_input(key="onnx_mean").set_value("0.3")
    at.text_input(key="onnx_std").set_value("0.3")
    at.text_input(key="onnx_classes").set_value("0,1,2,3,4,5,6,7,8,9").run()
    assert_healthy(at)
    assert "assumed" not in _banner(at)
    [facts] = [frame.value for frame in at.dataframe if "origin" in frame.value.columns]
    assert set(facts["origin"]) == {"given (option or field)", "read from the network"}
    assert not any(w.value.startswith("Assumed") for w in at.warning)


def _dynamic_columns(path: Path) -> list[str]:
    """``st.columns(...)`` calls whose spec is not a non-empty literal (an int > 0 or a list of numbers)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "columns"):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "st"):
            continue
        spec = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "spec"), None)
        literal_int = isinstance(spec, ast.Constant) and isinstance(spec.value, int) and spec.value > 0
        literal_list = isinstance(spec, (ast.List, ast.Tuple)) and spec.elts and all(isinstance(e, ast.Constant) for e in spec.elts)
        if not (literal_int or literal_list):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_st_columns_takes_a_spec_that_could_be_empty():
    """A computed spec (``len(facts)``) goes through ``app.columns.columns``, which draws nothing for 0."""
    offenders = [hit for path in sorted((ROOT / "app").rglob("*.py")) if path.name != "columns.py" for hit in _dynamic_columns(path)]
    assert offenders == []


def test_the_columns_helper_draws_nothing_for_an_empty_spec(monkeypatch):
    from app import columns as module

    calls = []
    monkeypatch.setattr(module.st, "columns", lambda spec, **kw: calls.append(spec) or [object()] * (spec if isinstance(spec, int) else len(spec)))
    assert module.columns(0) == [] and module.columns([]) == [] and calls == []
    assert len(module.columns(3, gap="small")) == 3 and len(module.columns([1, 2])) == 2 and calls == [3, [1, 2]]
