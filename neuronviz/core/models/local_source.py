"""Local models from trusted paths: torch.export programs (``.pt2``) and the user's own Python code.

Both run code when loaded: ``torch.export.load`` unpickles, and a factory is imported and called.
So they come **only** from the server's operator, never from an upload or a URL:

- the dashboard's command line: ``streamlit run app/main.py -- --model path/to/model.pt2`` or
  ``-- --model my_package.models:build`` (repeatable; see :func:`parse_argv` for the options
  that follow a ``--model``);
- the environment variable ``NEURONVIZ_MODELS`` (deployments): entries separated by ``;``, each
  ``TARGET [key=value ...]`` (shell-quoted), e.g.
  ``NEURONVIZ_MODELS="models/net.pt2; my_pkg.models:build mean=0.5 std=0.25 classes=a,b"``;
- the CLI (``python -m neuronviz figure --model path.pt2 ...``, ``evaluate my_pkg.models:build``):
  :func:`trusted_spec`;
- Python: :func:`register_local_model`.

Each becomes a spec ``local:<name>`` (the name: ``name=``, else the file's stem or
``module.function``). :class:`LocalSource` loads only names registered that way: a spec that
arrives from a browser (a URL, a session file) can name an operator's model but never a path or a
function, so a shared server (``NEURONVIZ_SHARED_SERVER=1``) allows them too.

Factories. ``module:function`` is imported (the working directory is tried when the module is not
importable otherwise) and called with no arguments. It returns a
:class:`~neuronviz.core.models.PixelModel` (it carries every fact: build it with
:func:`neuronviz.core.models.wrap_model`) or an ``nn.Module`` taking normalised input, whose facts
come, first found, from the options (``mean``, ``std``, ``input_size``, ``classes``), from
attributes the factory sets on the module (``class_names``, ``mean``, ``std``, ``input_size``:
plain lists/ints), from timm's ``pretrained_cfg`` (``mean``, ``std``, ``input_size``,
``label_names``), else the defaults of :mod:`neuronviz.core.models.onnx_source` (ImageNet mean/std,
224, ``class i``). The channel count is the first convolution's ``in_channels``.

Programs. A ``.pt2`` from ``torch.export.save`` must take one image batch ``(N, C, H, W)`` with a
dynamic batch dimension (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``). Its facts
come from the options, else a ``neuronviz.json`` extra file (``torch.export.save(ep, path,
extra_files={"neuronviz.json": json.dumps({"mean": [...], "std": [...], "class_names": [...],
"input_size": [h, w]})})``), else the defaults; a fixed H×W in the program is its input size.

``torch.export.unflatten`` keeps the module names (``features.2.conv``) but turns every module
into an ``InterpreterModule``, which the probe layers (:func:`neuronviz.methods.influence.probe_layers`,
found by ``isinstance`` on module types and by class names such as ``BasicBlock``) would not
recognise. Each unflattened module therefore gets its **original type back** from the graph's
``nn_module_stack`` metadata: a module of a ``torch.nn`` type becomes an instance of a subclass of
both ``InterpreterModule`` (it still runs the exported graph) and that type (``nn.Conv2d``,
``nn.Linear``, ``nn.BatchNorm2d``, ``nn.ReLU``...), with the attributes the library reads
(``in_channels``, ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``groups``,
``in_features``...) recovered from its weights and graph; a module of any other type (the
user's ``Block``, torchvision's ``BasicBlock``) becomes a subclass of ``InterpreterModule`` with
the original class name. ``model.meta.card["module_types"]`` maps every module name to the
original qualified type name.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from neuronviz.core.models.checkpoints import check_size
from neuronviz.core.models.onnx_source import (
    DEFAULT_SIDE,
    check_outputs,
    default_policy,
    parse_numbers,
    resolve_facts,
)
from neuronviz.core.models.pixel import ModelMeta, PixelModel
from neuronviz.core.models.registry import ModelInfo, ModelSource, register_source
from neuronviz.infra import settings
from neuronviz.infra.errors import CheckpointError, InputError, ModelNotFoundError
from neuronviz.infra.json_text import check_json_text

ENV = "NEURONVIZ_MODELS"
PREFIX = "local:"
PROGRAM_SUFFIX = ".pt2"
METADATA_FILE = "neuronviz.json"
#: Option names an entry accepts (``input-size`` is accepted for ``input_size``).
OPTION_NAMES = ("mean", "std", "input_size", "classes", "name")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_HINT = "Local models are given by the server's operator: --model on the command line or NEURONVIZ_MODELS."


@dataclass(frozen=True)
class LocalEntry:
    """One trusted local model: its ``local:`` name, a ``.pt2`` path or ``module:function``, options."""

    name: str
    target: str
    options: tuple[tuple[str, str], ...] = ()
    origin: str = "Python"
    #: Why a ``NEURONVIZ_MODELS`` entry could not be read (listed with it; loading it raises it).
    error: str = ""

    @property
    def spec(self) -> str:
        return PREFIX + self.name

    @property
    def kind(self) -> str:
        return "factory" if is_factory(self.target) and not self.target.lower().endswith(PROGRAM_SUFFIX) else "program"

    @property
    def option_dict(self) -> dict[str, str]:
        return dict(self.options)


def is_factory(text: str) -> bool:
    """``my_package.models:build``: a module path, a colon, a function name."""
    return bool(_FACTORY.match(text.strip()))


def looks_local(text: str) -> bool:
    """A ``.pt2`` path or a ``module:function`` (what :func:`trusted_spec` registers)."""
    text = text.strip()
    return text.lower().endswith(PROGRAM_SUFFIX) or is_factory(text)


def _other_source(text: str) -> str | None:
    """The name of the registered source other than this one that owns ``text`` (``timm:resnet18``
    looks like ``module:function``), or None."""
    from neuronviz.core.models.registry import list_sources

    if text.startswith(PREFIX):
        return "local"
    for source in list_sources():
        if source.name != "local" and source.owns(text):
            return source.name
    return None


def _option_key(key: str) -> str:
    key = key.strip().lower().replace("-", "_")
    if key not in OPTION_NAMES:
        raise InputError(f"unknown local-model option {key!r}; use {', '.join(OPTION_NAMES)} (e.g. mean=0.5)", ui_hint=_HINT)
    return key


def make_entry(target: str, options: Mapping[str, str] | None = None, origin: str = "Python") -> LocalEntry:
    """A :class:`LocalEntry` for ``target`` (a ``.pt2`` path, made absolute, or ``module:function``)."""
    target = str(target).strip()
    if not target:
        raise InputError("a local model needs a .pt2 path or module:function", ui_hint=_HINT)
    opts = {_option_key(k): str(v) for k, v in (options or {}).items()}
    name = opts.pop("name", "").strip()
    if target.lower().endswith(PROGRAM_SUFFIX):
        target = str(Path(target).expanduser().resolve())
        name = name or Path(target).stem
    elif is_factory(target):
        other = _other_source(target)
        if other is not None:
            raise InputError(
                f"{target!r} is a spec of the {other} model source, not a local model: use it as it is "
                "(the Model box, or the CLI's model argument)",
                ui_hint=_HINT,
            )
        module, function = target.split(":")
        name = name or f"{module}.{function}"
    else:
        raise InputError(
            f"{target!r} is neither a torch.export program (.pt2) nor a factory module:function "
            "(e.g. my_package.models:build)",
            ui_hint=_HINT,
        )
    if not re.fullmatch(r"[\w.\-]+", name):
        raise InputError(f"local model name {name!r}: use letters, digits, '.', '-' and '_' only", ui_hint=_HINT)
    return LocalEntry(name=name, target=target, options=tuple(sorted(opts.items())), origin=origin)


def parse_entry(text: str, origin: str = "NEURONVIZ_MODELS") -> LocalEntry:
    """``TARGET [key=value ...]`` (shell-quoted) → :class:`LocalEntry`."""
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise InputError(f"{origin}: cannot read {text!r} ({error})", ui_hint=_HINT) from None
    if not words:
        raise InputError(f"{origin}: an empty entry", ui_hint=_HINT)
    options = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise InputError(f"{origin}: {word!r} after {words[0]!r} is not key=value (e.g. mean=0.5)", ui_hint=_HINT)
        options[key] = value
    return make_entry(words[0], options, origin)


def entries_from_env(environ: Mapping[str, str] | None = None) -> list[LocalEntry]:
    """The entries of ``NEURONVIZ_MODELS`` (``;``-separated; empty entries are skipped)."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    return [parse_entry(part, ENV) for part in raw.split(";") if part.strip()]


