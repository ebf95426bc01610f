"""Issue 15.9 (cold start of First-layer filters): the compress/amplify curve does not attack the
unchanged model again for every β; it reuses the dropout report's own attack, with the same numbers."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import neuronviz.methods.fragility as fragility
from neuronviz.methods.fragility import evaluate_rescaled, first_layer_fragility, inputs_digest


@pytest.fixture
def counted(monkeypatch):
    """The models each fragility.run_attack call attacked (by name)."""
    calls: list[str] = []
    original = fragility.run_attack

    def counting(model, *args, **kwargs):
        calls.append(model.name)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(fragility, "run_attack", counting)
    return calls


@pytest.fixture
def small_set(digits_test):
    x, y = digits_test
    return x[:24].clone(), y[:24].clone()


def _fields(result):
    return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in result.__dict__.items()}


@pytest.mark.parametrize("attack, params", [("fgsm", {}), ("pgd", {"steps": 5})])
def test_curve_attacks_the_unchanged_model_only_in_the_dropout(digits_cnn, small_set, counted, attack, params):
    x, y = small_set
    report = first_layer_fragility(digits_cnn, x, y, attack=attack, eps=0.1, params=params, seed=3)
    assert counted == [digits_cnn.name]  # the dropout's one attack
    assert report.inputs_digest == inputs_digest(x, y)
    counted.clear()
    betas = (0.1, 0.5, 1.0)
    reused = [evaluate_rescaled(digits_cnn, x.clone(), y.clone(), report, beta=b, seed=3) for b in betas]
    # one attack per β, of the rescaled copy only (the old code attacked the unchanged model too: 2 per β)
    assert len(counted) == len(betas) and digits_cnn.name not in counted
    # the same numbers as attacking the unchanged model again (a report without the reuse fields)
    counted.clear()
    plain = replace(report, attack_clean_pred=None, attack_adv_pred=None, inputs_digest=None)
    again = [evaluate_rescaled(digits_cnn, x, y, plain, beta=b, seed=3) for b in betas]
    assert counted.count(digits_cnn.name) == len(betas)
    for a, b in zip(reused, again):
        assert _fields(a) == _fields(b)


def test_other_images_or_seed_run_the_attack_again(digits_cnn, small_set, counted):
    x, y = small_set
    report = first_layer_fragility(digits_cnn, x, y, attack="pgd", eps=0.1, params={"steps": 5}, seed=0)
    plain = replace(report, inputs_digest=None)
    for images, labels, seed in ((x[:12], y[:12], 0), (x, y, 1), (x, y, None)):
        counted.clear()
        result = evaluate_rescaled(digits_cnn, images, labels, report, beta=0.3, seed=seed)
        assert counted.count(digits_cnn.name) == 1, (images.shape, seed)  # "before" is measured on these inputs
        if seed is not None:
            assert _fields(result) == _fields(evaluate_rescaled(digits_cnn, images, labels, plain, beta=0.3, seed=seed))
    # changing one label changes the digest: the attack moves away from that label
    flipped = y.clone()
    flipped[0] = (flipped[0] + 1) % 10
    counted.clear()
    evaluate_rescaled(digits_cnn, x, flipped, report, beta=0.3, seed=0)
    assert counted.count(digits_cnn.name) == 1
