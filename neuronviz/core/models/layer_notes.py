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
    stack: list[tuple[str, nn.Module]] = []
    counts: Counter[str] = Counter()
    handles = []
    for name, module in net.named_modules():
        def pre(mod, _inputs, _name=name):
            stack.append((_name, mod))
            counts[_name] += 1

        def post(_mod, _inputs, _output):
            if stack:
                stack.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    recorder = _Recorder(stack)
    try:
        with torch.no_grad(), recorder:
            net(torch.zeros(1, channels, *size, device=device))
    except Exception as error:  # noqa: BLE001 - a note, not a load failure: the forward check ran before
        return [f"the layer list could not be checked for reused modules and functional activations ({type(error).__name__})"]
    finally:
        for handle in handles:
            handle.remove()
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
