"""Per-chart exports: beside every chart and table, the numbers it shows (CSV, JSON) and the chart
itself (PDF, SVG, PNG at 300 or 600 dpi), each carrying its provenance record.

:func:`export_controls` draws one compact popover ("Data & export") under a chart or table; its
download buttons build their bytes only when clicked (``st.download_button`` with a callable,
run on a worker thread), so drawing a page never serialises a table or starts kaleido.

Formats (the same for every page):

- **CSV**: the table, preceded by comment lines that start with ``# ``: the first says how many
  there are (``pandas.read_csv(path, skiprows=n)`` reads the table back; :func:`read_csv` returns
  table and record), then one line each for the model, image or data set, attack (all
  parameters, target, seed), defences, device, versions and time, and last the whole record as
  one JSON line ``# provenance: {...}``. No side-car file: the record travels inside the CSV.
- **JSON**: ``{"name", "provenance", "columns", "data"}``; ``data`` is a list of rows (one
  object per row, the CSV's columns) and NaN is written as ``null``.
- **PDF/SVG/PNG**: :func:`neuronviz.workflows.export.export_figure` with the record embedded (PDF Info,
  SVG metadata, PNG text chunk). Where no chromium exists the popover says so; the chart's
  toolbar still downloads an SVG from the browser.

The row builders below (``*_rows``) are plain functions of the library's results, shared by the
pages and the tests; each returns exactly the numbers its chart draws.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from app import state
from neuronviz.core.models import PixelModel
from neuronviz.infra.digest import tensor_digest
from neuronviz.methods.attacks import AttackTrace
from neuronviz.methods.influence import InfluenceMap, InfluenceShift
from neuronviz.workflows import export
from neuronviz.workflows import provenance as provenance_lib
from neuronviz.workflows.analysis import Analysis
from neuronviz.workflows.analysis import provenance as analysis_provenance
from neuronviz.workflows.table_files import (  # noqa: F401 - re-exported for the pages
    Data,
    LazyData,
    as_frame,
    csv_text,
    header_lines,
    json_text,
    read_csv,
    read_json,
    resolve,
)

if TYPE_CHECKING:  # pandas (with pyarrow, ~0.4 s) is imported when a table is first built, not at start-up
    import pandas as pd

#: Width of an exported chart: the double column of most journals (a chart across the page) or
#: the single column (a chart in a page's column).
WIDE_MM = export.WIDTH_PRESETS["double"]
NARROW_MM = export.WIDTH_PRESETS["single"]
DEFAULT_HEIGHT_PX = 450  # plotly's own default height, for a figure that sets none
#: Groups of a layer's neurons, by NeuronGroups label.
GROUP_NAMES = ("front", "middle", "tail")
#: Rows an attribution table may have before it is refused (pixels × images).
MAX_ATTRIBUTION_ROWS = 2_000_000

_FORMATS = {"pdf": ("application/pdf", ":material/picture_as_pdf:"), "svg": ("image/svg+xml", ":material/draw:"),
            "png": ("image/png", ":material/image:")}


# -- provenance -------------------------------------------------------------------------------------


def image_name(selection: state.Selection) -> str:
    """The image's name in a provenance record: the sample id, else the upload's file name."""
    request = selection.image_request
    if request.sample_id:
        return request.sample_id
    return request.upload.name if request.upload is not None else request.label


def image_entry(image: torch.Tensor, name: str) -> dict[str, Any]:
    """Name, shape and content hash of an image (the same hash as :func:`neuronviz.workflows.analysis.provenance`)."""
    return {"name": name, "shape": list(image.shape), "content_hash": tensor_digest(image)}


def analysis_record(selection: state.Selection, result: Analysis, **extra: Any) -> dict[str, Any]:
    """The provenance record of anything drawn from the current analysis: model, image, attack
    with its full parameters, target and seed, both restorations, device, versions, time."""
    return analysis_provenance(
        selection.model, result, image_name(selection), extra={"image_label": selection.image_request.label, **extra}
    )


def image_record(selection: state.Selection, **extra: Any) -> dict[str, Any]:
    """The provenance record of a view of the image alone (no attack): model and image."""
    entry = image_entry(selection.image, image_name(selection))
    record = provenance_lib.record(selection.model, dataset={"image": entry}, extra={"image_label": selection.image_request.label, **extra})
    record["image"] = entry
    return record


def set_record(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    description: str,
    attack: str,
    params: Mapping[str, Any],
    target: int | str | None,
    seed: int,
    defences: Sequence[Mapping[str, Any]] = (),
    ids: Sequence[str] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The provenance record of a result over a set of labelled images (batch, nodal dropout,
    sensitivity): the model, the set (description, size, content digest), the attack with all its
    parameters, target and seed, the defences and their parameters."""
    dataset = {
        "description": description,
        "images": int(images.shape[0]),
        "digest": provenance_lib.tensor_set_digest(images, labels, ids),
    }
    attack_entry = {"attack": attack, "params": dict(params), "target": target, "seed": seed}
    return provenance_lib.record(
        model, dataset=dataset, attacks=[attack_entry], defences=defences, seeds={"attack": seed}, extra=extra or None
    )


