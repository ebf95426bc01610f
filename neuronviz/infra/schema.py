"""Parameter schemas shared by the attack and defence registries (the UI and CLI build controls from them),
and the one way pixel budgets are read (:func:`parse_eps`) and written (:func:`format_eps`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from neuronviz.infra.errors import InputError


class HasChannels(Protocol):
    """What a schema reads of a model (a :class:`~neuronviz.core.models.pixel.PixelModel` has it):
    infra imports nothing from the layers above it, not even for types."""

    @property
    def channels(self) -> int: ...


@dataclass(frozen=True)
class Param:
    """One attack parameter as the UI shows it and the validator checks it.

    ``kind`` is ``"float"``, ``"int"``, ``"bool"`` or ``"choice"``. ``low``/``high`` bound numbers
    (inclusive). ``pixel_scale=True`` marks budgets in [0, 1] pixel units that people also write
    as k/255. ``default_gray`` overrides ``default`` for single-channel (digit) models.
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    unit: str = ""
    choices: tuple = ()
    pixel_scale: bool = False
    default_gray: Any = None

    def default_for(self, model: HasChannels | None) -> Any:
        if model is not None and model.channels == 1 and self.default_gray is not None:
            return self.default_gray
        return self.default

    def validate(self, value: Any, attack: str) -> Any:
        where = f"{attack}: parameter {self.name!r}"
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise InputError(f"{where} must be true or false, got {value!r}")
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise InputError(f"{where} must be one of {list(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"{where} must be a number in {self.range_text()}, got {value!r}")
        number = float(value)
        if not math.isfinite(number):  # before int(): int(nan) and int(inf) raise plain errors
            raise InputError(f"{where} must be a finite number in {self.range_text()}, got {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise InputError(f"{where} must be a whole number in {self.range_text()}, got {value!r}")
            value = int(number)
        else:
            value = number
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            shown = f"{value:g}" + (f" (= {value * 255:.3g}/255)" if self.pixel_scale else "")
            raise InputError(f"{where} = {shown} is out of range {self.range_text()}")
        return value

    def range_text(self) -> str:
        """``"[0, 1] pixel units [0, 1]"``-style text of the allowed range, for messages."""
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]" + (f" {self.unit}" if self.unit else "")


def parse_eps(text: str | float) -> float:
    """Read ``"8/255"``, ``"0.03"`` or a number as a pixel budget in [0, 1] units."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"not a budget: {text!r}")
    raw = text.strip()
    try:
        if "/" in raw:
            numerator, denominator = raw.split("/", 1)
            value = float(numerator) / float(denominator)
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"not a budget: {text!r}; write e.g. 8/255 or 0.03") from None
    if not math.isfinite(value):
        raise InputError(f"not a finite budget: {text!r}")
    return value


def over_255(value: float) -> str:
    """``value`` in 1/255 units, two decimals at most, trailing zeros dropped: ``"8"`` for 8/255,
    ``"38.25"`` for 0.15. A float32 norm measured at a budget (0.15000001) reads the same as the
    budget: the value is rounded to two decimals of 1/255 first."""
    over = round(float(value) * 255, 2)
    return f"{over:.2f}".rstrip("0").rstrip(".")


def format_eps(value: float, pixel_scale: bool = True) -> str:
    """``0.0314`` → ``"0.0314 (8.01/255)"``, ``0.15`` → ``"0.15 (38.25/255)"``: the one way a pixel
    budget or a measured pixel norm is written (CLI, banner, norms, sliders, figures). Budgets
    without a pixel scale (C&W's ``c``) print as ``0.15``; non-finite values as they are."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if not pixel_scale:
        return f"{value:.4g}"
    return f"{value:.4g} ({over_255(value)}/255)"


def resolve(schema: tuple[Param, ...], params: Mapping[str, Any] | None, model: HasChannels | None, owner: str) -> dict[str, Any]:
    """Defaults of ``schema`` for this model, overridden by ``params``, each validated.

    Unknown names are refused with the list of known ones; pixel budgets may be given as
    ``"8/255"`` strings.
    """
    params = dict(params or {})
    names = [p.name for p in schema]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise InputError(f"{owner} has no parameter(s) {unknown}; it takes {names}")
    resolved = {p.name: p.default_for(model) for p in schema}
    by_name = {p.name: p for p in schema}
    for name, value in params.items():
        param = by_name[name]
        if param.pixel_scale and isinstance(value, str):
            try:
                value = parse_eps(value)
            except InputError as error:
                raise InputError(f"{owner}: parameter {name!r} (range {param.range_text()}): {error}") from None
        resolved[name] = param.validate(value, owner)
    return resolved
