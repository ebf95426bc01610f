"""Figure builders: pure functions from tensors to ``plotly.graph_objects.Figure``.

One visual language for the whole project (dashboard, exports, CLI, notebooks):

- :data:`PALETTE` names every colour a figure may use. It is the Okabe–Ito set (Okabe & Ito,
  "Color Universal Design", 2008), distinguishable with the common colour-vision deficiencies:
  neuron groups are ``front`` / ``middle`` / ``tail``; images and predictions are ``clean`` /
  ``adversarial`` / ``restored``; everything not highlighted is ``neutral``.
- :func:`apply_layout` gives every figure the same explicit template, fonts and margins.
  ``import streamlit`` changes plotly's *default* template, so figures never rely on it.
- :func:`export_config` is the ``config`` for ``st.plotly_chart``: the toolbar's camera button
  downloads an SVG (vector, so it stays sharp at any print size).
- :data:`GRID` is every axis grid's colour; :data:`DIVERGING`, :data:`SEQUENTIAL` and
  :data:`GREYS` are the colour scales.
- Layout helpers shared by the subject modules: :func:`image_grid` (many small heatmaps on one
  pair of axes, :class:`Panel` / :class:`Group`, :func:`display_size`), :func:`two_colour_axes`
  (two shared colour axes with their bars at the right), :func:`as_image` / :func:`as_map` (the
  input checks of one image and of one 2-D map).

Builders return figures and never show them. They validate their inputs at the boundary and
raise :class:`neuronviz.infra.errors.InputError` with a precise message. This module imports only
plotly, numpy and torch (``import neuronviz`` must not import streamlit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

from neuronviz.infra.errors import InputError

#: Named colours (Okabe–Ito). Figures take colours from here only, by name.
PALETTE: dict[str, str] = {
    "front": "#0072B2",  # blue: most influential neurons
    "middle": "#999999",  # grey: the bulk in between
    "tail": "#E69F00",  # orange: least influential neurons
    "clean": "#009E73",  # bluish green: the benign image and its prediction
    "adversarial": "#D55E00",  # vermillion: the attacked image
    "restored": "#CC79A7",  # reddish purple: after a defence
    "neutral": "#C4C4C4",  # light grey: bars and marks that are not highlighted
}

#: The one scale for signed values centred on 0 (perturbations, weights, signed attributions,
#: differences): negative blue, zero white, positive vermillion (Okabe–Ito's diverging pair).
DIVERGING: list = [[0.0, PALETTE["front"]], [0.5, "#FFFFFF"], [1.0, PALETTE["adversarial"]]]
#: Its positive half, for magnitudes from 0 (saliency, unsigned maps).
SEQUENTIAL: list = [[0.0, "#FFFFFF"], [1.0, PALETTE["adversarial"]]]
#: Grey pixels: black = 0, white = 1 (one-channel images and masks' backgrounds).
GREYS: list = [[0.0, "#000000"], [1.0, "#FFFFFF"]]

#: Text and line colour (near-black reads better than pure black on screens and paper).
INK = "#222222"
#: The light grid lines of every axis that shows a grid.
GRID = "#E6E6E6"
#: The registered plotly template every figure uses: plotly_white's layout (white background,
#: light grid) and its defaults for the trace types the project draws, without the defaults of
#: the two dozen other trace types, which plotly deep-copies into every figure (~20 ms each).
TEMPLATE = "neuronviz"
_TRACE_TYPES = ("bar", "scatter", "scattergl", "heatmap", "histogram", "contour")


def _register_template() -> go.layout.Template:
    white = pio.templates["plotly_white"]
    template = go.layout.Template(
        layout=white.layout,
        data={kind: getattr(white.data, kind) for kind in _TRACE_TYPES if getattr(white.data, kind)},
    )
    pio.templates[TEMPLATE] = template
    return template


_TEMPLATE = _register_template()
#: Streamlit's own typeface first (the dashboard), then common sans-serifs (exports elsewhere).
FONT_FAMILY = "'Source Sans', 'Source Sans 3', 'Source Sans Pro', 'Helvetica Neue', Arial, sans-serif"
#: Base font size in px: readable when a figure is printed at column width.
FONT_SIZE = 14


def apply_layout(fig: go.Figure, title: str | None = None, height: int | None = None) -> go.Figure:
    """Give ``fig`` the project's look (template, fonts, margins, title); returns ``fig``."""
    fig.update_layout(
        template=_TEMPLATE,
        font=dict(family=FONT_FAMILY, size=FONT_SIZE, color=INK),
        title=dict(
            text=title or "",
            font=dict(size=FONT_SIZE + 3, color=INK),
            x=0.0,
            xanchor="left",
            xref="container",  # flush left with the figure, not with the plot area
            pad=dict(l=10),
            y=0.98,
            yanchor="top",
            yref="container",
        ),
        margin=dict(l=10, r=24, t=56 if title else 16, b=10),
        paper_bgcolor="white",
        plot_bgcolor="white",
        hoverlabel=dict(font=dict(family=FONT_FAMILY, size=FONT_SIZE - 1)),
        showlegend=False,
    )
    if height is not None:
        fig.update_layout(height=height)
    return fig


