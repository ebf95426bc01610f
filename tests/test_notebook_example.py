"""The notebook example (docs/notebook.md) runs as written, from a folder outside the checkout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "notebook.md"


def _cells() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_the_notebook_example_runs_outside_the_checkout(tmp_path):
    cells = _cells()
    assert len(cells) == 4
    script = tmp_path / "notebook.py"
    script.write_text("\n".join(cells), encoding="utf-8")
    # this checkout's code, whether or not it is the one installed in the interpreter
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("digits-cnn ") and "the first 32 of the 360 scikit-learn digits" in lines[0]
    fooled = int(re.search(r"fooled: (\d+) of 8", out.stdout).group(1))
    back = int(re.search(r"back for (\d+) of 8", out.stdout).group(1))
    assert 0 < fooled <= 8 and 0 <= back <= 8
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["attack", "defence"])
    assert len(lines[header + 1 : header + 5]) == 4 and "PSSR" in lines[header + 2]
    assert lines[-1].startswith("digits-cnn ") and lines[-1].endswith(" cpu")
    assert not list(tmp_path.glob("evaluation-*"))  # nothing written: no out= was given
