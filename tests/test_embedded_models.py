"""The embedded models are what their cards say: re-measured here, independently of the cards."""

import hashlib
import json

import pytest
import torch
import torchattacks

from neuronviz.core.models import EMBEDDED, assets_dir, load_model, model_card
from neuronviz.data.datasets import digits
from neuronviz.training.digits import RECIPES, train

REQUIRED_CLEAN = {"digits-cnn": 0.97, "digits-resnet": 0.97, "digits-cnn-robust": 0.93, "digits-cnn-sns": 0.93, "digits-vit": 0.98}
CARD_FIELDS = {"name", "architecture", "data", "seed", "command", "metrics", "normalization", "weights_sha256"}


def _accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _pgd_accuracy(model, x, y, eps=0.1):
    torch.manual_seed(0)
    adv = torchattacks.PGD(model, eps=eps, alpha=0.01, steps=20, random_start=True)(x, y)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    return _accuracy(model, adv, y)


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_card_and_file_agree(name):
    card = model_card(name)
    assert CARD_FIELDS <= set(card)
    weights = assets_dir() / "models" / card["weights_file"]
    assert weights.stat().st_size < 3_000_000
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["weights_sha256"]
    assert card["command"].startswith(f"python -m neuronviz train {name}")
    assert card["data"]["train_images"] == 1437 and card["data"]["test_images"] == 360


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_clean_accuracy_remeasured_matches_card(name, digits_test):
    x, y = digits_test
    model = load_model(name, device="cpu")
    measured = _accuracy(model, x, y)
    assert measured >= REQUIRED_CLEAN[name]
    assert measured == pytest.approx(model_card(name)["metrics"]["clean_accuracy"], abs=1e-4)


def test_robust_model_resists_pgd_clearly_better(digits_test):
    x, y = digits_test
    standard = _pgd_accuracy(load_model("digits-cnn", device="cpu"), x, y)
    robust = _pgd_accuracy(load_model("digits-cnn-robust", device="cpu"), x, y)
    assert robust >= standard + 0.4, (standard, robust)
    card_rows = {(r["attack"], r["eps"]): r["accuracy"] for r in model_card("digits-cnn-robust")["metrics"]["attacks"]}
    assert robust == pytest.approx(card_rows[("PGD", 0.1)], abs=0.03)  # PGD's random start: small spread


@pytest.mark.slow
def test_training_reproduces_the_card(tmp_path):
    """`python -m neuronviz train digits-cnn` from scratch lands on the shipped card's accuracy."""
    card = train("digits-cnn", out_dir=tmp_path)
    shipped = model_card("digits-cnn")
    assert card["metrics"]["clean_accuracy"] >= 0.97
    assert card["metrics"]["clean_accuracy"] == pytest.approx(shipped["metrics"]["clean_accuracy"], abs=0.011)
    reloaded = load_model(tmp_path / "digits-cnn.safetensors", device="cpu")
    x, y = digits("test")
    assert _accuracy(reloaded, x, y) == pytest.approx(card["metrics"]["clean_accuracy"], abs=1e-4)
    assert json.loads((tmp_path / "digits-cnn.json").read_text())["seed"] == RECIPES["digits-cnn"].seed