def export_config(filename: str = "neuronviz-figure", scale: int = 4) -> dict:
    """``config`` for ``st.plotly_chart``: SVG download from the toolbar, no plotly logo.

    ``scale`` multiplies the rendered size; it matters for the raster fallback some browsers use
    and keeps line widths proportional in the SVG.
    """
    if scale < 1:
        raise InputError(f"scale must be at least 1, got {scale}")
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "svg", "filename": filename, "scale": int(scale)},
        "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    }


def _as_probabilities(probs: torch.Tensor, num_classes: int) -> np.ndarray:
    if not isinstance(probs, torch.Tensor):
        raise InputError(f"probs must be a torch.Tensor, got {type(probs).__name__}")
    values = probs.detach().cpu()
    if values.dim() == 2 and values.shape[0] == 1:
        values = values[0]
    if values.dim() != 1:
        raise InputError(f"probs must be one probability vector (K,), got shape {tuple(probs.shape)}")
    if values.shape[0] != num_classes:
        raise InputError(f"probs has {values.shape[0]} entries but there are {num_classes} class names")
    array = values.to(torch.float64).numpy()
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1 + 1e-6:
        raise InputError("probs must be finite probabilities in [0, 1] (apply softmax to logits first)")
    return array


def prediction_bars(
    probs: torch.Tensor,
    class_names: Sequence[str],
    k: int = 5,
    title: str = "Top-5 prediction",
    color_key: str = "clean",
    true_class: int | None = None,
    max_chars: int = 28,
    true_mark: str = " (true)",
) -> go.Figure:
    """Horizontal bars of the ``k`` most probable classes, the most probable on top.

    Class names longer than ``max_chars`` are cut at the end with "…" (the hover shows the full
    name), so a long ImageNet label is never clipped at its start by a narrow figure;
    ``true_mark`` follows the true class's name.

    The top bar is drawn in ``PALETTE[color_key]``, the others in ``PALETTE["neutral"]``; each bar
    is labelled with its probability in percent. The true class, when given, is marked "(true)"
    in its tick label and outlined in ink; when it is not among the top ``k`` it is appended as
    an extra bar at the bottom, so its probability is always visible.

    Rows are positions (``y = 0, 1, ...`` with class names as tick text), so duplicate class names
    (ImageNet has two "crane"s) never merge into one bar.
    """
    if color_key not in PALETTE:
        raise InputError(f"color_key must be one of {sorted(PALETTE)}, got {color_key!r}")
    names = [str(c) for c in class_names]
    p = _as_probabilities(probs, len(names))
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    if true_class is not None and not 0 <= int(true_class) < len(names):
        raise InputError(f"true_class {true_class} is not a class index in [0, {len(names) - 1}]")
    k = min(k, len(names))
    order = [int(i) for i in np.argsort(-p, kind="stable")[:k]]
    if true_class is not None and int(true_class) not in order:
        order.append(int(true_class))

    percent = [100.0 * float(p[i]) for i in order]
    colors = [PALETTE[color_key] if rank == 0 else PALETTE["neutral"] for rank in range(len(order))]
    is_true = [true_class is not None and i == int(true_class) for i in order]
    line_widths = [2 if t else 0 for t in is_true]
    tick_text = [_tick_label(names[i], t, max_chars, true_mark) for i, t in zip(order, is_true)]
    rows = list(range(len(order)))

    fig = go.Figure(
        go.Bar(
            x=percent,
            y=rows,
            orientation="h",
            marker=dict(color=colors, line=dict(color=INK, width=line_widths)),
            text=[_percent_label(v) for v in percent],
            textposition="outside",
            cliponaxis=False,
            customdata=[names[i] for i in order],
            hovertemplate="%{customdata}: %{x:.2f}%<extra></extra>",
        )
    )
    apply_layout(fig, title=title, height=80 + 44 * len(order))
    fig.update_xaxes(
        title_text="Probability (%)",
        range=[0, 115],
        tickvals=[0, 25, 50, 75, 100],
        showgrid=True,
        gridcolor=GRID,
        zeroline=False,
    )
    fig.update_yaxes(
        tickvals=rows,
        ticktext=tick_text,
        autorange="reversed",  # rank 0 (most probable) on top
        showgrid=False,
        automargin=True,
        ticks="",
        ticklabelstandoff=8,  # keep class names clear of the % labels of tiny bars
    )
    fig.update_layout(bargap=0.3, margin=dict(r=16, b=56))
    return fig


