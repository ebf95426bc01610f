"""Bounds on JSON text before ``json`` parses it (``json`` recurses once a nesting level and raises
RecursionError near 1,000): the nesting depth, counted in linear time with strings skipped.
Used by session files (:mod:`neuronviz.workflows.session_record`) and by model facts
(:mod:`neuronviz.core.models.load_checks`). Hand-written: the standard library has no bounded parse.
"""

from __future__ import annotations

import re

#: A JSON string, or an unterminated one up to the end (possessive, so it never backtracks: linear).
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.?)*+(?:"|\Z)', re.DOTALL)


def json_nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped), in linear time
    and without parsing it: what to check before ``json.loads``, which recurses once a level."""
    return nesting_depth(JSON_STRING.sub('""', text))


def nesting_depth(structure: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text whose strings were blanked out."""
    import numpy as np

    codes = np.frombuffer(structure.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if codes.size == 0:
        return 0
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(max(0, np.cumsum(steps).max()))


def check_json_text(text: str, most_depth: int, what: str, error: type[Exception]) -> None:
    """Raise ``error`` naming ``what`` when JSON ``text`` nests deeper than ``most_depth`` levels
    (checked in linear time, before ``json.loads`` would recurse into it)."""
    depth = json_nesting_depth(text)
    if depth > most_depth:
        raise error(f"{what} nests {depth:,} levels deep; at most {most_depth} are read. Nothing was parsed.")
