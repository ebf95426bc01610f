"""Benchmark: all-layer influence in one pass vs Captum's multi-layer call and vs the gradient floor.

    python bench/influence.py [--repeats 15] [--device cpu] [--models digits-cnn,digits-resnet,resnet18]
                              [--layer-set conv|all|both] [--threads N] [--no-loop]

For each model (digits-cnn and digits-resnet with their embedded weights, 1×28×28; torchvision
resnet18 with random weights, ``weights=None``, 3×224×224), batch 2, it times, **interleaved**
(each repetition runs A, B, C, D once, in an order that rotates between repetitions):

  A  ours: ``neuron_influence(model, x, layers, target)`` (grad × act, every layer, one pass),
     results reduced per channel and on the CPU;
  B  Captum 0.9's multi-layer call ``LayerGradientXActivation(model, [module, ...]).attribute(x,
     target)``: one forward, one backward for all layers (full-size attributions, not reduced);
  C  the floor: one forward pass plus one backward pass of the target logit to the input only
     (``torch.autograd.grad(z_c.sum(), x)``, no parameter gradients);
  D  (extra column) Captum's ``LayerGradientXActivation`` called once per layer (in the first
     third of the repetitions only: it is slow).

and prints the medians and the medians of the per-repetition ratios ours ÷ Captum multi-layer,
ours ÷ floor (targets ≤ 0.8 and ≤ 1.1) and Captum loop ÷ ours; and, for a loaded machine, the
same ratios of the fastest repetition of each (load only ever adds time, so the minimum is the
closest to an unloaded machine). Before timing it checks that
Captum's multi-layer call, summed per channel, gives our numbers (the max relative error is
printed). Layer sets: ``conv`` = the conv/BN/linear layers (41 in resnet18, 31 in
digits-resnet: the issue's reference set), ``all`` = every probe layer (+ activations, pools and
block outputs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.methods.influence import neuron_influence, probe_layers  # noqa: E402

MODELS = {"digits-cnn": "default", "digits-resnet": "default", "resnet18": None}
LAYER_SETS = {
    "conv": (nn.Conv2d, nn.BatchNorm2d, nn.Linear),  # the reference set (41 in resnet18)
    "all": None,  # + activations, pools and block outputs (probe_layers' default)
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device) -> float:
    _sync(device)
    started = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - started


def floor_pass(model, x, target):
    """One forward and one backward of the target logit to the input only."""
    xg = x.detach().clone().requires_grad_(True)
    logits = model(xg)
    return torch.autograd.grad(logits.gather(1, target[:, None]).sum(), xg)[0]


def setup(name: str, device: str, kinds, batch: int = 2):
    from captum.attr import LayerGradientXActivation

    model = load_model(name, weights=MODELS.get(name, "default"), device=device)
    torch.manual_seed(0)
    x = torch.rand(batch, model.channels, *model.input_size, device=model.device)
    layers = [info.name for info in probe_layers(model, kinds=kinds)]
    modules = model.layers(layers)
    with torch.no_grad():
        target = model(x).argmax(1)
    multi = LayerGradientXActivation(model, modules)
    fns = {
        "ours": lambda: neuron_influence(model, x, layers=layers, target=target),
        "captum": lambda: multi.attribute(x, target=target),
        "floor": lambda: floor_pass(model, x, target),
        "loop": lambda: [LayerGradientXActivation(model, m).attribute(x, target=target) for m in modules],
    }
    return model, x, target, layers, fns


def parity(fns, layers) -> float:
    """Max relative error of Captum's multi-layer call (summed per channel) against ours."""
    ours = fns["ours"]()
    theirs = fns["captum"]()
    worst = 0.0
    for name, ref in zip(layers, theirs):
        ref = ref.detach().cpu()
        ref = ref.flatten(2).sum(2) if ref.dim() > 2 else ref.flatten(1)
        scale = float(ref.abs().max()) or 1.0
        worst = max(worst, float((ours[name].values - ref).abs().max()) / scale)
    return worst


def bench(name: str, device: str, kinds, repeats: int, loop: bool) -> dict:
    model, x, target, layers, fns = setup(name, device, kinds)
    error = parity(fns, layers)
    columns = ["ours", "captum", "floor"] + (["loop"] if loop else [])
    for column in columns + columns:
        fns[column]()  # warm-up
    times: dict[str, list[float]] = {c: [] for c in columns}
    loop_reps = max(3, repeats // 3)  # the slow per-layer loop: in the first repetitions only
    for rep in range(repeats):
        present = [c for c in columns if c != "loop" or rep < loop_reps]
        order = present[rep % len(present):] + present[: rep % len(present)]  # rotate who goes first
        for column in order:
            times[column].append(_time(fns[column], model.device))
    # per-repetition ratios (zip stops at the shorter list: the loop's ratio uses its own repetitions)
    ratio = lambda a, b: statistics.median(p / q for p, q in zip(times[a], times[b]))  # noqa: E731
    return {
        "model": name,
        "layers": len(layers),
        "error": error,
        **{f"{c}_s": statistics.median(times[c]) for c in columns},
        "ours/captum": ratio("ours", "captum"),
        "ours/floor": ratio("ours", "floor"),
        "captum/floor": ratio("captum", "floor"),
        "loop/ours": ratio("loop", "ours") if loop else float("nan"),
        # the fastest repetition of each: what an unloaded machine gives (a loaded one only adds time)
        "min ours/captum": min(times["ours"]) / min(times["captum"]),
        "min ours/floor": min(times["ours"]) / min(times["floor"]),
    }


def run(models, device: str, layer_sets, repeats: int, loop: bool = True, out=print) -> list[dict]:
    out(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, batch 2, "
        f"{repeats} interleaved repetitions (medians; ratios are medians of per-repetition ratios)")
    out(f"{'model':14s} {'set':4s} {'layers':>6s} {'ours ms':>8s} {'captum ms':>9s} {'floor ms':>8s} {'loop ms':>8s} "
        f"{'ours/captum':>11s} {'ours/floor':>10s} {'captum/floor':>12s} {'loop/ours':>9s} {'max rel err':>11s} "
        f"{'min: ours/captum':>16s} {'ours/floor':>10s}")
    rows = []
    for name in models:
        for label in layer_sets:
            r = bench(name, device, LAYER_SETS[label], repeats, loop)
            r["set"] = label
            rows.append(r)
            out(f"{r['model']:14s} {label:4s} {r['layers']:6d} {1e3 * r['ours_s']:8.2f} {1e3 * r['captum_s']:9.2f} "
                f"{1e3 * r['floor_s']:8.2f} {1e3 * r.get('loop_s', float('nan')):8.1f} {r['ours/captum']:11.2f} "
                f"{r['ours/floor']:10.2f} {r['captum/floor']:12.2f} {r['loop/ours']:9.1f} {r['error']:11.1e} "
            f"{r['min ours/captum']:16.2f} {r['min ours/floor']:10.2f}")
    out("targets: ours/captum <= 0.8, ours/floor <= 1.1")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="digits-cnn,digits-resnet,resnet18")
    parser.add_argument("--layer-set", choices=["conv", "all", "both"], default="both")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default); 1 is steadier on a loaded machine")
    parser.add_argument("--no-loop", action="store_true", help="skip Captum's per-layer loop (the extra column)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = ["conv", "all"] if args.layer_set == "both" else [args.layer_set]
    run(args.models.split(","), args.device, sets, args.repeats, loop=not args.no_loop)


if __name__ == "__main__":
    main()