# -- the numbers behind each kind of chart ------------------------------------------------------------


def top_rows(probs: torch.Tensor, class_names: Sequence[str], k: int = 5, condition: str | None = None,
             true_class: int | None = None) -> list[dict[str, Any]]:
    """The ``k`` most probable classes, most probable first (the top-5 bars)."""
    p = probs.detach().cpu().double().flatten()
    order = [int(i) for i in torch.argsort(p, descending=True)[: min(k, p.numel())]]
    rows = []
    for rank, index in enumerate(order, 1):
        row: dict[str, Any] = {"rank": rank, "class": index, "class_name": str(class_names[index]), "probability": float(p[index])}
        if condition is not None:
            row = {"condition": condition, **row}
        if true_class is not None:
            row["true_class"] = index == true_class
        rows.append(row)
    return rows


def trace_rows(trace: AttackTrace, class_names: Sequence[str], image: int = 0) -> list[dict[str, Any]]:
    """The attack's trajectory: loss and predicted class at every step (or forward pass)."""
    loss, predicted = trace.loss[:, image].tolist(), trace.predicted[:, image].tolist()
    return [
        {trace.unit.replace(" ", "_"): i, "loss": float(value), "predicted": int(c), "predicted_name": str(class_names[int(c)])}
        for i, (value, c) in enumerate(zip(loss, predicted))
    ]


def sweep_rows(sweep: Any, class_names: Sequence[str]) -> pd.DataFrame:
    """The ε sweep (:class:`neuronviz.workflows.sweep.EpsSweep`): one row per budget, with the shift at its layer."""
    frame = sweep.to_frame()
    frame.insert(0, "budget_param", sweep.budget_param)
    frame.insert(3, "prediction_name", [str(class_names[int(c)]) for c in frame["prediction"]])
    frame["layer"] = sweep.layer
    frame["front"] = sweep.front
    frame["tail"] = sweep.tail
    return frame