def parse_argv(argv: Sequence[str]) -> list[LocalEntry]:
    """The dashboard's arguments after ``--``: ``--model TARGET`` (repeatable), each followed by
    its own ``--name N``, ``--mean M``, ``--std S``, ``--input-size H[,W]``, ``--classes a,b,…``
    and ``--option key=value`` (also ``--flag=value``). Anything else is refused with its reason."""
    entries: list[tuple[str, dict[str, str]]] = []
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            raise InputError(f"command line: unexpected {word!r}; give models as --model path.pt2 or --model module:function", ui_hint=_HINT)
        flag, sep, value = word[2:].partition("=")
        if not sep:
            if i + 1 >= len(words):
                raise InputError(f"command line: --{flag} needs a value", ui_hint=_HINT)
            value = words[i + 1]
            i += 1
        i += 1
        flag = flag.replace("-", "_")
        if flag == "model":
            entries.append((value, {}))
        elif not entries:
            raise InputError(f"command line: --{flag} comes before any --model; put it after the --model it is for", ui_hint=_HINT)
        elif flag == "option":
            key, eq, option = value.partition("=")
            if not eq:
                raise InputError(f"command line: --option {value!r} is not key=value", ui_hint=_HINT)
            entries[-1][1][_option_key(key)] = option
        else:
            entries[-1][1][_option_key(flag)] = value
    return [make_entry(target, options, "command line") for target, options in entries]


