"""Process-wide settings read from the environment.

Minimal version (written by the libsafe branch): only :func:`time_budget_s`. The checkpoints
branch owns this module and carries the fuller one (shared-server mode, upload caps); the two are
merged there.
"""

from __future__ import annotations

import math
import os

from neuronviz.errors import InputError


def time_budget_s() -> float:
    """The default wall-clock budget of one computation in seconds (env ``NEURONVIZ_TIME_BUDGET_S``,
    default 120). Raises :class:`InputError` when the variable is not a positive number."""
    raw = os.environ.get("NEURONVIZ_TIME_BUDGET_S", "").strip()
    if not raw:
        return 120.0
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"NEURONVIZ_TIME_BUDGET_S must be a number of seconds, got {raw!r}") from None
    if math.isnan(value) or value <= 0:
        raise InputError(f"NEURONVIZ_TIME_BUDGET_S must be a positive number of seconds, got {raw!r}")
    return value
