"""Issue 24.21: every numeric timm option is bounded before anything is built (also on a shared
server), errors name the option, and a bad option in a link is dropped with a message while the
rest of the link applies. Before this fix: ``depth=20000`` built on the meta device for > 180 s at
2-4.5 GB; ``num_heads=0``/``patch_size=0`` raised ZeroDivisionError; ``mlp_ratio=inf`` an
OverflowError (and the whole link was dropped); ``img_size=2048``/``4096`` passed the input caps."""

from __future__ import annotations

import pytest
from bounded_run import run_bounded

from neuronviz.core.models import timm_source as ts
from neuronviz.infra.errors import InputError
from neuronviz.workflows import session_record as session

pytest.importorskip("timm")
VIT = "timm:vit_tiny_patch16_224"


@pytest.mark.slow
@pytest.mark.parametrize("shared", ["0", "1"])
def test_depth_20000_is_refused_before_building_in_a_fresh_process(shared):
    out = run_bounded(
        f"create_model('{VIT}?depth=20000', weights=None, device='cpu')",
        "from neuronviz.core.models import create_model\nimport timm",
        env={"NEURONVIZ_SHARED_SERVER": shared},
    )
    assert out["error"] == "InputError", out
    assert "depth=20000 is outside 1..64" in out["message"] and "Nothing was built" in out["message"], out
    assert out["seconds"] < 3.0 and out["delta_mb"] < 50, out


@pytest.mark.parametrize(
    "options, words",
    [
        ("depth=300000", "depth=300000 is outside 1..64"),
        ("num_heads=0", "num_heads=0 is outside 1..64"),
        ("patch_size=0", "patch_size=0 is outside 1..64"),
        ("mlp_ratio=inf", "mlp_ratio=inf is not a finite number"),
        ("mlp_ratio=nan", "mlp_ratio=nan is not a finite number"),
        ("img_size=2048", "img_size=2048 is outside 8..1024"),
        ("img_size=4096", "img_size=4096 is outside 8..1024"),
        # own hostile cases
        ("depth=-5", "depth=-5 is outside 1..64"),
        ("depth=2.5", "depth=2.5 is not a whole number"),
        ("patch_size=1", "makes 50,176 patch tokens"),  # the default 224 px: attention over 50 k tokens
        ("embed_dim=10000000", "embed_dim=1e+07 is outside 8..4096"),
        ("num_classes=1", "num_classes=1 is outside 2..100000"),
        ("some_width=1e300", "numeric options are at most 4,096"),
    ],
)
def test_each_bad_option_is_refused_naming_it(options, words):
    with pytest.raises(InputError) as caught:
        ts.parse_spec(f"{VIT}?{options}")
    assert words in str(caught.value), str(caught.value)
    assert caught.value.ui_hint is None or options.split("=")[0] in caught.value.ui_hint or "patch" in caught.value.ui_hint


def test_a_shared_server_caps_img_size_at_512(monkeypatch):
    assert ts.parse_spec(f"{VIT}?img_size=768").kwargs["img_size"] == 768
    monkeypatch.setenv("NEURONVIZ_SHARED_SERVER", "1")
    with pytest.raises(InputError, match=r"img_size=768 is outside 8..512 .*shared server"):
        ts.parse_spec(f"{VIT}?img_size=768")
    with pytest.raises(InputError, match="up to 1,024 are allowed"):  # 512/8 = 64² tokens
        ts.parse_spec(f"{VIT}?img_size=512&patch_size=8")


def test_a_bad_option_in_a_link_is_dropped_with_a_message_and_the_rest_applies():
    record, messages = session.from_query({"model": f"{VIT}?mlp_ratio=inf&depth=2&img_size=32&patch_size=8", "attack": "fgsm", "eps": "0.1"})
    assert record.model == f"{VIT}?depth=2&img_size=32&patch_size=8"
    assert record.attack == "fgsm" and record.params["eps"] == pytest.approx(0.1)
    assert messages == [
        "The link's model option mlp_ratio='inf' was not used (mlp_ratio=inf is not a finite number): timm's default is used instead."
    ]
    record, messages = session.from_query({"model": f"{VIT}?img_size=1024&patch_size=4&depth=2"})
    assert record.model == f"{VIT}?depth=2" and "65,536 patch tokens" in messages[0]


def test_good_options_still_build():
    model = ts.TimmSource().load(f"{VIT}?img_size=32&patch_size=8&depth=2&num_heads=3", weights=None)
    assert model.input_size == (32, 32)
