"""Benchmark: the First-layer filters page's cold work on digits-resnet (issue 15.9), before ÷ after.

    python bench/filters_cold.py [--model digits-resnet] [--images 200] [--repeats 1]

What a first visit computes (the page's defaults: 200 digits test images, FGSM ε = 0.1, seed 0):
the nodal dropout report (:func:`neuronviz.methods.fragility.first_layer_fragility`, timed once), then
compress/amplify at the six β of the curve (:func:`neuronviz.methods.fragility.evaluate_rescaled`).
"after" is the code as it is: each β reuses the report's own attack of the unchanged model;
"before" is the same call with a report stripped of the fields that allow the reuse, so it
attacks the unchanged model again at every β, as the code did before. The two are interleaved per
β and repetition, the numbers of both are checked to be identical, and the script prints the
attacks each ran and the ratio of the whole first visit (dropout + curve), measured in this run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import neuronviz.methods.fragility as fragility  # noqa: E402
from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data import labelled as evalset  # noqa: E402

BETAS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)  # app/app_pages/filters.py CURVE_BETAS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="digits-resnet")
    parser.add_argument("--images", type=int, default=evalset.DEFAULT_IMAGES)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    data = evalset.evaluation_set(model, args.images)
    attacks = {"count": 0}
    original = fragility.run_attack

    def counting(*a, **k):
        attacks["count"] += 1
        return original(*a, **k)

    fragility.run_attack = counting
    started = time.perf_counter()
    report = fragility.first_layer_fragility(model, data.images, data.labels, attack="fgsm", eps=0.1, seed=0)
    dropout = time.perf_counter() - started
    plain = replace(report, attack_clean_pred=None, attack_adv_pred=None, inputs_digest=None)
    seconds = {"before": [], "after": []}
    counts = {"before": 0, "after": 0}
    for _ in range(args.repeats):
        for beta in BETAS:
            results = {}
            for name, which in (("before", plain), ("after", report)):
                attacks["count"] = 0
                started = time.perf_counter()
                results[name] = fragility.evaluate_rescaled(model, data.images, data.labels, which, beta=beta, seed=0)
                seconds[name].append(time.perf_counter() - started)
                counts[name] += attacks["count"]
            assert results["before"].to_dict() == results["after"].to_dict(), beta
    load = os.getloadavg()[0]
    curve = {k: sum(v) / args.repeats for k, v in seconds.items()}
    print(f"{args.model}, {data.size} images, FGSM eps 0.1; load average {load:.2f} (2 cores)")
    print(f"nodal dropout report: {dropout:.2f} s (1 attack, one dropout sweep)")
    for name in ("before", "after"):
        print(f"curve over {len(BETAS)} beta, {name}: {curve[name]:.2f} s, {counts[name] // args.repeats} attacks; "
              f"first visit (dropout + curve) {dropout + curve[name]:.2f} s")
    visit = (dropout + curve["after"]) / (dropout + curve["before"])
    print(f"curve after / before: {curve['after'] / curve['before']:.2f}; first visit after / before: {visit:.2f}; numbers identical")


if __name__ == "__main__":
    main()
