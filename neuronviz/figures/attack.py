"""Figures (and two small tables) of the Attack and Defences views.

- :func:`perturbation_figure`: adversarial − clean on a diverging scale centred on 0, amplified
  so that the largest change reaches full colour (:func:`perturbation_amplification` says by how
  much), with a colour bar in pixel units. Negative changes (darker pixels) are drawn in the
  palette's ``clean`` colour, positive changes (brighter pixels) in ``adversarial``, zero in white.
- :func:`trajectory_figure`: an attack's loss and predicted class per step (``AttackTrace``).
- :func:`eps_sweep_figure`: benign-class probability, success, front overlap and Spearman ρ
  against the attack budget (:class:`neuronviz.workflows.sweep.EpsSweep`).
- :func:`nip_steps_figure`: guided NIP's objective and predicted class per step, with the step
  where the prediction returned to the benign class marked.
- :func:`reactive_scores_figure`: reactive NIP's candidate classes and their profile scores.
- :func:`score_map_figure`, :func:`mask_figure`: PSSR's salient score and removed pixels.
- :func:`candidate_rows`, :func:`decision_rows`: rows for ``st.dataframe`` (the reactive
  candidates; the numbers that decide a defence's success).

All builders are pure (tensors in, ``go.Figure`` out), take colours from :data:`PALETTE` by name,
and raise :class:`~neuronviz.infra.errors.InputError` on bad input.

Longer than 500 lines on purpose: it is the attack and defence pages' figures, each a short,
independent builder (and its checks); split further, a page's figures would be scattered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from neuronviz.figures.base import (
    DIVERGING,
    FONT_SIZE,
    GREYS,
    GRID,
    INK,
    PALETTE,
    SEQUENTIAL,
    apply_layout,
    as_image,
    as_map,
)
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import over_255

#: Narrow top-5 panels: class names cut at this many characters, labels inside bars from this share.
PANEL_LABEL_CHARS = 9
INSIDE_LABEL_PERCENT = 55.0
#: Smallest colour range of a perturbation figure (one 8-bit grey level), so that an all-zero
#: perturbation still gets a valid, labelled scale.
MIN_PERTURBATION_RANGE = 1.0 / 255.0


def _pixel_axes(fig: go.Figure, height_px: int, width_px: int, row: int | None = None, col: int | None = None) -> None:
    axis = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, showline=False, constrain="domain")
    where = {} if row is None else {"row": row, "col": col}
    fig.update_xaxes(range=[-0.5, width_px - 0.5], **axis, **where)
    fig.update_yaxes(
        range=[height_px - 0.5, -0.5], scaleanchor="x", scaleratio=1, constraintoward="top", **axis, **where
    )


#: Bottom margin (px) that holds a horizontal colour bar and its title under a pixel map.
_COLORBAR_MARGIN = 78


def _bottom_colorbar(title: str, **ticks: Any) -> dict:
    """A horizontal colour bar under the plot: keeps the pixel map as wide as a narrow column allows."""
    return dict(
        orientation="h",
        x=0.5,
        xanchor="center",
        y=0.0,
        yref="container",
        yanchor="bottom",
        len=0.95,
        lenmode="fraction",
        thickness=10,
        outlinewidth=0,
        title=dict(text=title, side="bottom"),
    ) | ticks  # ticks may also override the defaults (len)


def _eps_text(value: float, pixel_scale: bool = True) -> str:
    if not pixel_scale:
        return f"{value:.3g}"
    return f"{value:.3g}<br>{over_255(value)}/255"  # the rounding of format_eps everywhere


# -- perturbation ---------------------------------------------------------------------------------


def _as_delta(delta: torch.Tensor) -> torch.Tensor:
    if not isinstance(delta, torch.Tensor):
        raise InputError(f"delta must be a torch.Tensor, got {type(delta).__name__}")
    d = delta.detach().cpu()
    if d.dim() == 4:
        if d.shape[0] != 1:
            raise InputError(f"perturbation_figure draws one perturbation; got a batch of {d.shape[0]}")
        d = d[0]
    if d.dim() != 3 or d.shape[0] not in (1, 3):
        raise InputError(f"delta must be (C, H, W) or (1, C, H, W) with C in (1, 3), got shape {tuple(delta.shape)}")
    if not d.is_floating_point() or not bool(torch.isfinite(d).all()):
        raise InputError("delta must be finite floating-point pixel differences")
    if float(d.abs().max()) > 1.0 + 1e-6:
        raise InputError("delta must be a difference of two [0, 1] images (|delta| ≤ 1)")
    return d.to(torch.float32)


def perturbation_range(delta: torch.Tensor) -> float:
    """The colour range ±r of :func:`perturbation_figure`: the largest |change| (at least 1/255)."""
    return max(float(_as_delta(delta).abs().max()), MIN_PERTURBATION_RANGE)


def perturbation_amplification(delta: torch.Tensor) -> float:
    """How much :func:`perturbation_figure` amplifies: a change of ``r`` gets the colour a change
    of 1 (black to white) would get in an image figure, so the factor is ``1 / r``."""
    return 1.0 / perturbation_range(delta)


def perturbation_figure(delta: torch.Tensor, title: str | None = None, height: int = 320) -> go.Figure:
    """The perturbation (adversarial − clean) as a diverging heatmap centred on 0.

    ``height`` is that of an :func:`image_figure` of the same size: the horizontal colour bar
    underneath adds :data:`_COLORBAR_MARGIN` px, so the pixels line up with images beside it.

    The colour range is ±:func:`perturbation_range` (so the largest change is full colour); the
    colour bar is in pixel units [0, 1] and its ticks also say k/255. A colour image is drawn as
    the mean over its channels (the hover says so). Default title: ``"Perturbation ×A"`` with
    ``A`` = :func:`perturbation_amplification`.
    """
    d = _as_delta(delta)
    channels, height_px, width_px = d.shape
    limit = perturbation_range(d)
    z = d.mean(0).numpy()
    what = "change" if channels == 1 else "mean change over RGB"
    ticks = [-limit, 0.0, limit]  # both ends and the middle: three labels fit a narrow column unrotated
    fig = go.Figure(
        go.Heatmap(
            z=z,
            zmin=-limit,
            zmax=limit,
            zmid=0.0,
            colorscale=DIVERGING,
            colorbar=_bottom_colorbar(
                "Δ pixel (pixel units)",
                tickvals=ticks,
                ticktext=[f"{v:+.2g}".replace("-", "−") if v else "0" for v in ticks],
                tickangle=0,
                ticklabeloverflow="allow",  # plotly hid end labels reaching past the bar
                len=0.7,  # a shorter bar leaves the end labels room
            ),
            hovertemplate=f"row %{{y}}, column %{{x}}<br>{what} %{{z:+.4f}}<extra></extra>",
        )
    )
    amplification = 1.0 / limit
    apply_layout(
        fig,
        title=title if title is not None else f"Perturbation ×{amplification:.3g}",
        height=height + _COLORBAR_MARGIN,
    )
    _pixel_axes(fig, height_px, width_px)
    fig.update_layout(margin=dict(l=4, r=4, b=_COLORBAR_MARGIN, t=40 if fig.layout.title.text else 4))
    return fig


# -- prediction bars for narrow panels ------------------------------------------------------------------


def panel_bars(
    probs: torch.Tensor,
    class_names: Sequence[str],
    title: str = "Top-5",
    color_key: str = "clean",
    true_class: int | None = None,
    k: int = 5,
) -> go.Figure:
    """:func:`~neuronviz.figures.base.prediction_bars` for a column a fifth of a page wide: a bar of
    :data:`INSIDE_LABEL_PERCENT` % or more carries its label inside, shorter bars beside them (the
    axis runs to 100%); class names are cut at :data:`PANEL_LABEL_CHARS` characters (full name on
    hover) and the true class is marked ✓ (bold, outlined bar)."""
    from neuronviz.figures.base import prediction_bars

    fig = prediction_bars(
        probs, class_names, k=k, title=title, color_key=color_key, true_class=true_class,
        max_chars=PANEL_LABEL_CHARS, true_mark=" ✓",
    )
    # A long bar carries its label inside (white), a short one beside it: "100.0%" never runs off a
    # narrow column.
    bar = fig.data[0]
    inside = [float(v) >= INSIDE_LABEL_PERCENT for v in bar.x]
    bar.update(
        textposition=["inside" if i else "outside" for i in inside],
        insidetextanchor="end",
        textfont=dict(color=["white" if i else INK for i in inside]),
    )
    rows = len(bar.x)
    fig.update_layout(
        uniformtext=dict(minsize=FONT_SIZE - 2, mode="show"),  # never shrink a label inside a bar
        height=72 + 34 * rows,
    )
    fig.update_yaxes(tickfont=dict(size=FONT_SIZE - 2))  # 9 characters fit a fifth of 1280 px
    fig.update_xaxes(range=[0, 100], tickvals=[0, 50, 100], title_text="probability %")
    return fig


# -- the attack's trajectory ------------------------------------------------------------------------


def _class_axis(fig: go.Figure, classes: Sequence[int], class_names: Sequence[str], row: int, title: str) -> None:
    shown = sorted(set(int(c) for c in classes))
    fig.update_yaxes(
        title_text=title,
        tickvals=shown,
        ticktext=[str(class_names[c]) for c in shown],
        range=[min(shown) - 0.6, max(shown) + 0.6],
        showgrid=True,
        gridcolor=GRID,
        zeroline=False,
        row=row,
        col=1,
    )


def _check_names(class_names: Sequence[str], classes: Sequence[int], what: str) -> list[str]:
    names = [str(c) for c in class_names]
    bad = [int(c) for c in classes if not 0 <= int(c) < len(names)]
    if bad:
        raise InputError(f"{what} holds class {bad[0]}, outside the {len(names)} class names")
    return names


def _steps_and_classes(
    steps: np.ndarray,
    values: np.ndarray,
    classes: list[int],
    names: list[str],
    benign_class: int | None,
    color_key: str,
    value_name: str,
    hover: str,
    class_hover: str,
    sizes: tuple[int, int],
    mark: int | None = None,
    mark_text: str | None = None,
    mark_side: str = "left",
) -> go.Figure:
    """Two rows on one step axis: a value per step (a ``color_key`` line, top) and the predicted
    class per step (bottom; ``clean`` while it is ``benign_class``, ``adversarial`` otherwise),
    with a dotted line and ``mark_text`` at step ``mark``. Layout and axis titles: the caller's."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4])
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=values,
            mode="lines+markers",
            line=dict(color=PALETTE[color_key], width=2.5),
            marker=dict(size=sizes[0], color=PALETTE[color_key]),
            name=value_name,
            hovertemplate=f"{hover}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    colors = [
        PALETTE["clean"] if benign_class is not None and c == benign_class else PALETTE["adversarial"] for c in classes
    ]
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=classes,
            mode="markers",
            marker=dict(size=sizes[1], color=colors, line=dict(color=INK, width=0.5)),
            customdata=[names[c] for c in classes],
            name="predicted class",
            hovertemplate=f"{class_hover}<extra></extra>",
        ),
        row=2,
        col=1,
    )
    if mark is not None:
        fig.add_vline(x=mark, line=dict(color=INK, width=1.5, dash="dot"))
        fig.add_annotation(
            x=mark,
            y=1.0,
            yref="paper",
            text=mark_text or "",
            showarrow=False,
            xanchor=mark_side,
            yanchor="bottom",
            xshift=4 if mark_side == "left" else -4,
            font=dict(color=INK),
        )
    return fig


