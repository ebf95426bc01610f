"""Benchmark: the Attack page's analysis on vision transformers, as a ratio to the CNN it sits beside.

    python bench/vit.py [--repeats 3] [--device cpu] [--no-floor]

The Attack page computes ``neuronviz.workflows.analysis.compute_analysis`` (the dashboard's default PGD-20,
NIP guided, PSSR, and the influence of every probe layer for the clean, adversarial and two
restored images). Two pairs, each measured interleaved in this one run (every repetition runs
the ViT and then its CNN, and the median of the per-repetition ratios is printed, so the ratio
holds when the machine is loaded):

- ``digits-vit`` (4 blocks, 4×4 patches, 28×28, trained here) ÷ ``digits-cnn``;
- ``timm:vit_tiny_patch16_224`` (random initialisation, 224×224) ÷ torchvision ``resnet18``
  (random initialisation, 224×224).

With the floor (default on), each model's analysis is also divided by the passes it needs, each
timed alone (``bench/app.py``'s floor: the attack's forward + backward per step, NIP's steps,
PSSR's saliency and regenerator or inpainting, the influence batch), so a ViT that is slower
because it is a bigger network is told apart from one that is slower because of the analysis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib.util  # noqa: E402

import torch  # noqa: E402

# bench/app.py (the Attack page's floor passes and the timer), loaded from this folder.
_spec = importlib.util.spec_from_file_location("bench_app", ROOT / "bench" / "app.py")
assert _spec is not None and _spec.loader is not None
bench_app = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_app)

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data.images import list_samples, load_sample  # noqa: E402
from neuronviz.workflows.analysis import AttackChoice, compute_analysis  # noqa: E402

PAIRS = (
    (("digits-vit", "default"), ("digits-cnn", "default")),
    (("timm:vit_tiny_patch16_224", None), ("resnet18", None)),
)


def _image(model) -> torch.Tensor:
    samples = list_samples(model)
    if samples:
        return load_sample(samples[0].id, model)
    return torch.rand(1, model.channels, *model.input_size, generator=torch.Generator().manual_seed(0))


def _prepare(name: str, weights, device: str, floor: bool):
    model = load_model(name, weights=weights, device=device)
    image = _image(model).to(model.device)
    choice = AttackChoice()
    result = compute_analysis(model, image, choice)  # warm-up: first kernels, probe layers, regenerator
    passes = []
    if floor:
        passes = bench_app.floor_passes(model, image, result)
        for _, _, fn in passes:
            fn()
    return model, image, choice, result, passes


def _once(prepared) -> tuple[float, float | None]:
    model, image, choice, _, passes = prepared
    total = bench_app.timed(lambda: compute_analysis(model, image, choice), model.device)
    if not passes:
        return total, None
    return total, sum(bench_app.timed(fn, model.device) for _, count, fn in passes for _ in range(count))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-floor", action="store_true", help="only the ViT ÷ CNN ratios")
    args = parser.parse_args()
    floor = not args.no_floor
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, {args.repeats} repeats")
    print(f"{'ViT':28s} {'s':>7s} {'÷floor':>7s}   {'CNN':12s} {'s':>7s} {'÷floor':>7s}   {'ViT ÷ CNN':>9s}")
    for (vit_name, vit_weights), (cnn_name, cnn_weights) in PAIRS:
        vit = _prepare(vit_name, vit_weights, args.device, floor)
        cnn = _prepare(cnn_name, cnn_weights, args.device, floor)
        rows: list[tuple[float, float | None, float, float | None]] = []
        for _ in range(args.repeats):
            v_total, v_floor = _once(vit)
            c_total, c_floor = _once(cnn)
            rows.append((v_total, v_floor, c_total, c_floor))
        v_s = statistics.median(r[0] for r in rows)
        c_s = statistics.median(r[2] for r in rows)
        ratio = statistics.median(r[0] / r[2] for r in rows)
        v_f = f"{statistics.median(r[0] / r[1] for r in rows if r[1]):7.2f}" if floor else f"{'-':>7s}"
        c_f = f"{statistics.median(r[2] / r[3] for r in rows if r[3]):7.2f}" if floor else f"{'-':>7s}"
        print(f"{vit_name:28s} {v_s:7.2f} {v_f}   {cnn_name:12s} {c_s:7.2f} {c_f}   {ratio:9.2f}")
        parts = vit[3].seconds
        print(f"{'':28s} ViT analysis parts (s, warm-up run): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
