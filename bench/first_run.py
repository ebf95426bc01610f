"""Where a fresh server's first page run spends its time: the phases of the default page (Attack on
digits-cnn, the start-up example), timed one after another in this fresh process.

    python bench/first_run.py            (bench/app.py --phases runs it in a fresh process)

Each phase is what the first run of ``app/main.py`` does, in its order, outside Streamlit: the
imports (each line counts only what the lines above have not imported), the model, the analysis
(its parts as ``compute_analysis`` times them), the ε sweep, building the page's figures with the
page's own builders, and serialising them as ``st.plotly_chart`` does (``plotly.io.to_json``). What
is left out: Streamlit's own work (widgets, sending) and the browser. Less sensitive to the
machine's load than the browser's numbers, since it is one process doing one thing at a time.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app/main.py sets it for the server

PHASES: dict[str, float] = {}
_last = [time.perf_counter()]


def lap(name: str) -> None:
    now = time.perf_counter()
    PHASES[name] = now - _last[0]
    _last[0] = now


def main() -> None:
    import logging

    _last[0] = time.perf_counter()
    import streamlit  # noqa: F401

    lap("import streamlit (the server's, before it is up)")
    logging.getLogger("streamlit.runtime.caching").setLevel(logging.ERROR)  # "no runtime": this is no server
    import torch

    lap("import torch")
    from app import boundary, components, sidebar, url_state  # noqa: F401 - app/main.py's imports
    from neuronviz.infra import plugins  # noqa: F401

    lap("import the app's modules (app/main.py's)")
    from app.app_pages import attack, defences  # noqa: F401 - the page and what the session link reads

    lap("import the pages' modules")
    from neuronviz.core.models import load_model
    from neuronviz.data.images import load_sample
    from neuronviz.workflows.analysis import DEFAULT_SAMPLE_ID, AttackChoice, compute_analysis

    model = load_model("digits-cnn", device="cpu")
    image = load_sample(DEFAULT_SAMPLE_ID, model)
    lap("model and image")
    import torchattacks  # noqa: F401 - what the first attack imports (with scipy.stats)

    lap("import torchattacks (scipy.stats)")
    result = compute_analysis(model, image, AttackChoice())
    lap("analysis")
    parts = dict(result.seconds)
    from neuronviz.methods.attacks import get_attack
    from neuronviz.workflows.sweep import eps_sweep

    info = get_attack(result.choice.attack)
    eps_values = attack.sweep_budgets(info, result, model)
    sweep = eps_sweep(model, image, info.name, result.params, eps_values, target=result.choice.target,
                      seed=result.choice.seed, layer=result.default_layer)
    lap("ε sweep")
    import plotly.io

    from neuronviz import figures
    from neuronviz.figures import attack as attack_figures

    names = model.class_names
    built = [figures.image_figure(result.image(c), title=c, height=attack.IMAGE_HEIGHT)
             for c in ("clean", "adversarial", *result.restorations)]
    built += [attack_figures.panel_bars(result.probabilities(c), names, title="Top-5", color_key="clean", true_class=None)
              for c in ("clean", "adversarial", *result.restorations)]
    built.append(attack_figures.perturbation_figure(result.perturbation, title="Perturbation", height=attack.IMAGE_HEIGHT))
    report = result.report
    if report.trace is not None:
        built.append(attack_figures.trajectory_figure(report.trace, names, benign_class=result.benign_class, targeted=report.targeted))
    chosen = float(result.params[info.budget_param]) if info.budget_param else None
    built.append(attack_figures.eps_sweep_figure(sweep, names, selected_eps=chosen, chosen_eps=chosen))
    built.append(figures.image_figure(sweep.adversarial[:1], title="sweep", height=attack.IMAGE_HEIGHT))
    lap(f"build the page's {len(built)} figures")
    size = sum(len(plotly.io.to_json(fig, validate=False)) for fig in built)
    lap(f"serialise them (plotly.io.to_json, {size / 1e3:.0f} kB)")
    total = sum(PHASES.values())
    print(f"first page run's phases, one fresh process, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs:")
    for name, seconds in PHASES.items():
        print(f"  {seconds:6.3f} s  {100 * seconds / total:4.0f}%  {name}")
    print(f"  {total:6.3f} s        total")
    print("  analysis parts (s): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))


if __name__ == "__main__":
    main()
