"""The ``figure`` command: ``python -m neuronviz figure --model M --image I --attack A ... --out fig.pdf``.

Computes the same analysis as the dashboard (:func:`neuronviz.workflows.analysis.compute_analysis`),
composes the paper figure (:func:`neuronviz.figures.compose.compose_figure`) and exports it
(:func:`neuronviz.workflows.export.write_figure`, format from the extension of ``--out``) with its
provenance record beside it (``<out>.provenance.json``, also embedded in the file) and the
numbers it draws (``<out>.numbers.json``). ``--session session.json`` renders a session saved by
the dashboard ("Download session"): its model, weights, image, attack, target, seed, device and
the Figure page's controls (an uploaded checkpoint or image is given with ``--model PATH`` /
``--image PATH``, checked against the SHA-256 the session records).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from neuronviz.cli.model_args import add_model_arguments
from neuronviz.infra.errors import InputError
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION


def add_parser(sub) -> None:
    """Register the ``figure`` subcommand on an ``argparse`` subparsers object."""
    from neuronviz.figures.compose import AFTER, CHARTS, PANELS
    from neuronviz.methods.defences import list_defences
    from neuronviz.methods.influence import list_influence_methods
    from neuronviz.workflows.analysis import DEFAULT_ATTACK, DEFAULT_INFLUENCE_METHOD, DEFAULT_OVERRIDES, RESTORATIONS

    p = sub.add_parser(
        "figure",
        help="a paper figure of one image under one attack (PDF, SVG or PNG) with its provenance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p, flag="--model")  # required without --session; with it, the file of a session's uploaded checkpoint
    p.add_argument("--image", default=None, help="a sample id (digit-test-0, photo-cat) or an image file "
                   "(required without --session; with it, the file of a session's uploaded image)")
    p.add_argument("--attack", default=DEFAULT_ATTACK, help=f"attack name (python -m neuronviz attacks; default {DEFAULT_ATTACK})")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE",
        help="an attack parameter (repeatable), e.g. --param eps=8/255 --param steps=20 "
        "(default: the attack's own defaults for this model"
        + (f", and for {DEFAULT_ATTACK} {', '.join(f'{k}={v}' for k, v in DEFAULT_OVERRIDES.items())}" if DEFAULT_OVERRIDES else "")
        + ", as the dashboard)",
    )
    p.add_argument("--target", default=None, help="none (default: untargeted), a class index, or least-likely")
    p.add_argument("--seed", type=int, default=0, help="attack seed (default 0)")
    restorers = [d.name for d in list_defences(include_none=False)]  # the registry: built-ins and plugins
    p.add_argument(
        "--defences", "--defenses", default=",".join(RESTORATIONS),
        help=f"restored images to show, comma-separated, from the registered defences ({', '.join(restorers)}; "
        f"default {','.join(RESTORATIONS)}; 'none' for none)",
    )
    p.add_argument(
        "--influence-method", default=DEFAULT_INFLUENCE_METHOD, choices=[m.name for m in list_influence_methods()],
        help=f"how neuron influence is measured (python -m neuronviz methods; default {DEFAULT_INFLUENCE_METHOD})",
    )
    p.add_argument("--panels", default=None, help=f"image panels, comma-separated, from {', '.join(PANELS)} (default: clean, perturbation, adversarial and the --defences)")
    p.add_argument("--charts", default="top5,front-tail", help=f"charts, comma-separated, from {', '.join(CHARTS)} or 'none' (default top5,front-tail)")
    p.add_argument("--layer", default=None, help="the layer of the front/tail chart and the one shaded in the layer charts (default: the model's default layer)")
    p.add_argument("--after", default="adversarial", choices=[*AFTER, *[r for r in restorers if r not in AFTER]], help="the image compared with the clean one in the front/tail and layer charts")
    p.add_argument("--group-size", type=float, default=DEFAULT_GROUP_FRACTION, help=f"front/tail size: a fraction of the layer's neurons in (0, 1) or a count ≥ 1 (default {DEFAULT_GROUP_FRACTION}, the dashboard's)")
    p.add_argument("--tail-rule", default="bottom", choices=("bottom", "next"), help="tail = the least influential (bottom) or the ranks after the front (next)")
    p.add_argument("--width", default="178mm", help="figure width: 85mm (single column), 178mm (double, default), or e.g. 3.5in, 12cm, single, double")
    p.add_argument("--height", default=None, help="figure height (default: what the panels need at this width)")
    p.add_argument("--font-size", type=float, default=8.0, help="text size in pt (default 8)")
    p.add_argument("--dpi", type=int, default=300, help="PNG resolution (default 300; 600 for line art)")
    p.add_argument("--no-letters", action="store_true", help="no panel letters a, b, c…")
    p.add_argument("--device", default=None, help="cpu (default; with --session: the session's), cuda, cuda:1")
    p.add_argument(
        "--session", default=None, metavar="FILE",
        help="render a dashboard session file (Download session): the analysis and the Figure page's panels, "
        "charts and size come from it; --out (and --model/--image for its uploads, --device) still apply",
    )
    p.add_argument("--out", required=True, help="output file: .pdf, .svg or .png (the format follows the extension)")
    p.set_defaults(func=run)


def _list(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    return () if items == ("none",) else items


def _target(text: str | None) -> int | str | None:
    if text is None or text.strip().lower() in ("", "none"):
        return None
    if text.strip().lower() == "least-likely":
        return "least-likely"
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--target must be none, a class index or least-likely, got {text!r}") from None


def _params(attack: str, items: list[str]) -> dict[str, Any]:
    from neuronviz.workflows.evaluate import parse_item

    for item in items:
        if "=" not in item:
            raise InputError(f"--param takes KEY=VALUE, got {item!r}")
    return parse_item(f"{attack}:" + ",".join(items))[1] if items else {}


def build(args: argparse.Namespace):
    """``(model, image name, analysis, spec, figure, numbers, provenance)`` for the arguments."""
    from neuronviz.cli.model_args import load_from_args
    from neuronviz.data.images import list_samples, load_image_with_info, load_sample
    from neuronviz.figures.compose import FigureSpec, chart_data, compose_figure, figure_numbers
    from neuronviz.methods.defences import list_defences
    from neuronviz.workflows import analysis, export

    if args.session is not None:
        return build_session(args)
    if args.model is None or args.image is None:
        raise InputError("figure needs --model and --image (or --session FILE)")
    model = load_from_args(args, device=args.device or "cpu")
    true_class = None  # marked "(true)" in the top-5 bars, as the page does for its samples
    if Path(args.image).is_file():
        image, _ = load_image_with_info(args.image, model)
        image_name = Path(args.image).name
    else:
        image = load_sample(args.image, model)
        image_name = args.image
        true_class = next((s.true_class for s in list_samples(model) if s.id == args.image), None)
    # The dashboard's form starts from these overrides for its default attack (PGD, 20 steps).
    overrides = dict(analysis.DEFAULT_OVERRIDES) if args.attack == analysis.DEFAULT_ATTACK else {}
    overrides.update(_params(args.attack, args.param))
    choice = analysis.AttackChoice.make(args.attack, overrides, target=_target(args.target), seed=args.seed)
    defences = _list(args.defences)
    known = [d.name for d in list_defences(include_none=False)]
    unknown = [d for d in defences if d not in known]
    if unknown:
        raise InputError(f"--defences: unknown {unknown}; choose from {', '.join(known)} or none")
    panels = _list(args.panels) or ("clean", "perturbation", "adversarial", *defences)
    group = args.group_size
    group = int(group) if group >= 1 else float(group)
    # NIP (guided) and PSSR always run (the layer and restoration charts compare them); the others when asked for
    computed = (*analysis.RESTORATIONS, *[d for d in defences if d not in analysis.RESTORATIONS])
    result = analysis.compute_analysis(model, image.cpu(), choice, defences=computed, influence_method=args.influence_method)
    width = export.parse_length(args.width)
    height = export.parse_length(args.height) if args.height is not None else None
    spec = FigureSpec(
        panels=panels, charts=_list(args.charts), layer=args.layer, after=args.after, group_size=group,
        tail_rule=args.tail_rule, width_mm=width, height_mm=height, font_pt=args.font_size, letters=not args.no_letters,
    )
    data = chart_data(model, result, spec)
    fig = compose_figure(result, model.class_names, spec, true_class=true_class, data=data)
    numbers = figure_numbers(result, model.class_names, spec, data)
    record = analysis.provenance(
        model, result, image_name, defences=defences,
        extra={"figure": {"panels": list(spec.panels), "charts": list(spec.charts), "layer": numbers["layer"],
                          "after": spec.after, "group_size": spec.group_size, "tail_rule": spec.tail_rule,
                          "width_mm": width, "height_mm": fig.layout.meta["height_mm"], "font_pt": spec.font_pt,
                          "dpi": args.dpi}},
    )
    return model, image_name, result, spec, fig, numbers, record


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _upload_file(given: str | None, digest: str, name: str | None, what: str, option: str) -> Path:
    """The file the user gave for a session's upload, checked against its SHA-256."""
    if given is None or not Path(given).is_file():
        raise InputError(
            f"the session uses the {what} {name} (sha256 {digest}), an upload: give that file with {option} PATH"
        )
    path = Path(given)
    found = _sha256(path)
    if found != digest:
        raise InputError(f"{option} {path.name} is not the session's {what} {name}: its sha256 is {found}, the session's {digest}")
    return path


