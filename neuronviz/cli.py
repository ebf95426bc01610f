"""Command line: ``python -m neuronviz <command>``.

Commands:
  models                 list the registered models (embedded and zoo) and whether weights are here
  attacks                list the registered attacks with their parameters and defaults
  train NAME             train an embedded model (or pssr-<model>, its PSSR regenerator) and write
                         weights + card to assets/
  evaluate NAME          re-measure a model's clean and attacked accuracy on digits(split="test")
  download NAME          fetch a zoo model's pretrained weights into the torch hub cache (network)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from neuronviz.errors import NeuronvizError


def _cmd_models(args: argparse.Namespace) -> int:
    from neuronviz.models import list_models

    for info in list_models():
        if info.weights_available:
            state = "ready"
        else:
            state = "not cached" if info.kind == "zoo" else "missing: make models"
        size = f"{info.channels}×{info.input_size[0]}×{info.input_size[1]}"
        print(f"{info.name:20s} {info.kind:9s} {size:11s} {info.num_classes:5d} classes  {state:20s} {info.description}")
    return 0


def _cmd_attacks(args: argparse.Namespace) -> int:
    from neuronviz.attacks import format_eps, list_attacks

    for info in list_attacks():
        mode = "targeted/untargeted" if info.targeted else "untargeted"
        print(f"{info.name:11s} {info.label:20s} {info.norm or '-':5s} {mode}")
        for param in info.params:
            default = format_eps(param.default) if param.pixel_scale else param.default
            gray = f"; digits: {param.default_gray}" if param.default_gray is not None else ""
            bounds = f" in [{param.low:g}, {param.high:g}]" if param.low is not None else ""
            print(f"    {param.name:15s} {param.kind:6s} default {default}{gray}{bounds}  {param.help}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from neuronviz.training.digits import train
    from neuronviz.training.sns import SNS_RECIPE, train_sns

    if args.name == SNS_RECIPE.name:
        card = train_sns(out_dir=args.out, seed=args.seed, epochs=args.epochs)
    elif args.name.startswith("pssr-"):
        from neuronviz.training.pssr import train_regenerator

        card = train_regenerator(args.name[len("pssr-"):], out_dir=args.out, epochs=args.epochs)
    else:
        card = train(args.name, out_dir=args.out, seed=args.seed, epochs=args.epochs)
    print(json.dumps({"name": card["name"], "metrics": card["metrics"], "train_seconds": card["train_seconds"]}, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from neuronviz.models import load_model
    from neuronviz.training.digits import evaluate_card_metrics

    model = load_model(args.name, device=args.device)
    if model.num_classes != 10 or model.channels != 1:
        raise NeuronvizError(f"{args.name} is not a digits model; evaluate works on the digits test split")
    print(json.dumps(evaluate_card_metrics(model), indent=2))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from neuronviz.models import download_weights

    print(download_weights(args.name, progress=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuronviz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list models").set_defaults(func=_cmd_models)
    sub.add_parser("attacks", help="list attacks").set_defaults(func=_cmd_attacks)
    p = sub.add_parser("train", help="train an embedded model")
    p.add_argument("name")
    p.add_argument("--out", default=None, help="output folder (default: assets/models)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate", help="measure a digits model on the test split")
    p.add_argument("name")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("download", help="download zoo weights (explicit network use)")
    p.add_argument("name")
    p.set_defaults(func=_cmd_download)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return args.func(args)
    except NeuronvizError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