_lock = threading.RLock()
_registered: dict[str, LocalEntry] = {}
_infos: dict[LocalEntry, tuple[object, ModelInfo]] = {}
_ready: dict[LocalEntry, tuple[object, PixelModel]] = {}  # loaded while listing; handed to the first load


def register_local_model(target: str, *, name: str | None = None, options: Mapping[str, str] | None = None, origin: str = "Python") -> str:
    """Trust ``target`` (a ``.pt2`` path or ``module:function``) as a local model; return its spec."""
    opts = dict(options or {})
    if name:
        opts["name"] = name
    return register_entry(make_entry(target, opts, origin))


def register_entry(entry: LocalEntry) -> str:
    """Add ``entry`` (replacing one of the same name); return its spec ``local:<name>``."""
    with _lock:
        _registered[entry.name] = entry
    return entry.spec


def register_argv(argv: Sequence[str]) -> list[str]:
    """Register the models of the dashboard's command line (:func:`parse_argv`); their specs."""
    return [register_entry(entry) for entry in parse_argv(argv)]


def unregister_local_model(name: str) -> None:
    with _lock:
        _registered.pop(name.removeprefix(PREFIX), None)


def local_entries() -> list[LocalEntry]:
    """The command line's/Python's entries, then ``NEURONVIZ_MODELS``'s (read now; a registered name wins)."""
    with _lock:
        entries = dict(_registered)
    raw = os.environ.get(ENV, "")
    for index, part in enumerate(p for p in raw.split(";") if p.strip()):
        try:
            entry = parse_entry(part, ENV)
        except InputError as error:  # one bad entry must not hide the others (or the sidebar)
            entry = LocalEntry(name=f"{ENV}-{index + 1}", target=part.strip(), origin=ENV, error=str(error))
        entries.setdefault(entry.name, entry)
    return list(entries.values())


