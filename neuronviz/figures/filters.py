"""Figures of the first convolutional layer: filters, their fragility, and compress/amplify.

Pure builders over the results of :mod:`neuronviz.methods.fragility` (Pravin et al., ICANN 2021,
arXiv:2201.12347, a reconstruction):

- :func:`filter_grid`: every filter's weights next to its feature map on the clean and on the
  adversarial image (:class:`~neuronviz.methods.fragility.FirstLayerMaps`), fragile filters outlined in
  ``PALETTE["adversarial"]``, robust ones in ``PALETTE["front"]``, each with its shift number;
- :func:`dropout_chart`: nodal dropout per filter (Δ clean and Δ adversarial accuracy when the
  filter is dropped) and the attack's targeting, bars coloured by the filter's label
  (:class:`~neuronviz.methods.fragility.FragilityReport`);
- :func:`rescale_curve`: clean and adversarial accuracy after compress/amplify over β
  (:class:`~neuronviz.methods.fragility.RescaleEvaluation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from neuronviz.figures.base import (  # noqa: F401 - Panel, Group, image_grid, display_size: also reached from here
    DIVERGING,
    FONT_SIZE,
    GRID,
    INK,
    PALETTE,
    ColourAxis,
    Group,
    Panel,
    apply_layout,
    display_size,
    image_grid,
    two_colour_axes,
)
from neuronviz.figures.captions import plural
from neuronviz.infra.errors import InputError
from neuronviz.methods.fragility import LABELS, FirstLayerMaps, FragilityReport, RescaleEvaluation

#: Palette key of each fragility label (bars, outlines, legend).
LABEL_COLORS: dict[str, str] = {"fragile": "adversarial", "neutral": "neutral", "robust": "front"}
PANELS = ("weights", "clean", "adv.")


def label_color(label: str) -> str:
    """The colour of a fragility label ("fragile", "neutral", "robust")."""
    if label not in LABEL_COLORS:
        raise InputError(f"label must be one of {LABELS}, got {label!r}")
    return PALETTE[LABEL_COLORS[label]]


def _check_labels(labels: Sequence[str] | None, count: int) -> list[str] | None:
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != count:
        raise InputError(f"labels has {len(labels)} entries but there are {count} filters")
    for label in labels:
        label_color(label)
    return labels


def _symmetric_limit(*tensors: torch.Tensor) -> float:
    top = max(float(t.abs().max()) if t.numel() else 0.0 for t in tensors)
    return top if top > 0 else 1.0


def filter_grid(
    maps: FirstLayerMaps,
    labels: Sequence[str] | None = None,
    filters: Sequence[int] | None = None,
    per_row: int = 4,
    input_channel: int | None = None,
    title: str | None = None,
    max_side: int = 56,
) -> go.Figure:
    """Each filter of the first convolution: its weights | its map on the clean image | on the
    adversarial image.

    Weights share one diverging scale centred on 0 (``coloraxis``), feature maps another
    (``coloraxis2``: clean and adversarial are directly comparable). A filter whose label is
    "fragile" is outlined in ``PALETTE["adversarial"]``, "robust" in ``PALETTE["front"]``
    (the outline is a layout shape named ``"filter <i>: <label>"``); the group title gives the
    filter's index, label and ``maps.shift`` (``mean|a(x') − a(x)| / mean|a(x)|`` on this image).

    Args:
        maps: :func:`neuronviz.methods.fragility.first_layer_maps` of one image pair.
        labels: one fragility label per filter (``report.labels``), or None (no outlines).
        filters: which filters to draw, in that order (default: all, by index).
        per_row: filters per row of the grid.
        input_channel: for a multi-channel input, which input channel's weights to draw
            (default: the mean over input channels, said in the title).
        max_side: feature maps larger than this are average-pooled for display (said in the
            title); the shift numbers are the full-resolution ones.
    """
    if not isinstance(maps, FirstLayerMaps):
        raise InputError(f"maps must be a FirstLayerMaps, got {type(maps).__name__}")
    count, in_channels = int(maps.weights.shape[0]), int(maps.weights.shape[1])
    labels = _check_labels(labels, count)
    chosen = list(range(count)) if filters is None else [int(f) for f in filters]
    if not chosen or any(not 0 <= f < count for f in chosen):
        raise InputError(f"filters must be a non-empty list of indices in 0..{count - 1}, got {filters!r}")
    if isinstance(per_row, bool) or not isinstance(per_row, int) or per_row < 1:
        raise InputError(f"per_row must be a positive integer, got {per_row!r}")
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise InputError(f"max_side must be a positive integer, got {max_side!r}")
    if input_channel is not None and not 0 <= int(input_channel) < in_channels:
        raise InputError(f"input_channel must be in 0..{in_channels - 1}, got {input_channel!r}")
    if in_channels == 1:
        weights, weight_note = maps.weights[:, 0], ""
    elif input_channel is None:
        weights, weight_note = maps.weights.mean(1), f" (weights: mean over the {in_channels} input channels)"
    else:
        weights, weight_note = maps.weights[:, int(input_channel)], f" (weights of input channel {int(input_channel)})"
    index = torch.tensor(chosen)
    weight_limit = _symmetric_limit(weights[index])
    map_limit = _symmetric_limit(maps.clean[index], maps.adversarial[index])
    shift = maps.shift.numpy()
    _, factor = display_size(maps.clean[0], max_side)
    groups = []
    for f in chosen:
        label = labels[f] if labels is not None else None
        highlighted = label in ("fragile", "robust")
        groups.append(
            Group(
                panels=tuple(
                    Panel(z=panel, coloraxis="coloraxis" if i == 0 else "coloraxis2", name=f"filter {f} {name}", label=name)
                    for i, (panel, name) in enumerate(
                        zip((weights[f], display_size(maps.clean[f], max_side)[0], display_size(maps.adversarial[f], max_side)[0]), PANELS)
                    )
                ),
                title=f"<b>f{f}</b>" + (f" · {label}" if label else "") + f" · shift {shift[f]:.2f}",
                title_color=label_color(label) if label is not None and highlighted else INK,
                outline=label_color(label) if label is not None and highlighted else None,
                outline_name=f"filter {f}: {label}" if highlighted else None,
            )
        )
    fig = image_grid(groups, per_row)
    note = weight_note + (f" (maps shown at 1/{factor} resolution)" if factor > 1 else "")
    apply_layout(fig, title=(title or f"First-layer filters of {maps.layer}") + note, height=fig.layout.height)
    return two_colour_axes(
        fig,
        ColourAxis(DIVERGING, -weight_limit, weight_limit, "weight"),
        ColourAxis(DIVERGING, -map_limit, map_limit, "activation"),
    )

def outlined_filters(fig: go.Figure, label: str) -> list[int]:
    """The filters a :func:`filter_grid` outlines as ``label`` (in grid order): read from its shapes."""
    label_color(label)
    found = []
    for shape in fig.layout.shapes:
        name = shape.name or ""
        if name.startswith("filter ") and name.endswith(f": {label}"):
            found.append(int(name.split()[1].rstrip(":")))
    return found


def dropout_chart(report: FragilityReport, title: str | None = None) -> go.Figure:
    """Nodal dropout per filter (three rows sharing the filter axis), bars coloured by label.

    Rows: Δ clean accuracy and Δ adversarial accuracy when the filter is dropped (percentage
    points: dropped − baseline accuracy; negative = the filter is needed), and the attack's
    targeting (share of the total change of the first layer's output, in %) with, when the report
    has its control, the targeting of the matched noise as black diamonds on the same bars.
    """
    if not isinstance(report, FragilityReport):
        raise InputError(f"report must be a FragilityReport, got {type(report).__name__}")
    filters = list(range(report.filters))
    colors = [label_color(label) for label in report.labels]
    rows = [
        ("Δ clean acc. (pp)", 100 * report.delta_clean.numpy(), "%{y:+.1f} pp clean accuracy when dropped"),
        ("Δ adv. acc. (pp)", 100 * report.delta_adv.numpy(), "%{y:+.1f} pp adversarial accuracy when dropped"),
        ("targeting (%)", 100 * report.targeting.numpy(), "%{y:.1f}% of the attack's change"),
    ]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07)
    for number, (axis_title, values, hover) in enumerate(rows, start=1):
        fig.add_trace(
            go.Bar(
                x=filters,
                y=values,
                name=axis_title,
                marker=dict(color=colors, line=dict(width=0)),
                customdata=list(report.labels),
                hovertemplate=f"filter %{{x}} (%{{customdata}})<br>{hover}<extra></extra>",
                showlegend=False,
            ),
            row=number,
            col=1,
        )
        fig.update_yaxes(
            title_text=axis_title, showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=INK, zerolinewidth=1,
            row=number, col=1,
        )
    if report.control is not None:
        fig.add_trace(
            go.Scatter(
                x=filters,
                y=100 * report.control.targeting.numpy(),
                mode="markers",
                name=f"noise of the same {report.control.norm.replace('Linf', 'L∞')}",
                marker=dict(symbol="diamond", size=8, color=INK),
                hovertemplate="filter %{x}<br>%{y:.1f}% of the matched noise's change<extra></extra>",
                showlegend=True,
            ),
            row=3,
            col=1,
        )
    for label in LABELS:  # legend entries only: one per label present
        if label in report.labels:
            fig.add_trace(
                go.Bar(x=[None], y=[None], name=label, marker=dict(color=label_color(label)), showlegend=True),
                row=1,
                col=1,
            )
    fig.update_xaxes(tickmode="array", tickvals=filters, ticktext=[str(f) for f in filters], showgrid=False)
    fig.update_xaxes(title_text=f"filter of {report.layer} (index)", row=3, col=1)
    eps = report.params.get("eps")
    attack = report.attack.upper() + (f" ε={eps:.3g}" if isinstance(eps, (int, float)) else "")
    apply_layout(
        fig, title=title or f"Nodal dropout and targeting ({attack}, {plural(report.images, 'image')})", height=560
    )
    fig.update_layout(
        showlegend=True, bargap=0.25,
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom", title_text=""),
        margin=dict(l=10, r=24, t=80, b=10),
    )
    return fig


def rescale_curve(
    evaluations: Sequence[RescaleEvaluation], beta: float | None = None, title: str | None = None
) -> go.Figure:
    """Accuracy after compress/amplify over β: clean, adversarial white-box, adversarial transfer.

    β = 0 (the model unchanged) is the "before" of the evaluations. A dashed vertical line marks
    ``beta`` (the slider's value) when given. All evaluations must share the attack and images.
    """
    evaluations = list(evaluations)
    if not evaluations or not all(isinstance(e, RescaleEvaluation) for e in evaluations):
        raise InputError("evaluations must be a non-empty list of RescaleEvaluation")
    first = evaluations[0]
    for e in evaluations[1:]:
        if (e.attack, e.images, e.clean_before, e.adv_before) != (first.attack, first.images, first.clean_before, first.adv_before):
            raise InputError("evaluations of different attacks or images cannot share one curve")
    by_beta = {e.beta: e for e in evaluations}
    betas = sorted(by_beta)
    xs = ([0.0] if 0.0 not in by_beta else []) + betas

    def series(attr: str, before: float) -> list[float]:
        return [100 * (before if (b == 0.0 and b not in by_beta) else getattr(by_beta[b], attr)) for b in xs]

    lines = [
        ("clean", series("clean_after", first.clean_before), PALETTE["clean"], "solid"),
        ("adversarial, white-box (copy re-attacked)", series("adv_after", first.adv_before), PALETTE["adversarial"], "solid"),
        ("adversarial, transfer (original's images)", series("adv_transfer_after", first.adv_before), PALETTE["adversarial"], "dot"),
    ]
    fig = go.Figure()
    for name, values, color, dash in lines:
        fig.add_trace(
            go.Scatter(
                x=xs, y=values, name=name, mode="lines+markers",
                line=dict(color=color, width=2.5, dash=dash), marker=dict(size=8, color=color),
                hovertemplate=f"{name}<br>β = %{{x:.2f}}: %{{y:.1f}}%<extra></extra>",
            )
        )
    if beta is not None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta <= 1:
            raise InputError(f"beta must be in [0, 1], got {beta!r}")
        fig.add_vline(x=float(beta), line=dict(color=INK, width=1.5, dash="dash"), name="chosen β")
    apply_layout(fig, title=title or f"Compress/amplify over β ({first.attack.upper()}, {plural(first.images, 'image')})", height=380)
    fig.update_xaxes(title_text="β (rescaling strength, unitless)", range=[-0.03, max(xs) + 0.03], showgrid=True, gridcolor=GRID)
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 103], showgrid=True, gridcolor=GRID, zeroline=False)
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", x=0.0, xanchor="left", y=1.0, yanchor="bottom", title_text=""),
        margin=dict(l=10, r=24, t=90, b=10),
    )
    return fig


def rescale_table(evaluation: RescaleEvaluation) -> list[dict]:
    """Rows for a table: clean / white-box / transfer accuracy before and after, in %."""
    if not isinstance(evaluation, RescaleEvaluation):
        raise InputError(f"evaluation must be a RescaleEvaluation, got {type(evaluation).__name__}")
    frame = evaluation.to_frame()
    return [
        {
            "metric": row.metric,
            "before (%)": round(100 * row.before, 1),
            "after (%)": round(100 * row.after, 1),
            "change (pp)": round(100 * (row.after - row.before), 1),
        }
        for row in frame.itertuples()
    ]


__all__ = [
    "Group",
    "Panel",
    "display_size",
    "image_grid",
    "LABEL_COLORS",
    "dropout_chart",
    "filter_grid",
    "label_color",
    "outlined_filters",
    "rescale_curve",
    "rescale_table",
]