def _percent_label(percent: float) -> str:
    return "<0.1%" if 0 < percent < 0.05 else f"{percent:.1f}%"


def _tick_label(name: str, is_true: bool, max_chars: int = 28, true_mark: str = " (true)") -> str:
    short = name if len(name) <= max_chars else name[: max_chars - 1] + "…"
    if not is_true:
        return short
    return f"{short}{true_mark}" if true_mark.strip() == "✓" else f"<b>{short}</b>{true_mark}"


def as_image(x: torch.Tensor) -> torch.Tensor:
    """One image ``(C, H, W)`` float32 in [0, 1] from ``(C, H, W)`` or ``(1, C, H, W)``, C in (1, 3);
    raises :class:`InputError` for anything else (a batch, NaN, values outside [0, 1])."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x must be a torch.Tensor, got {type(x).__name__}")
    image = x.detach().cpu()
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise InputError(f"image_figure draws one image; got a batch of {image.shape[0]}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise InputError(f"x must be (C, H, W) or (1, C, H, W) with C in (1, 3), got shape {tuple(x.shape)}")
    if not image.is_floating_point():
        raise InputError(f"x must be floating point pixels in [0, 1], got {image.dtype}")
    if not bool(torch.isfinite(image).all()):
        raise InputError("x contains NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"x must be pixels in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return image.to(torch.float32)


def image_figure(x: torch.Tensor, title: str | None = None, height: int = 360) -> go.Figure:
    """A pixel image, drawn pixel for pixel: square pixels, no ticks, no smoothing.

    One channel is drawn as a grey heatmap with ``zmin=0, zmax=1`` (black = 0, white = 1, no
    contrast stretching, so two images are comparable); three channels as an RGB image
    (``uint8``, 0–255). Hovering a pixel shows its row, column and value.
    """
    image = as_image(x)
    channels, height_px, width_px = image.shape
    if channels == 1:
        trace: go.BaseTraceType = go.Heatmap(
            z=image[0].numpy(),
            zmin=0.0,
            zmax=1.0,
            colorscale=GREYS,
            showscale=False,
            hovertemplate="row %{y}, column %{x}<br>value %{z:.3f}<extra></extra>",
        )
    else:
        rgb = (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        trace = go.Image(
            z=rgb,
            colormodel="rgb",  # 0–255 per channel
            hovertemplate="row %{y}, column %{x}<br>RGB %{z}<extra></extra>",
        )
    fig = go.Figure(trace)
    apply_layout(fig, title=title, height=height)
    axis = dict(showticklabels=False, ticks="", showgrid=False, zeroline=False, showline=False, constrain="domain")
    fig.update_xaxes(range=[-0.5, width_px - 0.5], **axis)
    # Row 0 on top, and one x unit as long as one y unit: pixels stay square at any figure size.
    fig.update_yaxes(range=[height_px - 0.5, -0.5], scaleanchor="x", scaleratio=1, constraintoward="top", **axis)
    fig.update_layout(margin=dict(l=4, r=4, b=4, t=40 if title else 4))
    return fig


def as_map(values: object, what: str, floating: bool = True, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One 2-D map ``(H, W)`` as a CPU tensor of ``dtype``, from ``(H, W)`` or with leading
    singleton dimensions (``(1, H, W)``, ``(1, 1, H, W)``). Raises :class:`InputError` for another
    shape, non-finite values, or (with ``floating``) integer values; ``what`` names the argument."""
    if not isinstance(values, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor (H, W), got {type(values).__name__}")
    m = values.detach().cpu()
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2:
        raise InputError(f"{what} must be one map (H, W) (or (1, H, W), (1, 1, H, W)), got shape {tuple(values.shape)}")
    if floating and not m.is_floating_point():
        raise InputError(f"{what} must hold finite floating-point values, got {m.dtype}")
    if not bool(torch.isfinite(m).all()):
        raise InputError(f"{what} contains NaN or infinite values")
    return m.to(dtype)


# -- image grids: many small heatmaps on one pair of axes ------------------------------------------


def display_size(z: torch.Tensor, max_side: int) -> tuple[torch.Tensor, int]:
    """``z (H, W)`` average-pooled by the smallest integer factor that brings both sides to at most
    ``max_side`` (for display only: a 112×112 map is 50 KB a panel in the page), and the factor."""
    factor = max(1, math.ceil(max(z.shape) / max_side))
    if factor == 1:
        return z, 1
    pooled = torch.nn.functional.avg_pool2d(z[None, None].float(), factor, ceil_mode=True)[0, 0]
    return pooled, factor


@dataclass(frozen=True)
class Panel:
    """One heatmap of an :func:`image_grid`: values ``(H, W)``, its colour axis, its trace name
    and the small label written under it."""

    z: torch.Tensor
    coloraxis: str
    name: str
    label: str = ""


@dataclass(frozen=True)
class Group:
    """Panels drawn side by side under one title, optionally outlined in ``outline`` colour (a
    layout shape named ``outline_name``)."""

    panels: tuple[Panel, ...]
    title: str
    title_color: str = INK
    outline: str | None = None
    outline_name: str | None = None


#: Geometry of an image grid, in units of one panel's side.
PANEL_GAP, GROUP_GAP, TITLE_SPACE, LABEL_SPACE, ROW_GAP = 0.08, 0.45, 0.34, 0.36, 0.2


def image_grid(groups: Sequence[Group], per_row: int, width_px: int = 1100) -> go.Figure:
    """Groups of square image panels on ONE pair of axes (row 0 on top, no ticks).

    Every panel fills a unit box whatever its resolution (a 5×5 kernel and a 28×28 map are drawn
    the same size), framed by a hairline (a layout shape named "frame"); titles, labels and outlines are placed in the same coordinates, so an
    outline fits its group exactly at any page width. One heatmap trace per panel and no
    subplots: building stays fast with many panels (make_subplots needs one axis pair per panel,
    and plotly's per-axis updates cost ~10 ms each). The height is set for ``width_px``.
    """
    if not groups:
        raise InputError("an image grid needs at least one group")
    if isinstance(per_row, bool) or not isinstance(per_row, int) or per_row < 1:
        raise InputError(f"per_row must be a positive integer, got {per_row!r}")
    size = max(len(g.panels) for g in groups)
    group_width = size + (size - 1) * PANEL_GAP
    row_height = TITLE_SPACE + 1 + LABEL_SPACE
    per_row = min(per_row, len(groups))
    rows = math.ceil(len(groups) / per_row)
    total_w = per_row * group_width + (per_row - 1) * GROUP_GAP
    total_h = rows * row_height + (rows - 1) * ROW_GAP
    traces, annotations, shapes = [], [], []
    for position, group in enumerate(groups):
        row, column = divmod(position, per_row)
        left = column * (group_width + GROUP_GAP)
        top = row * (row_height + ROW_GAP)
        for index, panel in enumerate(group.panels):
            height_cells, width_cells = panel.z.shape
            x0, y0 = left + index * (1 + PANEL_GAP), top + TITLE_SPACE
            dx, dy = 1 / width_cells, 1 / height_cells
            traces.append(
                go.Heatmap(
                    z=panel.z.numpy(), x0=x0 + dx / 2, dx=dx, y0=y0 + dy / 2, dy=dy, coloraxis=panel.coloraxis,
                    name=panel.name, hovertemplate=f"{panel.name}<br>value %{{z:.3f}}<extra></extra>",
                )
            )
            shapes.append(  # a hairline frame: a map whose edges are 0 (white) keeps its size
                dict(type="rect", x0=x0, x1=x0 + 1, y0=y0, y1=y0 + 1, line=dict(color=PALETTE["neutral"], width=1),
                     fillcolor="rgba(0,0,0,0)", name="frame", layer="above")
            )
            if panel.label:
                annotations.append(
                    dict(x=x0 + 0.5, y=y0 + 1.02, yanchor="top", text=panel.label, showarrow=False,
                         font=dict(size=FONT_SIZE - 2, color=INK))
                )
        annotations.append(
            dict(x=left + group_width / 2, y=top + TITLE_SPACE - 0.05, yanchor="bottom", text=group.title,
                 showarrow=False, font=dict(size=FONT_SIZE - 1, color=group.title_color))
        )
        if group.outline is not None:
            pad = 0.06
            shapes.append(
                dict(type="rect", x0=left - pad, x1=left + group_width + pad, y0=top, y1=top + row_height,
                     line=dict(color=group.outline, width=3), fillcolor="rgba(0,0,0,0)", name=group.outline_name)
            )
    fig = go.Figure(traces)
    hidden = dict(visible=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_xaxes(range=[-0.1, total_w + 0.1], **hidden)
    fig.update_yaxes(range=[total_h + 0.05, -0.05], scaleanchor="x", scaleratio=1, **hidden)
    fig.update_layout(annotations=annotations, shapes=shapes)
    plot_width = width_px - 120  # margins and colour bars
    fig.update_layout(height=int(80 + plot_width * (total_h + 0.1) / (total_w + 0.2)))
    return fig


@dataclass(frozen=True)
class ColourAxis:
    """One shared colour axis of a figure: its scale, range and colour-bar title."""

    colorscale: list | str
    cmin: float
    cmax: float
    title: str


def two_colour_axes(fig: go.Figure, first: ColourAxis, second: ColourAxis) -> go.Figure:
    """Give ``fig`` two shared colour axes, ``coloraxis`` (its bar at the top right) and
    ``coloraxis2`` (its bar at the bottom right), and the right margin their bars need; returns it.
    Panels of an :func:`image_grid` name the axis they use (:attr:`Panel.coloraxis`)."""

    def axis(spec: ColourAxis, top: bool) -> dict:
        place = dict(y=1.0, yanchor="top") if top else dict(y=0.0, yanchor="bottom")
        return dict(
            colorscale=spec.colorscale, cmin=spec.cmin, cmax=spec.cmax,
            colorbar=dict(title=dict(text=spec.title, side="right"), x=1.01, len=0.48, thickness=12, **place),
        )

    fig.update_layout(coloraxis=axis(first, True), coloraxis2=axis(second, False), margin=dict(l=10, r=90, t=56, b=10))
    return fig
