"""Benchmark: `neuronviz evaluate` throughput (PGD-20 + NIP + PSSR) ÷ its floor; 1 vs 2 processes.

    python bench/evaluate.py [--model digits-cnn] [--images 64] [--repeats 3] [--device cpu]
                             [--torchrun-images 128] [--no-torchrun] [--no-shards] [--no-floor]

(a) Throughput ÷ floor. One block of ``--images`` digits through
    :func:`neuronviz.workflows.evaluate.run_block` with PGD-20 (ε = 0.1) and the defences none, nip-guided
    and pssr: images per second. While it runs, every pass through the classifier (and through
    PSSR's regenerator) is recorded: its batch size and whether gradients were on. The *floor* is
    those passes replayed, each on its own, on batches of those sizes (a classifier pass with
    gradients = forward + backward to the input; without = forward only; a regenerator pass =
    its forward): what the pipeline's passes cost with no bookkeeping around them. Every
    repetition times the pipeline, then the replay, and the median of the per-repetition ratios
    is printed (with the range: on a loaded machine single repetitions are noisy).
(b) 1 vs 2 processes: the same evaluation (``--torchrun-images`` images) by
    ``python -m neuronviz evaluate`` and by ``torchrun --nproc_per_node=2`` (gloo on the CPU, or
    nccl with one GPU each when two are there), alternately, each into a fresh folder: wall time
    (start-up included) and the evaluation's own time from ``results.json``; the tables are
    checked to be identical.
(c) 1 process vs 2 shards: the same evaluation by one process and by ``--shard 0/2`` and
    ``--shard 1/2`` started at once into one folder (as ``xargs -P 2`` would), then
    ``--merge``: wall times (start-up included); results.csv/.md/.tex checked byte-identical.

Ratios are measured in one run, interleaved. Port 29519 for torchrun's rendezvous.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.core.models.pixel import PixelModel  # noqa: E402
from neuronviz.methods.defences.pssr import Regenerator  # noqa: E402
from neuronviz.workflows import evaluate as ev  # noqa: E402

PORT = 29519


def _record_passes(model, run):
    """Run ``run()`` and count the passes through the classifier and the regenerator."""
    passes: Counter = Counter()

    def hook(module, inputs, output):
        if isinstance(module, PixelModel):
            passes[("model", int(inputs[0].shape[0]), torch.is_grad_enabled())] += 1
        elif isinstance(module, Regenerator):
            passes[("regenerator", int(inputs[0].shape[0]), False)] += 1

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return passes


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _replay(model, regenerator, passes, x, device):
    """Run every recorded pass once more, on its own; the seconds it took."""
    batches = {n: x[:n].to(device) for (_, n, _) in passes}
    _sync(device)
    started = time.perf_counter()
    for (kind, n, grad), count in passes.items():
        xb = batches[n]
        for _ in range(count):
            if kind == "regenerator":
                if regenerator is not None:
                    with torch.no_grad():
                        regenerator(xb, torch.zeros_like(xb))
            elif grad:
                xg = xb.clone().requires_grad_(True)
                torch.autograd.grad(model(xg).logsumexp(1).sum(), xg)
            else:
                with torch.no_grad():
                    model(xb)
    _sync(device)
    return time.perf_counter() - started


def bench_floor(model_name: str, images: int, repeats: int, device: str) -> None:
    model = load_model(model_name, device=device)
    data = ev.load_dataset("digits", model, limit=images)
    cell = ev.build_plan(model, ["pgd:steps=20"], eps=[0.1])[0]
    defences = ev.resolve_defences(model, ["none", "nip-guided", "pssr"])
    from neuronviz.methods.defences.pssr import load_regenerator

    found = load_regenerator(model)
    regenerator = found[0].to(device) if found is not None else None

    def pipeline():
        return ev.run_block(model, data.images, data.labels, cell, defences, 0, 0)

    pipeline()  # warm-up (also loads the regenerator)
    passes = _record_passes(model, pipeline)
    with_grad = sum(c for (k, _, g), c in passes.items() if k == "model" and g)
    without = sum(c for (k, _, g), c in passes.items() if k == "model" and not g)
    regen = sum(c for (k, _, _), c in passes.items() if k == "regenerator")
    print(f"(a) {model_name}, {images} images, PGD-20 ε=0.1 + none + NIP (guided) + PSSR, device {device}")
    print(f"    passes per block: {with_grad} classifier forward+backward, {without} classifier forward, {regen} regenerator forward")
    ratios, rates = [], []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        pipeline()
        _sync(device)
        seconds = time.perf_counter() - started
        ratios.append(seconds / _replay(model, regenerator, passes, data.images, device))
        rates.append(images / seconds)
    print(f"    throughput: {statistics.median(rates):.1f} images/s (median of {repeats})")
    print(f"    pipeline ÷ floor: {statistics.median(ratios):.2f} (median of {repeats}; range {min(ratios):.2f}–{max(ratios):.2f})")


def _evaluate_args(model_name: str, images: int, out: Path, device: str) -> list[str]:
    return [
        "-m", "neuronviz", "evaluate", model_name, "--device", device, "--limit", str(images), "--block-size", "16",
        "--attack", "pgd:steps=20", "--eps", "0.1", "--defence", "none", "--defence", "nip-guided", "--defence", "pssr",
        "--out", str(out), "--no-progress",
    ]


def bench_processes(model_name: str, images: int, repeats: int, device: str) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("WORLD_SIZE", None)
    walls: dict[int, list[float]] = {1: [], 2: []}
    inner: dict[int, list[float]] = {1: [], 2: []}
    tables: dict[int, str] = {}
    print(f"(b) {model_name}, {images} images, PGD-20 + none + NIP + PSSR: 1 process vs torchrun --nproc_per_node=2")
    with tempfile.TemporaryDirectory(prefix="neuronviz-bench-evaluate-") as tmp:
        for r in range(repeats):
            for n in (1, 2):
                out = Path(tmp) / f"run-{n}-{r}"
                args = _evaluate_args(model_name, images, out, device)
                if n == 1:
                    command = [sys.executable, *args]
                else:
                    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={PORT}", *args]
                started = time.perf_counter()
                done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
                wall = time.perf_counter() - started
                if done.returncode != 0:
                    raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
                walls[n].append(wall)
                inner[n].append(json.loads((out / "results.json").read_text())["seconds"])
                table = (out / "results.csv").read_text()
                if tables.setdefault(n, table) != table or tables.get(1, table) != table:
                    raise SystemExit("the tables of 1 and 2 processes differ")
    for n in (1, 2):
        w, s = statistics.median(walls[n]), statistics.median(inner[n])
        print(f"    {n} process{'es' if n > 1 else ''}: wall {w:.1f} s ({images / w:.1f} images/s), evaluation {s:.1f} s ({images / s:.1f} images/s)")
    print(f"    2 ÷ 1 processes, evaluation time: {statistics.median(inner[2]) / statistics.median(inner[1]):.2f}; wall: "
          f"{statistics.median(walls[2]) / statistics.median(walls[1]):.2f} (identical tables: yes)")


def bench_shards(model_name: str, images: int, repeats: int, device: str, shards: int = 2) -> None:
    """(c) 1 process vs ``shards`` shards started at once (as ``xargs -P``) + ``--merge``: wall times, tables byte-identical."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("WORLD_SIZE", None)
    one: list[float] = []
    sharded: list[float] = []
    merging: list[float] = []
    print(f"(c) {model_name}, {images} images, PGD-20 + none + NIP + PSSR: 1 process vs {shards} shards at once (xargs -P) + --merge")
    with tempfile.TemporaryDirectory(prefix="neuronviz-bench-shards-") as tmp:
        for r in range(repeats):
            single, shared = Path(tmp) / f"one-{r}", Path(tmp) / f"shards-{r}"
            started = time.perf_counter()
            done = subprocess.run([sys.executable, *_evaluate_args(model_name, images, single, device)], cwd=tmp, env=env, capture_output=True, text=True, timeout=1800)
            one.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"the single-process run failed:\n{done.stderr[-3000:]}")
            started = time.perf_counter()
            jobs = [subprocess.Popen([sys.executable, *_evaluate_args(model_name, images, shared, device), "--shard", f"{i}/{shards}"], cwd=tmp,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(shards)]
            errors = [job.communicate(timeout=1800)[1] for job in jobs]
            if any(job.returncode for job in jobs):
                raise SystemExit(f"a shard failed:\n{errors}")
            sharded.append(time.perf_counter() - started)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "neuronviz", "evaluate", "--merge", str(shared)], cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
            merging.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"the merge failed:\n{done.stderr[-3000:]}")
            for name in ("results.csv", "results.md", "results.tex"):
                if (single / name).read_bytes() != (shared / name).read_bytes():
                    raise SystemExit(f"{name} of the merged shards differs from the single-process run's")
    w1, ws, wm = statistics.median(one), statistics.median(sharded), statistics.median(merging)
    print(f"    1 process: wall {w1:.1f} s; {shards} shards: wall {ws:.1f} s, then --merge {wm:.1f} s (start-up included; median of {repeats})")
    print(f"    ({shards} shards + merge) ÷ 1 process, wall: {(ws + wm) / w1:.2f}; shards alone ÷ 1: {ws / w1:.2f} (byte-identical tables: yes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torchrun-images", type=int, default=128)
    parser.add_argument("--no-torchrun", action="store_true")
    parser.add_argument("--no-shards", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip (a)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    if not args.no_floor:
        bench_floor(args.model, args.images, args.repeats, args.device)
    if not args.no_torchrun:
        bench_processes(args.model, args.torchrun_images, max(1, args.repeats - 1), args.device)
    if not args.no_shards:
        bench_shards(args.model, args.torchrun_images, max(1, args.repeats - 1), args.device)


if __name__ == "__main__":
    main()
