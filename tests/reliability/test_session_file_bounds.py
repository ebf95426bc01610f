"""Issue 24.15: a session file is bounded before it is parsed (size, nesting depth, value count,
encoding) and every parse error is an InputError that says "session file" and what is wrong:
never a RecursionError, never a path of the server. The hostile files are made here; the costly
ones are opened in a fresh process that measures wall time and peak RSS."""

from __future__ import annotations

import json

import pytest
from bounded_run import run_bounded

from neuronviz.infra.errors import InputError
from neuronviz.workflows import session_record as session

#: Every refusal below: well under a second and a few MB (the file itself is at most 1 MB).
SECONDS = 2.0
RSS_MB = 60


def _refused(text) -> str:
    with pytest.raises(InputError) as caught:
        session.from_json(text)
    message = str(caught.value)
    assert "session file" in message
    assert "/" not in message.replace("neuronviz-session/1", ""), message  # no file path, no traceback
    return message


@pytest.mark.parametrize("depth", [20, 1_000, 200_000])
def test_deep_nesting_is_refused_before_parsing(depth):
    text = '{"format": "neuronviz-session/1", "page": {"x": ' + "[" * depth + "]" * depth + "}}"
    if len(text) > session.MAX_SESSION_BYTES:
        assert "at most 1000 kB" in _refused(text)
        return
    message = _refused(text)
    assert f"nests {depth + 2:,} levels deep" in message and "at most 16" in message


def test_deep_nesting_costs_no_time_or_memory_in_a_fresh_process():
    out = run_bounded(
        """
        text = '{"format": "neuronviz-session/1", "params": ' + '[' * 450_000 + ']' * 450_000 + '}'
        session.from_json(text)
        """,
        "from neuronviz import session",
    )
    assert out["error"] == "InputError" and "levels deep" in out["message"], out
    assert out["seconds"] < SECONDS and out["delta_mb"] < RSS_MB, out


def test_a_nesting_of_16_levels_still_opens():
    text = json.dumps({"format": "neuronviz-session/1", "attack": "fgsm", "page": {"a.b": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]}})
    record, messages = session.from_json(text)
    assert record.attack == "fgsm" and "a.b" in record.page


# -- own hostile cases (same class: cost or a raw error before the file is understood) ---------------


def test_a_wide_file_of_80k_page_keys_is_refused_before_it_makes_80k_messages():
    page = ",".join(f"\"{i:x}\":1" for i in range(80_000))
    text = '{"format": "neuronviz-session/1", "page": {' + page + "}}"
    assert len(text) < session.MAX_SESSION_BYTES
    message = _refused(text)
    assert "160,00" in message and "at most 5,000" in message


def test_escaped_quotes_and_an_unterminated_string_scan_in_linear_time():
    """A string-skipping regex that backtracks would take minutes on this (quadratic)."""
    out = run_bounded(
        """
        session.from_json('"' + '\\\\"' * 400_000 + '\\\\')
        """,
        "from neuronviz import session",
    )
    assert out["error"] == "InputError" and "session file" in out["message"], out
    assert out["seconds"] < SECONDS, out


@pytest.mark.parametrize(
    "text, words",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"format": "neuronviz-session/1", "seed": NaN}', "NaN is not a JSON number"),
        ('{"format": "neuronviz-session/1", "seed": ' + "9" * 5000 + "}", "4300 digits"),
        ('{"format": "neuronviz-session/1", "seed": [1, 2,', "line 1 column"),
        ("x" * (session.MAX_SESSION_BYTES + 1), "at most 1000 kB"),
        ("é" * (session.MAX_SESSION_BYTES // 2 + 1), "at most 1000 kB"),  # 1 MB of characters, 2 MB of UTF-8
    ],
)
def test_every_parse_error_is_a_clear_message(text, words):
    assert words in _refused(text)