def trusted_spec(value: str) -> str:
    """For the CLI: a ``.pt2`` path or ``module:function`` (optionally followed by ``key=value``
    options) is registered and its ``local:`` spec returned; any other spec comes back as it is."""
    text = value.strip()
    if text.lower().endswith(PROGRAM_SUFFIX):  # a path with spaces too
        return register_entry(make_entry(text, origin="command line"))
    words = text.split()
    if not words or not looks_local(words[0]) or (is_factory(words[0]) and _other_source(words[0]) is not None):
        return value
    return register_entry(parse_entry(text, "command line"))


def _entry(spec: str) -> LocalEntry:
    name = spec.removeprefix(PREFIX)
    for entry in local_entries():
        if entry.name == name:
            return entry
    known = [e.spec for e in local_entries()]
    raise ModelNotFoundError(
        f"no local model {spec!r}: local models are the ones the server's operator gives with --model or {ENV}"
        + (f"; given: {', '.join(known)}" if known else "; none was given"),
        ui_hint="Choose a model in the sidebar's Model box.",
    )


def _stamp(entry: LocalEntry) -> object:
    if entry.kind == "program":
        try:
            stat = Path(entry.target).stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)
    return None


def load_entry(entry: LocalEntry, options: Mapping[str, str] | None = None) -> PixelModel:
    """Load a trusted entry (its own options, then ``options``, win over the file's facts)."""
    if entry.error:
        raise InputError(entry.error, ui_hint=_HINT)
    merged = {**entry.option_dict, **{_option_key(k): str(v) for k, v in (options or {}).items() if k != "name"}}
    if entry.kind == "program":
        return load_program(entry.target, merged, name=entry.name)
    return load_factory(entry.target, merged, name=entry.name)


# -- factories ------------------------------------------------------------------------------------


