"""Measure NIP's observation on an embedded model: do attacks suppress front neurons and lift the tail?

    python bench/front_tail_observation.py [--model digits-cnn] [--attack pgd] [--eps 0.1] [--images N]

NIP (arXiv:2112.13060) reports that attacks sharply change the neurons that contribute most and
least to the correct label: high-influence (front) neurons are suppressed and low-influence
(tail) ones enhanced. Over the digits test split, for every adversarial image that fools the
model, this script computes the influence of each probed layer toward the *benign* prediction
before and after the attack (front / tail = top / bottom 5%, at least one neuron) and prints,
per layer, the share of fooled images whose front neurons lost influence on average, whose
front lost activation, whose tail gained influence and whose tail gained activation. It prints
whatever it measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data.datasets import digits  # noqa: E402
from neuronviz.methods.attacks import run_attack  # noqa: E402
from neuronviz.methods.influence import influence_shift, neuron_influence  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--attack", default="pgd")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=None, help="the first N test images (default: all 360)")
    args = parser.parse_args()
    model = load_model(args.model, device="cpu")
    x, y = digits("test")
    x, y = x[: args.images], y[: args.images]
    params = {"eps": args.eps}
    if args.attack in ("pgd", "bim", "mifgsm"):
        params.update(steps=args.steps, alpha=0.01)
    report = run_attack(model, x, args.attack, params, labels=y, seed=0)
    fooled = report.success & (report.clean_pred == y)  # correctly classified, then fooled
    idx = torch.nonzero(fooled).flatten()
    benign = report.clean_pred[idx]
    before = neuron_influence(model, x[idx], target=benign)
    after = neuron_influence(model, report.adversarial[idx], target=benign)
    print(
        f"{args.model}, {args.attack} eps={args.eps}: {int(fooled.sum())} of {len(x)} test images "
        f"correctly classified and then fooled ({report.success_rate:.1%} attack success)"
    )
    print("influence toward the benign class; front/tail = top/bottom 5% (at least 1 neuron)")
    print(f"{'layer':14s} {'neurons':>7s} {'front loses infl.':>18s} {'front loses act.':>17s} "
          f"{'tail gains infl.':>17s} {'tail gains act.':>16s} {'mean Spearman':>14s}")
    for name, map_before in before.items():
        shift = influence_shift(map_before, after[name])
        print(
            f"{name:14s} {map_before.neurons:7d} {float((shift.front_influence_change < 0).float().mean()):18.1%} "
            f"{float((shift.front_activation_change < 0).float().mean()):17.1%} "
            f"{float((shift.tail_influence_change > 0).float().mean()):17.1%} "
            f"{float((shift.tail_activation_change > 0).float().mean()):16.1%} "
            f"{float(shift.spearman.nanmean()):14.2f}"
        )


if __name__ == "__main__":
    main()
