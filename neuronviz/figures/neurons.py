"""Figures of neuron influence: before vs after, front/tail bars, group transitions, layer overviews.

NIP (Chen et al., arXiv:2112.13060) observes that attacks suppress the *front* neurons (the most
influential ones toward the correct class) and lift the *tail* ones. These builders show that
observation on one image, from the library's results (:mod:`neuronviz.methods.influence`,
:mod:`neuronviz.methods.attribution`):

- :func:`influence_scatter`: every neuron of a layer, influence on the clean image (x) against
  influence after the attack or a defence (y), coloured by its clean group, with the line y = x.
- :func:`group_bars`: the clean front and tail neurons, clean vs after, side by side.
- :func:`transition_heatmap`: the 3×3 counts of neurons moving between groups.
- :func:`layer_overview`: rank correlation, front overlap and front/tail shares per layer, over
  the whole network in forward order, with the selected layer highlighted.
- :func:`restoration_overview` and :func:`restoration_sentence`: the same rank comparison with
  the clean image for the adversarial image and each restoration ("does the defence restore the
  clean ranking?").
- :func:`attribution_pair`: two input attribution maps (clean, adversarial) on one colour scale.

Colour meanings follow :data:`neuronviz.figures.base.PALETTE`: front blue, middle grey, tail
orange; clean green, adversarial vermillion, restored purple. Attribution maps use the project's
one signed scale (:data:`~neuronviz.figures.base.DIVERGING`): vermillion for evidence *for* the
class, blue for evidence *against* it.

Longer than 500 lines on purpose: the Neurons page's figures, each a short, independent builder
with its input checks; the shared helpers live in :mod:`neuronviz.figures.base`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from neuronviz.figures.base import DIVERGING, FONT_SIZE, GRID, INK, PALETTE, SEQUENTIAL, apply_layout, as_map
from neuronviz.infra.errors import InputError
from neuronviz.methods.attribution import get_attribution
from neuronviz.methods.influence import GROUP_NAMES, InfluenceMap, InfluenceShift, NeuronGroups, get_influence_method

#: Columns :func:`layer_overview` and :func:`restoration_overview` read from a
#: :func:`neuronviz.methods.influence.layer_shift_table` frame.
OVERVIEW_COLUMNS = ("layer", "spearman", "front_overlap", "front_suppressed_activation_share", "tail_enhanced_activation_share")

#: Line styles of the conditions compared with the clean image, in order: the attack, then defences.
_DASHES = ("solid", "dash", "dot", "dashdot")
_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x")


# -- validation ---------------------------------------------------------------------------------


def _check_map(value: object, name: str) -> InfluenceMap:
    if not isinstance(value, InfluenceMap):
        raise InputError(f"{name} must be an InfluenceMap, got {type(value).__name__}")
    return value


def _check_pair(before: object, after: object, image: int) -> tuple[InfluenceMap, InfluenceMap]:
    before, after = _check_map(before, "before"), _check_map(after, "after")
    if before.layer != after.layer:
        raise InputError(f"before is layer {before.layer!r}, after is {after.layer!r}")
    if tuple(before.values.shape) != tuple(after.values.shape):
        raise InputError(f"before {tuple(before.values.shape)} and after {tuple(after.values.shape)} differ in shape")
    if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < before.values.shape[0]:
        raise InputError(f"image must be an index in [0, {before.values.shape[0] - 1}], got {image!r}")
    for which, values in (("before", before.values), ("after", after.values)):
        if not bool(torch.isfinite(values[image]).all()):
            raise InputError(f"{which} influence of {before.layer!r} contains NaN or infinite values")
    return before, after


def _check_groups(groups: object, before: InfluenceMap, name: str = "groups") -> NeuronGroups:
    if not isinstance(groups, NeuronGroups):
        raise InputError(f"{name} must be NeuronGroups (neuronviz.methods.influence.partition), got {type(groups).__name__}")
    if tuple(groups.labels.shape) != tuple(before.values.shape):
        raise InputError(
            f"{name} cover {tuple(groups.labels.shape)} neurons, the influence map {tuple(before.values.shape)}"
        )
    return groups


def _check_color(key: str) -> str:
    if key not in PALETTE:
        raise InputError(f"color key must be one of {sorted(PALETTE)}, got {key!r}")
    return PALETTE[key]


def influence_axis_title(class_name: str, method: str, condition: str | None = None) -> str:
    """``"<condition>: influence toward class <name><br>(activation × gradient, logit units)"``."""
    try:
        units = get_influence_method(method).unit  # the registry entry's unit
    except InputError:
        units = f"{method}"
    text = f"influence toward class {class_name}<br>({units})"
    return f"{condition}: {text}" if condition else text[0].upper() + text[1:]


def _group_name(label: int) -> str:
    return GROUP_NAMES[int(label)]


# -- one layer: scatter, bars, transition ---------------------------------------------------------


def influence_scatter(
    before: InfluenceMap,
    after: InfluenceMap,
    shift: InfluenceShift,
    class_name: str,
    after_label: str = "adversarial",
    image: int = 0,
    title: str | None = None,
    height: int = 520,
) -> go.Figure:
    """Influence before (x, clean image) vs after (y), one point per neuron of one layer.

    Points are coloured by their group on the clean image (``shift.groups_before``: front /
    middle / tail, one trace each, in that order); the hover names the neuron
    (:meth:`InfluenceMap.neuron_label`) with both values and its group before and after. The
    dashed line is y = x: points below it lost influence toward the class (for a tail neuron, whose influence
    is negative, that is the paper's enhancement), points above gained.
    ``customdata`` of every point: ``[neuron index, label, group before, group after]``.
    """
    before, after = _check_pair(before, after, image)
    groups_before, groups_after = _check_shift(shift, before)
    x = before.values[image].double().numpy()
    y = after.values[image].double().numpy()
    labels_before = groups_before.labels[image].numpy()
    labels_after = groups_after.labels[image].numpy()

    fig = go.Figure()
    low = float(min(x.min(), y.min()))
    high = float(max(x.max(), y.max()))
    pad = 0.06 * (high - low) if high > low else max(abs(high), 1.0) * 0.1
    low, high = low - pad, high + pad
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            line=dict(color=INK, width=1.2, dash="dash"),
            name="y = x (unchanged)",
            hoverinfo="skip",
        )
    )
    for group, key in enumerate(GROUP_NAMES):
        members = np.flatnonzero(labels_before == group)
        fig.add_trace(_group_points(before, x, y, members, key, labels_after, after_label))
    default_title = f"{before.layer}: influence, clean vs {after_label}"
    apply_layout(fig, title=title if title is not None else default_title, height=height)
    _scatter_layout(fig, (low, high), influence_axis_title(class_name, before.method, "clean image"),
                    influence_axis_title(class_name, after.method, after_label))
    return fig


def _check_shift(shift: object, before: InfluenceMap) -> tuple[NeuronGroups, NeuronGroups]:
    """``shift``'s groups before and after, checked against the clean map ``before``."""
    if not isinstance(shift, InfluenceShift):
        raise InputError(
            f"shift must be an InfluenceShift (neuronviz.methods.influence.influence_shift), got {type(shift).__name__}"
        )
    if shift.layer != before.layer:
        raise InputError(f"shift is of layer {shift.layer!r}, the influence maps of {before.layer!r}")
    groups_before = _check_groups(shift.groups_before, before, "shift.groups_before")
    groups_after = _check_groups(shift.groups_after, before, "shift.groups_after")
    return groups_before, groups_after


def _group_points(before: InfluenceMap, x, y, members, key: str, labels_after, after_label: str) -> go.Scatter:
    """The neurons ``members`` of one clean group (``key``) as points, hover naming both groups."""
    return go.Scatter(
        x=x[members].tolist(),
        y=y[members].tolist(),
        mode="markers",
        name=f"{key} (clean)",
        marker=dict(
            color=PALETTE[key],
            size=11 if key != "middle" else 8,
            opacity=0.9 if key != "middle" else 0.7,
            line=dict(color="white", width=0.8),
        ),
        customdata=[
            [int(j), before.neuron_label(int(j)), key, _group_name(labels_after[j])] for j in members
        ],
        hovertemplate=(
            "<b>%{customdata[1]}</b><br>"
            "clean: %{x:.4g}<br>"
            f"{after_label}: " + "%{y:.4g}<br>"
            "group: %{customdata[2]} → %{customdata[3]}<extra></extra>"
        ),
    )


def _scatter_layout(fig: go.Figure, span: tuple[float, float], x_title: str, y_title: str) -> None:
    """Both axes over ``span``, the legend on top, and the two sentences reading the y = x line."""
    low, high = span
    axis = dict(range=[low, high], showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor="#BBBBBB", automargin=True)
    fig.update_xaxes(title_text=x_title, **axis)
    fig.update_yaxes(title_text=y_title, **axis)
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0.0, xanchor="left", font=dict(size=FONT_SIZE - 1)),
        margin=dict(t=92, b=10),
        annotations=[
            dict(
                text="above the line: influence rose",
                xref="paper", yref="paper", x=0.02, y=0.98, xanchor="left", yanchor="top",
                showarrow=False, font=dict(size=FONT_SIZE - 2, color=INK),
            ),
            dict(
                text="below the line: influence fell",
                xref="paper", yref="paper", x=0.98, y=0.02, xanchor="right", yanchor="bottom",
                showarrow=False, font=dict(size=FONT_SIZE - 2, color=INK),
            ),
        ],
    )