def names_of(class_names: Sequence[str], index: int | None) -> str | None:
    """The class name of ``index`` (None when unknown or out of range)."""
    if index is None or not 0 <= int(index) < len(class_names):
        return None
    return str(class_names[int(index)])


def trajectory_figure(
    trace: Any,
    class_names: Sequence[str],
    image: int = 0,
    benign_class: int | None = None,
    targeted: bool = False,
    title: str = "Attack trajectory",
    height: int = 420,
    target_class: int | None = None,
) -> go.Figure:
    """Loss (top) and predicted class (bottom) at every recorded step of an attack.

    ``trace`` is an :class:`~neuronviz.methods.attacks.AttackTrace` (``loss``, ``predicted`` ``(T, N)``,
    ``unit``); ``image`` picks the column. The loss is the cross-entropy to the label the attack
    moves away from (in the dashboard: the clean prediction; it rises) or to the target
    (``targeted``: it falls). Predicted-class markers are ``clean``-coloured while the prediction
    is ``benign_class`` and ``adversarial`` otherwise; the first step that leaves the benign class
    is marked with a dotted line.
    """
    for name in ("loss", "predicted", "unit"):
        if not hasattr(trace, name):
            raise InputError(f"trace must be an AttackTrace (with loss, predicted, unit); it has no {name!r}")
    loss, predicted = trace.loss, trace.predicted
    if loss.dim() != 2 or loss.shape != predicted.shape:
        raise InputError(
            f"trace.loss and trace.predicted must both be (T, N), got {tuple(loss.shape)} and {tuple(predicted.shape)}"
        )
    if not 0 <= image < loss.shape[1]:
        raise InputError(f"image {image} is outside the trace's {loss.shape[1]} images")
    if loss.shape[0] == 0:
        raise InputError("the trace is empty")
    losses = loss[:, image].double().numpy()
    classes = [int(c) for c in predicted[:, image]]
    names = _check_names(class_names, classes + ([benign_class] if benign_class is not None else []), "trace.predicted")
    steps = np.arange(1, len(classes) + 1)
    unit = str(trace.unit)
    x_title = "Attack step (iteration)" if unit == "step" else f"Forward pass ({unit}s of the attack, in order)"

    left = None
    if benign_class is not None:
        left = next((int(s) for s, c in zip(steps, classes) if c != benign_class), None)
    fig = _steps_and_classes(
        steps,
        losses,
        classes,
        names,
        benign_class,
        color_key="adversarial",
        value_name="loss",
        hover=f"{unit} %{{x}}<br>loss %{{y:.4f}} nats",
        class_hover=f"{unit} %{{x}}<br>predicted %{{customdata}}",
        sizes=(5, 9),
        mark=left,
        mark_text=None if left is None or benign_class is None else f"leaves {names[benign_class]}",
    )
    apply_layout(fig, title=title, height=height)
    from neuronviz.figures.captions import trajectory_reference

    reference = trajectory_reference(
        targeted,
        names_of(class_names, benign_class),
        names_of(class_names, target_class),
    )
    loss_title = f"CE to {reference} (nats)"
    fig.update_yaxes(title_text=loss_title, showgrid=True, gridcolor=GRID, zeroline=False, row=1, col=1)
    _class_axis(fig, classes + ([benign_class] if benign_class is not None else []), names, 2, "Predicted class")
    fig.update_xaxes(showgrid=True, gridcolor=GRID, zeroline=False)
    fig.update_xaxes(title_text=x_title, row=2, col=1)
    return fig


