"""The embedded digits vision transformer: timm's VisionTransformer, small, and as accurate on the
digits test split as its card says (re-measured here, not read)."""

from __future__ import annotations

import pytest
import torch

from neuronviz.core.models import assets_dir, load_model, model_card

NAME = "digits-vit"


@pytest.fixture(scope="module")
def vit():
    return load_model(NAME, device="cpu")


def test_it_is_a_timm_vision_transformer_with_the_usual_module_names(vit):
    from timm.models.vision_transformer import VisionTransformer

    assert isinstance(vit.net, VisionTransformer)
    names = dict(vit.net.named_modules())
    assert {"patch_embed.proj", "blocks.0.attn.proj", "blocks.3.mlp.act", "head"} <= set(names)
    assert names["patch_embed.proj"].kernel_size == (4, 4) and len(vit.net.blocks) == 4
    assert vit.input_size == (28, 28) and vit.channels == 1 and vit.class_names == tuple("0123456789")
    weights = assets_dir() / "models" / f"{NAME}.safetensors"
    assert weights.stat().st_size < 2_000_000


def test_test_accuracy_is_the_cards_and_at_least_98_percent(vit, digits_test):
    x, y = digits_test
    with torch.no_grad():
        measured = float((vit(x).argmax(1) == y).float().mean())
    card = model_card(NAME)
    assert measured >= 0.98
    assert measured == pytest.approx(card["metrics"]["clean_accuracy"], abs=0.005)
    assert card["metrics"]["test_images"] == 360 == len(y)
    assert card["command"] == f"python -m neuronviz train {NAME}" and card["seed"] == 0
    attacks = {(row["attack"], row["eps"]) for row in card["metrics"]["attacks"]}
    assert attacks == {("FGSM", 0.05), ("FGSM", 0.1), ("PGD", 0.05), ("PGD", 0.1)}
