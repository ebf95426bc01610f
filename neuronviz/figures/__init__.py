"""Figure builders: pure functions from library results to ``plotly.graph_objects.Figure``.

:mod:`neuronviz.figures.base` holds the one visual language (palette, layout, export config) and
the basic figures (image, prediction bars); the other modules build the figures of one subject
each, on that base. Everything public is re-exported here: ``from neuronviz import figures``.
"""

from neuronviz.figures.base import (  # noqa: F401
    FONT_FAMILY,
    FONT_SIZE,
    INK,
    PALETTE,
    TEMPLATE,
    apply_layout,
    export_config,
    image_figure,
    prediction_bars,
)