# -- the ε sweep --------------------------------------------------------------------------------------


def eps_sweep_figure(
    sweep: Any,
    class_names: Sequence[str],
    selected_eps: float | None = None,
    chosen_eps: float | None = None,
    title: str = "Prediction and neuron ranking vs attack strength",
    height: int = 480,
) -> go.Figure:
    """Top: probability of the benign class (%) per ε, markers in ``adversarial`` where the
    attack succeeds. Bottom: front overlap (``front``) and Spearman ρ (``middle``, dashed) of the
    influence ranking at the sweep's layer, against the clean image's, and the same two under the
    sweep's matched control at each ε (dotted, open markers), each with its 95% interval as error
    bars (the overlap's Wilson interval over the front's neurons, ρ's bootstrap interval over the
    layer's neurons; a ρ that is not defined is a gap). ε on a shared x axis in
    the budget's units (L∞ ticks also read k/255); ``selected_eps`` draws a dotted line,
    ``chosen_eps`` a labelled solid one (the analysis' ε).
    """
    for name in ("eps", "probs", "success", "benign_class", "front_overlap", "spearman", "prediction"):
        if not hasattr(sweep, name):
            raise InputError(f"sweep must be an EpsSweep; it has no {name!r}")
    eps = sweep.eps.double().numpy()
    if eps.size == 0:
        raise InputError("the sweep is empty")
    names = _check_names(class_names, [sweep.benign_class, *sweep.prediction.tolist()], "the sweep")

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, row_heights=[0.5, 0.5])
    fig.add_trace(_benign_trace(sweep, eps, names), row=1, col=1)
    rho = _ranking_traces(fig, sweep, eps)
    if getattr(sweep, "control_front_overlap", None) is not None:
        rho = np.concatenate([rho, _control_traces(fig, sweep, eps)])
    _eps_lines(fig, selected_eps, chosen_eps)
    apply_layout(fig, title=title, height=height)
    _sweep_axes(fig, sweep, eps, rho)
    return fig


