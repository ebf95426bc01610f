"""The command line's one way to name a model: shared by every command that takes one.

``evaluate``, ``figure``, ``card``, ``inspect`` and the data-set commands (``neurons``) call
:func:`add_model_arguments` on their parser and :func:`load_from_args` to load, so each takes the
same forms, with the same checks, through :func:`neuronviz.core.models.create_model`:

- a listed name (``digits-cnn``, ``resnet18``), a source's spec (``timm:convnext_atto``);
- a state dict (``.safetensors``, ``.pt``/``.pth``) for a registered architecture
  (``--architecture``), or for your own network: ``--factory my_pkg.net:build``;
- an ``.onnx`` file;
- a ``torch.export`` program (``.pt2``) or a ``module:function`` factory. These two run code
  when loaded: the command line is a trusted caller (the dashboard loads them only when its
  operator names them with ``-- --model``).

Facts a file may lack are given with ``--mean``, ``--std``, ``--input-size`` and ``--classes``
(or as ``key=value`` words after the model in one quoted argument, as the dashboard's
``NEURONVIZ_MODELS`` takes them); each is recorded as given by the user, and whatever no one
gave is marked assumed (``neuronviz inspect MODEL`` shows each fact with its origin).
"""

from __future__ import annotations

import argparse
from typing import Any

from neuronviz.infra.errors import InputError

#: The fact options (CLI flag → option name of the sources).
FACT_FLAGS = {"mean": "mean", "std": "std", "input_size": "input_size", "classes": "classes"}


def add_model_arguments(parser: argparse.ArgumentParser, *, flag: str | None = None, required: bool = True) -> None:
    """Add the model argument (positional ``model``, or ``flag`` such as ``--model``) and its
    options: ``--factory``, ``--architecture``, ``--weights``, ``--mean``, ``--std``,
    ``--input-size``, ``--classes``."""
    what = (
        "a model name (python -m neuronviz models), a source's spec (timm:NAME), a state dict "
        "(.safetensors/.pt; with --factory for your own network), an .onnx file, a .pt2 program or a module:function factory"
    )
    if flag is None:
        parser.add_argument("model", metavar="MODEL", nargs=None if required else "?", default=None, help=what)
    else:
        parser.add_argument(flag, dest="model", default=None, required=False, help=what)
    group = parser.add_argument_group("model options")
    group.add_argument("--factory", default=None, metavar="MODULE:FUNCTION", help="the network a state dict is for: a function building it (runs your code)")
    group.add_argument("--architecture", default=None, help="the registered architecture a state dict is for (default: its metadata, else inferred)")
    group.add_argument("--weights", default="default", help="default (the model's own), random (initialisation seeded from the spec), or a weights file")
    group.add_argument("--mean", default=None, help="per-channel mean the model was trained with, e.g. 0.1307 or 0.485,0.456,0.406")
    group.add_argument("--std", default=None, help="per-channel standard deviation, e.g. 0.3081")
    group.add_argument("--input-size", dest="input_size", default=None, help="input height,width in pixels, e.g. 28 or 224,160")
    group.add_argument("--classes", default=None, help="class names, comma-separated or a JSON list")


def model_options(args: argparse.Namespace) -> dict[str, str]:
    """The options the arguments give (only those given)."""
    options = {name: str(getattr(args, attr)) for attr, name in FACT_FLAGS.items() if getattr(args, attr, None) is not None}
    for key in ("factory", "architecture"):
        if getattr(args, key, None):
            options[key] = str(getattr(args, key))
    return options


def weights_of(args: argparse.Namespace) -> Any:
    value = getattr(args, "weights", "default") or "default"
    return None if value == "random" else value


def model_spec(args: argparse.Namespace, attr: str = "model") -> str:
    spec = getattr(args, attr, None)
    if not spec or not str(spec).strip():
        raise InputError("no model given: name one (python -m neuronviz models lists them), or a file or module:function")
    return str(spec).strip()


def load_from_args(args: argparse.Namespace, device=None, attr: str = "model"):
    """The :class:`~neuronviz.core.models.PixelModel` the arguments name (:func:`add_model_arguments`)."""
    from neuronviz.core.models import create_model

    return create_model(model_spec(args, attr), weights=weights_of(args), device=device, options=model_options(args) or None)


def inspect_lines(model) -> list[str]:
    """What ``neuronviz inspect`` prints: the model, its facts with their origin, the layer list
    and what it leaves out."""
    from neuronviz.core.layers import probe_layers
    from neuronviz.core.models.layer_notes import layer_notes

    facts = model.facts
    lines = [
        f"model       {model.name}",
        f"source      {model.meta.source or 'unknown'}",
        f"description {model.meta.description or model.meta.architecture}",
        f"content     sha256 {model.content_hash}",
    ]
    seed = (model.meta.card or {}).get("init_seed")
    if seed is not None:
        lines.append(f"init seed   {seed} (random initialisation seeded from the spec: the same on every machine)")
    lines += ["", "facts (origin: user, metadata, file, architecture, or assumed)"]
    lines += ["  " + line for line in facts.lines()]
    if facts.assumed:
        lines.append(f"  ! {facts.assumed_note()}: give them (--mean, --std, --input-size, --classes) or write them into the file")
    layers = probe_layers(model)
    lines += ["", f"probe layers ({len(layers)}, forward order)"]
    lines += [f"  {info.name:32s} {info.kind:10s} {info.module_type:18s} {info.neurons:6d} neurons  output {tuple(info.output_shape)}" for info in layers]
    notes = layer_notes(model)
    if notes:
        lines += ["", "not in the layer list, or not what the name says"]
        lines += [f"  - {note}" for note in notes]
    return lines
