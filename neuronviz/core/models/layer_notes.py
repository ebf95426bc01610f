"""What a model's layer list does not show by itself: so that a layer name means one thing.

Probe layers are modules called once per forward pass (:func:`neuronviz.core.layers.probe_layers`).
Three things fall outside that, and each is stated here, in the model's layer list
(``neuronviz inspect``, the Model & image page, ``model.meta.card["layer_notes"]``):

- **folded layers** (ONNX): an exporter that folds a batch norm into the convolution before it
  leaves one layer where the network had two; ``conv2`` of the ONNX file is conv2 *and* bn2
  (:func:`neuronviz.core.models.onnx_source.onnx_layer_notes`);
- **modules called more than once** (a pooling module used twice): no probe point, since a hook
  on it sees several outputs. (An ONNX graph has one module per call site: ``pool``, ``pool_1``.)
- **functional activations** (``F.relu(x)`` in ``forward``): not modules, so no probe point.
  (An ONNX graph has one module per call: ``relu``, ``relu_1``, …)

Found by one forward pass of a blank image with a hook on every module and a
:class:`torch.overrides.TorchFunctionMode` that records activation functions called outside an
activation module; for a ``torch.export`` program, from its graph.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

#: Function names counted as activations when called outside an activation module.
ACTIVATION_FUNCTIONS = frozenset(
    {"relu", "relu_", "relu6", "gelu", "silu", "leaky_relu", "elu", "selu", "hardswish", "mish", "sigmoid", "tanh", "softplus", "hardtanh"}
)


def _is_activation_module(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation"


class _Recorder(TorchFunctionMode):
    def __init__(self, stack: list[tuple[str, nn.Module]]) -> None:
        super().__init__()
        self.stack = stack
        self.calls: Counter[tuple[str, str]] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ACTIVATION_FUNCTIONS and not (self.stack and _is_activation_module(self.stack[-1][1])):
            owner = self.stack[-1][0] if self.stack else ""
            self.calls[(owner, name)] += 1
        return func(*args, **(kwargs or {}))


def module_layer_notes(net: nn.Module, channels: int, size: Sequence[int]) -> list[str]:
    """Notes on ``net``'s modules called more than once and its functional activations."""
    from neuronviz.core.probe import module_hooks  # the one hook mechanism (probe imports the models package)

    stack: list[tuple[str, nn.Module]] = []
    counts: Counter[str] = Counter()

    def pre(name: str, module: nn.Module) -> None:
        stack.append((name, module))
        counts[name] += 1

    def post(_name: str, _module: nn.Module) -> None:
        if stack:
            stack.pop()

    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    recorder = _Recorder(stack)
    try:
        with module_hooks(list(net.named_modules()), pre=pre, post=post), torch.no_grad(), recorder:
            net(torch.zeros(1, channels, *size, device=device))
    except Exception as error:  # noqa: BLE001 - a note, not a load failure: the forward check ran before
        return [f"the layer list could not be checked for reused modules and functional activations ({type(error).__name__})"]
    notes = [
        f"{name}: runs {k} times per forward pass, so it is no probe point (a hook on it would see {k} different outputs); "
        "probe the layers around its calls"
        for name, k in counts.items()
        if name and k > 1
    ]
    notes += _functional_notes(recorder.calls)
    return notes


def _functional_notes(calls: Counter[tuple[str, str]]) -> list[str]:
    notes = []
    for (owner, function), k in calls.items():
        where = f"the forward of {owner}" if owner else "the model's forward"
        times = "once" if k == 1 else f"{k} times"
        notes.append(
            f"{function}: called as a function {times} in {where}, not as a module, so it is no probe point; "
            "the layer whose output it takes is"
        )
    return notes


#: aten activation operators that become a module of their own, one per call site, in a
#: ``torch.export`` program (taking one tensor and nothing else).
_SPLIT_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "silu": nn.SiLU, "hardswish": nn.Hardswish, "mish": nn.Mish,
}


def _op_name(target: object) -> str:
    """``torch.ops.aten.relu.default`` → ``"relu"``."""
    name = getattr(target, "__name__", None) or str(target)
    return str(name).split(".")[0]


def _is_torch_leaf(module: nn.Module) -> bool:
    """An unflattened module whose original type is one of torch.nn's own layers (not a container)."""
    kind = str(getattr(type(module), "_exported_type", ""))
    return kind.startswith("torch.nn.modules.") and not kind.startswith("torch.nn.modules.container.")


def _free_name(owner: nn.Module, base: str) -> str:
    taken = set(dict(owner.named_children())) | set(owner.__dict__) | set(dir(type(owner)))
    name, k = base, 1
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    return name


