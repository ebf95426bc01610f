"""Export timings of the paper figure: the first export (starts kaleido's chromium) and the following
ones (the sync server is reused), per format, in one process.

    python bench/figure_export.py [--repeats 3] [--width 178]

Prints one line per export and a summary: first, median of the following, their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuronviz.core.models import load_model  # noqa: E402
from neuronviz.data.images import load_sample  # noqa: E402
from neuronviz.figures.compose import FigureSpec, compose_figure, size_mm  # noqa: E402
from neuronviz.workflows import analysis, export  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="exports per format after the first (default 3)")
    parser.add_argument("--width", type=float, default=178.0, help="figure width in mm (default 178)")
    args = parser.parse_args()
    if export.find_chromium() is None:
        print("no chromium: static export is unavailable here", file=sys.stderr)
        return 1
    model = load_model("digits-cnn", device="cpu")
    x = load_sample("digit-test-0", model)
    result = analysis.compute_analysis(model, x, analysis.AttackChoice.make("fgsm", {"eps": 0.2}))
    fig = compose_figure(result, model.class_names, FigureSpec(charts=("top5", "front-tail"), width_mm=args.width))
    width, height = size_mm(fig)
    record = analysis.provenance(model, result, "digit-test-0")
    seconds: dict[str, list[float]] = {}
    first = None
    for round_ in range(args.repeats + 1):
        for fmt in ("pdf", "svg", "png"):  # interleaved
            started = time.perf_counter()
            data = export.export_figure(fig, fmt, width, height, dpi=300, provenance=record)
            elapsed = time.perf_counter() - started
            if first is None:
                first = (fmt, elapsed)
            else:
                seconds.setdefault(fmt, []).append(elapsed)
            print(f"round {round_} {fmt}: {elapsed:.3f} s ({len(data)} bytes)")
    later = [s for values in seconds.values() for s in values]
    median = statistics.median(later)
    print(f"first export ({first[0]}, starts chromium): {first[1]:.2f} s")
    for fmt, values in seconds.items():
        print(f"following {fmt}: median {statistics.median(values):.3f} s over {len(values)}")
    print(f"following exports: median {median:.3f} s; first / following = {first[1] / median:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
