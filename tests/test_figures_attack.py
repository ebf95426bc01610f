"""neuronviz.figures.attack: the values, colours and axis titles in each figure, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import plotly.io as pio
import pytest
import torch

from neuronviz.figures import INK, PALETTE, TEMPLATE, prediction_bars
from neuronviz.figures import attack as fa
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import AttackTrace
from neuronviz.methods.defences import Restoration
from neuronviz.workflows.sweep import EpsSweep

DIGITS = [str(i) for i in range(10)]


def _assert_project_look(fig) -> None:
    assert fig.layout.template == pio.templates[TEMPLATE]
    assert fig.layout.font.size >= 12
    assert fig.layout.title.text
    json.loads(fig.to_json())  # serialisable for st.plotly_chart and export


def _restoration(trace: dict, extras: dict | None = None, restored=None, probs=None) -> Restoration:
    restored = torch.zeros(1, 1, 4, 4) if restored is None else restored
    probs = torch.full((1, 10), 0.1) if probs is None else probs
    return Restoration(
        defense="test",
        params={},
        restored=restored,
        prediction=probs.argmax(1),
        probs=probs,
        trace=trace,
        extras=extras or {},
        notes=(),
        seconds=0.0,
    )


# -- perturbation ---------------------------------------------------------------------------------


def test_perturbation_is_a_diverging_map_centred_on_zero_with_the_exact_values():
    delta = torch.zeros(1, 1, 3, 4)
    delta[0, 0, 0, 0], delta[0, 0, 2, 3], delta[0, 0, 1, 1] = 0.1, -0.05, 0.025
    fig = fa.perturbation_figure(delta)
    heat = fig.data[0]
    np.testing.assert_allclose(np.asarray(heat.z), delta[0, 0].numpy(), atol=1e-7)
    assert heat.zmin == pytest.approx(-0.1) and heat.zmax == pytest.approx(0.1) and heat.zmid == 0
    scale = [tuple(stop) for stop in heat.colorscale]
    assert scale[0] == (0.0, PALETTE["front"]) and scale[-1] == (1.0, PALETTE["adversarial"])  # figures.DIVERGING
    assert scale[1] == (0.5, "#FFFFFF")
    assert "pixel units" in heat.colorbar.title.text
    assert list(heat.colorbar.tickvals) == pytest.approx([-0.1, 0.0, 0.1])  # three: they fit a narrow column
    assert heat.colorbar.tickangle == 0
    assert fig.layout.title.text == "Perturbation ×10"
    assert fa.perturbation_amplification(delta) == pytest.approx(10.0)
    assert fig.layout.yaxis.scaleanchor == "x"  # square pixels
    _assert_project_look(fig)


def test_perturbation_of_nothing_gets_a_one_grey_level_scale():
    fig = fa.perturbation_figure(torch.zeros(1, 4, 4))
    assert fig.data[0].zmax == pytest.approx(1 / 255)
    assert fa.perturbation_range(torch.zeros(1, 4, 4)) == pytest.approx(1 / 255)
    assert fa.perturbation_amplification(torch.zeros(1, 4, 4)) == pytest.approx(255.0)


def test_perturbation_of_a_colour_image_is_the_channel_mean():
    delta = torch.stack([torch.full((2, 2), 0.3), torch.full((2, 2), 0.0), torch.full((2, 2), -0.3)])
    delta[0, 0, 0] = 0.6
    fig = fa.perturbation_figure(delta)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), delta.mean(0).numpy(), atol=1e-7)
    assert fig.data[0].zmax == pytest.approx(0.6)  # the range is the largest change in any channel
    assert "RGB" in fig.data[0].hovertemplate


@pytest.mark.parametrize(
    ("delta", "match"),
    [
        (torch.zeros(2, 1, 4, 4), "batch"),
        (torch.zeros(2, 4, 4), "C in"),
        (torch.full((1, 4, 4), 1.5), "≤ 1"),
        (torch.full((1, 4, 4), float("nan")), "finite"),
        (np.zeros((1, 4, 4)), "torch.Tensor"),
    ],
)
def test_perturbation_refusals(delta, match):
    with pytest.raises(InputError, match=match):
        fa.perturbation_figure(delta)


# -- trajectory -------------------------------------------------------------------------------------


def _trace(unit: str = "step") -> AttackTrace:
    loss = torch.tensor([[0.1, 2.0], [0.5, 2.1], [1.2, 2.2], [2.4, 2.3]])
    predicted = torch.tensor([[0, 5], [0, 5], [8, 5], [8, 5]])
    return AttackTrace(loss=loss, predicted=predicted, unit=unit)


def test_trajectory_holds_the_loss_and_predictions_of_the_chosen_image():
    fig = fa.trajectory_figure(_trace(), DIGITS, image=0, benign_class=0)
    loss, classes = fig.data
    assert list(loss.x) == [1, 2, 3, 4]
    np.testing.assert_allclose(loss.y, [0.1, 0.5, 1.2, 2.4], rtol=1e-6)
    assert loss.line.color == PALETTE["adversarial"]
    assert list(classes.y) == [0, 0, 8, 8]
    assert list(classes.marker.color) == [PALETTE["clean"]] * 2 + [PALETTE["adversarial"]] * 2
    vlines = [s for s in fig.layout.shapes if s.type == "line"]
    assert vlines and {s.x0 for s in vlines} == {3}  # the first step predicted as something else than 0
    assert any("leaves 0" in a.text for a in fig.layout.annotations)
    assert fig.layout.xaxis2.title.text == "Attack step (iteration)"
    assert fig.layout.yaxis.title.text == "CE to clean prediction 0 (nats)"  # what the trace measures (24.11)
    assert list(fig.layout.yaxis2.ticktext) == ["0", "8"]
    _assert_project_look(fig)


def test_trajectory_second_image_targeted_and_per_forward_pass():
    fig = fa.trajectory_figure(_trace("forward pass"), DIGITS, image=1, benign_class=5, targeted=True)
    np.testing.assert_allclose(fig.data[0].y, [2.0, 2.1, 2.2, 2.3], rtol=1e-6)
    assert not [s for s in fig.layout.shapes if s.type == "line"]  # never leaves class 5
    assert fig.layout.xaxis2.title.text.startswith("Forward pass")
    assert "target" in fig.layout.yaxis.title.text


@pytest.mark.parametrize(
    ("trace", "kwargs", "match"),
    [
        (object(), {}, "AttackTrace"),
        (AttackTrace(torch.zeros(3, 1), torch.zeros(2, 1, dtype=torch.long), "step"), {}, r"\(T, N\)"),
        (AttackTrace(torch.zeros(0, 1), torch.zeros(0, 1, dtype=torch.long), "step"), {}, "empty"),
        (_trace(), {"image": 2}, "outside"),
        (_trace(), {"benign_class": 12}, "outside the 10 class names"),
    ],
)
def test_trajectory_refusals(trace, kwargs, match):
    with pytest.raises(InputError, match=match):
        fa.trajectory_figure(trace, DIGITS, **kwargs)


# -- ε sweep ------------------------------------------------------------------------------------------


def _sweep(norm: str = "Linf") -> EpsSweep:
    eps = torch.tensor([0.0, 0.05, 0.1, 0.2], dtype=torch.float64)
    probs = torch.full((4, 10), 0.0)
    probs[:, 0] = torch.tensor([0.9, 0.6, 0.3, 0.05])
    probs[:, 8] = 1.0 - probs[:, 0]
    e = len(eps)
    return EpsSweep(
        attack="pgd",
        budget_param="eps",
        norm=norm,
        params={},
        eps=eps,
        clean=torch.zeros(1, 1, 4, 4),
        clean_probs=probs[0],
        benign_class=0,
        labels=torch.tensor([0]),
        target=None,
        adversarial=torch.zeros(e, 1, 4, 4),
        probs=probs,
        prediction=probs.argmax(1),
        success=probs.argmax(1) != 0,
        linf=eps.float(),
        l2=eps.float(),
        layer="features.7",
        front=0.05,
        tail=0.05,
        front_overlap=torch.tensor([1.0, 0.75, 0.5, 0.25]),
        spearman=torch.tensor([1.0, 0.9, 0.7, -0.2]),
        front_influence_change=torch.zeros(e),
        tail_influence_change=torch.zeros(e),
        seconds={"attacks": 0.0, "influence": 0.0},
    )


def test_eps_sweep_figure_values_colours_and_axes():
    sweep = _sweep()
    fig = fa.eps_sweep_figure(sweep, DIGITS, selected_eps=0.05, chosen_eps=0.1)
    benign, overlap, rho = fig.data
    np.testing.assert_allclose(benign.x, [0.0, 0.05, 0.1, 0.2])
    np.testing.assert_allclose(benign.y, [90.0, 60.0, 30.0, 5.0], rtol=1e-6)
    assert benign.line.color == PALETTE["clean"]
    # attack succeeds where 8 wins: the last two budgets
    assert list(benign.marker.color) == [PALETTE["clean"]] * 2 + [PALETTE["adversarial"]] * 2
    assert list(benign.marker.symbol) == ["circle", "circle", "x", "x"]
    np.testing.assert_allclose(overlap.y, [1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(rho.y, [1.0, 0.9, 0.7, -0.2], rtol=1e-6)
    assert overlap.line.color == PALETTE["front"] and rho.line.color == PALETTE["middle"]
    assert fig.layout.yaxis2.range[0] < -0.2  # a negative ρ stays on the chart
    lines = sorted({s.x0 for s in fig.layout.shapes if s.type == "line"})  # one per subplot
    assert lines == pytest.approx([0.05, 0.1])
    assert "pixel units" in fig.layout.xaxis2.title.text and "/255" in fig.layout.xaxis2.title.text
    assert "12.75/255" in list(fig.layout.xaxis.ticktext)[1]  # the rounding of captions.eps_label
    assert "(%)" in fig.layout.yaxis.title.text and "unitless" in fig.layout.yaxis2.title.text
    assert fig.layout.showlegend is True
    _assert_project_look(fig)


def test_eps_sweep_figure_l2_budget_has_no_255_ticks_and_few_labels():
    fig = fa.eps_sweep_figure(_sweep("L2"), DIGITS)
    assert "L2" in fig.layout.xaxis2.title.text
    assert not any("/255" in t for t in fig.layout.xaxis.ticktext)
    assert not [s for s in fig.layout.shapes if s.type == "line"]


def test_eps_sweep_figure_draws_each_interval_for_attack_and_control(digits_cnn, digits_test):
    from neuronviz.workflows.sweep import eps_sweep

    sweep = eps_sweep(digits_cnn, digits_test[0][:1], "fgsm", {}, [0.0, 0.1, 0.2])
    fig = fa.eps_sweep_figure(sweep, DIGITS)
    _, overlap, rho, control_overlap, control_rho = fig.data
    for trace, rates in ((overlap, sweep.overlap), (control_overlap, sweep.control_overlap)):
        np.testing.assert_allclose(np.asarray(trace.y) + np.asarray(trace.error_y.array), [r.high for r in rates])
        np.testing.assert_allclose(np.asarray(trace.y) - np.asarray(trace.error_y.arrayminus), [r.low for r in rates])
    # the hover: share, interval and n; the control's also names its true ε (its points sit a little right of it)
    assert list(overlap.customdata) == [r.text() for r in sweep.overlap]
    assert [row[1] for row in control_overlap.customdata] == [r.text() for r in sweep.control_overlap]
    assert [row[0] for row in control_overlap.customdata] == ["0", "0.1", "0.2"]
    np.testing.assert_allclose(np.asarray(control_overlap.x) - np.asarray(overlap.x), fa.CONTROL_DODGE * 0.1)
    for trace, rhos in ((rho, sweep.correlations), (control_rho, sweep.control_correlations)):
        np.testing.assert_allclose(np.asarray(trace.y) + np.asarray(trace.error_y.array), [c.high for c in rhos])
        np.testing.assert_allclose(np.asarray(trace.y) - np.asarray(trace.error_y.arrayminus), [c.low for c in rhos])
    assert "noise" in control_overlap.name and "noise" in control_rho.name
    undefined = eps_sweep(digits_cnn, digits_test[0][:1], "fgsm", {}, [0.0, 0.1], layer="classifier.2")
    _, _, rho, _, _ = fa.eps_sweep_figure(undefined, DIGITS).data
    assert np.isnan(np.asarray(rho.y, dtype=float)).all()  # a gap, not ±1
    assert all(text.startswith("ρ not defined (") for text in rho.customdata)


def test_eps_sweep_figure_refusals():
    with pytest.raises(InputError, match="EpsSweep"):
        fa.eps_sweep_figure(object(), DIGITS)
    with pytest.raises(InputError, match="class names"):
        fa.eps_sweep_figure(_sweep(), ["0", "1"])


# -- NIP --------------------------------------------------------------------------------------------


def test_nip_steps_figure_marks_the_step_back_to_the_benign_class():
    trace = {
        "objective": torch.tensor([[10.0], [12.0], [15.0], [16.0]]),
        "predicted": torch.tensor([[8], [8], [0], [0]]),
    }
    fig = fa.nip_steps_figure(_restoration(trace), benign_class=0, class_names=DIGITS)
    objective, classes = fig.data
    assert list(objective.x) == [0, 1, 2, 3]
    np.testing.assert_allclose(objective.y, [10.0, 12.0, 15.0, 16.0])
    assert objective.line.color == PALETTE["restored"]
    assert list(classes.marker.color) == [PALETTE["adversarial"]] * 2 + [PALETTE["clean"]] * 2
    vlines = [s for s in fig.layout.shapes if s.type == "line"]
    assert vlines and {(s.x0, s.line.color) for s in vlines} == {(2, INK)}
    assert any("back to 0 at step 2" in a.text for a in fig.layout.annotations)
    assert "step" in fig.layout.xaxis2.title.text
    assert "front" in fig.layout.yaxis.title.text and "tail" in fig.layout.yaxis.title.text
    _assert_project_look(fig)


def test_nip_steps_figure_says_when_never_back():
    trace = {"objective": torch.tensor([[1.0], [2.0]]), "predicted": torch.tensor([[8], [3]])}
    fig = fa.nip_steps_figure(_restoration(trace), benign_class=0, class_names=DIGITS)
    assert "never back to 0" in fig.layout.title.text
    assert not [s for s in fig.layout.shapes if s.type == "line"]


def test_nip_steps_figure_refuses_a_restoration_without_objective():
    with pytest.raises(InputError, match="objective"):
        fa.nip_steps_figure(_restoration({"sign": torch.ones(1, 1)}), 0, DIGITS)


def _reactive() -> Restoration:
    trace = {
        "candidates": torch.tensor([[8], [0], [3]]),
        "scores": torch.tensor([[0.92], [0.96], [0.90]]),
        "chosen": torch.tensor([[1]]),
    }
    return _restoration(trace)


def test_candidate_rows_and_scores_figure():
    rows = fa.candidate_rows(_reactive(), DIGITS)
    assert [r["candidate class"] for r in rows] == ["8", "0", "3"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["chosen"] for r in rows] == [False, True, False]
    assert rows[1]["cosine score"] == pytest.approx(0.96)
    fig = fa.reactive_scores_figure(_reactive(), DIGITS)
    np.testing.assert_allclose(fig.data[0].y, [0.92, 0.96, 0.90], rtol=1e-6)
    assert list(fig.data[0].marker.color) == [PALETTE["neutral"], PALETTE["restored"], PALETTE["neutral"]]
    assert "(chosen)" in fig.layout.xaxis.ticktext[1]
    assert fig.layout.yaxis.title.text and fig.layout.xaxis.title.text
    _assert_project_look(fig)
    with pytest.raises(InputError, match="candidates"):
        fa.candidate_rows(_restoration({}), DIGITS)


# -- PSSR -------------------------------------------------------------------------------------------


def test_score_map_holds_the_scores_white_to_adversarial():
    score = torch.tensor([[[0.0, 0.5], [1.0, 2.0]]])
    fig = fa.score_map_figure(score)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), score[0].numpy())
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == pytest.approx(2.0)
    assert [tuple(s) for s in fig.data[0].colorscale] == [(0.0, "#FFFFFF"), (1.0, PALETTE["adversarial"])]
    assert "∂p/∂x" in fig.data[0].colorbar.title.text
    _assert_project_look(fig)
    with pytest.raises(InputError, match="non-negative"):
        fa.score_map_figure(-score)
    with pytest.raises(InputError, match="one"):
        fa.score_map_figure(torch.zeros(2, 3, 3))


def test_mask_figure_paints_only_the_removed_pixels():
    image = torch.linspace(0, 1, 9).reshape(1, 1, 3, 3)
    mask = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    fig = fa.mask_figure(image, mask)
    base, overlay = fig.data
    np.testing.assert_allclose(np.asarray(base.z), image[0, 0].numpy(), atol=1e-7)
    painted = np.asarray(overlay.z, dtype=float)
    assert np.isnan(painted[mask.numpy() == 0]).all() and (painted[mask.numpy() == 1] == 1).all()
    assert {c for _, c in overlay.colorscale} == {PALETTE["adversarial"]}
    assert fig.layout.title.text == "Mask: 2 px removed (22%)"
    with pytest.raises(InputError, match="0 \\(kept\\) and 1"):
        fa.mask_figure(image, mask * 0.5)
    with pytest.raises(InputError, match="does not match"):
        fa.mask_figure(image, torch.zeros(4, 4))


# -- tables and narrow bars ---------------------------------------------------------------------------


def test_decision_rows_hold_predictions_and_distances():
    clean = torch.zeros(1, 1, 2, 2)
    adversarial = torch.tensor([[[[0.1, 0.0], [0.0, 0.0]]]])
    adv_probs = torch.zeros(1, 10)
    adv_probs[0, 8] = 1.0
    restored = torch.tensor([[[[0.0, 0.0], [0.0, 0.3]]]])
    probs = torch.zeros(1, 10)
    probs[0, 0], probs[0, 8] = 0.75, 0.25
    rows = fa.decision_rows(
        clean,
        adversarial,
        adv_probs,
        0,
        {"NIP": _restoration({}, restored=restored, probs=probs), "PSSR": None},
        DIGITS,
    )
    adv, nip, failed = rows
    assert adv["image"] == "adversarial" and adv["prediction"] == "8" and adv["= benign"] is False
    assert adv["L∞ to clean"] == pytest.approx(0.1) and adv["L2 to adversarial"] == 0.0
    assert nip["prediction"] == "0" and nip["confidence (%)"] == 75.0 and nip["= benign"] is True
    assert nip["L∞ to clean"] == pytest.approx(0.3) and nip["L2 to clean"] == pytest.approx(0.3)
    assert nip["L∞ to adversarial"] == pytest.approx(0.3)
    assert nip["L2 to adversarial"] == pytest.approx(float(np.hypot(0.1, 0.3)))
    assert failed["image"] == "PSSR" and failed["prediction"] == "failed" and failed["= benign"] is None
    with pytest.raises(InputError, match="differ"):
        fa.decision_rows(clean, torch.zeros(1, 1, 3, 3), adv_probs, 0, {}, DIGITS)


def test_panel_bars_are_the_prediction_bars_with_room_for_labels():
    probs = torch.softmax(torch.arange(10.0), 0)
    fig = fa.panel_bars(probs, DIGITS, color_key="restored", true_class=9)
    reference = prediction_bars(probs, DIGITS, k=5, title="Top-5", color_key="restored", true_class=9)
    np.testing.assert_allclose(fig.data[0].x, reference.data[0].x)
    shown = [t.replace(" ✓", " (true)") for t in fig.layout.yaxis.ticktext]
    assert shown == [t.replace("<b>", "").replace("</b>", "") for t in reference.layout.yaxis.ticktext]
    assert fig.data[0].marker.color[0] == PALETTE["restored"]
    assert list(fig.layout.xaxis.range) == [0, 100]
    # a long bar carries its label inside, short ones beside them; long class names are cut at the end
    assert list(fig.data[0].textposition) == ["inside" if v >= fa.INSIDE_LABEL_PERCENT else "outside" for v in fig.data[0].x]
    long_names = [f"class {i} long-horned beetle" for i in range(10)]
    cut = fa.panel_bars(probs, long_names).layout.yaxis.ticktext
    assert all(len(t) <= fa.PANEL_LABEL_CHARS for t in cut) and cut[0].startswith("class 9")


def test_importing_the_attack_figures_does_not_import_streamlit():
    code = "import sys, neuronviz.figures.attack, neuronviz.workflows.sweep; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
