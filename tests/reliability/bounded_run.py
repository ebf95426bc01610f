"""Run a piece of library code in a fresh process and measure what it cost (issue 24.15-24.21).

:func:`run_bounded` starts ``python -c`` with a script that runs ``setup`` (imports, building a
warm model: not measured), then records the peak RSS (``ru_maxrss``) and the clock, runs ``code``
and reports, as JSON on its last line: the error's class and message (None when it did not
raise), the wall time of ``code`` alone, and the growth of the peak RSS during ``code`` in MB.
The parent also reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the child ends (the
child's whole peak, torch included) as a second, coarser bound. On Linux the peak is reset to
the current RSS after ``setup`` (``/proc/self/clear_refs``, ``VmHWM``), so a transient peak of the
setup cannot hide what ``code`` costs; elsewhere ``ru_maxrss`` is used.

``code`` may set ``result`` (a JSON-serialisable value) to report anything else.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_TEMPLATE = """
import json, os, resource, sys, time, warnings
warnings.filterwarnings("ignore")
{setup}
def _status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))
try:  # reset the peak (VmHWM) to the current RSS, so a peak reached during setup hides nothing
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base, peak = _status("VmRSS:"), lambda: _status("VmHWM:")
except OSError:
    base, peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {{"error": None, "message": "", "result": None}}
started = time.perf_counter()
try:
{code}
    out["result"] = locals().get("result")
except BaseException as error:
    out["error"], out["message"] = type(error).__name__, str(error)
out["seconds"] = time.perf_counter() - started
out["delta_mb"] = (peak() - base) / 1024
print(json.dumps(out, default=str))
"""


def run_bounded(code: str, setup: str = "", env: dict | None = None, timeout: float = 300) -> dict:
    """The outcome of ``code`` in a fresh process (see the module docstring); the keys ``error``,
    ``message``, ``result``, ``seconds``, ``delta_mb`` and ``child_peak_mb``."""
    script = _TEMPLATE.format(setup=textwrap.dedent(setup), code=textwrap.indent(textwrap.dedent(code), "    "))
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = json.loads(completed.stdout.strip().splitlines()[-1])
    out["child_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out
