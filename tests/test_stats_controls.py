"""neuronviz.methods.stats (intervals from scipy, "not defined" instead of ±1) and neuronviz.methods.controls
(matched random perturbations of the attack's norm and size)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from neuronviz.methods import controls, stats


def test_rate_is_scipys_wilson_interval():
    r = stats.rate(81, 100)
    ci = binomtest(81, 100).proportion_ci(method="wilson")
    assert (r.k, r.n, r.share) == (81, 100, 0.81)
    assert r.low == pytest.approx(ci.low) and r.high == pytest.approx(ci.high)
    assert r.to_dict()["n"] == 100
    assert "95% CI" in r.text() and "n = 100" in r.text()


def test_rate_of_nothing_is_not_defined():
    r = stats.rate(0, 0, empty_reason="no image was fooled")
    assert r.share is None and not r.defined
    assert r.text() == "not defined (no image was fooled)"
    with pytest.raises(ValueError):
        stats.rate(3, 2)


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ([1, 2], [2, 1], "at least 3"),
        ([1, 2, 3], [5, 5, 5], "constant"),
        ([0, 0, 0, 0.7], [0.1, 0.2, 0.3, 0.4], "at most one non-zero"),  # one logit with influence
    ],
)
def test_degenerate_correlations_are_not_minus_one(a, b, reason):
    c = stats.correlation(a, b)
    assert c.value is None and reason in (c.reason or "")
    assert c.text().startswith("ρ not defined")
    assert stats.mean_defined([0.5, c.value, 0.7]) == (pytest.approx(0.6), 2, 1)


def test_correlation_interval_contains_the_value_and_p_is_small_for_a_strong_link():
    rng = np.random.default_rng(0)
    a = rng.normal(size=40)
    c = stats.correlation(a, a + 0.3 * rng.normal(size=40), seed=1)
    assert c.low is not None and c.high is not None and c.low <= c.value <= c.high
    assert c.value > 0.8 and c.p is not None and c.p < 0.01
    # Unrelated values: the interval spans zero.
    u = stats.correlation(rng.normal(size=40), rng.normal(size=40), seed=1)
    assert u.low < 0 < u.high


def test_paired_difference_resamples_rows_and_tests_the_sign():
    rng = np.random.default_rng(0)
    attack = rng.random((30, 8)) < 0.8
    control = rng.random((30, 8)) < 0.5
    d = stats.paired_difference(attack, control)
    assert d.n == 30
    assert d.value == pytest.approx(attack.mean() - control.mean())
    assert d.distinguishable and d.p < 0.01
    same = stats.paired_difference(control, control)
    assert same.value == 0 and not same.distinguishable


def test_fdr_is_benjamini_hochberg():
    adjusted = stats.fdr([0.01, 0.04, np.nan, 0.03])
    assert np.isnan(adjusted[2])
    assert adjusted[[0, 1, 3]] == pytest.approx([0.03, 0.04, 0.04])


@pytest.mark.parametrize("norm", ["Linf", "L2", "L0"])
def test_matched_control_has_the_attacks_size(norm):
    torch.manual_seed(0)
    x = torch.rand(4, 3, 10, 10) * 0.5 + 0.25  # away from the clip bounds
    delta = torch.zeros_like(x)
    if norm == "L0":
        delta[:, :, 2, 3] = 0.2
        delta[:, :, 5, 5] = -0.2
    else:
        delta = 0.05 * torch.randn_like(x).sign() * torch.linspace(0.5, 1.0, 4).view(4, 1, 1, 1)
    adv = (x + delta).clamp(0, 1)
    control = controls.matched_control(x, adv, norm, seed=3)
    got, want = controls.control_norms(x, control), controls.control_norms(x, adv)
    key = norm.lower()
    if norm == "L0":
        assert torch.equal(got["l0"], want["l0"])  # two positions each
    else:
        assert torch.allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(control, adv)
    assert control.min() >= 0 and control.max() <= 1


def test_matched_control_is_seeded_per_image():
    x = torch.rand(3, 1, 8, 8)
    adv = (x + 0.1).clamp(0, 1)
    whole = controls.matched_control(x, adv, "Linf", seed=7)
    assert torch.equal(whole, controls.matched_control(x, adv, "Linf", seed=7))
    # image i's control depends on (seed, i) only: the same image in the same position agrees
    assert torch.equal(whole[:2], controls.matched_control(x[:2], adv[:2], "Linf", seed=7))
    assert not torch.equal(whole, controls.matched_control(x, adv, "Linf", seed=8))


def test_control_norm_follows_the_attack():
    assert controls.control_norm_for("pgd") == "Linf"
    assert controls.control_norm_for("pgdl2") == "L2"
    assert controls.control_norm_for("cw") == "L2"
    assert controls.control_norm_for("jsma") == "L0"


def test_the_batched_spearman_equals_scipys_for_every_resample():
    """correlation() resamples with one batched ρ (ties and constant ranks included): it must be scipy's."""
    from scipy.stats import spearmanr

    from neuronviz.methods.stats import _spearman_along_last_axis

    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(50, 9)).astype(float)  # many ties
    y = x + rng.integers(0, 3, size=(50, 9))
    x[0] = 1.0  # one resample with constant ranks
    batched = _spearman_along_last_axis(x, y)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one_by_one = np.array([spearmanr(a, b).statistic for a, b in zip(x, y)])
    assert np.isnan(batched[0]) and np.isnan(one_by_one[0])
    assert np.allclose(batched[1:], one_by_one[1:], atol=1e-12)


def test_a_correlation_without_an_interval_says_why():
    from neuronviz.methods.stats import correlation

    few = correlation([1, 1, 1, 2, 2], [3, 3, 3, 4, 5])
    assert few.value is not None and few.low is None and few.high is None
    assert "95% CI not defined (bootstrap resamples of the 5 pairs with constant ranks)" in few.text()
    assert few.to_dict()["interval_reason"] == "bootstrap resamples of the 5 pairs with constant ranks"
    enough = correlation(np.arange(30.0), np.arange(30.0) ** 2 + np.sin(np.arange(30.0)))
    assert enough.low is not None and enough.interval_reason is None and "not defined" not in enough.text()