def _benign_trace(sweep: Any, eps: np.ndarray, names: Sequence[str]) -> go.Scatter:
    """The benign class' probability (%) per ε, a red cross where the attack succeeds."""
    benign = 100.0 * sweep.probs[:, sweep.benign_class].double().numpy()
    success = sweep.success.tolist()
    predicted = [names[int(c)] for c in sweep.prediction]
    confidence = (100.0 * sweep.probs.max(1).values.double()).tolist()
    return go.Scatter(
        x=eps,
        y=benign,
        mode="lines+markers",
        name=f"P({names[sweep.benign_class]}), the benign class",
        line=dict(color=PALETTE["clean"], width=2.5),
        marker=dict(
            size=11,
            color=[PALETTE["adversarial"] if s else PALETTE["clean"] for s in success],
            symbol=["x" if s else "circle" for s in success],
            line=dict(color=INK, width=0.5),
        ),
        customdata=np.stack(
            [
                predicted,
                [f"{c:.1f}" for c in confidence],
                ["attack succeeds" if s else "attack fails" for s in success],
            ],
            1,
        ),
        hovertemplate=(
            "ε %{x:.4g}<br>benign %{y:.1f}%<br>predicted %{customdata[0]} (%{customdata[1]}%)<br>"
            "%{customdata[2]}<extra></extra>"
        ),
    )


