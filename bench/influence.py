"""Benchmark: all-layer influence in one pass vs Captum's multi-layer call and vs the gradient floor.

    python bench/influence.py [--repeats 21] [--device cpu] [--models digits-cnn,digits-resnet,digits-vit,resnet18]
                              [--layer-set conv|all|both] [--batch 2] [--threads N] [--loop]

Models: digits-cnn, digits-resnet and digits-vit with their embedded weights (1×28×28) and
torchvision resnet18 with random weights (``weights=None``, 3×224×224). For every (model, layer
set) it times, **interleaved across all of them** (each repetition runs every model's columns
once, in an order that rotates between repetitions, so a burst of load hits every ratio alike):

  ours    ``neuron_influence(model, x, layers, target)`` (grad × act of every layer, one forward
          and one backward pass), results reduced per neuron and on the CPU: the dashboard's path;
  captum  Captum's multi-layer call ``LayerGradientXActivation(model, [module, ...]).attribute(x,
          target)``: one forward, one backward for all layers (full-size attributions, not
          reduced). A transformer's heads layer is recorded by us at the input of its ``proj``;
          Captum's one call cannot mix layer inputs and outputs, so it times ``proj``'s output
          there (the same shape and work) and the parity check asks it for the inputs separately;
  floor   one forward pass plus one backward pass of the target logit to the input only
          (``torch.autograd.grad(z_c.sum(), x)``, no parameter gradients);
  loop    (``--loop``, extra column) Captum called once per layer;
  in pass (``--paths``, extra column) ours with every layer reduced inside the backward pass by a
          tensor hook (``HELD_AT_ONCE_BYTES = 0``), the path taken above 64 MiB of activations and
          gradients, beside the default (all gradients at once for smaller ones): which is faster.

It prints the thread count and the load average (before and after), the medians, and the medians
of the per-repetition ratios ours ÷ Captum multi-layer and ours ÷ floor (issue 25's targets: ≤ 0.8
and ≤ 1.3 on the digits models at batch 1–2; ≤ 0.8 and ≤ 1.1 on resnet18), and the same ratios of
the fastest repetition of each (load only ever adds time). Before timing it checks that Captum,
summed per neuron, gives our numbers (the max relative error is printed). Layer sets: ``all`` =
every probe layer (the dashboard's default, ``probe_layers``), ``conv`` = the conv/BN/linear
layers (41 in resnet18, 31 in digits-resnet: issue 14's reference set).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.layers import neuron_sums  # noqa: E402
from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.core.probe import tap  # noqa: E402
from neuronviz.methods import influence  # noqa: E402
from neuronviz.methods.influence import neuron_influence, probe_layers  # noqa: E402

MODELS = {"digits-cnn": "default", "digits-resnet": "default", "digits-vit": "default", "resnet18": None}
LAYER_SETS = {
    "all": None,  # every probe layer (probe_layers' default: the dashboard's)
    "conv": (nn.Conv2d, nn.BatchNorm2d, nn.Linear),  # issue 14's reference set (41 in resnet18)
}
TARGETS = {"resnet18": (0.8, 1.1)}  # (÷ Captum, ÷ floor); the digits models: (0.8, 1.3)


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


def setup(name: str, device: str, kinds, batch: int = 2) -> dict:
    from captum.attr import LayerGradientXActivation

    model = load_model(name, weights=MODELS.get(name, "default"), device=device)
    torch.manual_seed(0)
    x = torch.rand(batch, model.channels, *model.input_size, device=model.device)
    infos = probe_layers(model, kinds=kinds)
    layers = [info.name for info in infos]
    taps = [tap(model, layer) for layer in layers]
    with torch.no_grad():
        target = model(x).argmax(1)
    multi = LayerGradientXActivation(model, [t.module for t in taps])
    fns = {
        "ours": lambda: neuron_influence(model, x, layers=layers, target=target),
        "captum": lambda: multi.attribute(x, target=target),
        "floor": lambda: floor_pass(model, x, target),
        "inpass": lambda: _in_pass(model, x, layers, target),
        "loop": lambda: [LayerGradientXActivation(model, t.module).attribute(x, target=target, attribute_to_layer_input=t.on_input)
                         for t in taps],
    }
    return {"name": name, "model": model, "x": x, "target": target, "infos": infos, "taps": taps, "fns": fns}


def _in_pass(model, x, layers, target):
    """Ours with every layer reduced inside the backward pass (the path for large activations)."""
    kept = influence.HELD_AT_ONCE_BYTES
    influence.HELD_AT_ONCE_BYTES = 0
    try:
        return neuron_influence(model, x, layers=layers, target=target)
    finally:
        influence.HELD_AT_ONCE_BYTES = kept


def parity(case: dict) -> float:
    """Max relative error of Captum (summed per neuron like ours) against ours, over every layer."""
    from captum.attr import LayerGradientXActivation

    model, x, target, taps = case["model"], case["x"], case["target"], case["taps"]
    ours = case["fns"]["ours"]()
    theirs = list(case["fns"]["captum"]())
    inputs = [i for i, t in enumerate(taps) if t.on_input]
    if inputs:  # heads layers: Captum at the input of proj, in a call of its own
        extra = LayerGradientXActivation(model, [taps[i].module for i in inputs]).attribute(x, target=target, attribute_to_layer_input=True)
        for i, ref in zip(inputs, extra if len(inputs) > 1 else [extra]):
            theirs[i] = ref[0] if isinstance(ref, (tuple, list)) else ref
    worst = 0.0
    for info, ref in zip(case["infos"], theirs):
        ref = neuron_sums(ref.detach(), "channel", info).cpu()
        scale = float(ref.abs().max()) or 1.0
        worst = max(worst, float((ours[info.name].values - ref).abs().max()) / scale)
    return worst


def measure(cases: list[dict], repeats: int, loop: bool, paths: bool = False) -> list[dict]:
    """Every case's columns, interleaved: each repetition visits every case in a rotating order."""
    columns = ["ours", "captum", "floor"] + (["loop"] if loop else []) + (["inpass"] if paths else [])
    slots = [(case, column) for case in cases for column in columns]
    for case, column in slots + slots:
        case["fns"][column]()  # warm-up
    for case in cases:
        case["times"] = {c: [] for c in columns}
    loop_reps = max(3, repeats // 3)  # the slow per-layer loop: in the first repetitions only
    for rep in range(repeats):
        for i in range(len(cases)):
            case = cases[(i + rep) % len(cases)]
            present = [c for c in columns if c != "loop" or rep < loop_reps]
            for column in present[rep % len(present):] + present[: rep % len(present)]:
                case["times"][column].append(_time(case["fns"][column], case["model"].device))
    rows = []
    for case in cases:
        times = case["times"]
        ratio = lambda a, b, times=times: statistics.median(p / q for p, q in zip(times[a], times[b]))  # noqa: E731
        rows.append({
            "model": case["name"], "set": case["set"], "layers": len(case["infos"]), "error": case["error"],
            **{f"{c}_s": statistics.median(times[c]) for c in columns},
            "ours/captum": ratio("ours", "captum"), "ours/floor": ratio("ours", "floor"),
            "captum/floor": ratio("captum", "floor"), "loop/ours": ratio("loop", "ours") if loop else float("nan"),
            "min ours/captum": min(times["ours"]) / min(times["captum"]),
            "min ours/floor": min(times["ours"]) / min(times["floor"]),
            **({"inpass/floor": ratio("inpass", "floor"), "inpass/ours": ratio("inpass", "ours")} if paths else {}),
        })
    return rows


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def run(models, device: str, layer_sets, repeats: int, loop: bool = False, out=print, batch: int = 2, paths: bool = False) -> list[dict]:
    out(f"torch {torch.__version__}, device {device}, torch threads {torch.get_num_threads()}, batch {batch}, "
        f"{repeats} repetitions interleaved across all models (medians; ratios are medians of per-repetition ratios); "
        f"CPUs {os.cpu_count()}, load average (1, 5, 15 min) before: {_load()}")
    cases = []
    for name in models:
        for label in layer_sets:
            case = setup(name, device, LAYER_SETS[label], batch)
            case["set"], case["error"] = label, parity(case)
            cases.append(case)
    rows = measure(cases, repeats, loop, paths)
    out(f"{'model':14s} {'set':4s} {'layers':>6s} {'ours ms':>8s} {'captum ms':>9s} {'floor ms':>8s} {'loop ms':>8s} "
        f"{'ours/captum':>11s} {'ours/floor':>10s} {'captum/floor':>12s} {'loop/ours':>9s} {'max rel err':>11s} "
        f"{'min: ours/captum':>16s} {'ours/floor':>10s}  targets")
    for r in rows:
        aim = TARGETS.get(r["model"], (0.8, 1.3))
        met = r["ours/captum"] <= aim[0] and r["ours/floor"] <= aim[1]
        out(f"{r['model']:14s} {r['set']:4s} {r['layers']:6d} {1e3 * r['ours_s']:8.2f} {1e3 * r['captum_s']:9.2f} "
            f"{1e3 * r['floor_s']:8.2f} {1e3 * r.get('loop_s', float('nan')):8.1f} {r['ours/captum']:11.2f} "
            f"{r['ours/floor']:10.2f} {r['captum/floor']:12.2f} {r['loop/ours']:9.1f} {r['error']:11.1e} "
            f"{r['min ours/captum']:16.2f} {r['min ours/floor']:10.2f}  <= {aim[0]} / {aim[1]}: {'met' if met else 'NOT met'}")
    for r in rows if paths else []:
        out(f"{r['model']:14s} {r['set']:4s} reduced inside the pass: {1e3 * r['inpass_s']:8.2f} ms, "
            f"÷ floor {r['inpass/floor']:.2f}, ÷ ours (all gradients at once) {r['inpass/ours']:.2f}")
    out(f"load average after: {_load()}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="digits-cnn,digits-resnet,digits-vit,resnet18")
    parser.add_argument("--batch", type=int, default=2, help="images per call (the issue's targets: 1-2)")
    parser.add_argument("--layer-set", choices=["conv", "all", "both"], default="all")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--loop", action="store_true", help="also time Captum's per-layer loop (the extra column; slow)")
    parser.add_argument("--paths", action="store_true", help="also time ours reduced inside the backward pass (the large-activation path)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = ["all", "conv"] if args.layer_set == "both" else [args.layer_set]
    run(args.models.split(","), args.device, sets, args.repeats, loop=args.loop, batch=args.batch, paths=args.paths)


if __name__ == "__main__":
    main()
