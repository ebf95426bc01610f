"""Which sample digit and attack the dashboard starts with (issue 15.5), and why.

Scans every sample digit of the default model under the candidate attacks (the default PGD and
FGSM, each at its schema defaults) and prints, per example, NIP's two halves at the default layer
with the default front/tail size: front neurons that lost influence, tail neurons that gained.
The criterion is ``app.components.STORY_CRITERION``; the chosen example must equal
``app.runs.DEFAULT_SAMPLE_ID`` under ``app.runs.default_choice()`` (the script exits 1
otherwise). Run from the repository root: ``python bench/choose_example.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import components, state
from app import runs as analysis  # noqa: E402
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION  # noqa: E402


def main() -> int:
    started = time.perf_counter()
    model = state.load_requested_model(state.ModelRequest(name=state.DEFAULT_MODEL))
    samples = state.samples_for(model)
    choices = [analysis.default_choice(), analysis.AttackChoice.make("fgsm", {})]

    def load(sample):
        return state.load_requested_image(state.ImageRequest.for_sample(sample), model)[0]

    sample, choice, counts, rows = components.choose_story_example(model, samples, choices, load)
    print(f"model {model.name}, {len(samples)} samples × {len(choices)} attacks, front/tail {DEFAULT_GROUP_FRACTION:.0%}")
    print(f"criterion: {components.STORY_CRITERION}")
    print("sample            attack  front lost  tail gained  fooled  restored  score  eligible")
    for row in sorted(rows, key=lambda r: -r["score"])[:15]:
        print(
            f"{row['sample']:<17} {row['attack']:<7} {row['front_lost']:>3} of {row['front']:<4} {row['tail_gained']:>3} of {row['tail']:<5}"
            f"  {row['fooled']!s:<6}  {row['restored']!s:<8}  {row['score']:.2f}   {row['eligible']}"
        )
    print(f"eligible: {sum(r['eligible'] for r in rows)} of {len(rows)}; {time.perf_counter() - started:.1f} s")
    if sample is None:
        print("no example qualifies")
        return 1
    print(f"chosen: {sample.id} ({sample.label}) under {choice.describe(model)}")
    expected = (analysis.DEFAULT_SAMPLE_ID, analysis.default_choice())
    if (sample.id, choice) != expected:
        print(f"MISMATCH: the dashboard starts with {expected[0]} under {expected[1].describe(model)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