def _intervals(sweep: Any, control: bool) -> tuple[np.ndarray | None, np.ndarray | None, list[str], list[str]]:
    """``(overlap (2, E), ρ (2, E), overlap texts, ρ texts)``: each ε's 95% interval (low, high; NaN
    where not defined) and its text with n, from the sweep's rates and correlations (None when the
    sweep has none)."""
    rates = getattr(sweep, "control_overlap" if control else "overlap", ())
    rhos = getattr(sweep, "control_correlations" if control else "correlations", ())
    if not rates or not rhos:  # a sweep without intervals: the values alone
        overlap_values = getattr(sweep, "control_front_overlap" if control else "front_overlap")
        rho_values = getattr(sweep, "control_spearman" if control else "spearman")
        return (None, None, [f"{float(v):.2f}" for v in overlap_values],
                ["not defined" if float(v) != float(v) else f"{float(v):.3f}" for v in rho_values])
    nan = float("nan")
    overlap = np.array([[nan if r.low is None else r.low for r in rates], [nan if r.high is None else r.high for r in rates]])
    rho = np.array([[nan if c.low is None else c.low for c in rhos], [nan if c.high is None else c.high for c in rhos]])
    return overlap, rho, [r.text() for r in rates], [c.text() for c in rhos]


def _error_bars(values: np.ndarray, interval: np.ndarray | None, color: str, thickness: float) -> dict[str, Any] | None:
    """Plotly's asymmetric error bars from an interval ``(2, E)`` around ``values`` (none where undefined)."""
    if interval is None:
        return None
    return dict(type="data", symmetric=False, array=np.clip(interval[1] - values, 0, None),
                arrayminus=np.clip(values - interval[0], 0, None), color=color, thickness=thickness, width=4, visible=True)


