"""probe.py is the one place in the library and the app that registers hooks (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOKS = re.compile(r"\.register_(forward_pre_hook|forward_hook|full_backward_hook|full_backward_pre_hook|backward_hook|hook)\(")


def test_only_probe_registers_hooks():
    found = {
        str(path.relative_to(ROOT))
        for folder in ("neuronviz", "app")
        for path in (ROOT / folder).rglob("*.py")
        if HOOKS.search(path.read_text(encoding="utf-8"))
    }
    assert found == {"neuronviz/core/probe.py"}
