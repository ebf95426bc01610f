"""Figure builders: pure functions from library results to ``plotly.graph_objects.Figure``.

:mod:`neuronviz.figures.base` holds the one visual language (palette, grid colour, colour scales,
layout, export config), the shared layout helpers (image grids, two colour axes, input checks) and
the basic figures (image, prediction bars); the other modules build the figures of one subject
each, on that base: ``attack`` (perturbation, trajectory, ε sweep, NIP steps, PSSR mask),
``neurons`` (influence scatter, front/tail bars, transition, per-layer overview, attributions),
``filters`` (first-layer grid, nodal dropout, compress/amplify), ``sensitivity`` (per layer,
per channel, channel maps) and ``batch`` (accuracy and per-class charts).
"""

# The figures of each subject, one module each: ``figures.neurons.influence_scatter(...)``.
from neuronviz.figures import attack, batch, filters, neurons, sensitivity  # noqa: E402,F401
from neuronviz.figures.base import (  # noqa: F401
    DIVERGING,
    FONT_FAMILY,
    FONT_SIZE,
    GREYS,
    GRID,
    INK,
    PALETTE,
    SEQUENTIAL,
    TEMPLATE,
    apply_layout,
    export_config,
    image_figure,
    prediction_bars,
)