def _ranking_traces(fig: go.Figure, sweep: Any, eps: np.ndarray) -> np.ndarray:
    """The front overlap and Spearman ρ per ε in the lower panel, with their 95% intervals as error
    bars (Wilson over the front's neurons; bootstrap over the layer's neurons); returns ρ and its
    interval's lows (for the axis range)."""
    overlap = sweep.front_overlap.double().numpy()
    rho = sweep.spearman.double().numpy()
    overlap_ci, rho_ci, overlap_text, rho_text = _intervals(sweep, control=False)
    for values, interval, texts, name, color, dash, symbol, label in (
        (overlap, overlap_ci, overlap_text, "front overlap", PALETTE["front"], "solid", "circle", "front overlap"),
        (rho, rho_ci, rho_text, "Spearman ρ", PALETTE["middle"], "dash", "square", "ρ"),
    ):
        fig.add_trace(
            go.Scatter(
                x=eps,
                y=values,
                mode="lines+markers",
                name=name,
                line=dict(color=color, width=2.5, dash=dash),
                marker=dict(size=7, symbol=symbol),
                error_y=_error_bars(values, interval, color, 1.5),
                customdata=texts,
                hovertemplate=f"ε %{{x:.4g}}<br>{label} %{{customdata}}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    return np.concatenate([rho, rho_ci[0] if rho_ci is not None else []])


#: The matched control's points sit this share of the smallest ε step right of their ε, so that the
#: attack's and the control's error bars at one ε are both seen.
CONTROL_DODGE = 0.12


def _control_traces(fig: go.Figure, sweep: Any, eps: np.ndarray) -> np.ndarray:
    """The same two under the matched control at each ε (noise of the attack's norm and size),
    dotted with open markers and thinner error bars, drawn :data:`CONTROL_DODGE` of the smallest ε
    step to the right of their ε so that both bars show (the hover names the true ε); returns the
    control's ρ and its interval's lows (for the axis range)."""
    symbol = {"Linf": "L∞", "L2": "L2", "L0": "L0"}.get(getattr(sweep, "control_norm", ""), "")
    overlap_ci, rho_ci, overlap_text, rho_text = _intervals(sweep, control=True)
    steps = np.diff(eps)
    shifted = eps + (CONTROL_DODGE * float(steps[steps > 0].min()) if (steps > 0).any() else 0.0)
    rho = sweep.control_spearman.double().numpy()
    for values, interval, texts, name, color, label in (
        (sweep.control_front_overlap.double().numpy(), overlap_ci, overlap_text, f"front overlap, noise of the same {symbol}",
         PALETTE["front"], "front overlap"),
        (rho, rho_ci, rho_text, f"ρ, noise of the same {symbol}", PALETTE["middle"], "ρ"),
    ):
        fig.add_trace(
            go.Scatter(
                x=shifted,
                y=values,
                mode="lines+markers",
                name=name,
                line=dict(color=color, width=1.5, dash="dot"),
                marker=dict(size=7, symbol="circle-open", color=color),
                error_y=_error_bars(values, interval, color, 0.8),
                customdata=np.stack([[f"{v:.4g}" for v in eps], texts], 1),
                hovertemplate=f"ε %{{customdata[0]}}<br>noise: {label} %{{customdata[1]}}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    return np.concatenate([rho, rho_ci[0] if rho_ci is not None else []])


def _eps_lines(fig: go.Figure, selected_eps: float | None, chosen_eps: float | None) -> None:
    """The chosen ε as a labelled solid line, the selected one dotted."""
    if chosen_eps is not None:
        fig.add_vline(x=float(chosen_eps), line=dict(color=INK, width=1.5))
        fig.add_annotation(
            x=float(chosen_eps),
            y=1.0,
            yref="paper",
            text="chosen ε",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            xshift=4,
            font=dict(color=INK),
        )
    if selected_eps is not None:
        fig.add_vline(x=float(selected_eps), line=dict(color=INK, width=1.5, dash="dot"))


def _sweep_axes(fig: go.Figure, sweep: Any, eps: np.ndarray, rho: np.ndarray) -> None:
    """The sweep's axes: percent on top, overlap/ρ below (down to the lowest ρ), ε in the budget's
    units with at most 6-7 labelled ticks, and the legend under the chart."""
    pixel_scale = getattr(sweep, "norm", "Linf") == "Linf"
    low_rho = float(np.nanmin(rho)) if np.isfinite(rho).any() else 0.0
    fig.update_yaxes(
        title_text="Benign class (%)", range=[-5, 105], showgrid=True, gridcolor=GRID, zeroline=False, row=1, col=1
    )
    fig.update_yaxes(
        title_text="Overlap / ρ (unitless)",
        range=[min(0.0, low_rho) - 0.05, 1.05],
        showgrid=True,
        gridcolor=GRID,
        zeroline=True,
        zerolinecolor=GRID,
        row=2,
        col=1,
    )
    budget = getattr(sweep, "budget_param", "eps")
    x_title = (
        f"ε = {budget} (pixel units [0, 1]; also k/255)"
        if pixel_scale
        else f"ε = {budget} ({sweep.norm} norm, pixel units)"
    )
    every = max(1, int(np.ceil(len(eps) / 6)))  # at most 6-7 labelled ticks: two-line labels stay apart
    ticks = eps[::every]
    fig.update_xaxes(
        showgrid=True,
        gridcolor=GRID,
        zeroline=False,
        tickvals=ticks,
        ticktext=[_eps_text(v, pixel_scale) for v in ticks],
        tickangle=0,
    )
    fig.update_xaxes(title_text=x_title, row=2, col=1)
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", x=0, xanchor="left", yref="container", y=0.0, yanchor="bottom"),
        margin=dict(b=110),
    )


# -- NIP ------------------------------------------------------------------------------------------


def _restoration_trace(restoration: Any, keys: Sequence[str], what: str) -> dict[str, torch.Tensor]:
    trace = getattr(restoration, "trace", None)
    if not isinstance(trace, Mapping) or any(k not in trace for k in keys):
        raise InputError(f"{what} needs a Restoration whose trace has {list(keys)}")
    return {k: trace[k] for k in keys}


def nip_steps_figure(
    restoration: Any,
    benign_class: int,
    class_names: Sequence[str],
    image: int = 0,
    title: str = "NIP (guided): objective per step",
    height: int = 420,
) -> go.Figure:
    """Guided NIP's objective ``Σ_front a − Σ_tail a`` (top) and predicted class (bottom) per step.

    Step 0 is the incoming (adversarial) image; the first step predicted as ``benign_class`` is
    marked (a dotted line and "back to …"); when none is, the title says so.
    """
    trace = _restoration_trace(restoration, ("objective", "predicted"), "nip_steps_figure")
    objective, predicted = trace["objective"], trace["predicted"]
    if objective.dim() != 2 or objective.shape != predicted.shape:
        raise InputError(
            f"objective and predicted must both be (T, N), got {tuple(objective.shape)}, {tuple(predicted.shape)}"
        )
    if not 0 <= image < objective.shape[1]:
        raise InputError(f"image {image} is outside the trace's {objective.shape[1]} images")
    values = objective[:, image].double().numpy()
    classes = [int(c) for c in predicted[:, image]]
    names = _check_names(class_names, [*classes, benign_class], "the NIP trace")
    steps = np.arange(len(classes))
    back = next((int(s) for s, c in zip(steps, classes) if c == benign_class), None)

    fig = _steps_and_classes(
        steps,
        values,
        classes,
        names,
        benign_class,
        color_key="restored",
        value_name="objective",
        hover="step %{x}<br>objective %{y:.4g}",
        class_hover="step %{x}<br>predicted %{customdata}",
        sizes=(7, 10),
        mark=back,
        mark_text=None if back is None else f"back to {names[benign_class]} at step {back}",
        mark_side="right" if back is not None and back > steps[-1] / 2 else "left",
    )
    shown_title = title if back is not None else f"{title} (never back to {names[benign_class]})"
    apply_layout(fig, title=shown_title, height=height)
    fig.update_yaxes(title_text="Σfront − Σtail (act.)", showgrid=True, gridcolor=GRID, zeroline=False, row=1, col=1)
    _class_axis(fig, [*classes, benign_class], names, 2, "Predicted class")
    fig.update_xaxes(showgrid=True, gridcolor=GRID, zeroline=False, dtick=1 if len(steps) <= 25 else None)
    fig.update_xaxes(title_text="NIP step (0 = the incoming image)", row=2, col=1)
    return fig


def reactive_scores_figure(
    restoration: Any,
    class_names: Sequence[str],
    image: int = 0,
    title: str = "NIP (reactive): candidate scores",
    height: int = 320,
) -> go.Figure:
    """Bars: each candidate class's profile score (cosine similarity, unitless); the chosen one in
    ``restored``, the others ``neutral``; candidates in the order tried (most probable first)."""
    rows = candidate_rows(restoration, class_names, image)
    fig = go.Figure(
        go.Bar(
            x=list(range(len(rows))),
            y=[r["cosine score"] for r in rows],
            marker=dict(color=[PALETTE["restored"] if r["chosen"] else PALETTE["neutral"] for r in rows]),
            text=[f"{r['cosine score']:.3f}" for r in rows],
            textposition="outside",
            cliponaxis=False,
            customdata=[r["candidate class"] for r in rows],
            hovertemplate="candidate %{customdata}<br>score %{y:.4f}<extra></extra>",
        )
    )
    apply_layout(fig, title=title, height=height)
    low = min(r["cosine score"] for r in rows)
    fig.update_yaxes(title_text="Cosine to benign profile", range=[min(0.0, low), 1.08], showgrid=True, gridcolor=GRID)
    fig.update_xaxes(
        title_text="Candidate class (by probability)",
        tickvals=list(range(len(rows))),
        ticktext=[f"<b>{r['candidate class']}</b> (chosen)" if r["chosen"] else r["candidate class"] for r in rows],
    )
    return fig


def candidate_rows(restoration: Any, class_names: Sequence[str], image: int = 0) -> list[dict[str, Any]]:
    """Reactive NIP's candidates, one row each: rank, class, cosine score, chosen."""
    trace = _restoration_trace(restoration, ("candidates", "scores", "chosen"), "candidate_rows")
    candidates, scores, chosen = trace["candidates"], trace["scores"], trace["chosen"]
    if candidates.dim() != 2 or candidates.shape != scores.shape or not 0 <= image < candidates.shape[1]:
        raise InputError(
            f"candidates and scores must be (k, N) with image < N; got {tuple(candidates.shape)}, {tuple(scores.shape)}"
        )
    names = _check_names(class_names, candidates[:, image].tolist(), "the candidates")
    best = int(chosen[0, image])
    return [
        {
            "rank": j + 1,
            "candidate class": names[int(candidates[j, image])],
            "cosine score": float(scores[j, image]),
            "chosen": j == best,
        }
        for j in range(candidates.shape[0])
    ]


# -- PSSR -------------------------------------------------------------------------------------------


def score_map_figure(score: torch.Tensor, title: str = "Salient score", height: int = 320) -> go.Figure:
    """PSSR's score ``S = Σ_channels |∂p_c/∂x|`` per pixel, white (0) to ``adversarial`` (max),
    with a horizontal colour bar underneath (probability per pixel unit) that adds
    :data:`_COLORBAR_MARGIN` px to ``height``."""
    s = as_map(score, "score")
    if float(s.min()) < 0:
        raise InputError("score must be non-negative (it is a sum of absolute gradients)")
    top = max(float(s.max()), 1e-12)
    fig = go.Figure(
        go.Heatmap(
            z=s.numpy(),
            zmin=0.0,
            zmax=top,
            colorscale=SEQUENTIAL,
            colorbar=_bottom_colorbar("|∂p/∂x| (per pixel unit)", nticks=4, tickformat=".2g"),
            hovertemplate="row %{y}, column %{x}<br>score %{z:.3g}<extra></extra>",
        )
    )
    apply_layout(fig, title=title, height=height + _COLORBAR_MARGIN)
    _pixel_axes(fig, s.shape[0], s.shape[1])
    fig.update_layout(margin=dict(l=4, r=4, b=_COLORBAR_MARGIN, t=40 if fig.layout.title.text else 4))
    return fig


def mask_figure(image: torch.Tensor, mask: torch.Tensor, title: str | None = None, height: int = 320) -> go.Figure:
    """The image in grey with the removed (salient) pixels painted ``adversarial``.

    Default title: ``"Mask: n pixels removed (p%)"``. A colour image is shown as its grey mean.
    """
    x = as_image(image)
    m = as_map(mask, "mask")
    if tuple(m.shape) != tuple(x.shape[1:]):
        raise InputError(f"mask {tuple(m.shape)} does not match the image's {tuple(x.shape[1:])}")
    if not bool(((m == 0) | (m == 1)).all()):
        raise InputError("mask must hold 0 (kept) and 1 (removed) only")
    removed = int(m.sum())
    share = removed / m.numel()
    fig = go.Figure()
    fig.add_trace(
        go.Heatmap(
            z=x.mean(0).numpy(),
            zmin=0.0,
            zmax=1.0,
            colorscale=GREYS,
            showscale=False,
            hovertemplate="row %{y}, column %{x}<br>value %{z:.3f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Heatmap(
            z=np.where(m.numpy() > 0, 1.0, np.nan),
            zmin=0.0,
            zmax=1.0,
            colorscale=[[0.0, PALETTE["adversarial"]], [1.0, PALETTE["adversarial"]]],
            showscale=False,
            hovertemplate="row %{y}, column %{x}<br>removed<extra></extra>",
            name="removed",
        )
    )
    apply_layout(fig, title=title if title is not None else f"Mask: {removed} px removed ({share:.0%})", height=height)
    _pixel_axes(fig, m.shape[0], m.shape[1])
    fig.update_layout(margin=dict(l=4, r=4, b=4))
    return fig


# -- tables -------------------------------------------------------------------------------------------


def decision_rows(
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    adversarial_probs: torch.Tensor,
    benign_class: int,
    restorations: Mapping[str, Any],
    class_names: Sequence[str],
) -> list[dict[str, Any]]:
    """The numbers that decide success: one row for the adversarial image and one per defence.

    Columns: image, prediction, confidence (%), ``= benign`` (prediction == ``benign_class``), and
    the L∞ and L2 distances (pixel units) of the row's image to the clean and to the adversarial
    image. ``restorations`` maps a label to a :class:`~neuronviz.methods.defences.Restoration` (or None
    for a defence that failed: its row says so).
    """
    x, adv = as_image(clean), as_image(adversarial)
    if x.shape != adv.shape:
        raise InputError(f"clean {tuple(x.shape)} and adversarial {tuple(adv.shape)} differ in shape")
    names = _check_names(class_names, [benign_class], "benign_class")

    def row(label: str, image: torch.Tensor | None, probs: torch.Tensor | None) -> dict[str, Any]:
        if image is None or probs is None:
            return {
                "image": label,
                "prediction": "failed",
                "confidence (%)": None,
                "= benign": None,
                "L∞ to clean": None,
                "L2 to clean": None,
                "L∞ to adversarial": None,
                "L2 to adversarial": None,
            }
        p = probs.detach().cpu().reshape(-1)
        if p.shape[0] != len(names):
            raise InputError(f"{label}: {p.shape[0]} probabilities for {len(names)} classes")
        predicted = int(p.argmax())
        image = as_image(image)
        if image.shape != x.shape:
            raise InputError(f"{label}: image {tuple(image.shape)} differs from the clean image's {tuple(x.shape)}")
        to_clean, to_adv = (image - x).flatten(), (image - adv).flatten()
        return {
            "image": label,
            "prediction": names[predicted],
            "confidence (%)": round(100.0 * float(p[predicted]), 2),
            "= benign": predicted == benign_class,
            "L∞ to clean": float(to_clean.abs().max()),
            "L2 to clean": float(to_clean.norm()),
            "L∞ to adversarial": float(to_adv.abs().max()),
            "L2 to adversarial": float(to_adv.norm()),
        }

    rows = [row("adversarial", adv, adversarial_probs)]
    for label, restoration in restorations.items():
        if restoration is None:
            rows.append(row(label, None, None))
        else:
            from neuronviz.methods.defences import Variant  # "PSSR (inpainting fallback)": the form that ran

            shown = Variant(getattr(restoration, "variant", "")).label(label)
            rows.append(row(shown, restoration.restored[:1], restoration.probs[:1]))
    return rows
