"""The ``neurons`` command: the neurons of a data set under an attack and its matched control.

``python -m neuronviz neurons MODEL --data SPEC --attack NAME[:k=v,...] [--layer NAME|all]
[--fraction 0.2] --out DIR`` runs :func:`neuronviz.workflows.population.population` and writes, under DIR:

- ``neurons.json``: ``fraction``, the attack and control, the fooled share, and per layer
  ``front_suppressed``, ``tail_enhanced``, ``front_suppressed_influence``,
  ``tail_enhanced_influence`` (each ``{"attack": {"share", "low", "high", "n", "k"}, "control":
  {...}, "difference": {...}}``), the median Spearman per perturbation (or ``null`` and a
  ``reason``) and the per-neuron table; the consistent neurons with their exemplars and
  activation against ε; the provenance record;
- ``layers.csv`` (one row per layer), ``neurons.csv`` (one row per neuron) and
  ``consistent.csv`` (the detailed neurons and their exemplars), each with the provenance record
  in its leading ``# `` comment lines (the dashboard's CSV format).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from neuronviz.workflows.population import ALPHA, DEFAULT_FRACTION


def add_parser(sub) -> None:
    """Register the ``neurons`` subcommand on an ``argparse`` subparsers object."""
    p = sub.add_parser(
        "neurons",
        help="the neurons of a data set under an attack, beside a matched control (neurons.json + CSVs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="a registered model name or a checkpoint path")
    p.add_argument("--data", default="digits", help="data set spec, as `evaluate --data`: digits[:split=test|train|all], "
                   "samples, folder:PATH, zip:PATH, mnist:ROOT, cifar10:ROOT")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the data set")
    p.add_argument("--attack", default="pgd", metavar="NAME[:k=v,...]", help="the attack and its parameters, e.g. pgd:eps=0.1 (default pgd)")
    p.add_argument("--layer", default=None, help="a layer name, several separated by commas, or 'all' (default: the model's default layer, NIP's)")
    p.add_argument("--fraction", type=float, default=DEFAULT_FRACTION, help=f"front and tail share of each layer, in (0, 0.5) (default {DEFAULT_FRACTION})")
    p.add_argument("--alpha", type=float, default=ALPHA, help=f"false discovery rate of the consistent neurons (default {ALPHA})")
    p.add_argument("--seed", type=int, default=0, help="attack and control seed (default 0)")
    p.add_argument("--no-curve", action="store_true", help="skip the activation-vs-ε curve")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neuronviz.core.models import load_model
    from neuronviz.core.models.local_source import trusted_spec
    from neuronviz.workflows import provenance
    from neuronviz.workflows.evaluate import load_dataset, parse_item
    from neuronviz.workflows.population import population

    model = load_model(trusted_spec(args.name), device=args.device)
    data = load_dataset(args.data, model, limit=args.limit)
    attack, params = parse_item(args.attack)
    layers = None if args.layer is None else "all" if args.layer == "all" else [n.strip() for n in args.layer.split(",") if n.strip()]
    result = population(
        model, data.images, data.labels, attack, params, layers=layers, fraction=args.fraction, seed=args.seed,
        alpha=args.alpha, ids=data.ids, eps_scales=None if args.no_curve else (0.25, 0.5, 1.0, 1.5),
    )
    record = provenance.record(
        model, dataset={**data.describe(), "digest": data.digest},
        attacks=[{"attack": result.attack, "params": result.params, "target": None, "seed": result.seed}],
        seeds={"attack": result.seed, "control": result.seed},
        extra={"command": "neurons", "layer": args.layer or "default", "fraction": result.fraction,
               "control_norm": result.control_norm},
    )
    written = write_outputs(result, Path(args.out), record)
    summary = {name: {key: {side: layer[key][side]["share"] for side in ("attack", "control")}
                      for key in ("front_suppressed", "tail_enhanced")}
               for name, layer in result.to_dict()["layers"].items()}
    print(json.dumps({"images": result.images, "fooled": result.fooled_count, "layers": summary,
                      "files": [str(p) for p in written]}, indent=2))
    return 0


def write_outputs(result: Any, out: Path, record: dict[str, Any]) -> list[Path]:
    """``neurons.json`` and the three CSVs under ``out`` (each atomically), with provenance."""
    import pandas as pd
    from streamlit import logger as streamlit_logger

    # The dashboard's CSV format (provenance in the leading comment lines) lives in app.export_controls, whose
    # import defines Streamlit caches; outside a Streamlit run their "no runtime" warnings mean nothing here.
    streamlit_logger.set_log_level("error")
    from app.export_controls import csv_text
    from neuronviz.workflows.evaluate import atomic_write

    document = {**result.to_dict(), "provenance": record}
    paths = []
    path = out / "neurons.json"
    atomic_write(path, json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False, default=str))
    paths.append(path)
    detail_rows = [
        {"layer": d.layer, "neuron": d.neuron, "label": d.label, "rank": rank, **e.to_dict(),
         "activation_difference": d.row["activation_difference"], "activation_q": d.row["activation_q"],
         "activation_effect_dz": d.row["activation_effect_dz"]}
        for d in result.details for rank, e in enumerate(d.exemplars, 1)
    ]
    for name, rows in (("layers", result.summary_rows()), ("neurons", result.neuron_rows()), ("consistent", detail_rows)):
        path = out / f"{name}.csv"
        atomic_write(path, csv_text(pd.DataFrame(rows), f"{result.model_name}-{name}", record))
        paths.append(path)
    return paths
