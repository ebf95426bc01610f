"""Figures of neuron sensitivity (the SNS metric of Zhang et al., IEEE TIP 2021, arXiv:1909.06978).

Pure builders over the results of :mod:`neuronviz.methods.sensitivity` and
:mod:`neuronviz.methods.feature_maps`:

- :func:`layer_profile_chart`: the mean sensitivity σ of every layer, in forward order, one line
  per profile (an image pair, an evaluation set, or each model of a comparison), and the
  *relative* σ (σ ÷ the layer's mean clean activation size; not in the paper, named as such);
- :func:`channel_bars`: the σ of every channel of one layer, sorted, the top ones highlighted;
- :func:`channel_maps_figure`: the feature maps of chosen channels on the clean and the
  adversarial image, and their difference;
- :func:`accuracy_rows`: clean / adversarial accuracy per model of a comparison, as table rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from neuronviz.figures.base import (
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
from neuronviz.methods.feature_maps import ChannelMaps
from neuronviz.methods.sensitivity import SensitivityComparison, SensitivityMap

#: Palette keys given to profiles in turn when no colours are named.
SERIES_KEYS = ("adversarial", "front", "tail", "restored", "clean", "middle")
#: Differences and signed activations use base.DIVERGING (negative blue, positive vermillion).
#: Sequential scale for non-negative activations: white to ink.
ACTIVATION_SCALE = [[0.0, "#FFFFFF"], [1.0, INK]]
PANEL_TITLES = ("clean", "adversarial", "adv. − clean")

Profile = Mapping[str, SensitivityMap]


def _check_profiles(profiles: Mapping[str, Profile]) -> tuple[dict[str, Profile], list[str]]:
    if not isinstance(profiles, Mapping) or not profiles:
        raise InputError("profiles must be a non-empty mapping: name → {layer: SensitivityMap}")
    checked: dict[str, Profile] = {}
    layers: list[str] | None = None
    for name, profile in profiles.items():
        if not isinstance(profile, Mapping) or not profile:
            raise InputError(f"profile {name!r} must be a non-empty mapping layer → SensitivityMap")
        for layer, smap in profile.items():
            if not isinstance(smap, SensitivityMap):
                raise InputError(f"profile {name!r}, layer {layer!r}: expected a SensitivityMap, got {type(smap).__name__}")
        if layers is None:
            layers = list(profile)
        elif list(profile) != layers:
            raise InputError(f"profile {name!r} has other layers (or another order) than the first profile")
        checked[str(name)] = profile
    return checked, layers or []


def _colors(names: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    result = {}
    for i, name in enumerate(names):
        key = (colors or {}).get(name, SERIES_KEYS[i % len(SERIES_KEYS)])
        if key not in PALETTE:
            raise InputError(f"colour of {name!r} must be a PALETTE key {sorted(PALETTE)}, got {key!r}")
        result[name] = PALETTE[key]
    return result


def layer_profile_chart(
    profiles: Mapping[str, Profile],
    colors: Mapping[str, str] | None = None,
    relative: bool = True,
    title: str = "Sensitivity per layer",
) -> go.Figure:
    """Mean σ per layer (x: layers in the profiles' order, i.e. forward order), one line per profile.

    Args:
        profiles: name → ``{layer: SensitivityMap}`` (e.g. ``{"this image": ..., "200 images": ...}``
            or ``comparison.profiles``); every profile must list the same layers in the same order.
        colors: name → ``PALETTE`` key (default: :data:`SERIES_KEYS` in turn).
        relative: add a second row with the relative σ (σ ÷ the layer's mean clean activation).
    """
    checked, layers = _check_profiles(profiles)
    palette = _colors(list(checked), colors)
    rows = 2 if relative else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.1)
    x = list(range(len(layers)))
    for name, profile in checked.items():
        values = [
            ("mean σ", [profile[layer].mean for layer in layers]),
            ("relative σ", [profile[layer].relative_mean for layer in layers]),
        ][:rows]
        for row, (what, ys) in enumerate(values, start=1):
            fig.add_trace(
                go.Scatter(
                    x=x, y=ys, name=name, legendgroup=name, showlegend=row == 1, mode="lines+markers",
                    line=dict(color=palette[name], width=2.5), marker=dict(size=7, color=palette[name]),
                    customdata=layers,
                    hovertemplate=f"{name}<br>%{{customdata}}: {what} %{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
    fig.update_yaxes(title_text="mean σ (act. units)", row=1, col=1)
    if relative:
        fig.update_yaxes(title_text="relative σ (ratio)", row=2, col=1)
    fig.update_yaxes(showgrid=True, gridcolor=GRID, zeroline=True, zerolinecolor=GRID, rangemode="tozero")
    many = len(layers) > 14
    fig.update_xaxes(
        tickmode="array", tickvals=x, ticktext=layers, tickangle=-50 if many else -30, showgrid=False,
        tickfont=dict(size=FONT_SIZE - (2 if many else 0)),
    )
    fig.update_xaxes(title_text="layer (forward order)", row=rows, col=1)
    apply_layout(fig, title=title, height=(300 if rows == 1 else 520) + (80 if many else 0))
    fig.update_layout(
        showlegend=True,
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom", title_text=""),
        margin=dict(l=10, r=24, t=84, b=10),
    )
    return fig


def profile_layers(fig: go.Figure) -> list[str]:
    """The layer names on the x axis of a :func:`layer_profile_chart`, left to right."""
    return list(fig.layout.xaxis.ticktext or [])


def _neuron_label(smap: SensitivityMap, j: int) -> str:
    return f"ch {j}" if len(smap.shape) > 1 else f"unit {j}"


def channel_bars(smap: SensitivityMap, max_bars: int = 64, title: str | None = None) -> go.Figure:
    """σ of every channel of one layer, sorted (most sensitive left); the ``smap.top`` channels
    in ``PALETTE["adversarial"]``, the others in ``PALETTE["neutral"]``. Layers with more than
    ``max_bars`` channels show the ``max_bars`` most sensitive (said in the title)."""
    if not isinstance(smap, SensitivityMap):
        raise InputError(f"smap must be a SensitivityMap, got {type(smap).__name__}")
    if isinstance(max_bars, bool) or not isinstance(max_bars, int) or max_bars < 1:
        raise InputError(f"max_bars must be a positive integer, got {max_bars!r}")
    values = smap.values.detach().cpu().double()
    order = sorted(range(smap.neurons), key=lambda j: (-float(values[j]), j))[:max_bars]
    top = {int(j) for j in smap.top.tolist()}
    colors = [PALETTE["adversarial"] if j in top else PALETTE["neutral"] for j in order]
    labels = [_neuron_label(smap, j) for j in order]
    fig = go.Figure(
        go.Bar(
            x=list(range(len(order))), y=[float(values[j]) for j in order], customdata=labels,
            marker=dict(color=colors, line=dict(width=0)),
            hovertemplate="%{customdata}: σ %{y:.4g}<extra></extra>",
        )
    )
    shown = f"top {len(order)} of {smap.neurons}" if len(order) < smap.neurons else f"{smap.neurons} channels"
    pairs = int(smap.per_pair.shape[0])
    apply_layout(
        fig,
        title=title or f"Sensitivity of the channels of {smap.layer} ({shown}; {plural(pairs, 'pair')})",
        height=360,
    )
    fig.update_xaxes(
        title_text=f"channel, sorted by σ (top {math.ceil(100 * smap.top_fraction)}% highlighted)",
        tickmode="array", tickvals=list(range(len(order))), ticktext=labels,
        tickangle=-60 if len(order) > 16 else 0, tickfont=dict(size=FONT_SIZE - (3 if len(order) > 32 else 0)),
        showgrid=False,
    )
    fig.update_yaxes(title_text="σ (mean |Δ activation|)", showgrid=True, gridcolor=GRID, rangemode="tozero")
    fig.update_layout(bargap=0.2)
    return fig


def bar_channels(fig: go.Figure) -> list[str]:
    """The channel labels of a :func:`channel_bars` figure, left to right."""
    return list(fig.data[0].customdata)


def channel_maps_figure(
    maps: ChannelMaps,
    sensitivity: SensitivityMap | None = None,
    per_row: int = 2,
    title: str | None = None,
    max_side: int = 56,
) -> go.Figure:
    """Each channel: its map on the clean image | on the adversarial image | the difference.

    ``per_row`` channels per row of the grid, in ``maps.channels`` order. Clean and adversarial
    maps share one scale (``coloraxis``: sequential from 0 when no value is negative, else
    diverging centred on 0); the differences share a diverging scale centred on 0
    (``coloraxis2``). With ``sensitivity`` (the layer's map) each channel's title gives its σ.
    Maps larger than ``max_side`` are average-pooled for display (said in the title).
    """
    if not isinstance(maps, ChannelMaps):
        raise InputError(f"maps must be a ChannelMaps, got {type(maps).__name__}")
    if len(maps.spatial) != 2:
        raise InputError(f"layer {maps.layer!r} has no spatial feature maps (per-channel shape {maps.spatial})")
    if sensitivity is not None and (not isinstance(sensitivity, SensitivityMap) or sensitivity.layer != maps.layer):
        raise InputError("sensitivity must be the SensitivityMap of the same layer")
    difference = maps.difference
    top = float(torch.cat([maps.clean.flatten(), maps.adversarial.flatten()]).abs().max()) or 1.0
    signed = bool((maps.clean < 0).any() or (maps.adversarial < 0).any())
    diff_top = float(difference.abs().max()) or 1.0
    groups = []
    for position, channel in enumerate(maps.channels):
        panels = ((maps.clean, "coloraxis", "clean"), (maps.adversarial, "coloraxis", "adversarial"), (difference, "coloraxis2", "difference"))
        heading = f"<b>ch {channel}</b>"
        if sensitivity is not None:
            heading += f" · σ {float(sensitivity.values[channel]):.3g}"
        groups.append(
            Group(
                panels=tuple(
                    Panel(z=display_size(values[position], max_side)[0], coloraxis=axis, name=f"ch {channel} {what}", label=label)
                    for (values, axis, what), label in zip(panels, PANEL_TITLES)
                ),
                title=heading,
            )
        )
    fig = image_grid(groups, per_row)
    factor = display_size(maps.clean[0], max_side)[1]
    heading = title or f"Most sensitive channels of {maps.layer}: clean vs adversarial"
    apply_layout(fig, title=heading + (f" (shown at 1/{factor} resolution)" if factor > 1 else ""), height=fig.layout.height)
    return two_colour_axes(
        fig,
        ColourAxis(DIVERGING if signed else ACTIVATION_SCALE, -top if signed else 0.0, top, "activation"),
        ColourAxis(DIVERGING, -diff_top, diff_top, "Δ activation"),
    )


def accuracy_rows(comparison: SensitivityComparison) -> list[dict]:
    """One row per model: clean and adversarial accuracy (%) and the mean σ over all layers."""
    if not isinstance(comparison, SensitivityComparison):
        raise InputError(f"comparison must be a SensitivityComparison, got {type(comparison).__name__}")
    rows = []
    for name, profile in comparison.profiles.items():
        rows.append(
            {
                "model": name,
                "clean accuracy (%)": round(100 * comparison.clean_accuracy[name], 1),
                f"accuracy under {comparison.attack.upper()} (%)": round(100 * comparison.adv_accuracy[name], 1),
                "mean σ over layers": round(sum(m.mean for m in profile.values()) / len(profile), 4),
                "mean relative σ": round(sum(m.relative_mean for m in profile.values()) / len(profile), 4),
            }
        )
    return rows


__all__ = [
    "SERIES_KEYS",
    "accuracy_rows",
    "bar_channels",
    "channel_bars",
    "channel_maps_figure",
    "layer_profile_chart",
    "profile_layers",
]
