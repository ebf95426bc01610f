"""Fragility with its control: the matched noise's targeting beside the attack's, the tests of the
difference, the one definition of attack success, and the page's computed verdict."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from neuronviz.core.models import wrap_model
from neuronviz.methods import fragility
from neuronviz.methods.fragility import fragility_control, per_image_shares, success_rate
from neuronviz.workflows import batch
from tests.test_fragility import Brightness


def test_success_is_the_projects_one_definition():
    """Filters count success as Batch and evaluate do: adversarial prediction ≠ clean prediction."""
    clean = torch.tensor([0, 1, 2, 0, 4])  # image 3 is misclassified already: it counts too
    adv = torch.tensor([1, 1, 0, 3, 4])  # 0, 2 and 3 changed
    rate = success_rate(clean, adv)
    assert (rate.k, rate.n) == (3, 5) and rate.share == pytest.approx(0.6)
    assert rate.low < 0.6 < rate.high
    assert fragility.SUCCESS_DEFINITION == batch.ATTACK_SUCCESS_DEFINITION
    empty = success_rate(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert empty.share is None and empty.reason == "no images"


@pytest.fixture(autouse=True)
def _fewer_resamples(monkeypatch):
    monkeypatch.setattr(fragility, "RESAMPLES", 199)  # the tests' intervals need no third digit


def _outputs(n=30, filters=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, filters, 5, 5, generator=g) + 0.5, g


def test_a_targeted_filter_is_specific_and_noise_like_change_is_not():
    clean, g = _outputs()
    noise = clean + 0.1 * (torch.rand(clean.shape, generator=g) - 0.5)
    attack = noise.clone()
    attack[:, 0] += 0.3  # the attack moves filter 0 far more than noise does
    delta = torch.tensor([-0.4, -0.1, 0.0, -0.05])
    specific = fragility_control(clean, attack, noise, delta, fragility.targeting(clean, attack), [0], "Linf", 0, 0.9)
    assert specific.specificity.value > 0 and specific.specificity.distinguishable
    assert specific.excess[0] > 0 and specific.excess_q[0] < 0.05
    same = fragility_control(clean, noise, noise, delta, fragility.targeting(clean, noise), [0], "Linf", 0, 0.9)
    assert same.specificity.value == pytest.approx(0.0) and not same.specificity.distinguishable
    # the attack's targeting equals the noise's: ρ of the two is 1 (four distinct values, defined)
    assert same.attack_vs_control.value == pytest.approx(1.0)
    shares = per_image_shares(clean, attack)
    assert torch.allclose(shares.sum(1), torch.ones(shares.shape[0]))


def test_two_filters_give_no_correlation_not_plus_one():
    model = wrap_model(Brightness(), [0.0], [1.0], (8, 8), ["dark", "bright"], name="brightness")
    values = torch.tensor([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95])
    x = values.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()
    report = fragility.first_layer_fragility(model, x, (values > 0.5).long(), attack="fgsm", eps=0.1)
    rho = report.rho()
    assert rho.value is None and "at least 3" in rho.reason
    assert report.control is not None and report.control.norm == "Linf"
    # noise of the same L∞ on a 1×1 copy filter: mean |Δa| = 0.1 but for the clipping at 0 and 1; the idle filter 0
    assert report.control.targeting_raw[0] == pytest.approx(0.2, abs=0.02) and report.control.targeting_raw[1] == 0
    assert report.success.k == 2 and report.success.n == 10  # 0.45 and 0.55 flip
    document = report.to_dict()
    json.dumps(document, allow_nan=False, default=str)
    assert document["success_definition"] == fragility.SUCCESS_DEFINITION
    assert document["specific_to_attack"] is False  # the fragile filter takes all of both changes
    assert "targeting_control" in report.to_frame()


def test_page_sentence_follows_the_numbers():
    from app.app_pages.filters import specificity_sentence

    clean, g = _outputs()
    noise = clean + 0.1 * (torch.rand(clean.shape, generator=g) - 0.5)
    attack = noise.clone()
    attack[:, 0] += 0.3
    model = wrap_model(Brightness(), [0.0], [1.0], (8, 8), ["dark", "bright"], name="brightness")
    values = torch.linspace(0.05, 0.95, 10)
    base = fragility.first_layer_fragility(model, values.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone(),
                                           (values > 0.5).long(), eps=0.1)
    delta = torch.tensor([-0.4, -0.1, 0.0, -0.05])
    labels = ("fragile", "neutral", "neutral", "robust")
    score = torch.tensor([1.0, 0.3, 0.2, 0.0])

    def report(adversarial):
        control = fragility_control(clean, adversarial, noise, delta, fragility.targeting(clean, adversarial), [0], "Linf", 0, 0.9)
        return replace(base, labels=labels, score=score, control=control)

    assert specificity_sentence(report(attack)).startswith("The fragile filters are specific to the attack")
    less = noise.clone()
    less[:, 1:] += 0.3  # the attack moves the other filters: the fragile one takes less than under noise
    assert "less than the noise" in specificity_sentence(report(less))
    assert "cannot be told from zero" in specificity_sentence(report(noise))


def test_dropout_chart_draws_the_noise_targeting_beside_the_attack():
    from neuronviz.figures.filters import dropout_chart

    model = wrap_model(Brightness(), [0.0], [1.0], (8, 8), ["dark", "bright"], name="brightness")
    values = torch.linspace(0.05, 0.95, 10)
    report = fragility.first_layer_fragility(model, values.view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone(),
                                             (values > 0.5).long(), eps=0.1)
    fig = dropout_chart(report)
    noise = [trace for trace in fig.data if trace.name == "noise of the same L∞"]
    assert len(noise) == 1
    assert list(noise[0].y) == pytest.approx((100 * report.control.targeting).tolist())
