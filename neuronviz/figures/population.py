"""Figures of the neurons of a data set (:mod:`neuronviz.workflows.population`): pure builders.

- :func:`layer_counts_figure`: per layer, NIP's four counts under the attack and under the
  matched control, each a share with its 95% Wilson interval (error bars);
- :func:`neuron_distributions`: per neuron of one layer (the strongest by |d_z| first), the
  distribution of its change (perturbed − clean) over the fooled images, attack beside control;
- :func:`neuron_detail_figure`: one consistent neuron: its top-activating images with the input
  box that reaches its strongest position, and its mean activation against ε (attack, control).
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from neuronviz.figures.base import GRID, INK, PALETTE, apply_layout
from neuronviz.figures.captions import plural
from neuronviz.infra.errors import InputError
from neuronviz.workflows.population import COUNTS, NeuronDetail, Population

#: Count key → its words on the figure.
COUNT_TITLES = {
    "front_suppressed": "front activation fell",
    "tail_enhanced": "tail activation rose",
    "front_suppressed_influence": "front influence fell",
    "tail_enhanced_influence": "tail influence fell (more negative)",
}
ATTACK_COLOR, CONTROL_COLOR = PALETTE["adversarial"], INK


def _check(result: Population) -> None:
    if not isinstance(result, Population):
        raise InputError(f"result must be a Population, got {type(result).__name__}")


def layer_counts_figure(result: Population, title: str | None = None) -> go.Figure:
    """Four panels (one per count), layers on the x axis, attack and control shares with intervals."""
    _check(result)
    layers = list(result.layers)
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.14, horizontal_spacing=0.08,
                        subplot_titles=[COUNT_TITLES[key] for key, *_ in COUNTS])
    for index, (key, *_rest) in enumerate(COUNTS):
        row, col = index // 2 + 1, index % 2 + 1
        for side, color, offset in (("attack", ATTACK_COLOR, -0.12), ("control", CONTROL_COLOR, 0.12)):
            shares, upper, lower, text = [], [], [], []
            for name in layers:
                rate = result.layers[name].counts[key][side]
                share = rate.get("share")
                shares.append(None if share is None else 100 * share)
                upper.append(None if share is None else 100 * (rate["high"] - share))
                lower.append(None if share is None else 100 * (share - rate["low"]))
                text.append(f"n = {rate['n']}" if share is not None else f"not defined ({rate.get('reason')})")
            fig.add_trace(
                go.Scatter(
                    x=[i + offset for i in range(len(layers))], y=shares, mode="markers",
                    marker=dict(color=color, size=7, symbol="circle" if side == "attack" else "diamond"),
                    error_y=dict(type="data", array=upper, arrayminus=lower, color=color, thickness=1.2, width=3),
                    name=f"{result.attack.upper()}" if side == "attack" else f"noise of the same {result.control_norm.replace('Linf', 'L∞')}",
                    legendgroup=side, showlegend=index == 0, customdata=text,
                    hovertemplate="%{y:.1f}% (%{customdata})<extra></extra>",
                ),
                row=row, col=col,
            )
        fig.update_yaxes(range=[0, 100], title_text="% of neuron × image pairs" if col == 1 else None,
                         showgrid=True, gridcolor=GRID, row=row, col=col)
        fig.add_hline(y=50, line=dict(color=GRID, dash="dot", width=1), row=row, col=col)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(layers))), ticktext=layers, tickangle=-45)
    apply_layout(fig, title=title or (f"NIP's observation per layer: {result.attack.upper()} vs matched noise "
                                      f"({plural(result.fooled_count, 'fooled image')}, front/tail {result.fraction:.0%})"),
                 height=560)
    fig.update_layout(legend=dict(orientation="h", x=1.0, xanchor="right", y=1.06, yanchor="bottom", title_text=""),
                      margin=dict(l=10, r=24, t=100, b=10))
    return fig


def neuron_distributions(result: Population, layer: str, quantity: str = "activation", top: int = 16,
                         title: str | None = None) -> go.Figure:
    """Box plots of each neuron's change over the fooled images, attack beside control; the
    ``top`` neurons with the largest |d_z| of ``quantity`` (consistent ones marked with *)."""
    _check(result)
    if layer not in result.layers:
        raise InputError(f"layer {layer!r} was not analysed; analysed: {list(result.layers)}")
    if quantity not in ("activation", "influence"):
        raise InputError(f"quantity must be 'activation' or 'influence', got {quantity!r}")
    entry = result.layers[layer]
    rows = result.fooled.nonzero().flatten()
    table = sorted(entry.table, key=lambda r: -abs(r[f"{quantity}_effect_dz"] or 0.0))[: max(1, int(top))]
    fig = go.Figure()
    for side, color in (("attack", ATTACK_COLOR), ("control", CONTROL_COLOR)):
        change = entry.measures.change(quantity, side)[rows]
        xs, ys = [], []
        for row in table:
            label = f"{row['label']}{' *' if row['consistent'] else ''}"
            values = change[:, row["neuron"]].tolist()
            xs.extend([label] * len(values))
            ys.extend(values)
        fig.add_trace(go.Box(x=xs, y=ys, name=result.attack.upper() if side == "attack" else "matched noise",
                             marker=dict(color=color, size=3), line=dict(width=1), boxpoints=False))
    fig.add_hline(y=0, line=dict(color=INK, width=1))
    apply_layout(fig, title=title or (f"{layer}: {quantity} change per neuron over {plural(len(rows), 'fooled image')} "
                                      "(* = moved beyond the control, FDR 5%)"), height=420)
    fig.update_layout(boxmode="group", yaxis_title=f"{quantity}: perturbed − clean", xaxis_title="neuron (strongest effect first)",
                      legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom", title_text=""))
    return fig


def neuron_detail_figure(detail: NeuronDetail, images: torch.Tensor, title: str | None = None) -> go.Figure:
    """The neuron's exemplars (grey images; the input box reaching its strongest position
    outlined) and its mean activation against ε under the attack and the control."""
    if not isinstance(detail, NeuronDetail):
        raise InputError(f"detail must be a NeuronDetail, got {type(detail).__name__}")
    count = len(detail.exemplars)
    cols = count + 2
    specs: list[list[dict[str, Any] | None]] = [[{} for _ in range(count)] + [{"colspan": 2}, None]]
    fig = make_subplots(rows=1, cols=cols, specs=specs, horizontal_spacing=0.03,
                        subplot_titles=[f"{e.image_id}<br>a = {e.activation:.3g}" for e in detail.exemplars] + ["activation vs ε"])
    for index, exemplar in enumerate(detail.exemplars, start=1):
        image = images[exemplar.image].detach().float().cpu()
        z = image.mean(0).flip(0).tolist()  # rows bottom-up for a heatmap with y increasing upward
        fig.add_trace(go.Heatmap(z=z, colorscale="Greys", reversescale=True, zmin=0, zmax=1, showscale=False,
                                 hoverinfo="skip"), row=1, col=index)
        height = image.shape[1]
        if exemplar.box is not None:
            top, left, bottom, right = exemplar.box
            axis = "" if index == 1 else str(index)
            fig.add_shape(type="rect", x0=left - 0.5, x1=right - 0.5, y0=height - bottom - 0.5, y1=height - top - 0.5,
                          line=dict(color=ATTACK_COLOR, width=2), xref=f"x{axis}", yref=f"y{axis}")
        fig.update_xaxes(visible=False, row=1, col=index)
        fig.update_yaxes(visible=False, scaleanchor=f"x{'' if index == 1 else index}", row=1, col=index)
    if detail.curve:
        eps = [p["eps"] for p in detail.curve]
        for side, color in (("attack", ATTACK_COLOR), ("control", CONTROL_COLOR)):
            fig.add_trace(go.Scatter(x=eps, y=[p[side] for p in detail.curve], mode="lines+markers",
                                     line=dict(color=color, dash="solid" if side == "attack" else "dot"),
                                     name="attack" if side == "attack" else "matched noise"), row=1, col=count + 1)
        fig.update_xaxes(title_text="ε", row=1, col=count + 1)
        fig.update_yaxes(title_text="mean activation", showgrid=True, gridcolor=GRID, row=1, col=count + 1)
    row = detail.row
    apply_layout(fig, title=title or (f"{detail.layer} {detail.label}: activation {row['activation_difference']:+.3g} beyond the "
                                      f"control (d_z {row['activation_effect_dz']:+.2f}, q {row['activation_q']:.2g})"),
                 height=260)
    fig.update_layout(margin=dict(l=10, r=10, t=80, b=10), legend=dict(orientation="h", y=-0.2, title_text=""))
    return fig