def build_session(args: argparse.Namespace):
    """:func:`build` for ``--session FILE``: the same analysis and figure as the dashboard page
    that saved the session. Messages about values the session could not use go to stderr."""
    from neuronviz.core.models import load_model
    from neuronviz.data.images import list_samples, load_image_with_info, load_sample
    from neuronviz.figures import page_controls
    from neuronviz.figures.compose import chart_data, compose_figure, figure_numbers
    from neuronviz.methods.influence import probe_layers
    from neuronviz.workflows import analysis
    from neuronviz.workflows import session_record as session

    path = Path(args.session)
    if not path.is_file():
        raise InputError(f"--session {path}: no such file")
    controls = {**page_controls.figure_controls(), **session.method_controls()}  # the Methods box's choices too
    record, messages = session.from_json(path.read_bytes(), controls)
    device = args.device or record.device
    if record.weights == "checkpoint" and record.checkpoint_sha256 is not None:
        checkpoint = _upload_file(args.model, record.checkpoint_sha256, record.model, "checkpoint", "--model")
        if record.upload_source == "checkpoint":
            model = load_model(checkpoint, device=device, architecture=record.options.get("architecture") or None)
        else:
            from neuronviz.core.models.registry import list_sources

            source = next((s for s in list_sources() if s.name == record.upload_source), None)
            if source is None:
                raise InputError(f"the session's model is an upload read by the source {record.upload_source!r}, which is not registered here")
            model = source.load_upload(checkpoint, dict(record.options)).to(device)
    else:
        model = load_model(record.model, device=device, weights=None if record.weights == "random" else "default")
    if record.model_hash is not None and record.model_hash != model.content_hash:
        messages.append(
            f"the model {model.name} here has content hash {model.content_hash[:16]}…, the session's {record.model_hash[:16]}…: "
            "other weights, so other numbers"
        )
    samples = list_samples(model)
    record, found = session.check_for_model(
        record, model, [s.id for s in samples], [i.name for i in probe_layers(model)], controls, what="session file"
    )
    messages += found
    if record.image_is_upload and record.image_sha256 is not None:
        image_path = _upload_file(args.image, record.image_sha256, record.image, "image", "--image")
        image, _ = load_image_with_info(image_path, model)
        image_name = record.image or image_path.name
        true_class = record.true_class
    else:
        ids = [s.id for s in samples]
        image_name = record.image or (analysis.DEFAULT_SAMPLE_ID if analysis.DEFAULT_SAMPLE_ID in ids else ids[0])
        image = load_sample(image_name, model)
        true_class = next((s.true_class for s in samples if s.id == image_name), None)
    if record.image_hash is not None and record.image_hash != analysis.content_key(image.cpu())["tensor"]:
        messages.append(f"the image {image_name} here has other pixels than the session's: other numbers")
    for message in messages:
        print(f"warning: {message}", file=sys.stderr)
    choice = analysis.AttackChoice.make(record.attack, dict(record.params), target=record.target, seed=record.seed)
    defences_computed, influence_method = session.analysis_methods(record.page)  # as the page computed it
    result = analysis.compute_analysis(model, image.cpu(), choice, defences=defences_computed, influence_method=influence_method)
    spec = page_controls.figure_spec(record.page)
    data = chart_data(model, result, spec)
    fig = compose_figure(result, model.class_names, spec, true_class=true_class, data=data)
    numbers = figure_numbers(result, model.class_names, spec, data)
    defences = [p for p in spec.panels if p in defences_computed] or list(analysis.RESTORATIONS)
    dpi = int(record.page.get("figure.dpi", page_controls.FIGURE_DEFAULTS["figure.dpi"]))
    args.dpi = dpi
    record_ = analysis.provenance(
        model, result, image_name, defences=defences,
        extra={"figure": {"panels": list(spec.panels), "charts": list(spec.charts), "layer": numbers["layer"],
                          "after": spec.after, "group_size": spec.group_size, "tail_rule": spec.tail_rule,
                          "width_mm": spec.width_mm, "height_mm": fig.layout.meta["height_mm"], "font_pt": spec.font_pt,
                          "dpi": dpi},
               "session": str(path)},
    )
    return model, image_name, result, spec, fig, numbers, record_


def run(args: argparse.Namespace) -> int:
    from neuronviz.workflows import export, provenance

    out = Path(args.out)
    export.format_of(out)  # a bad extension fails before any computation
    _, _, _, _, fig, numbers, record = build(args)
    width_mm, height_mm = fig.layout.meta["width_mm"], fig.layout.meta["height_mm"]
    written = export.write_figure(fig, out, width_mm, height_mm, dpi=args.dpi, provenance=record)
    numbers_path = out.with_name(out.name + ".numbers.json")
    numbers_path.write_text(json.dumps(numbers, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    written.append(numbers_path)
    print(f"{out}: {width_mm:.1f} × {height_mm:.1f} mm; " + ", ".join(str(p) for p in written[1:]), file=sys.stderr)
    note = provenance.assumed_note(record)
    if note:  # the figure's numbers rest on a guess: say so where the figure is made
        print(f"warning: {note} Cite them with the figure, or give them (--mean, --std, --input-size, --classes).", file=sys.stderr)
    return 0
