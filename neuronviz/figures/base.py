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

Builders return figures and never show them. They validate their inputs at the boundary and
raise :class:`neuronviz.errors.InputError` with a precise message. This module imports only
plotly, numpy and torch (``import neuronviz`` must not import streamlit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import torch

from neuronviz.errors import InputError

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

#: Text and line colour (near-black reads better than pure black on screens and paper).
INK = "#222222"
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
        gridcolor="#E6E6E6",
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


def _as_image(x: torch.Tensor) -> torch.Tensor:
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
    image = _as_image(x)
    channels, height_px, width_px = image.shape
    if channels == 1:
        trace: go.BaseTraceType = go.Heatmap(
            z=image[0].numpy(),
            zmin=0.0,
            zmax=1.0,
            colorscale=[[0.0, "#000000"], [1.0, "#FFFFFF"]],
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
