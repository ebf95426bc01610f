"""Benchmark: all-layer influence in one pass vs the gradient floor and vs Captum's per-layer loop.

    python bench/influence.py [--repeats 7] [--device cpu]

For digits-resnet (1×28×28) and a random-init torchvision resnet18 (3×224×224), batch 2, over
the same layers (every probe layer: conv, BN, linear, activations and block outputs, excluding
the reused ReLU modules), it prints:

  (a) ours ÷ floor: ``neuron_influence(method="grad_x_act")`` for all layers ÷ one forward plus one
      backward of the target logit to the input only (``torch.autograd.grad(z_c.sum(), x)``, no
      parameter gradients): the least any gradient-based influence must spend. Target ≤ 1.1.
  (b) Captum loop ÷ ours: Captum's ``LayerGradientXActivation`` called once per layer ÷ our
      single pass. Target ≥ 20.

The three measurements are interleaved in every repetition and the medians are compared, so
load on a noisy machine affects all three alike. Ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captum.attr import LayerGradientXActivation  # noqa: E402

from neuronviz.influence import neuron_influence, probe_layers  # noqa: E402
from neuronviz.models import load_model  # noqa: E402


def _floor(model, x, target):
    xg = x.detach().clone().requires_grad_(True)
    logits = model(xg)
    torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xg)


def _ours(model, x, target, layers):
    neuron_influence(model, x, layers=layers, target=target)


def _captum_loop(model, x, target, layers):
    for name in layers:
        LayerGradientXActivation(model, model.layer(name)).attribute(x, target=target)


def _time(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(name: str, weights, repeats: int, device: str) -> dict:
    model = load_model(name, weights=weights, device=device)
    torch.manual_seed(0)
    x = torch.rand(2, model.channels, *model.input_size, device=model.device)
    layers = [info.name for info in probe_layers(model)]
    with torch.no_grad():
        target = model(x).argmax(1)
    runs = {"floor": [], "ours": [], "captum": []}
    for fn in (lambda: _floor(model, x, target), lambda: _ours(model, x, target, layers)):
        fn()  # warm-up
    for _ in range(repeats):
        runs["floor"].append(_time(lambda: _floor(model, x, target)))
        runs["ours"].append(_time(lambda: _ours(model, x, target, layers)))
        if len(runs["captum"]) < max(3, repeats // 2):  # the slow loop: fewer repetitions
            runs["captum"].append(_time(lambda: _captum_loop(model, x, target, layers)))
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "model": name,
        "layers": len(layers),
        "floor_s": median["floor"],
        "ours_s": median["ours"],
        "captum_s": median["captum"],
        "a": median["ours"] / median["floor"],
        "b": median["captum"] / median["ours"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, batch 2")
    print(f"{'model':14s} {'layers':>6s} {'floor s':>9s} {'ours s':>9s} {'captum s':>9s}  {'(a) ours/floor':>15s} {'(b) captum/ours':>16s}")
    for name, weights in (("digits-resnet", "default"), ("resnet18", None)):
        r = bench(name, weights, args.repeats, args.device)
        print(
            f"{r['model']:14s} {r['layers']:6d} {r['floor_s']:9.4f} {r['ours_s']:9.4f} {r['captum_s']:9.4f}  "
            f"{r['a']:15.2f} {r['b']:16.1f}"
        )
    print("targets: (a) <= 1.1, (b) >= 20")


if __name__ == "__main__":
    main()