def split_call_sites(net: nn.Module) -> list[str]:
    """Give a ``torch.export`` program's functional activations and the later calls of a module
    that runs more than once a module of their own, one per call site, so each is a probe
    point with one meaning. Edits the unflattened modules' graphs in place (the outputs do not
    change: a stateless copy of a pooling module, ``nn.ReLU()`` for ``aten.relu``). Returns a
    note per change, for the layer list.

    Left as they are (and stated by :func:`graph_layer_notes`): activations with extra arguments
    (``leaky_relu(x, 0.2)``, ``gelu(x, approximate=...)``) and repeated modules that hold weights
    (a copy would be another layer with the same weights)."""
    notes: list[str] = []
    for owner_name, owner in list(net.named_modules()):
        graph = getattr(owner, "graph", None)
        if not isinstance(graph, torch.fx.Graph) or _is_torch_leaf(owner):
            continue  # an nn.ReLU's own graph calls aten.relu: that is the module, not a functional call
        prefix = f"{owner_name}." if owner_name else ""
        calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
        seen: Counter[str] = Counter()
        made: dict[str, list[str]] = {}
        changed = False
        for node in list(graph.nodes):
            if node.op == "call_function" and _op_name(node.target) in _SPLIT_ACTIVATIONS and len(node.args) == 1 and not node.kwargs:
                kind = _op_name(node.target)
                name = _free_name(owner, kind)
                owner.add_module(name, _SPLIT_ACTIVATIONS[kind]())
                with graph.inserting_before(node):
                    module_call = graph.create_node("call_module", name, args=node.args)
                module_call.meta = dict(node.meta)
                node.replace_all_uses_with(module_call)
                graph.erase_node(node)
                made.setdefault(kind, []).append(prefix + name)
                changed = True
            elif node.op == "call_module" and calls[str(node.target)] > 1 and "." not in str(node.target):
                target = str(node.target)
                seen[target] += 1
                module = owner.get_submodule(target)
                if seen[target] == 1 or any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                    continue
                import copy

                name = _free_name(owner, f"{target}_{seen[target] - 1}")
                owner.add_module(name, copy.deepcopy(module))
                node.target = name
                notes.append(
                    f"{prefix}{name}: call {seen[target]} of {prefix}{target}, which the network runs {calls[target]} times; "
                    f"a probe point of its own here ({prefix}{target} is the first call)"
                )
                changed = True
        for kind, names in made.items():
            notes.append(
                f"{', '.join(names)}: the network's functional {kind} calls (F.{kind} in forward), one probe point per call, "
                "named in call order; the network itself has no such modules"
            )
        if changed:  # finalize rebuilds the module's GraphModule from the edited graph (and lints it)
            finalize = getattr(owner, "finalize", None)
            if callable(finalize):
                finalize()
    return notes


def graph_layer_notes(net: nn.Module) -> list[str]:
    """What :func:`split_call_sites` left in a program's graphs: functional activations and
    modules called more than once."""
    notes: list[str] = []
    for owner_name, owner in net.named_modules():
        graph = getattr(owner, "graph", None)
        if not isinstance(graph, torch.fx.Graph) or _is_torch_leaf(owner):
            continue
        prefix = f"{owner_name}." if owner_name else ""
        calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
        notes += [
            f"{prefix}{target}: runs {k} times per forward pass, so it is no probe point (a hook on it would see {k} different "
            "outputs); probe the layers around its calls"
            for target, k in calls.items()
            if k > 1
        ]
        functional = Counter(_op_name(n.target) for n in graph.nodes if n.op == "call_function" and _op_name(n.target) in ACTIVATION_FUNCTIONS)
        notes += _functional_notes(Counter({(owner_name, name): k for name, k in functional.items()}))
    return notes


def program_layer_notes(program, net: nn.Module) -> list[str]:
    """The same notes for a ``torch.export`` program, read from its graph: a module called at
    several sites (``pool`` and ``pool@1`` in ``nn_module_stack``), activation operators whose
    innermost module is not an activation module."""
    sites: dict[str, set[str]] = {}
    calls: Counter[tuple[str, str]] = Counter()
    for node in program.graph.nodes:
        stack = list((node.meta.get("nn_module_stack") or {}).items())
        for key, (path, _kind) in stack:
            if path:
                sites.setdefault(str(path), set()).add(str(key))
        if node.op != "call_function" or not stack:
            continue
        name = str(getattr(node.target, "__name__", node.target)).split(".")[0]
        kind = stack[-1][1][1]
        kind_name = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
        if name in ACTIVATION_FUNCTIONS and not kind_name.startswith("torch.nn.modules.activation."):
            calls[(str(stack[-1][1][0]), name)] += 1
    notes = [
        f"{path}: runs {len(keys)} times per forward pass, so it is no probe point (a hook on it would see "
        f"{len(keys)} different outputs); probe the layers around its calls"
        for path, keys in sites.items()
        if len(keys) > 1
    ]
    notes += _functional_notes(calls)
    return notes


def layer_notes(model) -> list[str]:
    """The notes of a :class:`~neuronviz.core.models.PixelModel`: those its loader recorded
    (``meta.card["layer_notes"]``: ONNX, ``.pt2``, factories), else found now."""
    recorded = (model.meta.card or {}).get("layer_notes")
    if isinstance(recorded, list):
        return [str(note) for note in recorded]
    with model.lock:
        return module_layer_notes(model.net, model.channels, model.input_size)