def influence_rows(before: InfluenceMap, after: InfluenceMap, shift: InfluenceShift, after_condition: str,
                   image: int = 0) -> pd.DataFrame:
    """Every neuron of the layer: influence (and activation) clean and after, the change, its rank
    and group (front/middle/tail) on the clean image and after (the scatter and the bars)."""
    import pandas as pd

    clean = before.values[image].double()
    moved = after.values[image].double()
    rank_clean = torch.argsort(torch.argsort(clean, descending=True)) + 1
    rank_after = torch.argsort(torch.argsort(moved, descending=True)) + 1
    groups_before = shift.groups_before.labels[image].tolist()
    groups_after = shift.groups_after.labels[image].tolist()
    return pd.DataFrame(
        {
            "layer": before.layer,
            "neuron": list(range(before.neurons)),
            "label": [before.neuron_label(j) for j in range(before.neurons)],
            "group_clean": [GROUP_NAMES[int(g)] for g in groups_before],
            f"group_{after_condition}": [GROUP_NAMES[int(g)] for g in groups_after],
            "influence_clean": clean.tolist(),
            f"influence_{after_condition}": moved.tolist(),
            "influence_change": (moved - clean).tolist(),
            "rank_clean": rank_clean.tolist(),
            f"rank_{after_condition}": rank_after.tolist(),
            "activation_clean": before.activations[image].double().tolist(),
            f"activation_{after_condition}": after.activations[image].double().tolist(),
            "target_class": int(before.target[image]),
            "tail_rule": shift.groups_before.tail_rule,
        }
    )


def transition_rows(shift: InfluenceShift, after_condition: str, image: int = 0) -> list[dict[str, Any]]:
    """The 3×3 transition counts: neurons going from a group on the clean image to a group after."""
    counts = shift.transition[image].tolist()
    return [
        {"group_clean": GROUP_NAMES[i], **{f"{GROUP_NAMES[j]}_{after_condition}": int(counts[i][j]) for j in range(3)}}
        for i in range(3)
    ]