def _import(module_name: str, target: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        top = module_name.split(".")[0]
        cwd = os.getcwd()
        if error.name is not None and top.startswith(error.name) and cwd not in sys.path:
            sys.path.append(cwd)  # the operator's own package next to where they start the server
            try:
                return importlib.import_module(module_name)
            except ModuleNotFoundError:
                pass
        raise ModelNotFoundError(
            f"{target}: module {module_name!r} cannot be imported ({error}); install it or start from the folder that holds it",
            ui_hint=_HINT,
        ) from None


def load_factory(target: str, options: Mapping[str, str] | None = None, *, name: str | None = None) -> PixelModel:
    """Import ``module:function``, call it, and return the PixelModel it builds (module docstring)."""
    module_name, _, function_name = target.partition(":")
    module = _import(module_name, target)
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise ModelNotFoundError(f"{target}: {module_name} has no function {function_name!r}", ui_hint=_HINT)
    try:
        built = factory()
    except Exception as error:  # noqa: BLE001 - the operator's code: report it, keep the server
        raise InputError(f"{target}() failed: {type(error).__name__}: {str(error)[:300]}", ui_hint=_HINT) from error
    label = name or target
    if isinstance(built, PixelModel):
        if options:
            raise InputError(
                f"{target} returns a PixelModel, which carries its own mean, std, input size and classes; "
                f"drop the options {sorted(options)} (or return the bare nn.Module)",
                ui_hint=_HINT,
            )
        built.eval().requires_grad_(False)
        return built
    if not isinstance(built, nn.Module):
        raise InputError(f"{target} returned a {type(built).__name__}; a factory returns an nn.Module or a PixelModel", ui_hint=_HINT)
    net = built.eval()
    metadata = _module_facts(net)
    channels = _channels(net, metadata, options)
    size = _probe_size(options, metadata, None)
    outputs = check_outputs(net, channels, size, label)
    facts = resolve_facts(label, channels=channels, outputs=outputs, fixed_size=None, options=options, metadata=metadata, explicit=True)
    meta = ModelMeta(
        name=label,
        architecture=type(net).__name__,
        source=f"local factory {target}",
        description=f"{type(net).__name__} built by {target}()",
        card={"format": "factory", "target": target},
    )
    return PixelModel(net, facts.mean, facts.std, facts.input_size, facts.class_names, meta, default_policy(facts.input_size))


def _plain(value: object) -> object:
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return list(value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return value
    return None


def _module_facts(net: nn.Module) -> dict[str, object]:
    facts: dict[str, object] = {}
    cfg = getattr(net, "pretrained_cfg", None)
    if isinstance(cfg, Mapping):
        for key in ("mean", "std"):
            if _plain(cfg.get(key)) is not None:
                facts[key] = _plain(cfg.get(key))
        size = _plain(cfg.get("input_size"))
        if isinstance(size, list) and len(size) == 3:
            facts["input_size"] = size[1:]
        if _plain(cfg.get("label_names")) is not None:
            facts["class_names"] = _plain(cfg.get("label_names"))
    for key in ("mean", "std", "input_size", "class_names"):
        value = _plain(net.__dict__.get(key))  # plain attributes only: not a buffer or a submodule
        if value is not None:
            facts[key] = value
    return facts


def _channels(net: nn.Module, metadata: Mapping[str, object], options: Mapping[str, str] | None) -> int:
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    mean = (options or {}).get("mean") or metadata.get("mean")
    return len(parse_numbers(mean, "mean", "model")) if mean is not None else 3


def _probe_size(options: Mapping[str, str] | None, metadata: Mapping[str, object], fixed: tuple[int, int] | None) -> tuple[int, int]:
    from neuronviz.core.models.onnx_source import parse_input_size

    if fixed is not None:
        return fixed
    text = (options or {}).get("input_size")
    if text:
        return parse_input_size(text, "model")
    if metadata.get("input_size") is not None:
        return parse_input_size(metadata["input_size"], "model")
    return (DEFAULT_SIDE, DEFAULT_SIDE)


# -- torch.export programs ------------------------------------------------------------------------


def load_program(path: str | os.PathLike, options: Mapping[str, str] | None = None, *, name: str | None = None) -> PixelModel:
    """Load a ``.pt2`` (``torch.export.save``) from a trusted path as a PixelModel (module docstring)."""
    path = Path(path)
    label = path.name
    caps = settings.limits()
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ModelNotFoundError(f"{path}: cannot read the program ({error.strerror})", ui_hint=_HINT) from None
    check_size(label, size, "programs", caps)
    extra = {METADATA_FILE: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
    except Exception as error:  # noqa: BLE001 - a corrupt archive or another torch version's program
        raise CheckpointError(f"{label} is not a torch.export program torch {torch.__version__} can load ({type(error).__name__}: {str(error)[:300]})") from None
    metadata: dict[str, object] = {}
    if extra.get(METADATA_FILE):
        check_json_text(extra[METADATA_FILE], 4, f"{label}: its {METADATA_FILE}", CheckpointError)  # 24.15's class
        try:
            parsed = json.loads(extra[METADATA_FILE])
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{label}: its {METADATA_FILE} is not valid JSON ({error.msg})") from None
        if not isinstance(parsed, dict):
            raise CheckpointError(f"{label}: its {METADATA_FILE} must be a JSON object (mean, std, class_names, input_size)")
        metadata = parsed
    channels, fixed = _program_input(program, label)
    net = unflatten_with_types(program)
    outputs = check_outputs(net, channels, _probe_size(options, metadata, fixed), label)
    facts = resolve_facts(label, channels=channels, outputs=outputs, fixed_size=fixed, options=options, metadata=metadata, explicit=True)
    types = module_types(program)
    meta = ModelMeta(
        name=name or path.stem,
        architecture=types.get("", "torch.export program").rsplit(".", 1)[-1],
        source=f"torch.export program {path}",
        description=f"torch.export program {label} of a {types.get('', 'module').rsplit('.', 1)[-1]}",
        card={"format": "torch.export", "file": str(path), "module_types": types},
    )
    return PixelModel(net, facts.mean, facts.std, facts.input_size, facts.class_names, meta, default_policy(facts.input_size))


def _program_input(program, label: str) -> tuple[int, tuple[int, int] | None]:
    """(channels, fixed (H, W) or None) of the program's one image input; the batch must be dynamic."""
    fix = 'export it with dynamic_shapes={"x": {0: torch.export.Dim("batch")}}'
    names = list(program.graph_signature.user_inputs)
    if len(names) != 1:
        raise CheckpointError(f"{label}: the program takes {len(names)} inputs ({', '.join(map(str, names))}); an image classifier takes one")
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and n.name == names[0]), None)
    value = node.meta.get("val") if node is not None else None
    shape = getattr(value, "shape", None)
    if shape is None:
        raise CheckpointError(f"{label}: the program's input {names[0]!r} is not a tensor")
    dims = [d if isinstance(d, int) else None for d in shape]
    if len(dims) != 4:
        raise CheckpointError(f"{label}: the program's input has rank {len(dims)}; neuronviz needs images of rank 4 (N, C, H, W)")
    if dims[0] is not None:
        raise CheckpointError(f"{label}: the program's batch size is fixed at {dims[0]}; {fix}")
    channels = dims[1]
    if channels not in (1, 3):
        raise CheckpointError(f"{label}: the program's input has {'a dynamic number of' if channels is None else channels} channels; images here have 1 or 3")
    fixed = (dims[2], dims[3]) if dims[2] is not None and dims[3] is not None else None
    return channels, fixed


def module_types(program) -> dict[str, str]:
    """Qualified module name → original qualified type name, from the graph's ``nn_module_stack``."""
    types: dict[str, str] = {}
    for node in program.graph.nodes:
        for path, kind in (node.meta.get("nn_module_stack") or {}).values():
            type_name = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
            types.setdefault(str(path), type_name)
    return types


_CLASSES: dict[str, type] = {}


def _original_class(type_name: str) -> type | None:
    """The ``torch.nn`` class named ``type_name`` (only torch's own: nothing else is imported)."""
    module_name, _, class_name = type_name.rpartition(".")
    if not module_name.startswith("torch.nn."):
        return None
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def _exported_repr(self) -> str:
    return f"exported {self._exported_type}"


def exported_class(type_name: str) -> type:
    """The class an unflattened module of original type ``type_name`` gets (cached per type)."""
    from torch.export.unflatten import InterpreterModule

    with _lock:
        cls = _CLASSES.get(type_name)
        if cls is None:
            original = _original_class(type_name)
            short = type_name.rsplit(".", 1)[-1] or "Module"
            bases: tuple[type, ...] = (InterpreterModule, original) if original is not None else (InterpreterModule,)
            cls = type(short, bases, {"__module__": __name__, "__qualname__": short, "_exported_type": type_name, "extra_repr": _exported_repr})
            _CLASSES[type_name] = cls
    return cls


_TRACE_META = ("val", "example_value", "tensor_meta", "unbacked_bindings")


def unflatten_with_types(program) -> nn.Module:
    """``torch.export.unflatten(program)`` with every module given its original type back."""
    net = torch.export.unflatten(program)
    types = module_types(program)
    from torch.export.unflatten import InterpreterModule

    for name, module in net.named_modules():
        type_name = types.get(name.split("@")[0])
        if not name or type_name is None or type(module) is not InterpreterModule:
            continue
        module.__class__ = exported_class(type_name)
        _restore_attributes(module)
    for module in net.modules():  # fake tensors with symbolic shapes: needed for export, not to run, and no deepcopy takes them
        graph = getattr(module, "graph", None)
        for node in graph.nodes if isinstance(graph, torch.fx.Graph) else ():
            for key in _TRACE_META:
                node.meta.pop(key, None)
    return net.eval()


def _call_args(module: nn.Module, targets: tuple[str, ...]) -> list | None:
    graph = getattr(module, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.op == "call_function" and any(str(node.target).startswith(t) for t in targets):
            return list(node.args)
    return None


def _pair(value: object, default: int) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value) if len(value) == 2 else (int(value[0]),) * 2
    return (default, default) if value is None else (int(value),) * 2  # type: ignore[call-overload]


def _restore_attributes(module: nn.Module) -> None:
    """The attributes of the original torch.nn type that the library reads, from weights and graph."""
    weight = module._parameters.get("weight") if "weight" in module._parameters else None
    if isinstance(module, nn.Conv2d) and weight is not None:
        args = _call_args(module, ("aten.conv2d", "aten.convolution")) or []
        args += [None] * (7 - len(args))
        module.stride = _pair(args[3], 1)  # type: ignore[assignment]
        module.padding = _pair(args[4], 0)  # type: ignore[assignment]
        module.dilation = _pair(args[5], 1)  # type: ignore[assignment]
        module.groups = int(args[6]) if isinstance(args[6], int) else 1
        module.out_channels = int(weight.shape[0])
        module.in_channels = int(weight.shape[1]) * module.groups
        module.kernel_size = tuple(int(k) for k in weight.shape[2:])  # type: ignore[assignment]
        module.padding_mode, module.transposed, module.output_padding = "zeros", False, (0, 0)
    elif isinstance(module, nn.Linear) and weight is not None:
        module.out_features, module.in_features = int(weight.shape[0]), int(weight.shape[1])
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        running = module._buffers.get("running_mean")
        reference = weight if weight is not None else running
        if reference is not None:
            module.num_features = int(reference.shape[0])
        args = _call_args(module, ("aten.batch_norm", "aten._native_batch_norm")) or []
        module.eps = float(args[7]) if len(args) > 7 and isinstance(args[7], float) else 1e-5
        module.momentum = float(args[6]) if len(args) > 6 and isinstance(args[6], float) else 0.1
        module.affine, module.track_running_stats = weight is not None, running is not None
    if hasattr(type(module), "__constants__") and "inplace" in getattr(type(module), "__constants__", ()):
        module.inplace = False  # type: ignore[assignment]


class LocalSource(ModelSource):
    """Models the server's operator gives (command line, ``NEURONVIZ_MODELS``, Python)."""

    name = "local"
    label = "Local models"
    weights_word = "its own weights"

    def owns(self, spec: str) -> bool:
        return spec.startswith(PREFIX)

    def list_models(self) -> list[ModelInfo]:
        return [self._info(entry) for entry in local_entries()]

    def _info(self, entry: LocalEntry) -> ModelInfo:
        stamp = _stamp(entry)
        with _lock:
            cached = _infos.get(entry)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                model = load_entry(entry)
            except Exception as error:  # noqa: BLE001 - listed with its reason; load() raises it
                info = ModelInfo(
                    name=entry.spec, source=self.name, architecture=entry.kind, description=f"cannot be loaded: {error}",
                    channels=3, input_size=(DEFAULT_SIDE, DEFAULT_SIDE), num_classes=0, weights_available=False,
                )
            else:
                info = ModelInfo(
                    name=entry.spec, source=self.name, architecture=model.meta.architecture,
                    description=f"{model.meta.description} ({entry.origin})", channels=model.channels,
                    input_size=model.input_size, num_classes=model.num_classes, weights_available=True,
                    card={"target": entry.target, "origin": entry.origin, **model.meta.card},
                )
                _ready[entry] = (stamp, model)
            _infos[entry] = (stamp, info)
            return info

    def load(self, spec: str, *, weights: str | os.PathLike | None = "default", options: Mapping[str, str] | None = None) -> PixelModel:
        if weights != "default":
            raise InputError(f"{spec}: a local model carries its own weights; weights={weights!r} cannot be applied", ui_hint=_HINT)
        entry = _entry(spec)
        with _lock:
            ready = _ready.pop(entry, None)
        if ready is not None and not options and ready[0] == _stamp(entry):
            return ready[1]
        return load_entry(entry, options)


LOCAL_SOURCE = register_source(LocalSource())
