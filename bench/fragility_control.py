"""Re-measure the fragility observation with its control on the embedded digits models.

    python bench/fragility_control.py [--models digits-cnn,...] [--images 360] [--eps 0.1] [--seed 0]

For each model: :func:`neuronviz.methods.fragility.first_layer_fragility` (FGSM, the paper's attack, on
the first ``--images`` digits test images) and prints one Markdown row: attack success (the one
definition: clean prediction correct and adversarial prediction ≠ true label) with its Wilson
interval; ρ of the dropout ranking vs the attack's targeting and vs the matched noise's
targeting (bootstrap interval over filters, permutation p); ρ of the two targetings; the fragile
filters' share of the first layer's change under attack − under noise (per image: mean,
bootstrap interval, p) and whether the fragile filters are specific to the attack. It prints
whatever it measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data.datasets import digits  # noqa: E402
from neuronviz.methods.fragility import first_layer_fragility  # noqa: E402

MODELS = ("digits-cnn", "digits-resnet", "digits-vit", "digits-cnn-robust", "digits-cnn-sns")


def _rho(c) -> str:
    if c.value is None:
        return f"not defined ({c.reason})"
    return f"{c.value:.2f} [{c.low:.2f}, {c.high:.2f}], p {c.p:.3f}" if c.low is not None else f"{c.value:.2f}, p {c.p:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--images", type=int, default=360)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| model | first layer (filters) | FGSM success | ρ dropout vs attack targeting | ρ dropout vs noise targeting "
          "| ρ attack vs noise targeting | fragile | fragile share, attack − noise | specific to the attack? |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model = load_model(name, device="cpu")
        x, y = digits("test", size=model.input_size[0])
        report = first_layer_fragility(model, x[: args.images], y[: args.images], attack="fgsm", eps=args.eps, seed=args.seed)
        control = report.control
        assert control is not None and report.success is not None
        spec = control.specificity
        share = (f"{100 * spec.value:+.2f} pp [{100 * spec.low:+.2f}, {100 * spec.high:+.2f}], p {spec.p:.3f}"
                 if spec.defined and spec.low is not None else spec.text() if spec.defined else f"not defined ({spec.reason})")
        print(f"| {name} | {report.layer} ({report.filters}) | {report.success.text()} | {_rho(control.dropout_vs_attack)} "
              f"| {_rho(control.dropout_vs_control)} | {_rho(control.attack_vs_control)} | {len(report.fragile)} | {share} "
              f"| {'yes' if report.specific_to_attack() else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
