"""Number formats shared by the sidebar, the banner and the pages (one function per quantity).

:func:`pixel_budget` is the one way a pixel budget or a measured pixel norm is written, so the
banner's "ε 0.15 (38.3/255)" and the norms' "L∞ 0.15 (38.3/255)" agree. The measured norm of a
float32 perturbation is a hair away from the budget (0.15000001 vs 0.15), which can fall on
either side of a rounding boundary (38.2499… vs 38.2500…): the value in /255 units is rounded to
3 decimals first, then to 3 significant digits, halves up (as ``:.3g`` otherwise).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal


def over_255(value: float) -> str:
    """``value`` in 1/255 units: ``"8"`` for 8/255, ``"38.3"`` for 0.15, ``"2.55"`` for 0.01
    (3 significant digits, halves up, after rounding away float32 noise)."""
    scaled = round(float(value) * 255, 3)
    if abs(scaled - round(scaled)) < 1e-9:
        return f"{round(scaled):.0f}"
    exact = Decimal(repr(scaled))
    step = Decimal(1).scaleb(exact.adjusted() - 2)  # the unit of the 3rd significant digit
    shown = exact.quantize(step, rounding=ROUND_HALF_UP)
    return format(shown.normalize(), "f")


def pixel_budget(value: float) -> str:
    """``0.0314`` → ``"0.0314 (8/255)"``, ``0.15`` → ``"0.15 (38.3/255)"``: a budget (or a
    measured L∞) in both common units; non-finite values as they are."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g} ({over_255(value)}/255)"