def layer_rows(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-layer shift tables of several conditions as one table with a ``condition`` column."""
    import pandas as pd

    return pd.concat([frame.assign(condition=condition)[["condition", *frame.columns]] for condition, frame in tables.items()],
                     ignore_index=True)


def attribution_rows(values: torch.Tensor, roles: Sequence[str] = ("clean", "adversarial")) -> pd.DataFrame:
    """A pair of attribution maps ``(2, [C,] H, W)`` as one row per pixel (and channel) per image."""
    import pandas as pd

    maps = values.detach().cpu().double()
    if maps.dim() == 3:
        maps = maps.unsqueeze(1)
    n, c, h, w = maps.shape
    if n * c * h * w > MAX_ATTRIBUTION_ROWS:
        raise ValueError(f"the attribution has {n * c * h * w} values, more than a table of {MAX_ATTRIBUTION_ROWS} rows")
    image, channel, y, x = np.meshgrid(np.arange(n), np.arange(c), np.arange(h), np.arange(w), indexing="ij")
    return pd.DataFrame(
        {
            "image": [roles[int(i)] if i < len(roles) else str(i) for i in image.ravel()],
            "channel": channel.ravel(),
            "y": y.ravel(),
            "x": x.ravel(),
            "attribution": maps.numpy().ravel(),
        }
    )


def nip_step_rows(restoration: Any, class_names: Sequence[str], image: int = 0) -> list[dict[str, Any]]:
    """Guided NIP's objective and predicted class per step (step 0: the incoming image)."""
    objective, predicted = restoration.trace["objective"], restoration.trace["predicted"]
    return [
        {"step": step, "objective": float(objective[step, image]), "predicted": int(predicted[step, image]),
         "predicted_name": str(class_names[int(predicted[step, image])])}
        for step in range(objective.shape[0])
    ]


def pssr_map_rows(score: torch.Tensor, mask: torch.Tensor) -> pd.DataFrame:
    """PSSR's salient score and removal mask, one row per pixel (``(H, W)`` after squeezing)."""
    import pandas as pd

    s, m = score.detach().cpu().double().squeeze(), mask.detach().cpu().squeeze()
    while m.dim() > 2:  # a mask per colour channel removes a pixel when any channel does
        m = m.amax(0)
    h, w = s.shape
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return pd.DataFrame({"y": y.ravel(), "x": x.ravel(), "score": s.numpy().ravel(), "removed": m.bool().numpy().ravel()})


def rescale_rows(points: Sequence[Any]) -> list[dict[str, Any]]:
    """Compress/amplify (:class:`neuronviz.methods.fragility.RescaleEvaluation` per β): accuracies before and after."""
    return [
        {"beta": p.beta, "images": p.images, "clean_before": p.clean_before, "clean_after": p.clean_after,
         "adv_before": p.adv_before, "adv_after": p.adv_after, "adv_transfer_after": p.adv_transfer_after}
        for p in points
    ]


def profile_rows(profiles: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Sensitivity per layer (``profile name → layer → SensitivityMap``): mean, relative and top σ."""
    return [
        {"profile": name, "layer": layer, "layer_index": index, "neurons": smap.neurons, "pairs": int(smap.per_pair.shape[0]),
         "mean_sensitivity": smap.mean, "relative_sensitivity": smap.relative_mean, "top_mean_sensitivity": smap.top_mean}
        for name, profile in profiles.items()
        for index, (layer, smap) in enumerate(profile.items())
    ]


def channel_rows(smap: Any) -> pd.DataFrame:
    """σ of every channel of one layer (a SensitivityMap), with its rank (1 = most sensitive)."""
    frame = smap.to_frame()
    frame["sensitivity"] = frame["sensitivity"].astype("float64")
    frame["activation_size"] = frame["activation_size"].astype("float64")
    frame.insert(2, "rank", frame["sensitivity"].rank(ascending=False, method="first").astype(int))
    frame["pairs"] = int(smap.per_pair.shape[0])
    return frame


def channel_map_rows(maps: Any, smap: Any) -> pd.DataFrame:
    """The most sensitive channels' outputs (``feature_maps.ChannelMaps``): one row per channel and
    position (or per channel for a linear layer), clean, adversarial, difference and the channel's σ."""
    import pandas as pd

    rows = []
    clean, adversarial = maps.clean.detach().double(), maps.adversarial.detach().double()
    for i, channel in enumerate(maps.channels):
        sigma = float(smap.values[channel])
        if clean.dim() == 1:
            rows.append({"channel": channel, "y": None, "x": None, "clean": float(clean[i]),
                         "adversarial": float(adversarial[i]), "difference": float(adversarial[i] - clean[i]), "sensitivity": sigma})
            continue
        h, w = clean.shape[1], clean.shape[2]
        for y in range(h):
            for x in range(w):
                a, b = float(clean[i, y, x]), float(adversarial[i, y, x])
                rows.append({"channel": channel, "y": y, "x": x, "clean": a, "adversarial": b, "difference": b - a, "sensitivity": sigma})
    return pd.DataFrame(rows)


def batch_summary_rows(summary: Any) -> list[dict[str, Any]]:
    """A batch's summary (:class:`neuronviz.workflows.batch.BatchSummary`) as one row for "no defence" and one
    per defence: accuracy on the clean and on the attacked images, attack success, DSR (fractions)."""
    base = {"images": summary.images, "excluded": summary.excluded, "attack_success": summary.attack_success}
    rows = [{"defence": "none", **base, "clean_accuracy": summary.clean_accuracy,
             "attacked_accuracy": summary.adversarial_accuracy, "dsr": None}]
    for name in summary.accuracy_after:
        rows.append({"defence": name, **base, "clean_accuracy": summary.clean_accuracy_after[name],
                     "attacked_accuracy": summary.accuracy_after[name], "dsr": summary.dsr[name]})
    return rows


def norm_rows(result: Analysis) -> dict[str, Any]:
    """The perturbation's norms (pixel units) and how many pixels there are."""
    report, delta = result.report, result.perturbation
    return {"l0": int(report.l0[0]), "pixels": int(delta.shape[-1] * delta.shape[-2]), "l2": float(report.l2[0]),
            "linf": float(report.linf[0])}


# -- the control ---------------------------------------------------------------------------------------


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "export"


def figure_size_mm(fig: go.Figure, width_mm: float | None = None) -> tuple[float, float]:
    """The export size of a chart: ``width_mm`` (default the figure's own width, else the double
    column) × the figure's height in CSS px converted to mm (plotly's default when it sets none)."""
    layout = fig.layout
    if width_mm is None:
        width_mm = float(layout.width) * export.MM_PER_INCH / export.CSS_DPI if layout.width else WIDE_MM
    height_px = float(layout.height) if layout.height else DEFAULT_HEIGHT_PX
    height_mm = height_px * export.MM_PER_INCH / export.CSS_DPI
    return min(max(width_mm, 10.0), 1000.0), min(max(height_mm, 10.0), 1000.0)


def chart_renderer(fig: go.Figure, fmt: str, width_mm: float, height_mm: float, dpi: int, record: Mapping[str, Any]) -> Callable[[], bytes]:
    """What a PDF/SVG/PNG button runs when clicked: the chart rendered by neuronviz.workflows.export, record inside."""

    def render() -> bytes:  # runs on a worker thread when the button is clicked
        return export.export_figure(go.Figure(fig), fmt, width_mm, height_mm, dpi=dpi, provenance=record)

    return render


def export_controls(
    fig: go.Figure | None,
    data: LazyData,
    name: str,
    provenance: Mapping[str, Any],
    *,
    key: str | None = None,
    width_mm: float | None = None,
) -> None:
    """One compact "Data & export" popover for a chart or table: CSV and JSON of ``data`` (the
    numbers it shows; a table or a function building it) and, with ``fig``, PDF, SVG and PNG (300/600 dpi) of the chart, all with
    the ``provenance`` record. Nothing is serialised or rendered until a button is clicked.

    ``name`` is the file stem (and, unless ``key`` is given, the widgets' key prefix);
    ``width_mm`` the exported chart's width (default: :func:`figure_size_mm`)."""
    key = key or f"export.{name}"
    stem = _stem(name)
    record = dict(provenance)
    with st.popover("Data & export", icon=":material/download:", type="tertiary", key=f"{key}.popover"):
        st.caption("The numbers shown" + ("" if fig is None else " and the chart") + ", with their provenance "
                   "(model, image or image set, attack and all its parameters, target, seed, versions).")
        with st.container(horizontal=True, gap="small"):
            st.download_button(
                "CSV", lambda: csv_text(data, name, record), f"{stem}.csv", "text/csv", key=f"{key}.csv",
                on_click="ignore", icon=":material/table:",
            )
            st.download_button(
                "JSON", lambda: json_text(data, name, record), f"{stem}.json", "application/json", key=f"{key}.json",
                on_click="ignore", icon=":material/data_object:",
            )
        if fig is None:
            return
        width, height = figure_size_mm(fig, width_mm)
        if not export.available():
            st.caption(
                ":material/warning: No chromium on this server: the chart cannot be rendered here as PDF, SVG or PNG. "
                "The camera button of the chart's toolbar still downloads an SVG from your browser."
            )
            return
        with st.container(horizontal=True, gap="small"):
            for fmt, dpi, label, suffix in (("pdf", 300, "PDF", ""), ("svg", 300, "SVG", ""), ("png", 300, "PNG 300 dpi", ""),
                                            ("png", 600, "PNG 600 dpi", "-600dpi")):
                mime, icon = _FORMATS[fmt]
                st.download_button(
                    label, chart_renderer(fig, fmt, width, height, dpi, record), f"{stem}{suffix}.{fmt}", mime,
                    key=f"{key}.{fmt}{600 if dpi == 600 else ''}", on_click="ignore", icon=icon,
                )
        st.caption(
            f"Chart at {width:.0f} × {height:.0f} mm, fonts embedded in the PDF; PNG "
            f"{export.png_pixels(width, height, 300)[0]} or {export.png_pixels(width, height, 600)[0]} px wide. "
            "Rendered on the server when you click (the first export starts chromium: a few seconds)."
        )
