"""Figures of a batch evaluation (:mod:`neuronviz.workflows.batch`): accuracies with and without defences,
and the same per true class.

Colours follow the one palette: ``clean`` for clean images, ``adversarial`` for attacked images
without a defence, ``restored`` for attacked images after a defence (defences told apart by their
name on the axis or, in the per-class view, by a hatch pattern).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from neuronviz.figures.base import GRID, INK, PALETTE, apply_layout
from neuronviz.figures.captions import plural
from neuronviz.infra.errors import InputError
from neuronviz.methods.stats import Rate
from neuronviz.workflows.batch import BatchRates, BatchResult, BatchSummary, defence_label

#: Hatch patterns that tell the defences apart in the per-class view (first: solid).
DEFENCE_PATTERNS = ("", "/", "x", ".", "\\", "+")
PER_CLASS_METRICS = ("accuracy", "attack_success")


def _percent(value: float) -> float | None:
    return None if value is None or math.isnan(value) else 100.0 * float(value)


def _label(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def _error_bars(rates: Sequence[Rate | None]) -> dict:
    """Plotly ``error_y`` of the bars: each rate's 95% Wilson interval (percent points; none for a
    bar with no rate or an undefined one)."""
    plus = [100.0 * (r.high - r.share) if r is not None and r.share is not None and r.high is not None else None for r in rates]
    minus = [100.0 * (r.share - r.low) if r is not None and r.share is not None and r.low is not None else None for r in rates]
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, color=INK, thickness=1.2, width=3)


def _legend() -> dict:
    return dict(orientation="h", x=0.0, xanchor="left", y=1.0, yanchor="bottom", font=dict(size=13), title_text="")


def accuracy_figure(summary: BatchSummary, title: str = "Accuracy with and without defences", height: int = 440,
                    rates: BatchRates | None = None) -> go.Figure:
    """Grouped bars: for "no defence" and each defence, the accuracy on the clean images
    (``clean`` colour) and on the attacked images (``adversarial`` without a defence,
    ``restored`` after one). The clean bar of a defence is its cost on benign inputs.

    Bars are labelled with their percentage; the x axis names the defences. With ``rates``
    (:meth:`neuronviz.workflows.batch.BatchResult.rates`), each bar carries its 95% Wilson interval.
    """
    if not isinstance(summary, BatchSummary):
        raise InputError(f"summary must be a BatchSummary, got {type(summary).__name__}")
    defences = list(summary.accuracy_after)
    groups = ["no defence", *(defence_label(d, summary.method_labels) for d in defences)]
    clean = [_percent(summary.clean_accuracy), *(_percent(summary.clean_accuracy_after[d]) for d in defences)]
    attacked = [_percent(summary.adversarial_accuracy), *(None for _ in defences)]
    restored = [None, *(_percent(summary.accuracy_after[d]) for d in defences)]
    intervals: dict[str, list[Rate | None]] = {"clean": [], "attacked": [], "restored": []}
    if rates is not None:
        intervals = {
            "clean": [rates.clean_accuracy, *(rates.clean_accuracy_after[d] for d in defences)],
            "attacked": [rates.adversarial_accuracy, *(None for _ in defences)],
            "restored": [None, *(rates.accuracy_after[d] for d in defences)],
        }
    fig = go.Figure()
    series = (
        ("clean images", clean, PALETTE["clean"], "clean", intervals["clean"]),
        ("attacked, no defence", attacked, PALETTE["adversarial"], "attacked", intervals["attacked"]),
        ("attacked, after the defence", restored, PALETTE["restored"], "attacked", intervals["restored"]),
    )
    for name, values, colour, group, errors in series:
        if all(v is None for v in values):
            continue
        fig.add_trace(
            go.Bar(
                name=name,
                x=groups,
                y=values,
                offsetgroup=group,  # the two "attacked" series share one slot per group
                marker=dict(color=colour, line=dict(color=INK, width=0)),
                text=[_label(v) if v is not None else "" for v in values],
                textposition="outside",
                cliponaxis=False,
                error_y=_error_bars(errors) if errors else None,
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.1f}}%<extra></extra>",
            )
        )
    apply_layout(fig, title=title, height=height)
    fig.update_layout(barmode="group", bargap=0.3, bargroupgap=0.06, showlegend=True, legend=_legend(), margin=dict(t=96, b=10))
    fig.update_yaxes(title_text="Accuracy (% of images)", range=[0, 112], tickvals=[0, 25, 50, 75, 100], gridcolor=GRID, zeroline=False)
    fig.update_xaxes(title_text=f"Defence ({plural(summary.images, 'image')})", showgrid=False)
    return fig


def per_class_figure(
    result: BatchResult,
    class_names: Sequence[str],
    metric: str = "accuracy",
    title: str | None = None,
    height: int = 440,
) -> go.Figure:
    """Bars per true class (classes present in the batch, ascending).

    ``metric="accuracy"``: clean accuracy (``clean``), adversarial accuracy (``adversarial``) and
    the accuracy after each defence (``restored``, one hatch pattern per defence).
    ``metric="attack_success"``: the attack's success rate (``adversarial``) and each defence's
    DSR over that class's fooled images (``restored``); a class the attack never fooled has no
    DSR bar. Hovering a bar shows the class's image count. Every bar carries its 95% Wilson
    interval (:meth:`neuronviz.workflows.batch.BatchResult.rates` over the class's images).
    """
    if not isinstance(result, BatchResult):
        raise InputError(f"result must be a BatchResult, got {type(result).__name__}")
    if metric not in PER_CLASS_METRICS:
        raise InputError(f"metric must be one of {PER_CLASS_METRICS}, got {metric!r}")
    names = [str(c) for c in class_names]
    if result.images and int(result.labels.max()) >= len(names):
        raise InputError(f"label {int(result.labels.max())} has no name: {len(names)} class names given")
    table = result.per_class(names)
    x = table["name"].tolist()
    counts = table["images"].tolist()
    per_class = [result.rates(result.labels == cls) for cls in table["class"].tolist()]

    def rate_for(column: str, r: BatchRates) -> Rate:
        if ":" not in column:
            return getattr(r, column)
        d, kind = column.split(":", 1)
        return {"dsr": r.dsr, "accuracy": r.accuracy_after, "clean_accuracy": r.clean_accuracy_after}[kind][d]

    if metric == "accuracy":
        series = [
            ("clean", "clean_accuracy", PALETTE["clean"], ""),
            ("attacked", "adversarial_accuracy", PALETTE["adversarial"], ""),
        ]
        series += [
            (f"after {defence_label(d, result.method_labels)}", f"{d}:accuracy", PALETTE["restored"], DEFENCE_PATTERNS[i % len(DEFENCE_PATTERNS)])
            for i, d in enumerate(result.defences)
        ]
        y_title = "Accuracy (% of the class's images)"
        title = title or "Accuracy per true class"
    else:
        series = [("attack success", "attack_success", PALETTE["adversarial"], "")]
        series += [
            (f"DSR {defence_label(d, result.method_labels)}", f"{d}:dsr", PALETTE["restored"], DEFENCE_PATTERNS[i % len(DEFENCE_PATTERNS)])
            for i, d in enumerate(result.defences)
        ]
        y_title = "Rate (%)"
        title = title or "Attack success and defence success (DSR) per true class"
    fig = go.Figure()
    for name, column, colour, pattern in series:
        values = [_percent(v) for v in table[column].tolist()]
        fig.add_trace(
            go.Bar(
                name=name,
                x=x,
                y=values,
                customdata=counts,
                error_y=_error_bars([rate_for(column, r) for r in per_class]),
                marker=dict(
                    color=colour,
                    pattern=dict(shape=pattern, fgcolor=INK, fgopacity=0.55, size=7, solidity=0.25),
                    line=dict(color=INK, width=0.5 if pattern else 0),
                ),
                hovertemplate=f"{name}<br>class %{{x}} (%{{customdata}} images): %{{y:.1f}}%<extra></extra>",
            )
        )
    apply_layout(fig, title=title, height=height)
    fig.update_layout(barmode="group", bargap=0.22, bargroupgap=0.04, showlegend=True, legend=_legend(), margin=dict(t=96, b=10))
    fig.update_yaxes(title_text=y_title, range=[0, 105], tickvals=[0, 25, 50, 75, 100], gridcolor=GRID, zeroline=False)
    fig.update_xaxes(title_text="True class", type="category", showgrid=False)
    return fig
