"""Command line: ``python -m neuronviz <command>``.

Commands:
  models                 list every model source's models (embedded, zoo, timm, plugins) and whether weights are here
  attacks                list the registered attacks with their parameters and defaults
  defences               list the registered defences (plugins too) with their parameters
  train NAME             train an embedded model (or pssr-<model>, its PSSR regenerator) and write
                         weights + card to assets/
  train pssr MODEL --data SPEC
                         train PSSR's regenerator for any model on your labelled images (held-out
                         accuracy reported; cached by content hashes, used by PSSR for that model)
  evaluate NAME          attacks × defences (× an ε grid) over a data set: resumable tables
                         (CSV, Markdown, LaTeX, JSON with provenance); under torchrun, or
                         --shard I/N per job then --merge DIR... (any scheduler)
  card NAME              re-measure a digits model's card metrics (clean and attacked accuracy)
  inspect MODEL          a model's facts with their origin (file, metadata, user, or assumed) and its layer list
  download NAME          fetch a model's pretrained weights into its local cache (zoo: torch hub; timm:<name>: Hugging Face)
  figure                 a paper figure of one image under one attack (PDF/SVG/PNG + provenance)
  neurons NAME           the neurons of a data set under an attack, beside a matched control (JSON + CSVs)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from neuronviz.cli.model_args import add_model_arguments
from neuronviz.infra.errors import NeuronvizError


def _cmd_models(args: argparse.Namespace) -> int:
    from neuronviz.core.models import list_sources

    for source in list_sources():  # grouped by source; each source says what it lists
        for info in source.list_models():
            if info.weights_available:
                state = "ready"
            else:
                state = "not cached" if source.fetch_label else "missing"
            size = f"{info.channels}×{info.input_size[0]}×{info.input_size[1]}"
            print(f"{info.name:20s} {source.name:9s} {size:11s} {info.num_classes:5d} classes  {state:20s} {info.description}")
        if source.upload_suffixes:
            print(f"{'(upload)':20s} {source.name:9s} {'':11s} {'':13s}  {'':20s} {source.label}: {', '.join(source.upload_suffixes)} files")
    return 0


def _cmd_attacks(args: argparse.Namespace) -> int:
    from neuronviz.methods.attacks import format_eps, list_attacks

    for info in list_attacks():
        mode = "targeted/untargeted" if info.targeted else "untargeted"
        print(f"{info.name:11s} {info.label:20s} {info.norm or '-':5s} {mode}")
        for param in info.params:
            default = format_eps(param.default) if param.pixel_scale else param.default
            gray = f"; digits: {param.default_gray}" if param.default_gray is not None else ""
            bounds = f" in [{param.low:g}, {param.high:g}]" if param.low is not None else ""
            print(f"    {param.name:15s} {param.kind:6s} default {default}{gray}{bounds}  {param.help}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    """Influence methods (``neuron_influence(method=...)``, the Neurons page, ``figure --influence-method``)
    and attribution methods (``input_attribution(method=...)``, the Neurons page), built-ins and plugins."""
    from neuronviz.methods.attribution import list_attributions
    from neuronviz.methods.influence import list_influence_methods

    print("influence methods (neuron influence, per layer):")
    for method in list_influence_methods():
        print(f"  {method.name:22s} {method.label:30s} {method.unit}")
        print(f"  {'':22s} {method.paper}")
    print("attribution methods (input pixels):")
    for entry in list_attributions():
        print(f"  {entry.name:22s} {entry.label:30s} {entry.unit}")
        print(f"  {'':22s} {entry.paper}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from neuronviz.training.digits import train
    from neuronviz.training.sns import SNS_RECIPE, train_sns

    if args.name == "pssr":
        from neuronviz.training.pssr import train_command

        return train_command(args.model, args.data, limit=args.limit, eps=args.eps, epochs=args.epochs, seed=args.seed, device=args.device)
    if args.model is not None or args.data is not None:
        raise NeuronvizError(f"train {args.name} takes no MODEL or --data (those are for `train pssr MODEL --data SPEC`)")
    if args.name == SNS_RECIPE.name:
        card = train_sns(out_dir=args.out, seed=args.seed, epochs=args.epochs)
    elif args.name == "digits-vit":
        from neuronviz.training.vit import train_vit

        card = train_vit(out_dir=args.out, seed=args.seed, epochs=args.epochs)
    elif args.name.startswith("pssr-"):
        from neuronviz.training.pssr import train_regenerator

        card = train_regenerator(args.name[len("pssr-"):], out_dir=args.out, epochs=args.epochs)
    else:
        card = train(args.name, out_dir=args.out, seed=args.seed, epochs=args.epochs)
    print(json.dumps({"name": card["name"], "metrics": card["metrics"], "train_seconds": card["train_seconds"]}, indent=2))
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from neuronviz.cli.model_args import load_from_args
    from neuronviz.training.digits import evaluate_card_metrics

    model = load_from_args(args, device=args.device)
    if model.num_classes != 10 or model.channels != 1:
        raise NeuronvizError(f"{args.model} is not a digits model; card works on the digits test split")
    print(json.dumps(evaluate_card_metrics(model), indent=2))
    return 0


def _split_list(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(";") if v.strip()]


def _cmd_defences(args: argparse.Namespace) -> int:
    from neuronviz.methods.defences import list_defences

    for defense in list_defences():
        print(f"{defense.name:13s} {defense.short:16s} {'analysis only' if defense.oracle else 'deployable'}")
        for param in defense.params:
            bounds = f" in [{param.low:g}, {param.high:g}]" if param.low is not None else ""
            print(f"    {param.name:15s} {param.kind:6s} default {param.default!r}{bounds}  {param.help}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neuronviz.cli.model_args import load_from_args
    from neuronviz.workflows import evaluate

    if args.merge:
        return _merge(args)

    def load(device):
        model = load_from_args(args, device=device)
        data = evaluate.load_dataset(args.data, model, limit=args.limit)
        if any(d.split(":")[0].strip() == "nip-reactive" for d in _split_list(args.defence)):
            from neuronviz.methods.defences.nip import profile_data_from_dataset

            profile_data_from_dataset(model, data)  # reactive NIP's class profiles from your labelled data
        return model, data

    eps = [e.strip() for value in args.eps or [] for e in value.split(",") if e.strip()]
    if not args.model:
        raise NeuronvizError("evaluate needs a MODEL (or --merge DIR ... to build the tables of shards)")
    out = Path(args.out) if args.out else Path(f"evaluation-{Path(args.model.split()[0]).stem.replace(':', '_')}")
    kwargs: dict[str, Any] = dict(
        attacks=_split_list(args.attack) or list(evaluate.DEFAULT_ATTACKS),
        defences=_split_list(args.defence) or list(evaluate.DEFAULT_DEFENCES),
        eps=eps or None, target=args.target, autoattack=args.autoattack, seed=args.seed, out=out,
        block_size=args.block_size, progress=not args.no_progress, adaptive=args.adaptive, surrogate=args.surrogate,
    )
    if args.shard is not None:
        return _shard(args, load, kwargs)
    result = evaluate.evaluate_distributed(load, device=args.device, **kwargs)
    if result is None:  # not rank 0: rank 0 writes the tables
        return 0
    print((out / "results.md").read_text(encoding="utf-8"), end="")
    print(
        f"{result.computed} block(s) computed, {result.reused} reused from {out} in {result.seconds:.1f} s; tables: "
        + ", ".join(str(p) for p in result.files.values()),
        file=sys.stderr,
    )
    return 0


def _shard(args: argparse.Namespace, load, kwargs: dict[str, Any]) -> int:
    """``evaluate ... --shard I/N``: one share of the blocks into --out, no tables (``--merge`` builds them)."""
    from neuronviz.workflows import evaluate

    shard = evaluate.parse_shard(args.shard)
    if evaluate.distributed_env() is not None:
        raise NeuronvizError("--shard and torchrun both share out the blocks: use one of them (a shard is one process)")
    model, data = load(args.device)
    run = evaluate.evaluate_shard(model, data, shard=shard, **kwargs)
    print(
        f"shard {shard[0]}/{shard[1]}: {run.computed} block(s) computed, {run.reused} reused in {run.seconds:.1f} s; "
        f"{run.folder} holds {run.present} of the plan's {run.total} blocks; when every shard is done: "
        f"neuronviz evaluate --merge {run.folder}",
        file=sys.stderr,
    )
    return 0


#: evaluate's options that define a plan: --merge reads the plan from the folders and refuses them.
_PLAN_OPTIONS = {"model": None, "attack": None, "eps": None, "defence": None, "target": None, "autoattack": False,
                 "adaptive": False, "surrogate": None, "data": "digits", "limit": None, "seed": 0, "block_size": 64, "shard": None}


def _merge(args: argparse.Namespace) -> int:
    """``evaluate --merge DIR [DIR ...] [--out OUT]``: the tables from the block files of the folders."""
    from neuronviz.workflows import evaluate

    given = [k for k, default in _PLAN_OPTIONS.items() if getattr(args, k, default) != default]
    if given:
        names = ", ".join("MODEL" if k == "model" else "--" + k.replace("_", "-") for k in given)
        raise NeuronvizError(f"--merge reads the plan from the folders' plan.json: leave out {names}")
    merged = evaluate.merge(args.merge, out=args.out)
    print(merged.files["md"].read_text(encoding="utf-8"), end="")
    print(
        f"merged {merged.blocks} block(s) from {len(merged.folders)} folder(s) ({merged.copied} copied into {merged.folder}, "
        f"{merged.duplicates} identical duplicate(s)) in {merged.seconds:.1f} s; tables: " + ", ".join(str(p) for p in merged.files.values()),
        file=sys.stderr,
    )
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from neuronviz.core.models import source_for

    print(source_for(args.name).fetch_weights(args.name))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from neuronviz.cli.model_args import inspect_lines, load_from_args

    print("\n".join(inspect_lines(load_from_args(args, device=args.device or "cpu"))))
    return 0


def main(argv: list[str] | None = None) -> int:
    from neuronviz.infra import plugins

    try:  # third-party methods register before any registry is read (docs/architecture.md)
        plugins.load_plugins()
    except NeuronvizError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m neuronviz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list models").set_defaults(func=_cmd_models)
    sub.add_parser("attacks", help="list attacks").set_defaults(func=_cmd_attacks)
    sub.add_parser("defences", aliases=["defenses"], help="list defences").set_defaults(func=_cmd_defences)
    sub.add_parser("methods", help="list influence and attribution methods").set_defaults(func=_cmd_methods)
    p = sub.add_parser("train", help="train an embedded model, or `train pssr MODEL --data SPEC`")
    p.add_argument("name", help="an embedded model, pssr-<embedded model>, or pssr (then MODEL and --data)")
    p.add_argument("model", nargs="?", default=None, help="train pssr: the model (any spec `evaluate` takes)")
    p.add_argument("--data", default=None, help="train pssr: the labelled images, a spec as `evaluate --data`")
    p.add_argument("--limit", type=int, default=None, help="train pssr: only the first N images of the data set")
    p.add_argument("--eps", type=float, default=0.1, help="train pssr: the attacks' budget for the pairs and the held-out check (pixel units)")
    p.add_argument("--device", default=None, help="train pssr: cpu, cuda (default: CUDA when available)")
    p.add_argument("--out", default=None, help="output folder (default: assets/models)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser(
        "evaluate",
        help="attacks × defences over a data set (resumable; --shard I/N on any scheduler, --merge; torchrun)",
        description=(
            "Attacks × defences (× an ε grid) over a data set, written block by block under --out "
            "(a rerun skips finished blocks), then results.csv/.md/.tex/.json (with provenance). "
            "Under `torchrun --nproc_per_node=N -m neuronviz evaluate ...` the blocks are shared by "
            "the processes and rank 0 writes one table, identical to a single-process run. On any scheduler "
            "(a Slurm array, submitit, xargs): `--shard I/N` per job into --out, then `evaluate --merge DIR...` "
            "builds the tables (docs/evaluate.md)."
        ),
    )
    add_model_arguments(p, required=False)  # not with --merge: the plan is in the folders
    p.add_argument("--data", default="digits", help="data set spec NAME[:key=value,...]: digits[:split=test|train|all], samples, folder:PATH, zip:PATH, mnist:ROOT, cifar10:ROOT (the last four take ,limit=N; mnist/cifar10 ,split=test|train)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of the data set")
    p.add_argument("--attack", action="append", metavar="NAME[:k=v,...]", help="an attack and its parameters, e.g. pgd:steps=20 (repeatable; default fgsm and pgd:steps=20)")
    p.add_argument("--eps", action="append", metavar="E[,E...]", help="ε grid in pixel units, e.g. 0.05,0.1 or 4/255,8/255 (every attack with a budget runs at each)")
    p.add_argument("--target", default=None, help="none (default), a class index, or least-likely (images already of the target are excluded)")
    p.add_argument("--autoattack", action="store_true", help="add the AutoAttack standard row (L∞, untargeted) at every ε")
    p.add_argument("--defence", "--defense", "--defences", "--defenses", action="append", dest="defence", metavar="NAME[:k=v,...]", help="a defence (repeatable; default none, nip-guided, pssr; all: every registered defence)")
    p.add_argument("--adaptive", action="store_true", help="add a row per defence: the attack through it (BPDA / EoT, as the defence declares), beside the plain row")
    p.add_argument("--surrogate", default=None, metavar="SPEC", help="add transfer rows: the attacks crafted on this model (any model spec), judged on NAME")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (default 0)")
    p.add_argument("--block-size", type=int, default=64, help="images per block file, a multiple of 16 (never changes the numbers)")
    p.add_argument("--out", default=None, help="output folder (default ./evaluation-NAME); rerun with the same folder to resume")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available; under torchrun cuda:LOCAL_RANK)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--shard", default=None, metavar="I/N", help="compute only shard I of N (counted from 0: block k is shard k mod N's) into --out, no tables; for a Slurm array, submitit, xargs")
    p.add_argument("--merge", nargs="+", default=None, metavar="DIR", help="build the tables from the block files in these folders (shards'), byte-identical to a single-process run; --out: where (default: the one DIR)")
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("card", help="re-measure a digits model's card metrics on the test split")
    add_model_arguments(p)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_card)
    p = sub.add_parser("inspect", help="a model's facts (mean, std, input size, channels, classes) with their origin, and its layers")
    add_model_arguments(p)
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_inspect)
    p = sub.add_parser("download", help="fetch a model's pretrained weights (zoo, timm:<name>; explicit network use)")
    p.add_argument("name")
    p.set_defaults(func=_cmd_download)
    from neuronviz.cli.figure import add_parser as _add_figure

    _add_figure(sub)
    from neuronviz.cli.neurons import add_parser as _add_neurons

    _add_neurons(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except NeuronvizError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
