"""Benchmark: the batched nodal-dropout sweep vs its floor and vs the naive per-filter loop.

    python bench/fragility.py [--repeats 5] [--threads 1] [--resnet-filters 4] [--resnet-images 32] [--device cpu]

Two settings: digits-cnn with 200 test images (FGSM ε=0.1), and a random-init torchvision
resnet18 with 32 random 224×224 images (labels: the model's own predictions). For each it prints

  (a) sweep ÷ floor: ``nodal_dropout`` of the clean + attacked batch (2N images: the one pass
      that records the first convolution, the shortcut check, then K filters per forward pass of
      the layers after it) ÷ the floor, F × one forward of the 2N images through the whole
      network (every ablation must run the layers after the first one). Target ≤ 1.0.
  (b) whole call ÷ floor: ``first_layer_fragility`` (attack + sweep + targeting) ÷ the floor
      (digits only; on resnet18 the whole call would run all 64 filters on this CPU).
  (c) naive ÷ sweep: one full forward of the 2N images per filter (the filter's channel
      zeroed by a hook) ÷ the sweep.

On resnet18 (64 filters) the sweep and the naive loop run a subset of ``--resnet-filters``
filters, and their time for all 64 is extrapolated from the same repetition's measurements:
``base + 64 × (subset time − base) / subset``, ``base`` being the one recording pass both start
with (timed separately). Every filter costs the same, so this is the full sweep's time without
spending ten minutes of CPU per repetition; on digits-cnn all 16 filters are timed, nothing is
extrapolated.

Every repetition times floor, sweep, naive (and the whole call) back to back, in rotating order,
and the medians of the per-repetition ratios are printed: this machine's timings swing ±30%,
and the swing hits both sides of a ratio measured within one repetition alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.core.probe import probe  # noqa: E402
from neuronviz.data.datasets import digits  # noqa: E402
from neuronviz.methods.attacks import run_attack  # noqa: E402
from neuronviz.methods.fragility import first_conv, first_layer_fragility, nodal_dropout  # noqa: E402


def _time(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _setting(name, model, x, y, filters, repeats, whole):
    report = run_attack(model, x, "fgsm", {"eps": 0.1}, labels=y, seed=0)
    both = torch.cat([x, report.adversarial]).to(model.device)
    layer = first_conv(model)
    total = model.layer(layer).out_channels
    count = len(filters)

    def floor():
        with torch.no_grad():
            model(both)

    def base():  # what every sweep (and the naive loop) does first: record the layer, baseline logits
        with probe(model, [layer]) as rec, torch.no_grad():
            rec.forward(both)

    def sweep():
        nodal_dropout(model, both, layer, filters=filters)

    def naive():
        nodal_dropout(model, both, layer, filters=filters, batched=False)

    def call():
        first_layer_fragility(model, x, y, attack="fgsm", eps=0.1)

    path = nodal_dropout(model, both[:4], layer, filters=filters[:1]).path  # warm-up, and which path
    naive()
    jobs = {"floor": floor, "base": base, "sweep": sweep, "naive": naive}
    if whole:
        jobs["call"] = call
    ratios = {"sweep/floor": [], "naive/sweep": [], "call/floor": []}
    seconds = {key: [] for key in jobs}
    order = list(jobs)
    for rep in range(repeats):
        t = {}
        for key in order[rep % len(order):] + order[: rep % len(order)]:  # rotate the order
            t[key] = _time(jobs[key])
            seconds[key].append(t[key])
        # all `total` filters: the base pass once, plus `total` times the per-filter cost measured
        # on `count` filters (count == total on digits-cnn: then this is the measured time itself)
        sweep_all = t["base"] + (t["sweep"] - t["base"]) * total / count if count < total else t["sweep"]
        naive_all = t["base"] + (t["naive"] - t["base"]) * total / count if count < total else t["naive"]
        ratios["sweep/floor"].append(sweep_all / (t["floor"] * total))
        ratios["naive/sweep"].append(naive_all / sweep_all)
        if whole:
            ratios["call/floor"].append(t["call"] / (t["floor"] * total))
    timed = f"{count} of {total} filters timed, extrapolated to {total}" if count < total else f"all {total} filters"
    print(f"\n{name}: first layer {layer}, {len(x)} images (+{len(x)} attacked), {timed}, path {path}")
    for key, values in seconds.items():
        print(f"  {key:>6}: median {statistics.median(values) * 1000:9.1f} ms")
    for key, values in ratios.items():
        if values:
            print(f"  {key:>12}: median {statistics.median(values):.3f}  (per repetition: {', '.join(f'{v:.2f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--resnet-filters", type=int, default=4)
    parser.add_argument("--resnet-images", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device}")

    model = load_model("digits-cnn", device=args.device)
    x, y = digits("test")
    _setting("digits-cnn", model, x[:200], y[:200], list(range(16)), args.repeats, whole=True)

    resnet = load_model("resnet18", weights=None, device=args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.resnet_images, 3, 224, 224, generator=generator)
    labels, _ = resnet.predict(images)
    filters = list(range(0, 64, 64 // args.resnet_filters))[: args.resnet_filters]
    _setting("resnet18 (random init)", resnet, images, labels, filters, max(2, args.repeats // 2), whole=False)


if __name__ == "__main__":
    main()
