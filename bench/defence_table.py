"""Regenerate the defence table of docs/defences.md: every embedded model × attacks × defences.

    python bench/defence_table.py [--images 360] [--models digits-cnn,...] [--out table.md] [--adaptive]

On ``digits(split="test")`` (ε = 0.1 for the L∞ attacks; PGD-20 with step 0.01; C&W, DeepFool
and Square at their defaults for digit models; MI-FGSM 10 steps), for each embedded model:
attack success, and for each defence the DSR, the accuracy on the adversarial images and the
accuracy on clean images (see ``neuronviz.workflows.defence_table``). Prints a Markdown table per model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.models import EMBEDDED, load_model  # noqa: E402
from neuronviz.data.datasets import digits  # noqa: E402
from neuronviz.workflows.defence_table import defence_table  # noqa: E402

ATTACKS = [
    ("fgsm", {"eps": 0.1}),
    ("pgd", {"eps": 0.1, "alpha": 0.01, "steps": 20}),
    ("cw", {}),
    ("deepfool", {}),
    ("mifgsm", {"eps": 0.1}),
    ("square", {"eps": 0.1, "n_queries": 1000}),
]
DEFENCES = ["none", "nip-oracle", "nip-guided", "nip-reactive", "pssr"]


def _pct(value: float) -> str:
    return "–" if value != value else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=360)
    parser.add_argument("--models", default=",".join(EMBEDDED))
    parser.add_argument("--out", default=None, help="also write the Markdown to this file")
    parser.add_argument("--adaptive", action="store_true", help="also attack through PSSR (BPDA on its mask)")
    args = parser.parse_args()
    x, y = digits("test")
    x, y = x[: args.images], y[: args.images]
    lines = []
    for name in args.models.split(","):
        model = load_model(name, device="cpu")
        started = time.perf_counter()
        table = defence_table(model, x, y, ATTACKS, DEFENCES, adaptive=args.adaptive)
        seconds = time.perf_counter() - started
        lines.append(f"\n### {name} ({len(x)} test images, {seconds:.0f} s on this machine)\n")
        lines.append("| attack | success | defence | DSR | acc. adversarial | acc. clean |")
        lines.append("|---|---|---|---|---|---|")
        for row in table.itertuples():
            label = row.defence if row.deployable else f"{row.defence} (uses the label)"
            lines.append(
                f"| {row.attack} | {_pct(row.attack_success)} | {label} | {_pct(row.dsr)} | "
                f"{_pct(row.accuracy_adversarial)} | {_pct(row.accuracy_clean)} |"
            )
        print("\n".join(lines[-(len(table) + 3):]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