def group_bars(
    before: InfluenceMap,
    after: InfluenceMap,
    groups: NeuronGroups,
    class_name: str,
    after_label: str = "adversarial",
    after_color: str = "adversarial",
    image: int = 0,
    title: str | None = None,
    height: int = 420,
    control: InfluenceMap | None = None,
    control_label: str = "noise of the same size",
) -> go.Figure:
    """The clean front neurons (left) and tail neurons (right): influence clean vs after, per neuron.

    Bars are grouped per neuron: clean in ``PALETTE["clean"]``, after in ``PALETTE[after_color]``,
    and, when ``control`` is given (the matched control's influence toward the same class), the
    control in ``PALETTE["control"]`` beside them, so the attack's change reads against the change
    of random noise of the same size. Front neurons are in decreasing clean influence, tail
    neurons in increasing (as ``groups`` lists them). Traces: clean front, after front[, control
    front], clean tail, after tail[, control tail].
    """
    before, after = _check_pair(before, after, image)
    groups = _check_groups(groups, before)
    color_after = _check_color(after_color)
    front = [int(j) for j in groups.front[image]]
    tail = [int(j) for j in groups.tail[image]]
    k, t = len(front), len(tail)
    tail_title = f"Tail: the {t} least influential" if groups.tail_rule == "bottom" else f"Tail: ranks {k + 1}–{k + t}"
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(f"Front: the {k} most influential", tail_title),
        horizontal_spacing=0.1,
    )
    for col, members in ((1, front), (2, tail)):
        names = [before.neuron_label(j) for j in members]
        series = [("clean", before.values[image], PALETTE["clean"]), (after_label, after.values[image], color_after)]
        if control is not None:
            series.append((control_label, _check_pair(before, control, image)[1].values[image], PALETTE["control"]))
        for condition, values, color in series:
            fig.add_trace(
                go.Bar(
                    x=names,
                    y=[float(values[j]) for j in members],
                    name=condition,
                    legendgroup=condition,
                    showlegend=col == 1,
                    marker=dict(color=color),
                    customdata=[[j, names[i]] for i, j in enumerate(members)],
                    hovertemplate=f"<b>%{{customdata[1]}}</b><br>{condition}: " + "%{y:.4g}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    default_title = f"{before.layer}: the clean front and tail neurons"
    apply_layout(fig, title=title if title is not None else default_title, height=height)
    fig.update_layout(
        barmode="group",
        bargap=0.25,
        bargroupgap=0.05,
        showlegend=True,
        legend=dict(orientation="h", yanchor="bottom", y=1.08, x=0.0, xanchor="left"),
        margin=dict(t=100, b=10),
    )
    fig.update_annotations(font=dict(size=FONT_SIZE, color=INK))  # the panel titles
    fig.update_xaxes(title_text="neuron", type="category", tickangle=-45 if max(k, t) > 8 else 0, automargin=True)
    fig.update_yaxes(showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=INK, zerolinewidth=1, automargin=True)
    fig.update_yaxes(title_text=influence_axis_title(class_name, before.method), row=1, col=1)
    return fig


def transition_heatmap(
    transition: torch.Tensor,
    after_label: str = "adversarial",
    image: int = 0,
    title: str | None = None,
    height: int = 420,
) -> go.Figure:
    """Counts of neurons moving from their clean group (rows) to their group after (columns).

    ``transition``: ``(3, 3)`` or ``(N, 3, 3)`` counts (``InfluenceShift.transition``), groups in
    the order front, middle, tail. Each cell is annotated with its count; the hover adds the
    share of the row (the clean group). The diagonal holds the neurons that kept their group.
    """
    if not isinstance(transition, torch.Tensor):
        raise InputError(f"transition must be a torch.Tensor, got {type(transition).__name__}")
    counts = transition.detach().cpu()
    if counts.dim() == 3:
        if isinstance(image, bool) or not isinstance(image, int) or not 0 <= image < counts.shape[0]:
            raise InputError(f"image must be an index in [0, {counts.shape[0] - 1}], got {image!r}")
        counts = counts[image]
    if tuple(counts.shape) != (3, 3):
        raise InputError(f"transition must be (3, 3) or (N, 3, 3), got {tuple(transition.shape)}")
    if counts.is_floating_point() and not bool((counts == counts.round()).all()):
        raise InputError("transition must hold whole counts")
    z = counts.long().numpy()
    if (z < 0).any():
        raise InputError("transition counts must not be negative")
    row_totals = z.sum(1, keepdims=True)
    shares = np.divide(z, row_totals, out=np.zeros(z.shape, dtype=float), where=row_totals > 0)
    names = list(GROUP_NAMES)
    fig = go.Figure(
        go.Heatmap(
            z=z.tolist(),
            x=names,
            y=names,
            text=[[str(int(v)) for v in row] for row in z],
            texttemplate="%{text}",
            textfont=dict(size=FONT_SIZE + 6),
            customdata=shares.tolist(),
            colorscale=[[0.0, "#FFFFFF"], [1.0, PALETTE["front"]]],
            zmin=0,
            zmax=max(1, int(z.max())),
            showscale=False,
            xgap=3,
            ygap=3,
            hovertemplate=(
                "clean %{y} → " + f"{after_label} " + "%{x}<br>"
                "%{z} neurons (%{customdata:.0%} of the clean %{y})<extra></extra>"
            ),
        )
    )
    apply_layout(fig, title=title if title is not None else f"Group transition, clean → {after_label}", height=height)
    fig.update_xaxes(title_text=f"group after ({after_label})", showgrid=False, ticks="", constrain="domain")
    fig.update_yaxes(
        title_text="group on the clean image",
        autorange="reversed",  # front on top
        showgrid=False,
        ticks="",
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
    )
    return fig


# -- the whole network ----------------------------------------------------------------------------


def _check_frame(frame: object, name: str = "frame"):
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise InputError(
            f"{name} must be a pandas DataFrame (neuronviz.methods.influence.layer_shift_table), got {type(frame).__name__}"
        )
    missing = [c for c in OVERVIEW_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks the columns {missing}")
    if frame.empty:
        raise InputError(f"{name} has no layers")
    layers = [str(v) for v in frame["layer"]]
    if len(set(layers)) != len(layers):
        raise InputError(f"{name} names a layer twice")
    return frame


def _values(frame, column: str, scale: float = 1.0) -> list[float | None]:
    """Column values for a line (NaN → None, a gap: ρ is undefined for a constant layer)."""
    return [None if v is None or not math.isfinite(float(v)) else float(v) * scale for v in frame[column]]


def _selected_index(layers: Sequence[str], selected: str) -> int:
    if selected not in layers:
        raise InputError(f"selected layer {selected!r} is not among the frame's layers")
    return list(layers).index(selected)


def rho_range(*columns: Sequence[float | None]) -> list[float]:
    """A y range for Spearman ρ: up to 1, down to a little below the lowest value (at most −1).

    Rank correlations of a mild attack sit near 1; a fixed [−1, 1] range would flatten every
    difference, so the axis zooms in (its tick labels say where it starts)."""
    values = [v for column in columns for v in column if v is not None]
    lowest = min(values) if values else -1.0
    low = max(-1.05, lowest - 0.15 * (1.0 - lowest) - 0.02)
    return [low, 1.0 + 0.05 * (1.0 - low)]


def _sizes(count: int, index: int, small: int = 7, large: int = 14) -> list[int]:
    return [large if i == index else small for i in range(count)]


def _highlight(fig: go.Figure, index: int, rows: int) -> None:
    """A grey band behind the selected layer (category position ``index``) in every row."""
    for row in range(1, rows + 1):
        fig.add_vrect(
            x0=index - 0.5,
            x1=index + 0.5,
            fillcolor=PALETTE["neutral"],
            opacity=0.45,
            line_width=0,
            layer="below",
            row=row,
            col=1,
        )


def _layer_axes(fig: go.Figure, layers: Sequence[str], rows: int) -> None:
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=list(layers), showgrid=False, automargin=True
    )
    fig.update_xaxes(
        tickangle=-60 if len(layers) > 8 else 0,
        tickfont=dict(size=12),
        title_text="layer (forward order)",
        row=rows,
        col=1,
    )
    fig.update_yaxes(showgrid=True, gridcolor=GRID, zeroline=False, automargin=True)
    fig.update_annotations(font=dict(size=FONT_SIZE, color=INK))  # subplot titles


def layer_overview(
    frame,
    selected: str,
    after_label: str = "adversarial",
    after_color: str = "adversarial",
    title: str | None = None,
) -> go.Figure:
    """The shift clean → after in every layer, forward order, the ``selected`` layer highlighted.

    ``frame``: :func:`neuronviz.methods.influence.layer_shift_table` of clean vs after, or
    :func:`neuronviz.workflows.evidence.evidence_table` (then the matched control is drawn beside the attack,
    dashed and open-marked). Three rows: Spearman ρ of the influence ranking (1 = unchanged order;
    a gap where it is not defined); the front overlap (share of the clean front still front, %);
    the paper's direction on activations: the share of front neurons whose activation fell (front
    colour) and of tail neurons whose activation rose (tail colour), %. Shares carry their 95%
    Wilson interval as error bars (``_low``/``_high`` columns). Selected layer: larger markers and
    a grey band.
    """
    frame = _check_frame(frame)
    color = _check_color(after_color)
    layers = [str(v) for v in frame["layer"]]
    index = _selected_index(layers, selected)
    has_control = "control_front_overlap" in frame.columns
    rows = 3
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.07,
        subplot_titles=(
            f"Rank correlation of influence, clean vs {after_label}" + (" (dashed: matched noise)" if has_control else ""),
            "Front overlap: clean front neurons still front",
            f"Share of <span style='color:{PALETTE['front']}'><b>front neurons that lost activation</b></span>"
            f" and of <span style='color:{PALETTE['tail']}'><b>tail neurons that gained activation</b></span>",
        ),
    )
    sizes = _sizes(len(layers), index)
    for row, column, scale, name, line_color, value_format, kind in _overview_lines(after_label, color, has_control):
        fig.add_trace(_overview_trace(frame, layers, sizes, column, scale, name, line_color, value_format, kind), row=row, col=1)
    _highlight(fig, index, rows)
    default_title = f"Across the network: clean → {after_label} ({selected} highlighted)"
    apply_layout(fig, title=title if title is not None else default_title, height=720)
    rho_columns = [_values(frame, "spearman")] + ([_values(frame, "control_spearman")] if has_control else [])
    fig.update_yaxes(title_text="Spearman ρ", range=rho_range(*rho_columns), row=1, col=1)
    fig.update_yaxes(title_text="front overlap (%)", range=[-3, 103], row=2, col=1)
    fig.update_yaxes(title_text="share of group (%)", range=[-3, 103], row=3, col=1)
    _layer_axes(fig, layers, rows)
    fig.update_layout(margin=dict(t=70, b=10))  # the third row's title names its two colours
    return fig


def _overview_lines(after_label: str, color: str, has_control: bool) -> list[tuple]:
    """The overview's lines: (row, column, scale, name, colour, value format, kind), the matched
    control's copy of each (kind ``"control"``) when the frame has it."""
    lines = [
        (1, "spearman", 1.0, f"ρ (clean vs {after_label})", color, "%{y:.2f}", ""),
        (2, "front_overlap", 100.0, "front overlap", color, "%{y:.0f}%", ""),
        (3, "front_suppressed_activation_share", 100.0, "front suppressed", PALETTE["front"], "%{y:.0f}%", ""),
        (3, "tail_enhanced_activation_share", 100.0, "tail enhanced", PALETTE["tail"], "%{y:.0f}%", ""),
    ]
    if has_control:
        lines += [(row, f"control_{column}", scale, f"{name}, matched noise", line_color, fmt, "control")
                  for row, column, scale, name, line_color, fmt, _ in list(lines)]
    return lines


def _overview_trace(frame, layers: list[str], sizes: list[int], column: str, scale: float, name: str, line_color: str,
                    value_format: str, kind: str) -> go.Scatter:
    """One line of the overview across the layers, with its 95% interval as error bars where the
    frame has ``_low``/``_high`` columns; the control's dashed with open markers."""
    error = None
    if f"{column}_low" in frame.columns:
        values = _values(frame, column, scale)
        low, high = _values(frame, f"{column}_low", scale), _values(frame, f"{column}_high", scale)
        error = dict(
            type="data", symmetric=False, thickness=1.2, width=3, color=line_color,
            array=[None if v is None or h is None else h - v for v, h in zip(values, high)],
            arrayminus=[None if v is None or lo is None else v - lo for v, lo in zip(values, low)],
        )
    return go.Scatter(
        x=layers,
        y=_values(frame, column, scale),
        mode="lines+markers",
        name=name,
        line=dict(color=line_color, width=2 if kind != "control" else 1.5, dash="dash" if kind == "control" else "solid"),
        marker=dict(
            color="white" if kind == "control" else line_color, size=sizes,
            symbol="circle-open" if kind == "control" else "circle",
            line=dict(color=line_color if kind == "control" else INK,
                      width=[1.5 if s > 7 or kind == "control" else 0 for s in sizes]),
        ),
        error_y=error,
        hovertemplate=f"%{{x}}<br>{name}: {value_format}<extra></extra>",
    )


def _condition_style(position: int, condition: str) -> dict:
    """The attack in its colour, solid; each restoration in the restored colour with its own dash and marker."""
    if condition == "adversarial":  # wider, so it stays visible under a restoration that did not move
        return dict(color=PALETTE["adversarial"], dash="solid", symbol="circle", width=5.0)
    if condition == "clean":
        return dict(color=PALETTE["clean"], dash="solid", symbol="circle", width=5.0)
    return dict(
        color=PALETTE["restored"],
        dash=_DASHES[position % len(_DASHES)],
        symbol=_SYMBOLS[1 + position % (len(_SYMBOLS) - 1)],
        width=2.2,
    )


def _check_frames(frames: object) -> dict:
    if not isinstance(frames, Mapping) or not frames:
        raise InputError("frames must be a non-empty mapping condition → layer_shift_table frame")
    checked = {str(name): _check_frame(frame, f"frames[{name!r}]") for name, frame in frames.items()}
    orders = {name: [str(v) for v in frame["layer"]] for name, frame in checked.items()}
    first = next(iter(orders.values()))
    for name, order in orders.items():
        if order != first:
            raise InputError(f"frames[{name!r}] has other layers (or another order) than the first frame")
    return checked


def restoration_overview(
    frames: Mapping,
    selected: str,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Does a defence bring back the clean ranking? One line per condition, every layer.

    ``frames``: condition → :func:`neuronviz.methods.influence.layer_shift_table` of clean vs that
    condition (e.g. ``adversarial``, ``nip-guided``, ``pssr``), all with the same layers. Two
    rows: Spearman ρ with the clean influence, and the overlap with the clean front (%). The
    adversarial line is vermillion; restorations are purple, told apart by dash and marker.
    """
    frames = _check_frames(frames)
    labels = dict(labels or {})
    first = next(iter(frames.values()))
    layers = [str(v) for v in first["layer"]]
    index = _selected_index(layers, selected)
    rows = 2
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.09,
        subplot_titles=("Rank correlation with the clean influence", "Overlap with the clean front"),
    )
    sizes = _sizes(len(layers), index, small=7, large=13)
    restorations = 0
    for condition, frame in frames.items():
        style = _condition_style(restorations, condition)
        if condition not in ("adversarial", "clean"):
            restorations += 1
        name = labels.get(condition, condition)
        for row, column, scale, value_format in (
            (1, "spearman", 1.0, "%{y:.2f}"),
            (2, "front_overlap", 100.0, "%{y:.0f}%"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=_values(frame, column, scale),
                    mode="lines+markers",
                    name=name,
                    legendgroup=condition,
                    showlegend=row == 1,
                    line=dict(color=style["color"], dash=style["dash"], width=style["width"]),
                    marker=dict(color=style["color"], symbol=style["symbol"], size=sizes),
                    hovertemplate=f"%{{x}}<br>{name}: {value_format}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    _highlight(fig, index, rows)
    default_title = f"Back to the clean ranking? ({selected} highlighted)"
    apply_layout(fig, title=title if title is not None else default_title, height=580)
    rhos = [_values(frame, "spearman") for frame in frames.values()]
    fig.update_yaxes(title_text="Spearman ρ with clean", range=rho_range(*rhos), row=1, col=1)
    fig.update_yaxes(title_text="front overlap (%)", range=[-3, 103], row=2, col=1)
    _layer_axes(fig, layers, rows)
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0.0, xanchor="left"),
        margin=dict(t=100, b=10),
    )
    return fig


def restoration_sentence(frames: Mapping, layer: str, labels: Mapping[str, str] | None = None) -> str:
    """At ``layer``, which condition's ranking is closest to the clean one (highest ρ, then overlap).

    ``frames`` as for :func:`restoration_overview`. The sentence gives every condition's ρ and
    front overlap, so the claim can be checked in the chart.
    """
    frames = _check_frames(frames)
    labels = dict(labels or {})
    first = next(iter(frames.values()))
    _selected_index([str(v) for v in first["layer"]], layer)
    facts = []
    for condition, frame in frames.items():
        row = frame[frame["layer"].astype(str) == layer].iloc[0]
        rho = float(row["spearman"])
        facts.append((condition, rho, float(row["front_overlap"])))
    parts = [
        f"{labels.get(c, c)} ρ = {'n/a' if not math.isfinite(r) else f'{r:.2f}'} (front overlap {o:.0%})"
        for c, r, o in facts
    ]
    ranked = sorted(
        (f for f in facts if math.isfinite(f[1])), key=lambda f: (f[1], f[2]), reverse=True
    )
    if not ranked:
        return f"At {layer} the rank correlation is undefined (the influence is constant): " + "; ".join(parts) + "."
    best = ranked[0]
    ties = [f for f in ranked if (f[1], f[2]) == (best[1], best[2])]
    if len(ties) > 1:
        lead = f"At {layer}, {' and '.join(labels.get(f[0], f[0]) for f in ties)} are equally close to the clean ranking"
    else:
        lead = f"At {layer}, {labels.get(best[0], best[0])} is closest to the clean ranking"
    return f"{lead}: " + "; ".join(parts) + "."


# -- input attributions ---------------------------------------------------------------------------


def attribution_pair(
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    method: str,
    class_name: str,
    titles: tuple[str, str] = ("clean image", "adversarial image"),
    title: str | None = None,
    height: int = 400,
) -> go.Figure:
    """Two input attribution maps side by side on ONE colour scale, so they can be compared.

    ``clean``, ``adversarial``: ``(H, W)`` maps of :func:`neuronviz.methods.attribution.input_attribution`
    toward the same class. Maps with negative values (Integrated Gradients) get a symmetric
    diverging scale (:data:`~neuronviz.figures.base.DIVERGING`), vermillion for evidence for the
    class and blue against it, white at 0; others white to vermillion from 0. Both traces share ``layout.coloraxis`` (one colour bar).
    """
    entry = get_attribution(method)  # an unknown method: InputError naming the registered ones
    if not isinstance(titles, (tuple, list)) or len(titles) != 2:
        raise InputError(f"titles must be two strings, got {titles!r}")
    left = as_map(clean, "clean", floating=False, dtype=torch.float64).numpy()
    right = as_map(adversarial, "adversarial", floating=False, dtype=torch.float64).numpy()
    if left.shape != right.shape:
        raise InputError(f"clean {left.shape} and adversarial {right.shape} maps differ in shape")
    signed = bool(min(left.min(), right.min()) < 0)
    peak = float(max(np.abs(left).max(), np.abs(right).max())) or 1.0
    if signed:
        scale, low = DIVERGING, -peak
    else:
        scale, low = SEQUENTIAL, 0.0
    height_px, width_px = left.shape
    fig = make_subplots(rows=1, cols=2, subplot_titles=tuple(titles), horizontal_spacing=0.04)
    for col, values in ((1, left), (2, right)):
        fig.add_trace(
            go.Heatmap(
                z=values.tolist(),
                coloraxis="coloraxis",
                hovertemplate="row %{y}, column %{x}<br>attribution %{z:.3g}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    label = entry.label
    apply_layout(fig, title=title if title is not None else f"{label} toward class {class_name}", height=height)
    fig.update_layout(
        coloraxis=dict(
            colorscale=scale,
            cmin=low,
            cmax=peak,
            colorbar=dict(
                title=dict(text=f"{label}<br>({entry.unit})", side="right", font=dict(size=FONT_SIZE - 1)),
                thickness=14,
                tickfont=dict(size=12),
                exponentformat="power",
            ),
        ),
        margin=dict(l=4, r=4, b=4),
        plot_bgcolor="white",
    )
    fig.update_annotations(font=dict(size=FONT_SIZE, color=INK))
    axis = dict(
        showticklabels=False,
        ticks="",
        showgrid=False,
        zeroline=False,
        showline=True,
        linecolor=PALETTE["neutral"],
        mirror=True,
        constrain="domain",
    )
    fig.update_xaxes(range=[-0.5, width_px - 0.5], **axis)
    fig.update_yaxes(range=[height_px - 0.5, -0.5], **axis)
    fig.update_yaxes(scaleanchor="x", scaleratio=1, row=1, col=1)
    fig.update_yaxes(scaleanchor="x2", scaleratio=1, row=1, col=2)
    return fig
