"""The project is installed into its venv (``make setup``): importable from any folder, with its
``neuronviz`` console script. Skipped, with the reason, in an interpreter where it is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _outside(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(list(args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture()
def installed(tmp_path):
    probe = _outside(tmp_path, sys.executable, "-c", "import importlib.metadata as m; print(m.version('neuronviz'))")
    if probe.returncode != 0:
        pytest.skip(f"neuronviz is not installed in {sys.executable} (run `make setup`, which installs it editable)")
    return probe.stdout.strip()


def test_import_from_outside_the_checkout(installed, tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert installed == version
    code = "import neuronviz, neuronviz.workflows.evaluate, neuronviz.workflows.provenance; print(neuronviz.__version__); print(neuronviz.__file__)"
    out = _outside(tmp_path, sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr
    printed_version, where = out.stdout.split()
    assert printed_version == version
    assert Path(where).parent.name == "neuronviz" and not Path(where).is_relative_to(tmp_path)


def test_console_script_exists_and_runs(installed, tmp_path):
    script = Path(sys.executable).parent / "neuronviz"
    assert script.is_file() and os.access(script, os.X_OK), f"{script} is missing"
    out = _outside(tmp_path, str(script), "--help")
    assert out.returncode == 0, out.stderr
    assert "evaluate" in out.stdout and "models" in out.stdout
    out = _outside(tmp_path, str(script), "evaluate", "--help")
    assert out.returncode == 0 and "--autoattack" in out.stdout and "torchrun" in out.stdout
