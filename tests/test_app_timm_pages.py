"""Every page on a timm ViT and a timm ConvNeXt (issue 16): random initialisation, small configs.

One browser session per model: the typed timm spec in the sidebar, then every page in turn. Each
page runs without an exception or an error message, and the analysis pages draw their charts;
on the ViT the Neurons page offers the transformer's layers by block (heads, MLP hidden units,
block outputs) with hidden units, not tokens, as neurons.
"""

from __future__ import annotations

import pytest
from apptest import MAIN, assert_healthy, errors
from streamlit.testing.v1 import AppTest

from neuronviz.core.models import timm_source as ts
from neuronviz.methods.influence import probe_layers

TINY_VIT = "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2"
# ConvNeXt takes any input size; atto is the smallest of the family (3.7 M parameters, 224×224).
CONVNEXT = "timm:convnext_atto"

ANALYSIS_PAGES = ("attack", "neurons", "defences", "figure")
OTHER_PAGES = ("filters", "sensitivity", "batch", "model_image", "learn", "about")


@pytest.mark.parametrize("spec", [TINY_VIT, CONVNEXT], ids=["vit", "convnext"])
def test_every_page_runs_on_a_timm_model(spec, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: random initialisation
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    at.sidebar.selectbox(key="model_name").set_value("timm:*").run()
    at.sidebar.text_input(key="timm_spec").set_value(spec[len("timm:"):]).run()
    assert_healthy(at)
    assert any(f"**Model** `{spec}`" in m.value and "random initialisation" in m.value for m in at.markdown)
    model = at.session_state["state.selection"].model
    for page in (*ANALYSIS_PAGES, *OTHER_PAGES):
        at.switch_page(f"app_pages/{page}.py")
        at.run()
        assert_healthy(at)
        assert errors(at) == [], (page, errors(at))
        if page in ANALYSIS_PAGES:
            assert len(at.get("plotly_chart")) >= 1, page
        if page == "neurons" and spec == TINY_VIT:
            layers = {info.name: info for info in probe_layers(model)}
            options = at.selectbox(key="neurons.layer").options
            assert {"blocks.0.attn", "blocks.0.mlp.act", "blocks.1"} <= set(layers)
            assert layers["blocks.0.mlp.act"].neurons == 4 * 192 and layers["blocks.0.attn"].neurons == 3
            assert any("blocks.0.mlp.act" in option for option in options)
    assert ts is not None
