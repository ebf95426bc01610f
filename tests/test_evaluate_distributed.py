"""torchrun with 2 gloo processes on the CPU gives the table of a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuronviz.cli import main

ROOT = Path(__file__).resolve().parents[1]
PORT = 29512  # the rendezvous port of this test (29511-29520 are the project's test ports)


def _args(out: Path) -> list[str]:
    return [
        "-m", "neuronviz", "evaluate", "digits-cnn", "--device", "cpu", "--limit", "32", "--block-size", "16",
        "--attack", "fgsm", "--attack", "pgd:steps=5", "--defence", "none", "--defence", "nip-guided",
        "--out", str(out), "--no-progress",
    ]


@pytest.mark.slow
def test_two_gloo_processes_give_the_single_process_table(tmp_path, capsys):
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("WORLD_SIZE", None)
    assert main(_args(tmp_path / "one")[2:]) == 0  # one process: this one
    single_out = capsys.readouterr().out
    torchrun = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={PORT}", *_args(tmp_path / "two"),
    ]
    double = subprocess.run(torchrun, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    for name in ("results.csv", "results.md", "results.tex"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text(), name
    assert double.stdout == single_out  # only rank 0 prints the table
    assert "| PGD-5 (L∞) | 0.1 | none | NIP (guided) |" in single_out
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["rows"] == two["rows"]
    assert (one["provenance"]["extra"]["world_size"], two["provenance"]["extra"]["world_size"]) == (1, 2)
    # both ranks computed a share: 2 cells × 2 blocks, block i on rank i mod 2
    assert "4 block(s) computed, 0 reused" in double.stderr and two["blocks"]["by_rank"] == [[2, 0], [2, 0]]
    assert len(list((tmp_path / "two" / "blocks").glob("*/block-*.json"))) == 4
    # a second torchrun over the same folder computes nothing and gives the same table
    again = subprocess.run(torchrun, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 block(s) computed, 4 reused" in again.stderr and again.stdout == single_out
