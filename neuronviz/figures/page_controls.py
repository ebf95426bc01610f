"""The Figure page's controls as session-record :class:`~neuronviz.workflows.session_record.Control`
entries, and the :class:`~neuronviz.figures.compose.FigureSpec` their values give.

The page and ``python -m neuronviz figure --session`` both read a session's figure controls and
build the spec with these (so a session file draws the same figure in both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from neuronviz.figures.compose import AFTER, CHARTS, PANELS, FigureSpec
from neuronviz.methods.defences import list_defences
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION
from neuronviz.workflows.export import DPI_CHOICES, MM_PER_INCH
from neuronviz.workflows.session_record import Control


def restoration_panels() -> tuple[str, ...]:
    """Every registered restoration besides those of :data:`~neuronviz.figures.compose.PANELS`
    (the baselines, plugins' defences), in the registry's order: a panel, and a condition to compare
    with the clean image, whenever the analysis ran it (the Methods box)."""
    return tuple(d.name for d in list_defences(include_none=False) if d.name not in PANELS)


def panel_options() -> tuple[str, ...]:
    """The image panels a figure may have, in the order they are drawn: :data:`PANELS`, then
    :func:`restoration_panels`."""
    return (*PANELS, *restoration_panels())


def after_options() -> tuple[str, ...]:
    """The conditions a figure may compare with the clean image: :data:`AFTER`, then the other
    registered restorations."""
    return (*AFTER, *[r for r in restoration_panels() if r not in AFTER])


def figure_controls() -> dict[str, Control]:
    """The Figure page's controls and the front/tail size (``group_fraction``) as :class:`Control`
    entries with :data:`FIGURE_DEFAULTS`: what ``figure --session`` reads from a session file."""
    table = {
        "group_fraction": Control("float", DEFAULT_GROUP_FRACTION, low=0.0, high=1.0),
        "figure.panels": Control("multi", options=panel_options()),
        "figure.charts": Control("multi", options=CHARTS),
        "figure.layer": Control("layer"),
        "figure.after": Control("choice", options=after_options()),
        "figure.tail_rule": Control("choice", options=("bottom", "next")),
        "figure.width_preset": Control("choice", options=("single", "double", "custom")),
        "figure.unit": Control("choice", options=("mm", "in")),
        "figure.width_value.mm": Control("float", low=20.0, high=500.0),
        "figure.width_value.in": Control("float", low=20.0 / MM_PER_INCH, high=500.0 / MM_PER_INCH),
        "figure.auto_height": Control("bool"),
        "figure.height_value.mm": Control("float", low=20.0, high=600.0),
        "figure.height_value.in": Control("float", low=20.0 / MM_PER_INCH, high=600.0 / MM_PER_INCH),
        "figure.font": Control("float", low=5.0, high=14.0),
        "figure.letters": Control("bool"),
        "figure.dpi": Control("choice", options=tuple(DPI_CHOICES)),
    }
    for key, value in FIGURE_DEFAULTS.items():
        table[key] = dataclasses.replace(table[key], default=value)
    return table


#: Width presets of the Figure page (mm).
WIDTH_PRESETS = {"single": 85.0, "double": 178.0}
#: The Figure page's controls on a first visit (the page, the link's defaults and figure_spec share them).
FIGURE_DEFAULTS: dict[str, Any] = {
    "figure.panels": ["clean", "perturbation", "adversarial", "nip-guided", "pssr"],
    "figure.charts": ["top5", "front-tail"],
    "figure.after": "adversarial",
    "figure.tail_rule": "bottom",
    "figure.width_preset": "double",
    "figure.unit": "mm",
    "figure.width_value.mm": 120.0,
    "figure.width_value.in": 4.72,
    "figure.auto_height": True,
    "figure.height_value.mm": 150.0,
    "figure.height_value.in": 5.91,
    "figure.font": 8.0,
    "figure.letters": True,
    "figure.dpi": 300,
}


def figure_spec(page: Mapping[str, Any], group_size: float | int | None = None, get: Callable[[str, Any], Any] | None = None) -> FigureSpec:
    """The :class:`~neuronviz.figures.compose.FigureSpec` the Figure page draws for these control
    values (``figure.*`` keys, and ``group_fraction``, the front/tail size shared by the pages);
    missing values take the page's defaults. ``get(key, default)`` reads a value (default:
    ``page.get``)."""
    def read(key: str) -> Any:
        value = (get or page.get)(key, FIGURE_DEFAULTS.get(key))
        return FIGURE_DEFAULTS.get(key) if value is None else value

    panels = read("figure.panels") or []
    charts = read("figure.charts") or []
    preset = read("figure.width_preset")
    unit = read("figure.unit")
    factor = 1.0 if unit == "mm" else MM_PER_INCH
    if preset == "custom":
        width_mm = float(read(f"figure.width_value.{unit}")) * factor
    else:
        width_mm = WIDTH_PRESETS.get(str(preset), 178.0)
    height_mm = None
    if not read("figure.auto_height"):
        height_mm = float(read(f"figure.height_value.{unit}")) * factor
    size = group_size if group_size is not None else (page.get("group_fraction") or DEFAULT_GROUP_FRACTION)
    layer = (get or page.get)("figure.layer", None)
    return FigureSpec(
        panels=tuple(p for p in panel_options() if p in panels),
        charts=tuple(c for c in CHARTS if c in charts),
        layer=layer if layer else None,
        after=read("figure.after"),
        group_size=size,
        tail_rule=read("figure.tail_rule"),
        width_mm=width_mm,
        height_mm=height_mm,
        font_pt=float(read("figure.font")),
        letters=bool(read("figure.letters")),
    )
