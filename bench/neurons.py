"""Benchmark: the neurons of a data set (``neuronviz.workflows.population``) against the passes it needs.

    python bench/neurons.py [--model digits-cnn] [--images 360] [--layer all] [--repeats 3]

The floor is the work no implementation can skip: the attack over the images (PGD ε = 0.1, the
same blocks and seeds) plus three forward + backward passes of every layer at once (clean,
adversarial, control: :func:`neuronviz.methods.influence.neuron_influence`). Each repetition times the
floor and the whole :func:`neuronviz.workflows.population.population` call (attack, control, influence,
statistics, exemplars, the ε curve) back to back, and the medians of the per-repetition times and
of the ratio whole ÷ floor are printed, with the whole call's own split (``timings``). The target
(issue 21.7): digits-cnn over 360 images, all layers, attack + control, under a minute on 2 cores.
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
from neuronviz.data.datasets import digits  # noqa: E402
from neuronviz.methods.controls import matched_control  # noqa: E402
from neuronviz.methods.influence import neuron_influence  # noqa: E402
from neuronviz.workflows import population as pop  # noqa: E402


def floor(model, x, layers, params, seed) -> float:
    started = time.perf_counter()
    adversarial, clean_pred, _, _ = pop._attack(model, x, "pgd", params, seed)
    control = matched_control(x, adversarial, "Linf", seed)
    for batch in (x, adversarial, control):
        for s in range(0, x.shape[0], pop.BLOCK):
            neuron_influence(model, batch[s:s + pop.BLOCK], layers, target=clean_pred[s:s + pop.BLOCK])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--images", type=int, default=360)
    parser.add_argument("--layer", default="all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    x, y = digits("test", size=model.input_size[0])
    x, y = x[: args.images], y[: args.images]
    layers = pop.resolve_layers(model, args.layer)
    params = {"eps": 0.1}
    floors, wholes, ratios, splits = [], [], [], []
    for repeat in range(args.repeats):
        order = (0, 1) if repeat % 2 == 0 else (1, 0)
        times = {}
        for which in order:
            if which == 0:
                times["floor"] = floor(model, x, layers, params, 0)
            else:
                started = time.perf_counter()
                result = pop.population(model, x, y, "pgd", params, layers=layers)
                times["whole"] = time.perf_counter() - started
                splits.append(result.timings)
        floors.append(times["floor"])
        wholes.append(times["whole"])
        ratios.append(times["whole"] / times["floor"])
    print(f"{args.model}, {x.shape[0]} images, {len(layers)} layer(s), PGD ε=0.1 + matched control, "
          f"{torch.get_num_threads()} thread(s), {args.repeats} repetitions")
    print(f"floor (attack + 3 influence passes of every layer): median {statistics.median(floors):.2f} s")
    print(f"population() whole call:                              median {statistics.median(wholes):.2f} s")
    print(f"ratio whole / floor:                                  median {statistics.median(ratios):.2f}")
    keys = splits[0].keys()
    print("split of the whole call (median s): " + ", ".join(f"{k} {statistics.median(s[k] for s in splits):.2f}" for k in keys))


if __name__ == "__main__":
    main()
