"""A paper figure from one :class:`neuronviz.workflows.analysis.Analysis`: a row of images and charts below.

:func:`compose_figure` lays out, in one plotly figure of a physical size (mm):

- a row of image panels, any of :data:`PANELS` (clean | perturbation | adversarial | NIP | PSSR),
  each titled with its prediction and confidence (the perturbation with its L∞ norm);
- optionally (``"top5"``) the top-5 prediction bars of each image, under its image;
- any of the full-width charts of :data:`CHARTS`: the clean front and tail neurons of one layer,
  clean vs after (``"front-tail"``); the shift clean → after in every layer (``"layers"``); the
  rank comparison of the adversarial and restored images with the clean one in every layer
  (``"restoration"``); the ε sweep of the attack (``"eps-sweep"``: the benign class' probability
  and the front overlap / Spearman ρ at the figure's layer against the budget, from 0 to twice the
  chosen one); the first-layer filters, weights | clean map | adversarial map, of the filters the
  attack shifts most (``"filters"``).

Every panel is drawn by the project's own builder (:func:`~neuronviz.figures.base.image_figure`,
:func:`~neuronviz.figures.attack.perturbation_figure`, :func:`~neuronviz.figures.attack.panel_bars`,
:func:`~neuronviz.figures.neurons.group_bars`, :func:`~neuronviz.figures.neurons.layer_overview`,
:func:`~neuronviz.figures.neurons.restoration_overview`, :func:`~neuronviz.figures.attack.eps_sweep_figure`,
:func:`~neuronviz.figures.filters.filter_grid`) and moved into its cell by
:func:`embed` (traces, axes, subplot titles, shapes and legends remapped), so the composed
figure shows the same numbers as the pages. The print theme: white background, one standard
font (:data:`PRINT_FONT`, embedded in the PDF), the project's colour-blind-safe palette, panel
letters a, b, c…, font sizes in points.

:func:`figure_numbers` returns the numbers behind the figure (for the CSV/JSON downloads and the
tests); :func:`chart_data` computes what the ε sweep and filter charts need beyond the analysis
(more attacks, the first layer's maps), for the page (cached) and the CLI alike. Nothing here
imports Streamlit.

Longer than 500 lines on purpose: one paper figure is one layout (panel grid, print theme, panel
letters, sizes in mm) shared by every chart it can hold; each chart's embedding is a short
function next to the others so that their spacing rules stay one set.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from neuronviz.figures.attack import eps_sweep_figure, panel_bars, perturbation_amplification, perturbation_figure
from neuronviz.figures.base import INK, PALETTE, apply_layout, image_figure
from neuronviz.figures.filters import filter_grid
from neuronviz.figures.neurons import group_bars, layer_overview, restoration_overview
from neuronviz.infra.errors import InputError
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION

#: Image panels, in the order they are drawn.
PANELS = ("clean", "perturbation", "adversarial", "nip-guided", "pssr")
PANEL_LABELS = {
    "clean": "Clean",
    "perturbation": "Perturbation",
    "adversarial": "Adversarial",
    "nip-guided": "NIP (guided)",
    "pssr": "PSSR",
}
#: Charts below the images (``"top5"`` sits under the images, one per image).
CHARTS = ("top5", "front-tail", "layers", "restoration", "eps-sweep", "filters")
CHART_LABELS = {
    "top5": "Top-5 bars",
    "front-tail": "Front/tail neurons",
    "layers": "Shift by layer",
    "restoration": "Restoration by layer",
    "eps-sweep": "ε sweep",
    "filters": "First-layer filters",
}
#: The charts a new figure starts with (the page's and the CLI's default).
DEFAULT_CHARTS = ("top5", "front-tail")
#: Charts that need :func:`chart_data` (computed beyond the analysis).
EXTRA_CHARTS = ("eps-sweep", "filters")
#: Budgets of the ε sweep: this many points from 0 to twice the chosen budget (and the chosen one),
#: as on the Attack page.
SWEEP_POINTS = 9
#: Filters the filter chart shows at most (those the attack shifts most, in index order).
MAX_FILTERS = 8
#: The filter chart's panel labels in the composed figure (the page's are longer).
FILTER_PANEL_LABELS = {"weights": "w"}
#: Image conditions a chart may compare with the clean image.
AFTER = ("adversarial", "nip-guided", "pssr")
_COLOR = {"clean": "clean", "adversarial": "adversarial", "nip-guided": "restored", "pssr": "restored"}
#: A standard sans-serif: Arial/Helvetica where installed, else Liberation Sans (metric-compatible,
#: Debian's chromium embeds it in the PDF).
PRINT_FONT = "Arial, Helvetica, 'Liberation Sans', sans-serif"
PX_PER_PT = 96.0 / 72.0
MM_PER_INCH = 25.4


@dataclass(frozen=True)
class FigureSpec:
    """What to draw and how large. Sizes in mm, fonts in pt; ``height_mm`` None: from the content."""

    panels: tuple[str, ...] = ("clean", "perturbation", "adversarial", "nip-guided", "pssr")
    charts: tuple[str, ...] = ("front-tail",)
    layer: str | None = None  # None: the analysis' default layer
    after: str = "adversarial"
    group_size: float | int = DEFAULT_GROUP_FRACTION
    tail_rule: str = "bottom"
    width_mm: float = 178.0
    height_mm: float | None = None
    font_pt: float = 8.0
    letters: bool = True
    labels: dict = field(default_factory=dict)

    def checked(self, layers: Sequence[str], restorations: Sequence[str] = ()) -> FigureSpec:
        """This spec, checked against the model's ``layers`` and the analysis' ``restorations``
        (a registered defence beyond NIP (guided) and PSSR is a panel and an ``after`` too)."""
        panels = (*PANELS, *[r for r in restorations if r not in PANELS])
        after = (*AFTER, *[r for r in restorations if r not in AFTER])
        bad = [p for p in self.panels if p not in panels]
        if bad:
            raise InputError(f"unknown panels {bad}: choose from {', '.join(panels)}")
        bad = [c for c in self.charts if c not in CHARTS]
        if bad:
            raise InputError(f"unknown charts {bad}: choose from {', '.join(CHARTS)}")
        if not self.panels and not self.charts:
            raise InputError("choose at least one image panel or chart")
        if "top5" in self.charts and not [p for p in self.panels if p != "perturbation"]:
            raise InputError("the top-5 bars sit under images: choose at least one image panel besides the perturbation")
        if self.after not in after:
            raise InputError(f"after must be one of {', '.join(after)}, got {self.after!r}")
        if self.layer is not None and self.layer not in layers:
            raise InputError(f"layer {self.layer!r} is not a probe layer of this model ({', '.join(layers)})")
        if not 4.0 <= float(self.font_pt) <= 24.0:
            raise InputError(f"font size must be between 4 and 24 pt, got {self.font_pt}")
        if not 20.0 <= float(self.width_mm) <= 1000.0:
            raise InputError(f"width must be between 20 and 1000 mm, got {self.width_mm}")
        if self.height_mm is not None and not 20.0 <= float(self.height_mm) <= 1000.0:
            raise InputError(f"height must be between 20 and 1000 mm, got {self.height_mm}")
        return self


def _px(mm: float) -> float:
    return mm / MM_PER_INCH * 96.0


def _mm(px: float) -> float:
    return px * MM_PER_INCH / 96.0


# -- the numbers -----------------------------------------------------------------------------------


def _layer(result, spec: FigureSpec) -> str:
    return spec.layer if spec.layer is not None else result.default_layer


def _shift_table(result, condition: str, spec: FigureSpec):
    """The per-layer shift clean → ``condition``, with the matched control's columns beside it
    (:func:`neuronviz.workflows.evidence.evidence_table`) when the analysis has its control."""
    from neuronviz.methods.influence import layer_shift_table
    from neuronviz.workflows.analysis import CONTROL
    from neuronviz.workflows.evidence import evidence_table

    if CONTROL in result.influence:
        return evidence_table(
            result.influence["clean"], result.influence[condition], result.influence[CONTROL],
            front=spec.group_size, tail=spec.group_size, tail_rule=spec.tail_rule,
        )
    return layer_shift_table(
        result.influence["clean"], result.influence[condition], front=spec.group_size, tail=spec.group_size,
        tail_rule=spec.tail_rule, image=0,
    )


def _shift(result, spec: FigureSpec):
    from neuronviz.methods.influence import influence_shift

    layer = _layer(result, spec)
    return influence_shift(
        result.influence["clean"][layer], result.influence[spec.after][layer], front=spec.group_size,
        tail=spec.group_size, tail_rule=spec.tail_rule,
    )


def sweep_budgets(model, result) -> list[float]:
    """The ε sweep's budgets: :data:`SWEEP_POINTS` from 0 to twice the chosen budget (capped at the
    attack's maximum), and the chosen one, as on the Attack page. Raises InputError for an attack
    without a budget parameter."""
    import numpy as np

    from neuronviz.methods.attacks import get_attack

    info = get_attack(result.choice.attack)
    if info.budget_param is None:
        raise InputError(f"{info.label} has no budget parameter (it finds its own perturbation size): there is no ε to sweep")
    budget = info.param(info.budget_param)
    chosen = float(result.params[info.budget_param])
    top = 2 * chosen if chosen > 0 else 2 * float(budget.default_for(model))
    if budget.high is not None:
        top = min(top, float(budget.high))
    return sorted({round(float(v), 6) for v in np.linspace(0.0, top, SWEEP_POINTS)} | {round(chosen, 6)})


def _direct(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def chart_data(model, result, spec: FigureSpec, run=_direct) -> dict[str, Any]:
    """What the charts of :data:`EXTRA_CHARTS` in ``spec`` need beyond ``result``: ``"eps-sweep"``,
    the :class:`~neuronviz.workflows.sweep.EpsSweep` of the analysis' attack (same parameters, target and
    seed) at :func:`sweep_budgets`, measured at the figure's layer with its front/tail size;
    ``"filters"``, :func:`~neuronviz.methods.fragility.first_layer_maps` of the clean and adversarial
    images. ``run(fn, *args, **kwargs)`` calls the computations (the dashboard passes its cache).
    Raises InputError when the model or the attack has no such chart (no budget, no convolution)."""
    spec = spec.checked(result.layers, tuple(result.restorations))
    out: dict[str, Any] = {}
    if "eps-sweep" in spec.charts:
        from neuronviz.workflows.sweep import eps_sweep

        out["eps-sweep"] = run(
            eps_sweep, model, result.clean, result.choice.attack, dict(result.params), sweep_budgets(model, result),
            target=result.choice.target, seed=result.choice.seed, layer=_layer(result, spec),
            front=spec.group_size, tail=spec.group_size,
        )
    if "filters" in spec.charts:
        from neuronviz.methods.fragility import first_layer_maps

        out["filters"] = run(first_layer_maps, model, result.clean, result.adversarial)
    return out


def _need(data: Mapping[str, Any] | None, chart: str) -> Any:
    if data is None or chart not in data:
        raise InputError(f"the {CHART_LABELS[chart]} chart needs chart_data(model, analysis, spec)")
    return data[chart]


def _filter_layout(width_mm: float, font_pt: float, count: int) -> tuple[int, int]:
    """``(filters per row, filters shown)`` of the filter chart at this width: each panel at least
    3.2 em wide (its label "clean" fits), two rows at most."""
    fs = font_pt * PX_PER_PT
    inner = _px(width_mm) * 0.96
    per_row = max(1, min(4, int((inner + 0.45 * 3.2 * fs) / (3.61 * 3.2 * fs))))
    return per_row, max(1, min(count, MAX_FILTERS, 2 * per_row))


def shown_filters(maps, width_mm: float, font_pt: float) -> list[int]:
    """The filters the chart shows: the ones the attack shifts most (``maps.shift``), in index order."""
    count = int(maps.weights.shape[0])
    _, n = _filter_layout(width_mm, font_pt, count)
    order = sorted(range(count), key=lambda f: (-float(maps.shift[f]), f))
    return sorted(order[:n])


#: Panel names for narrow columns.
SHORT_LABELS = {"clean": "Clean", "perturbation": "Δ", "adversarial": "Adv.", "nip-guided": "NIP", "pssr": "PSSR"}


def _with_variant(result, condition: str, label: str) -> str:
    """The label with the form of the defence that ran, when it is not the method itself:
    "PSSR (inpainting fallback)" (the restoration's ``variant``)."""
    from neuronviz.methods.defences import Variant

    return Variant(getattr(getattr(result, "restorations", {}).get(condition), "variant", "")).label(label)


def panel_title(result, condition: str, class_names: Sequence[str], short: bool = False) -> str:
    """``"Adversarial<br>3 · 87.2%"``: the panel's name, prediction and confidence (the
    perturbation: its L∞ norm and the colour amplification); ``short``: names for narrow columns."""
    label = _with_variant(result, condition, (SHORT_LABELS if short else PANEL_LABELS).get(condition) or result.condition_labels[condition])
    if condition == "perturbation":
        linf = float(result.report.linf[0])
        amplification = perturbation_amplification(result.perturbation)
        return f"{label} ×{amplification:.3g}<br>L∞ {linf:.3g}" if short else f"{label}<br>L∞ {linf:.3g} · ×{amplification:.3g}"
    probs = result.probabilities(condition)
    predicted = int(probs.argmax())
    return f"{label}<br>{class_names[predicted]} · {100 * float(probs[predicted]):.1f}%"


def figure_numbers(result, class_names: Sequence[str], spec: FigureSpec, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The numbers the composed figure draws: per image panel its prediction and confidence (and
    the top-5), the front/tail neurons' influence clean and after, the per-layer shift tables, the
    ε sweep's points and the shown filters' shifts (``data``: :func:`chart_data`)."""
    spec = spec.checked(result.layers, tuple(result.restorations))
    out: dict[str, Any] = {"layer": _layer(result, spec), "after": spec.after, "group_size": spec.group_size,
                           "tail_rule": spec.tail_rule, "benign_class": result.benign_class, "panels": {}}
    for condition in spec.panels:
        if condition == "perturbation":
            delta = result.perturbation
            out["panels"][condition] = {
                "linf": float(result.report.linf[0]), "l2": float(result.report.l2[0]), "l0": int(result.report.l0[0]),
                "amplification": perturbation_amplification(delta),
            }
            continue
        probs = result.probabilities(condition).detach().cpu()
        order = [int(i) for i in probs.argsort(descending=True)[:5]]
        out["panels"][condition] = {
            "label": _with_variant(result, condition, PANEL_LABELS.get(condition) or result.condition_labels[condition]),
            "prediction": int(order[0]),
            "class_name": str(class_names[order[0]]),
            "confidence": float(probs[order[0]]),
            "top5": [{"class": i, "class_name": str(class_names[i]), "probability": float(probs[i])} for i in order],
        }
    if "front-tail" in spec.charts:
        shift = _shift(result, spec)
        layer = out["layer"]
        before = result.influence["clean"][layer]
        after = result.influence[spec.after][layer]
        rows = []
        for group, members in (("front", shift.groups_before.front[0]), ("tail", shift.groups_before.tail[0])):
            for j in members.tolist():
                row = {"group": group, "neuron": int(j), "label": before.neuron_label(int(j)),
                       "clean": float(before.values[0, j]), spec.after: float(after.values[0, j])}
                control_map = result.influence.get("control", {}).get(layer) if spec.after == "adversarial" else None
                if control_map is not None:
                    row["control"] = float(control_map.values[0, j])
                rows.append(row)
        out["front_tail"] = rows
        if result.control is not None:
            from neuronviz.workflows.evidence import analysis_evidence

            evidence = analysis_evidence(result, layer, spec.group_size, spec.group_size, spec.tail_rule, after=spec.after)
            out["evidence"] = {"matched_control": result.control.to_dict(), **evidence.to_dict(0)}
    if "layers" in spec.charts:
        out["layers"] = {spec.after: _shift_table(result, spec.after, spec).to_dict(orient="records")}
    if "restoration" in spec.charts:
        out["restoration"] = {c: _shift_table(result, c, spec).to_dict(orient="records") for c in result.conditions[1:]}
    if "eps-sweep" in spec.charts:
        sweep = _need(data, "eps-sweep")
        statistics = _sweep_statistics(sweep)
        out["eps_sweep"] = [
            {"eps": float(sweep.eps[i]), "benign_probability": float(sweep.probs[i, sweep.benign_class]),
             "prediction": int(sweep.prediction[i]), "success": bool(sweep.success[i]),
             "front_overlap": float(sweep.front_overlap[i]), "spearman": float(sweep.spearman[i]),
             **({"control_front_overlap": float(sweep.control_front_overlap[i]),
                 "control_spearman": float(sweep.control_spearman[i])} if sweep.control_front_overlap is not None else {}),
             **{f"{m}_count": int(v[i]) for m, v in sweep.directions.items()},
             **{f"control_{m}_count": int(v[i]) for m, v in sweep.control_directions.items()},
             **statistics[i]}
            for i in range(int(sweep.eps.shape[0]))
        ]
        out["eps_sweep_layer"] = sweep.layer
    if "filters" in spec.charts:
        maps = _need(data, "filters")
        out["filters"] = [{"filter": f, "layer": maps.layer, "shift": float(maps.shift[f])}
                          for f in shown_filters(maps, spec.width_mm, spec.font_pt)]
    return out


# -- embedding a builder's figure into a cell --------------------------------------------------------

_AXIS = re.compile(r"^([xy])axis(\d*)$")
_COLORAXIS = re.compile(r"^coloraxis\d*$")


class _Canvas:
    """The composed figure and its axis and legend counters."""

    def __init__(self) -> None:
        self.fig = go.Figure()
        self.axes = {"x": 0, "y": 0}
        self.legends = 0
        self.coloraxes = 0
        self.layout: dict[str, Any] = {}
        self.annotations: list[dict] = []
        self.shapes: list[dict] = []

    def new_axis(self, letter: str) -> str:
        self.axes[letter] += 1
        n = self.axes[letter]
        return letter if n == 1 else f"{letter}{n}"


def _ref(ref: str | None, mapping: dict[str, str]) -> str | None:
    if ref is None or ref == "paper":
        return ref
    head, _, tail = ref.partition(" ")
    return f"{mapping[head]} {tail}".strip() if head in mapping else ref


def _axis_parts(key: str) -> tuple[str, str]:
    match = _AXIS.match(key)
    if match is None:
        raise InputError(f"{key!r} is not an axis name")
    return match.group(1), match.group(2)


def embed(canvas: _Canvas, source: go.Figure, box: tuple[float, float, float, float], legend: dict | None = None) -> dict[str, str]:
    """Copy ``source`` into ``box`` = (x0, x1, y0, y1) in paper fractions of the canvas: its traces,
    axes (domains scaled into the box, anchors remapped), annotations and shapes (paper and domain
    references remapped), and its legend (as a legend of its own placed by ``legend``). The
    source's title and colour bars are dropped (the composer titles panels itself). Returns the
    axis-name mapping (source → canvas)."""
    x0, x1, y0, y1 = box
    layout = source.layout.to_plotly_json()
    names = sorted({m.group(0) for key in layout if (m := _AXIS.match(key))} | {"xaxis", "yaxis"})
    mapping: dict[str, str] = {}
    parts = {key: _axis_parts(key) for key in names}
    for key in names:
        letter, number = parts[key]
        mapping[f"{letter}{number}"] = canvas.new_axis(letter)
    for key in names:
        letter, number = parts[key]
        axis = copy.deepcopy(layout.get(key, {}))
        low, high = axis.get("domain", [0.0, 1.0])
        a, b = (x0, x1) if letter == "x" else (y0, y1)
        axis["domain"] = [a + low * (b - a), a + high * (b - a)]
        for link in ("anchor", "matches", "scaleanchor", "overlaying"):
            if link in axis and axis[link] in mapping:
                axis[link] = mapping[axis[link]]
        if "anchor" not in axis:
            axis["anchor"] = mapping["y" if letter == "x" else "x"]
        new = mapping[f"{letter}{number}"]
        canvas.layout[f"{letter}axis{new[1:]}"] = axis
    colors: dict[str, str] = {}
    for key in sorted(k for k in layout if _COLORAXIS.match(k)):
        canvas.coloraxes += 1
        name = "coloraxis" if canvas.coloraxes == 1 else f"coloraxis{canvas.coloraxes}"
        colors[key] = name
        axis = copy.deepcopy(layout[key])
        axis.pop("colorbar", None)
        axis["showscale"] = False  # the composer draws no colour bars (the page's chart has them)
        canvas.layout[name] = axis
    legend_name = None
    if legend is not None:
        canvas.legends += 1
        legend_name = "legend" if canvas.legends == 1 else f"legend{canvas.legends}"
        canvas.layout[legend_name] = legend
    for trace in source.data:
        t = copy.deepcopy(trace)
        t.xaxis = mapping.get(t.xaxis or "x", t.xaxis)
        t.yaxis = mapping.get(t.yaxis or "y", t.yaxis)
        if hasattr(t, "colorbar"):
            t.showscale = False
        if getattr(t, "coloraxis", None) in colors:
            t.coloraxis = colors[t.coloraxis]
        if "showlegend" in t:  # go.Image has no legend
            if legend_name is not None and t.showlegend is not False:
                t.legend = legend_name
            elif legend_name is None:
                t.showlegend = False
        canvas.fig.add_trace(t)
    for item, target in ((layout.get("annotations", []), canvas.annotations), (layout.get("shapes", []), canvas.shapes)):
        for entry in item:
            entry = copy.deepcopy(entry)
            for letter, (a, b) in (("x", (x0, x1)), ("y", (y0, y1))):
                # Plotly's default reference of an annotation or a shape is the first axis, not the paper.
                ref = entry.get(f"{letter}ref", letter)
                if ref == "paper":
                    for key in (letter, f"{letter}0", f"{letter}1"):
                        if key in entry and isinstance(entry[key], (int, float)):
                            entry[key] = a + entry[key] * (b - a)
                    entry[f"{letter}ref"] = "paper"
                else:
                    entry[f"{letter}ref"] = _ref(ref, mapping)
            target.append(entry)
    return mapping


# -- the composer ------------------------------------------------------------------------------------


def _lines(text: str) -> int:
    return text.count("<br>") + 1


def _tick_width(labels: Sequence[str], font_px: float) -> float:
    """An estimate of the widest tick label in px (0.58 em per character)."""
    longest = max((len(re.sub(r"<[^>]+>", "", str(s))) for s in labels), default=1)
    return 0.58 * font_px * longest


#: Rows of text (in font sizes) under the images for the perturbation's colour scale.
_SCALE_ROWS = 2.3
#: The narrowest bar area (in font sizes) of a top-5 chart: below it the charts wrap onto more rows.
_MIN_BAR_FS = 5.0
#: The width of the longest value label ("100.0%" at the bar labels' size), in font sizes.
_VALUE_LABEL_FS = 3.6 * 0.8 + 0.6


def _show_scale(trace, x: float, y: float, length: float, fs: float) -> None:
    """The perturbation heatmap's own colour bar, horizontal under its image (``x``, ``y``: its top
    centre in paper fractions; ``length`` px), with the heatmap's ticks (−r, 0, +r) in the print font."""
    if trace is None:
        return
    bar = trace.colorbar.to_plotly_json() if trace.colorbar is not None else {}
    trace.showscale = True
    trace.colorbar = dict(
        orientation="h", x=x, xref="paper", xanchor="center", y=y, yref="paper", yanchor="top",
        len=length, lenmode="pixels", thickness=fs * 0.55, outlinewidth=0, ypad=0, xpad=0,
        tickvals=bar.get("tickvals"), ticktext=bar.get("ticktext"), tickangle=0, ticklabeloverflow="allow",
        ticks="outside", ticklen=2, tickfont=dict(family=PRINT_FONT, size=fs * 0.8, color=INK), title=dict(text=""),
    )


def _print_ticks(ticks: Sequence[str], fs: float, cell_width: float) -> list[str]:
    """The top-5 tick labels in the print font: the true class's "✓" (a glyph Liberation Sans lacks,
    so the PDF would embed a second family) becomes " (true)", or nothing in a narrow cell (the
    label is bold and its bar outlined either way)."""
    marked = [f"<b>{str(t).replace(' ✓', '')}</b> (true)" if " ✓" in str(t) else str(t) for t in ticks]
    if cell_width - _label_area(marked, fs) - _VALUE_LABEL_FS * fs - fs < _MIN_BAR_FS * fs:
        marked = [t.replace(" (true)", "") for t in marked]
    return marked


def _heading(text: str, short: str, width: float, fs: float) -> str:
    """A wrapped top-5 chart's heading: its condition, capitalised, short when it does not fit."""
    chosen = text if _tick_width([text], fs) <= width else short
    return chosen[:1].upper() + chosen[1:]


def _label_area(ticks: Sequence[str], fs: float) -> float:
    """The width (px) left of a top-5 chart's bars: its class labels and a gap."""
    return 1.15 * _tick_width(ticks, fs * 0.9) + fs * 0.9


def _top5_rows(result, names, panels, side: float, column: float, inner: float, fs: float,
               true_class) -> list[list[tuple[str, tuple[float, float]]]]:
    """The top-5 charts' cells, row by row: ``[[(condition, (left px, width px)), ...], ...]``.

    Under their images (one row, each in its image's column) when every column leaves a bar area of
    :data:`_MIN_BAR_FS` font sizes beside its class labels and its longest value label; else
    wrapped onto as many rows as it takes, each chart as wide as the row allows (at 85 mm, five
    columns left bars of a few pixels and labels that ran into the next chart)."""
    conditions = [p for p in panels if p != "perturbation"]
    if not conditions:
        return []
    widest = 0.0
    for condition in conditions:
        source = panel_bars(result.probabilities(condition), names, title="", true_class=true_class)
        ticks = _print_ticks([str(t) for t in source.layout.yaxis.ticktext or []], fs, 0.0)  # the narrowest labels
        widest = max(widest, _label_area(ticks, fs))
    need = widest + _VALUE_LABEL_FS * fs + _MIN_BAR_FS * fs + fs * 1.0
    if column >= need:
        return [[(c, (side + panels.index(c) * column, column)) for c in conditions]]
    per_row = max(1, min(len(conditions), int(inner // need)))
    cell = inner / per_row
    return [[(c, (side + index * cell, cell)) for index, c in enumerate(conditions[start:start + per_row])]
            for start in range(0, len(conditions), per_row)]


def compose_figure(
    result, class_names: Sequence[str], spec: FigureSpec = FigureSpec(), true_class: int | None = None,
    data: Mapping[str, Any] | None = None,
) -> go.Figure:
    """The paper figure of ``result`` (an :class:`~neuronviz.workflows.analysis.Analysis`) as one plotly
    figure of ``spec.width_mm`` × height (``spec.height_mm``, or :func:`natural_height_mm`).
    ``data``: :func:`chart_data`, for the ε sweep and filter charts."""
    spec = spec.checked(result.layers, tuple(result.restorations))
    names = [str(c) for c in class_names]
    if len(names) != int(result.probabilities("clean").shape[0]):
        raise InputError(f"{len(names)} class names for a model of {int(result.probabilities('clean').shape[0])} classes")
    plan = _plan(result, names, spec, true_class, data)
    page = _Page(plan, spec)
    top = plan.height  # px from the bottom
    for kind, h_px, gap in plan.rows:
        cell_top = top - gap
        cell_bottom = cell_top - h_px * plan.scale
        if kind == "images":
            _draw_images(page, plan, result, spec, cell_top, cell_bottom)
        elif kind == "scale":
            index = spec.panels.index("perturbation")
            _show_scale(page.scale_trace, x=page.frac_x(plan.side + (index + 0.5) * plan.column),
                        y=page.frac_y(cell_top - plan.fs * 0.25), length=plan.image_px * 0.9, fs=plan.fs)
        elif kind.startswith("top5:"):
            _draw_top5(page, plan, result, int(kind.split(":")[1]), top, cell_top, cell_bottom)
        else:
            _draw_chart(page, plan, result, spec, kind, top, cell_top, cell_bottom)
        top = cell_bottom
    return _print_theme(page.canvas, spec, plan)


@dataclass
class _Plan:
    """The figure's geometry in CSS px (worked out before anything is drawn) and the chart sources
    built while sizing it. ``rows``: (kind, height px, gap above px), heights before ``scale``."""

    names: list[str]
    true_class: int | None
    fs: float
    width: float
    side: float
    column: float
    image_px: float
    layer: str
    labels: dict[str, str]
    layer_ticks: float
    rows: list[tuple[str, float, float]] = field(default_factory=list)
    bar_rows: list[list[tuple[str, tuple[float, float]]]] = field(default_factory=list)
    sweep: Any = None
    sweep_source: go.Figure | None = None
    maps: Any = None
    filter_source: go.Figure | None = None
    height: float = 0.0
    scale: float = 1.0


def _plan(result, names: list[str], spec: FigureSpec, true_class: int | None, data: Mapping[str, Any] | None) -> _Plan:
    """The rows of the figure, top to bottom, and its height; raises InputError when ``spec.height_mm``
    is too short for them."""
    fs = float(spec.font_pt) * PX_PER_PT  # CSS px
    width = _px(spec.width_mm)
    side = 0.02 * width  # outer margin left and right, px
    column = (width - 2 * side) / max(len(spec.panels), 1)
    labels = {**{c: _with_variant(result, c, label) for c, label in result.condition_labels.items()},
              "nip-guided": _with_variant(result, "nip-guided", "NIP (guided)"),
              "pssr": _with_variant(result, "pssr", "PSSR"), **spec.labels}
    many = len(result.layers) > 8
    plan = _Plan(names=names, true_class=true_class, fs=fs, width=width, side=side, column=column, image_px=column * 0.9,
                 layer=_layer(result, spec), labels=labels,
                 layer_ticks=_tick_width(result.layers, fs * 0.85) * (0.6 if many else 0.25) + fs * 2.3)
    _image_rows(plan, result, spec)
    _chart_rows(plan, result, spec, data)
    natural = sum(h + g for _, h, g in plan.rows) + fs
    plan.height = _px(spec.height_mm) if spec.height_mm is not None else natural
    plan.scale = (plan.height - fs - sum(g for _, _, g in plan.rows)) / max(sum(h for _, h, _ in plan.rows), 1.0)
    if plan.scale <= 0.15:
        raise InputError(
            f"{spec.height_mm:.0f} mm is too short for these panels at {spec.font_pt:g} pt: "
            f"they need about {_mm(natural):.0f} mm (or fewer panels, a smaller font)"
        )
    return plan


def _image_rows(plan: _Plan, result, spec: FigureSpec) -> None:
    """The rows of the images, the perturbation's colour scale and the top-5 bars."""
    fs = plan.fs
    if spec.panels:
        h, w = result.clean.shape[-2:]
        title_px = 2 * fs * 1.25 + 4
        plan.rows.append(("images", plan.image_px * h / w, title_px + fs * 0.6))
    if "perturbation" in spec.panels:
        plan.rows.append(("scale", _SCALE_ROWS * fs, 0.0))  # the perturbation's colour scale, under its image
    if "top5" in spec.charts:
        plan.bar_rows = _top5_rows(result, plan.names, spec.panels, plan.side, plan.column, plan.width - 2 * plan.side, fs,
                                   plan.true_class)
    for index, _ in enumerate(plan.bar_rows):
        # Under the images when each fits its column; else wrapped, each chart headed by its condition.
        plan.rows.append((f"top5:{index}", 5 * fs * 1.6, fs * (1.8 if len(plan.bar_rows) == 1 else 3.1)))


def _chart_rows(plan: _Plan, result, spec: FigureSpec, data: Mapping[str, Any] | None) -> None:
    """The rows of the full-width charts (building the ε sweep and filter charts, whose sizes
    depend on their content)."""
    fs, width = plan.fs, plan.width
    if "front-tail" in spec.charts:
        plan.rows.append(("front-tail", max(0.32 * width, 14 * fs), fs * 5.0))
    if "layers" in spec.charts:
        plan.rows.append(("layers", max(0.45 * width, 27 * fs) + plan.layer_ticks, fs * 4.2))
    if "restoration" in spec.charts:
        plan.rows.append(("restoration", max(0.34 * width, 19 * fs) + plan.layer_ticks, fs * 5.6))
    if "eps-sweep" in spec.charts:
        plan.rows.append(_sweep_row(plan, result, _need(data, "eps-sweep")))
    if "filters" in spec.charts:
        plan.rows.append(_filter_row(plan, spec, _need(data, "filters")))


def _sweep_row(plan: _Plan, result, sweep) -> tuple[str, float, float]:
    """The ε sweep chart (kept in ``plan``) and its row: its legend's rows above it."""
    fs, width, side = plan.fs, plan.width, plan.side
    chosen = float(result.params[sweep.budget_param])
    plan.sweep = sweep
    plan.sweep_source = eps_sweep_figure(sweep, plan.names, chosen_eps=chosen, title="")
    # The legend's rows above the chart (its three names rarely fit beside each other at 85 mm).
    legend_px = sum(_tick_width([t.name], fs) + 3.4 * fs for t in plan.sweep_source.data if t.showlegend is not False and t.name)
    sweep_legend_rows = max(1, math.ceil(legend_px / (width - 2 * side - fs * 4.6)))
    return ("eps-sweep", max(0.42 * width, 26 * fs), fs * (3.9 + 2.1 * sweep_legend_rows))


def _filter_row(plan: _Plan, spec: FigureSpec, maps) -> tuple[str, float, float]:
    """The filter chart (kept in ``plan``) and its row, at the grid's own aspect ratio."""
    fs = plan.fs
    per_row, _ = _filter_layout(spec.width_mm, spec.font_pt, int(maps.weights.shape[0]))
    source = filter_grid(maps, filters=shown_filters(maps, spec.width_mm, spec.font_pt), per_row=per_row, title="")
    for annotation in source.layout.annotations:  # the panels' labels, short enough for one panel
        if annotation.text in FILTER_PANEL_LABELS:
            annotation.text = FILTER_PANEL_LABELS[annotation.text]
    # The cell gets the grid's own aspect ratio, so square panels need no scale constraint
    # (with one, chromium drew the grid smaller than its cell at 85 mm).
    source.update_yaxes(scaleanchor=None, constrain=None, autorange=False)
    source.update_xaxes(constrain=None, autorange=False)
    x_span = float(source.layout.xaxis.range[1] - source.layout.xaxis.range[0])
    y_span = abs(float(source.layout.yaxis.range[0] - source.layout.yaxis.range[1]))
    plan.maps = maps
    plan.filter_source = source
    return ("filters", (plan.width - 2 * plan.side - fs * 1.6) * y_span / x_span, fs * 3.2)


class _Page:
    """The canvas being drawn, with paper-fraction conversions and the running panel letters."""

    def __init__(self, plan: _Plan, spec: FigureSpec) -> None:
        self.canvas = _Canvas()
        self.width = plan.width
        self.height = plan.height
        self.fs = plan.fs
        self.show_letters = spec.letters
        self.letters = iter("abcdefghijklmnopqrstuvwxyz")
        self.ink = dict(family=PRINT_FONT, size=plan.fs, color=INK)
        self.scale_trace: Any = None  # the perturbation's heatmap, once drawn

    def frac_y(self, px: float) -> float:
        return px / self.height

    def frac_x(self, px: float) -> float:
        return px / self.width

    def letter(self, x_px: float, y_px: float) -> None:
        """The next panel letter at the top left corner (``x_px``, ``y_px``) of a cell."""
        if self.show_letters:
            self.canvas.annotations.append(dict(
                text=f"<b>{next(self.letters)}</b>", x=self.frac_x(x_px), y=self.frac_y(y_px), xref="paper", yref="paper",
                xanchor="left", yanchor="top", showarrow=False, font=dict(family=PRINT_FONT, size=self.fs * 1.25, color=INK),
                name="panel-letter",
            ))

    def text(self, text: str, x_px: float, y_px: float, xanchor: str, yanchor: str) -> None:
        """A line of text in the print font at (``x_px``, ``y_px``)."""
        self.canvas.annotations.append(dict(
            text=text, x=self.frac_x(x_px), y=self.frac_y(y_px), xref="paper", yref="paper",
            xanchor=xanchor, yanchor=yanchor, showarrow=False, font=self.ink,
        ))


def _draw_images(page: _Page, plan: _Plan, result, spec: FigureSpec, cell_top: float, cell_bottom: float) -> None:
    """The image panels, each titled (with its letter) by :func:`panel_title`, short when it does not fit."""
    fs, column, image_px = plan.fs, plan.column, plan.image_px
    for index, condition in enumerate(spec.panels):
        left = plan.side + index * column + (column - image_px) / 2
        if condition == "perturbation":
            source = perturbation_figure(result.perturbation)
        else:
            source = image_figure(result.image(condition))
        box = (page.frac_x(left), page.frac_x(left + image_px), page.frac_y(cell_bottom), page.frac_y(cell_top))
        embed(page.canvas, source, box)
        if condition == "perturbation":
            page.scale_trace = page.canvas.fig.data[-1]  # its heatmap: the colour scale row shows its bar
        title = panel_title(result, condition, plan.names)
        prefix = f"<b>{next(page.letters)}</b> " if spec.letters else ""
        if _tick_width(title.split("<br>")[:1], fs) + (2.5 * fs if prefix else 0) > column:
            title = panel_title(result, condition, plan.names, short=True)
        first, _, rest = title.partition("<br>")
        page.text(f"{prefix}{first}<br>{rest}", left + image_px / 2, cell_top + 2, "center", "bottom")


def _draw_top5(page: _Page, plan: _Plan, result, sub: int, top: float, cell_top: float, cell_bottom: float) -> None:
    """Row ``sub`` of the top-5 charts: every value label beside its bar, in ink."""
    fs = plan.fs
    for condition, (cell_left, cell_width) in plan.bar_rows[sub]:
        probs = result.probabilities(condition)
        source = panel_bars(probs, plan.names, title="", color_key=_COLOR.get(condition, "restored"), true_class=plan.true_class)
        ticks = _print_ticks(list(source.layout.yaxis.ticktext or []), fs, cell_width)
        source.update_yaxes(ticktext=ticks)
        left_px = cell_left + _label_area(ticks, fs)
        right_px = cell_left + cell_width - fs * 1.0
        if len(plan.bar_rows) > 1:  # wrapped: not under its image, so headed by its condition
            page.text(_heading(plan.labels[condition], SHORT_LABELS.get(condition, condition), cell_width, fs),
                      cell_left + cell_width / 2, cell_top + fs * 0.3, "center", "bottom")
        label_px = 3.6 * 0.8 * fs + 6  # "100.0%" at the bar labels' size
        room = max(right_px - left_px, 1.0)
        reach = 100.0 / max(1.0 - label_px / room, 0.25)
        source.update_xaxes(range=[0, max(115.0, reach)], showticklabels=False, title_text="", showgrid=False)
        # Every label beside its bar, in ink: the range above leaves room for the longest one.
        source.data[0].update(textposition="outside", textfont=dict(color=INK), cliponaxis=False)
        box = (page.frac_x(left_px), page.frac_x(right_px), page.frac_y(cell_bottom), page.frac_y(cell_top))
        embed(page.canvas, source, box)
    if sub == 0:
        page.letter(plan.side, top)


def _draw_chart(page: _Page, plan: _Plan, result, spec: FigureSpec, kind: str, top: float, cell_top: float,
                cell_bottom: float) -> None:
    """A full-width chart in its cell, with its legend above it on the right, its heading and letter."""
    fs, width, side = plan.fs, plan.width, plan.side
    source, bottom_pad, legend_y, heading = _chart_source(plan, result, spec, kind, cell_top)
    left_px = side + (fs * 1.6 if kind == "filters" else fs * 4.6)
    right_px = width - side
    box = (page.frac_x(left_px), page.frac_x(right_px), page.frac_y(cell_bottom + bottom_pad), page.frac_y(cell_top))
    legend = None
    if legend_y is not None:
        legend = dict(orientation="h", x=page.frac_x(right_px), xanchor="right", y=page.frac_y(legend_y), yanchor="bottom",
                      xref="paper", yref="paper", font=page.ink, bgcolor="rgba(0,0,0,0)", itemwidth=30)
    embed(page.canvas, source, box, legend=legend)
    page.text(heading, side + fs * 1.6, top - fs * 0.2, "left", "top")
    page.letter(side, top)


def _chart_source(plan: _Plan, result, spec: FigureSpec, kind: str,
                  cell_top: float) -> tuple[go.Figure, float, float | None, str]:
    """``(figure, room below it px, legend bottom px or None, heading)`` of the full-width chart ``kind``."""
    fs, layer, labels = plan.fs, plan.layer, plan.labels
    if kind == "front-tail":
        source, bottom_pad = _front_tail_source(plan, result, spec)
        return source, bottom_pad, cell_top + fs * 1.5, f"{layer}: front and tail neurons, clean vs {labels[spec.after]}"
    if kind == "layers":
        return (_layers_source(plan, result, spec), plan.layer_ticks, None,
                f"Every layer, clean → {labels[spec.after]} ({layer} shaded)")
    if kind == "eps-sweep":
        sweep = plan.sweep
        return (plan.sweep_source, fs * 3.4, cell_top + fs * 1.3,
                f"ε sweep: {sweep.budget_param} from 0 to {float(sweep.eps[-1]):.3g} ({sweep.layer})")
    if kind == "filters":
        heading = f"First-layer filters of {plan.maps.layer}: weights (w) | clean | adversarial, largest shifts"
        if _tick_width([heading], fs) > plan.width - 2 * plan.side - fs * 1.6:
            heading = f"Filters of {plan.maps.layer}: w | clean | adv."
        return plan.filter_source, 0.0, None, heading
    frames = {c: _shift_table(result, c, spec) for c in result.conditions[1:]}
    return (restoration_overview(frames, layer, labels=labels, title=""), plan.layer_ticks, cell_top + fs * 1.6,
            f"Ranking vs clean, every layer ({layer} shaded)")


def _front_tail_source(plan: _Plan, result, spec: FigureSpec) -> tuple[go.Figure, float]:
    """The front/tail bars (with the matched control's beside the adversarial ones) and the room
    below them: tick labels turned upright when they do not fit, group titles shortened likewise."""
    fs, layer, names = plan.fs, plan.layer, plan.names
    shift = _shift(result, spec)
    source = group_bars(
        result.influence["clean"][layer], result.influence[spec.after][layer], shift.groups_before,
        names[result.benign_class], after_label=plan.labels[spec.after], after_color=_COLOR.get(spec.after, "restored"), title="",
        control=result.influence.get("control", {}).get(layer) if spec.after == "adversarial" else None,
        control_label=result.control.label if result.control is not None else "noise of the same size",
    )
    source.update_yaxes(title_text=f"influence ({names[result.benign_class]})", row=1, col=1)
    k, t = shift.groups_before.front_size, shift.groups_before.tail_size
    half = (plan.width - 2 * plan.side - fs * 4.6) / 2
    ticks = [result.influence["clean"][layer].neuron_label(int(j)) for j in
             (*shift.groups_before.front[0].tolist(), *shift.groups_before.tail[0].tolist())]
    tick_px = _tick_width(ticks, fs * 0.85)
    if tick_px > 0.9 * half / max(k, t):
        source.update_xaxes(tickangle=-90)
        bottom_pad = tick_px + fs * 2.4
    else:
        source.update_xaxes(tickangle=0)
        bottom_pad = fs * 3.0
    if _tick_width([f"Front: the {k} most influential"], fs) > 0.9 * half:
        for annotation in source.layout.annotations:
            if annotation.text.startswith("Front"):
                annotation.text = f"Front ({k})"
            elif annotation.text.startswith("Tail"):
                annotation.text = f"Tail ({t})"
    return source, bottom_pad


def _layers_source(plan: _Plan, result, spec: FigureSpec) -> go.Figure:
    """The shift by layer, its long subplot title in two colours' words when it does not fit."""
    source = layer_overview(_shift_table(result, spec.after, spec), plan.layer, after_label=plan.labels[spec.after],
                            after_color=_COLOR.get(spec.after, "restored"), title="")
    long_title = next(a for a in source.layout.annotations if a.text.startswith("Share of"))
    if _tick_width([re.sub(r"<[^>]+>", "", long_title.text)], plan.fs) > plan.width - 2 * plan.side - plan.fs * 4.6:
        long_title.text = (
            f"Share of <span style='color:{PALETTE['front']}'><b>front lost</b></span>, "
            f"<span style='color:{PALETTE['tail']}'><b>tail gained</b></span> activation"
        )
    return source


def _print_theme(canvas: _Canvas, spec: FigureSpec, plan: _Plan) -> go.Figure:
    """The canvas as a figure of the print size: white, the print font at point sizes, no margins."""
    fs, width, height = plan.fs, plan.width, plan.height
    fig = canvas.fig
    fig.update_layout(**canvas.layout)
    apply_layout(fig, title=None, height=None)
    fig.update_layout(
        width=width, height=height, margin=dict(l=0, r=0, t=0, b=0, autoexpand=False),
        font=dict(family=PRINT_FONT, size=fs * 0.9, color=INK), showlegend=bool(canvas.legends),
        uniformtext=dict(minsize=fs * 0.8, mode="show"),  # bar labels keep the print size, never shrink
        annotations=canvas.annotations, shapes=canvas.shapes, paper_bgcolor="white", plot_bgcolor="white",
        meta={"width_mm": spec.width_mm, "height_mm": _mm(height), "font_pt": spec.font_pt},
    )
    # Print sizes everywhere: tick labels a little smaller than the text, subplot titles as the text.
    fig.update_xaxes(tickfont=dict(family=PRINT_FONT, size=fs * 0.85, color=INK), title_font=dict(size=fs * 0.9), automargin=False,
                     title_standoff=fs * 0.3)
    fig.update_yaxes(tickfont=dict(family=PRINT_FONT, size=fs * 0.85, color=INK), title_font=dict(size=fs * 0.9), automargin=False,
                     title_standoff=fs * 0.3)
    for annotation in fig.layout.annotations:
        if annotation.name != "panel-letter":
            annotation.font = dict(family=PRINT_FONT, size=fs, color=INK)
    _print_marks(fig, fs)
    return fig


def _print_marks(fig: go.Figure, fs: float) -> None:
    """The pages' marks are sized for a screen: lines and markers thinner, bar labels in the print font."""
    for trace in fig.data:
        if isinstance(trace, go.Scatter):
            if trace.line is not None and trace.line.width is not None:
                trace.line.width = trace.line.width * 0.55
            if trace.marker is not None and trace.marker.size is not None:
                size = trace.marker.size
                trace.marker.size = [v * 0.6 for v in size] if isinstance(size, (list, tuple)) else size * 0.6
            if trace.marker is not None and trace.marker.line is not None and trace.marker.line.width is not None:
                lw = trace.marker.line.width
                trace.marker.line.width = [v * 0.6 for v in lw] if isinstance(lw, (list, tuple)) else lw * 0.6
        if isinstance(trace, go.Bar) and trace.text is not None:  # keep the builder's colours (white inside a bar)
            trace.textfont.update(family=PRINT_FONT, size=fs * 0.8)
            if trace.textfont.color is None:
                trace.textfont.color = INK


def natural_height_mm(result, class_names: Sequence[str], spec: FigureSpec, data: Mapping[str, Any] | None = None) -> float:
    """The height (mm) :func:`compose_figure` chooses for ``spec`` when ``height_mm`` is None."""
    fig = compose_figure(result, class_names, FigureSpec(**{**spec.__dict__, "height_mm": None}), data=data)
    return float(fig.layout.meta["height_mm"])


def size_mm(fig: go.Figure) -> tuple[float, float]:
    """``(width, height)`` in mm of a composed figure."""
    return _mm(float(fig.layout.width)), _mm(float(fig.layout.height))


__all__ = ["AFTER", "CHARTS", "CHART_LABELS", "DEFAULT_CHARTS", "EXTRA_CHARTS", "PANELS", "PANEL_LABELS", "PRINT_FONT", "FigureSpec", "compose_figure",
           "chart_data", "embed", "figure_numbers", "natural_height_mm", "numbers_csv", "numbers_rows", "panel_title", "shown_filters", "size_mm", "sweep_budgets"]


def _sweep_statistics(sweep: Any) -> list[dict[str, Any]]:
    """The ε sweep's intervals and n, one dict per budget (:meth:`~neuronviz.workflows.sweep.EpsSweep.statistics_frame`;
    numbers only: a statistic that is not defined is None); empty dicts for a sweep without them."""
    if not getattr(sweep, "overlap", ()):
        return [{} for _ in range(int(sweep.eps.shape[0]))]
    rows = []
    for row in sweep.statistics_frame().to_dict("records"):
        out: dict[str, Any] = {}
        for key, value in row.items():
            if key in ("front_overlap", "spearman", "control_front_overlap", "control_spearman") or key.endswith("_note"):
                continue  # the values are above; a statistic not defined is None here (its reason: the sweep's CSV)
            if isinstance(value, float) and value != value:
                value = None
            out[key] = value.item() if hasattr(value, "item") else value
        rows.append(out)
    return rows


def numbers_rows(numbers: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`figure_numbers` as long-format rows (section, condition, layer, item, metric, value)
    for one CSV: every number the figure draws, one per row."""
    rows: list[dict[str, Any]] = []

    def add(section, condition, layer, item, metric, value):
        rows.append({"section": section, "condition": condition, "layer": layer, "item": item, "metric": metric, "value": value})

    for condition, entry in numbers.get("panels", {}).items():
        if condition == "perturbation":
            for metric in ("linf", "l2", "l0", "amplification"):
                add("panel", condition, "", "", metric, entry[metric])
            continue
        add("panel", condition, "", entry["class_name"], "confidence", entry["confidence"])
        for rank, top in enumerate(entry["top5"], 1):
            add("top5", condition, "", top["class_name"], f"probability (rank {rank})", top["probability"])
    after = numbers.get("after", "")
    for row in numbers.get("front_tail", []):
        for condition in ("clean", after, "control"):
            if condition in row:
                add(f"front-tail ({row['group']})", condition, numbers["layer"], row["label"], "influence", row[condition])
    for section in ("layers", "restoration"):
        for condition, table in numbers.get(section, {}).items():
            for entry in table:
                for metric, value in entry.items():
                    if metric != "layer":
                        add(section, condition, entry["layer"], "", metric, value)
    evidence = numbers.get("evidence")
    if evidence:
        for measure, entry in evidence.items():
            if not isinstance(entry, dict) or "attack" not in entry:
                continue
            for side in ("attack", "control"):
                for metric in ("k", "n", "share", "low", "high"):
                    add("evidence", side, evidence["layer"], measure, metric, entry[side][metric])
    for point in numbers.get("eps_sweep", []):
        for metric, value in point.items():
            if metric == "eps":
                continue
            condition = "matched control" if metric.startswith("control_") else "adversarial"
            add("eps-sweep", condition, numbers.get("eps_sweep_layer", ""), f"eps {point['eps']:.6g}",
                metric.removeprefix("control_"), value)
    for entry in numbers.get("filters", []):
        add("filters", "adversarial", entry["layer"], f"filter {entry['filter']}", "shift", entry["shift"])
    return rows


NUMBER_COLUMNS = ("section", "condition", "layer", "item", "metric", "value")


def numbers_csv(numbers: dict[str, Any]) -> str:
    """:func:`numbers_rows` as CSV text (a header row, then one number per row)."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(NUMBER_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(numbers_rows(numbers))
    return out.getvalue()
