"""Hooks, in one place: record the activations (and gradients) of many layers in one pass.

Every other module that needs activations or gradients (influence, sensitivity, fragility,
defences) goes through :func:`probe`, so there is exactly one hook mechanism, and it is one that
cleans up after itself:

- hooks live only inside the ``with`` block and are removed in ``finally``, also when the
  forward pass raises;
- the model's lock is held for the whole block (one shared model, many Streamlit sessions);
- the caller's tensors and the model are not modified. A layer whose output the network later
  changes in place (torchvision's ``ReLU(inplace=True)`` after a BatchNorm, ``out += identity``)
  hands a *clone* of its output to the rest of the network, so the in-place operation changes
  the clone, not the recorded activation, and the gradient with respect to the recorded tensor
  is the gradient with respect to the layer's true output (Captum's layer methods clone every
  layer the same way). Which outputs are changed in place is found once per model object (at
  its first probed forward pass) by watching the tensors' version counters in a blank forward
  pass; a clone costs a copy and a backward node, so the other layers are not cloned. Should a
  version counter still move during a probe, the forward pass is run again with that layer
  cloned;
- ``rec.backward(objective, each)`` is the fast path for work on activation × gradient: one
  backward pass to the earliest recorded layers, every layer's gradient handed to ``each`` by a
  tensor hook as it is formed, none kept (``rec.gradients`` returns them all instead);
- a module called several times in one forward (torchvision ResNet's shared ``relu``) has
  every call recorded in order (``rec.calls(name)``); ``rec.activation(name)`` refuses such a
  layer with a message naming the count, since "its output" is ambiguous;
- a layer whose output is a tuple or list has its first tensor recorded (noted in
  ``rec.tuple_outputs``);
- the attention of a vision transformer (a module with ``num_heads`` and a ``proj`` linear
  child, as every timm attention has) is recorded as its heads, not its projection: the input
  of ``proj``, ``(N, tokens, heads·head_dim)``, caught by a forward *pre*-hook on ``proj``
  (:func:`tap`). Its output after ``proj`` is the layer ``<name>.proj``. Every other layer is
  recorded at its module's output;
- ``replace={layer: tensor or function}`` substitutes a layer's output inside the same hook
  (a tensor, or ``fn(output) -> tensor``): the rest of the network, and the recording, see the
  substitute. Nodal dropout uses it to feed many channel-masked copies of a precomputed
  first-layer output through the layers after it in one forward pass.

Usage::

    with probe(model, ["features.0", "classifier.0"]) as rec:
        logits = rec.forward(x)                        # hooks record the activations
        grads = rec.gradients(logits[:, 3].sum())      # ∂/∂activation, one backward pass
    rec.activation("features.0"), grads["features.0"]
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from neuronviz.core.models.pixel import PixelModel
from neuronviz.infra import cache
from neuronviz.infra.errors import InputError


def attention_heads(module: nn.Module) -> int | None:
    """The number of heads of a transformer attention whose per-head outputs are the input of its
    ``proj`` linear layer (timm's ``Attention`` and its relatives), or None for any other module."""
    heads = getattr(module, "num_heads", None)
    proj = getattr(module, "proj", None)
    if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 and isinstance(proj, nn.Linear):
        if proj.in_features % heads == 0:
            return heads
    return None


@dataclass(frozen=True)
class Tap:
    """Where layer ``name`` is recorded: the output of ``module``, or (``on_input``) its first input."""

    name: str
    module: nn.Module
    on_input: bool = False


def tap(model: PixelModel, name: str) -> Tap:
    """Where :func:`probe` records layer ``name``: the heads of an attention (the input of its
    ``proj``, see :func:`attention_heads`), else the module's output. Unknown names raise."""
    return _taps(model, [name])[0]


def _taps(model: PixelModel, names: Sequence[str]) -> list[Tap]:
    result = []
    for name, module in zip(names, model.layers(names)):
        if attention_heads(module) is not None:
            result.append(Tap(name, module.proj, on_input=True))  # type: ignore[arg-type]
        else:
            result.append(Tap(name, module))
    return result


@dataclass
class Recording:
    """What a :func:`probe` block recorded: layer outputs in call order, per layer.

    ``order`` lists the recorded layers in the order of their first call in the last forward
    pass (the network's forward order).
    """

    model: PixelModel
    layers: tuple[str, ...]
    outputs: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    tuple_outputs: set[str] = field(default_factory=set)
    logits: torch.Tensor | None = None
    order: list[str] = field(default_factory=list)
    _versions: dict[str, list[tuple[torch.Tensor, int]]] = field(default_factory=dict)
    _modules: list[Tap] = field(default_factory=list)
    _checked: bool = False
    _replace: dict[str, Replacement] = field(default_factory=dict)
    _handles: list[_Handle | _Forward] = field(default_factory=list)
    _remembered: bool = False  # the taps came from the model's memo (see :func:`memo`)

    def _attach(self) -> None:
        """Register one hook per tap (the set of layers to clone is the model's own, so later marks are seen)."""
        cloned = _MODIFIED_IN_PLACE.setdefault(self.model, set())
        for where in self._modules:
            self._handles.append(_register(where, _make_hook(self, self._replace, cloned, where.name, where.on_input)))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def forward(self, x: torch.Tensor, require_called: bool = True) -> torch.Tensor:
        """Run the model on ``x`` (pixels); the hooks record each layer. Call under ``torch.no_grad()``
        to record activations only. ``require_called=False`` lets layers the forward pass never
        calls go unrecorded (``calls(name)`` is then empty) instead of raising."""
        if not self._checked:  # once per model: which outputs does the network change in place?
            _find_modified_in_place(self.model, self._modules)  # (before any recording)
            self._checked = True
        for _attempt in range(2):
            self.order.clear()
            for name in self.layers:
                self.outputs[name] = []
                self._versions[name] = []
            self.logits = self.model(x)  # gradients follow the caller's grad mode
            changed = list(dict.fromkeys(name for name, seen in self._versions.items() for t, v in seen if t._version != v))
            if not changed:
                break
            _mark_modified_in_place(self.model, changed)  # the next attempt clones them
        else:
            raise InputError(f"the outputs of {changed} keep changing in place; they cannot be recorded")
        missing = [name for name in self.layers if not self.outputs[name]]
        if missing and self._remembered:  # the remembered modules may be stale (a layer was replaced): look again
            forget(self.model)
            self._detach()
            self._modules, self._remembered, self._checked = _taps(self.model, list(self.layers)), False, False
            self._attach()
            return self.forward(x, require_called)
        if missing and require_called:
            raise InputError(f"these layers were not called in the forward pass: {missing}")
        return self.logits

    def calls(self, name: str) -> list[torch.Tensor]:
        """Every output of layer ``name`` in the last forward pass, in call order."""
        if name not in self.outputs:
            raise InputError(f"layer {name!r} is not probed here; probed: {list(self.layers)}")
        return self.outputs[name]

    def activation(self, name: str) -> torch.Tensor:
        """The output of layer ``name``; refused for a module called more than once per forward."""
        calls = self.calls(name)
        if len(calls) != 1:
            raise InputError(
                f"layer {name!r} is called {len(calls)} times in one forward pass (a module reused inside "
                "the network, like torchvision ResNet's shared relu); its output is ambiguous. Probe a "
                "layer called once (e.g. the BatchNorm or convolution before it), or read rec.calls(name)."
            )
        return calls[0]

    def gradients(self, objective: torch.Tensor, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """∂ objective / ∂ activation for each named layer, in ONE backward pass (layers that output
        one tensor, a block and its last ReLU, get one gradient tensor: treat the results as read-only).

        Only the part of the graph between the objective and the earliest requested layer is
        evaluated; no parameter gradients are formed (the model's parameters are frozen). A layer
        the objective does not depend on gets zeros. Every gradient is held until the call returns;
        :meth:`backward` hands them on one at a time instead (less memory for large inputs).
        """
        _check_scalar(objective)
        names = list(names or self.layers)
        tensors = [self.activation(name) for name in names]
        unique = list({id(t): t for t in tensors}.values())  # a block and its last ReLU output one tensor: asked for once
        grads = dict(zip(map(id, unique), torch.autograd.grad(objective, unique, allow_unused=True)))
        return {
            name: torch.zeros_like(tensor) if grads[id(tensor)] is None else grads[id(tensor)]  # None: no dependence
            for name, tensor in zip(names, tensors)
        }

    def backward(
        self,
        objective: torch.Tensor,
        each: Callable[[str, torch.Tensor, torch.Tensor], None],
        names: Sequence[str] | None = None,
        retain_graph: bool = True,
    ) -> list[str]:
        """ONE backward pass that hands every named layer's gradient to ``each(name, activation,
        gradient)`` as soon as it is formed (while it is still in cache), and keeps none of them.

        The gradients are caught by tensor hooks (one per tensor: layers that output one tensor,
        a block and its last ReLU, are handed the same gradient one after the other).
        ``torch.autograd.grad`` is asked only for the gradients of the recorded outputs that are
        leaves (the earliest probed layers: the probe made their outputs leaves), so the engine
        stores no full-size gradient of the other layers; their hooks fire on the way. A named
        layer whose hook did not fire (the objective does not depend on it, or it does not
        descend from a recorded leaf, e.g. when the parameters or the input require grad) is
        asked for explicitly afterwards (the graph is retained for that), so every layer gets
        its exact gradient; zeros when the objective does not depend on it. ``activation`` is
        detached.

        ``retain_graph=False`` frees the graph as the pass goes (faster: the memory of the saved
        tensors is reused for the gradients); the layers whose hook did not fire are then
        returned instead of handed to ``each`` (the caller runs the forward pass again for
        them). Returns the names not handed to ``each`` (always empty with ``retain_graph=True``).
        """
        _check_scalar(objective)
        names = list(names or self.layers)
        tensors = [self.activation(name) for name in names]
        sharing: dict[int, list[str]] = {}  # id(tensor) -> the names that output it
        for name, tensor in zip(names, tensors):
            sharing.setdefault(id(tensor), []).append(name)
        fired: set[str] = set()

        def make_hook(group: list[str], activation: torch.Tensor):
            def hook(grad: torch.Tensor) -> None:
                fired.update(group)
                for name in group:
                    each(name, activation, grad)  # returns None: the gradient itself is left unchanged

            return hook

        unique = {id(tensor): tensor for tensor in tensors}
        handles = [tensor.register_hook(make_hook(sharing[key], tensor.detach())) for key, tensor in unique.items()]
        try:  # the leaves among everything recorded (a named layer may descend from one not named)
            leaves = [t for calls in self.outputs.values() for t in calls if t.grad_fn is None and t.requires_grad]
            if leaves:
                torch.autograd.grad(objective, leaves, allow_unused=True, retain_graph=retain_graph)
        finally:
            for handle in handles:
                handle.remove()
        missed = [(name, tensor) for name, tensor in zip(names, tensors) if name not in fired]
        if missed and leaves and not retain_graph:
            return [name for name, _ in missed]
        if missed:
            grads = torch.autograd.grad(objective, [tensor for _, tensor in missed], allow_unused=True)
            for (name, tensor), grad in zip(missed, grads):
                each(name, tensor.detach(), torch.zeros_like(tensor) if grad is None else grad)
        return []


def _check_scalar(objective: torch.Tensor) -> None:
    if not isinstance(objective, torch.Tensor) or objective.numel() != 1:
        raise InputError("the objective must be a scalar (e.g. logits[:, c].sum())")


#: Per model object: the layers whose outputs the network changes in place (they are cloned), and
#: the layers already checked. Keyed by the model object, not its content hash: whether a layer's
#: output is changed in place depends on the modules, not the weights, and the hash walks the
#: whole state dict (too slow for every probe of a small model). Should a module be switched to
#: in-place later, the version check of :meth:`Recording.forward` catches it and marks the layer.
_MODIFIED_IN_PLACE: weakref.WeakKeyDictionary[PixelModel, set[str]] = weakref.WeakKeyDictionary()
_CHECKED: weakref.WeakKeyDictionary[PixelModel, set[str]] = weakref.WeakKeyDictionary()


def _mark_modified_in_place(model: PixelModel, names: Sequence[str]) -> None:
    _MODIFIED_IN_PLACE.setdefault(model, set()).update(names)


def _find_modified_in_place(model: PixelModel, taps: list[Tap]) -> set[str]:
    """Which of these layers' outputs does a forward pass change in place? (Cached per model.)

    Returns the model's own set (later marks land in it)."""
    checked = _CHECKED.setdefault(model, set())
    todo = [t for t in taps if t.name not in checked]
    if todo:
        seen: dict[str, list[tuple[torch.Tensor, int]]] = {t.name: [] for t in todo}

        def note(name: str, value: object) -> None:
            tensor, _ = _first_tensor(value)
            if tensor is not None:
                seen[name].append((tensor, tensor._version))

        handles = [_register(t, lambda value, name=t.name: note(name, value)) for t in todo]  # type: ignore[misc]
        try:
            with torch.no_grad():
                model(torch.zeros(1, model.channels, *model.input_size, device=model.device))
        finally:
            for handle in handles:
                handle.remove()
        changed = {name for name, pairs in seen.items() if any(t._version != v for t, v in pairs)}
        _MODIFIED_IN_PLACE.setdefault(model, set()).update(changed)
        checked.update(t.name for t in todo)
    return _MODIFIED_IN_PLACE.setdefault(model, set())


class _Handle:
    """Removes one hook :func:`_register` put in a module's hook dict (a ``RemovableHandle`` without
    its weak references: registering and removing 51 hooks this way takes 20 µs instead of 117)."""

    __slots__ = ("hooks", "key")

    def __init__(self, hooks: dict, key: int) -> None:
        self.hooks, self.key = hooks, key

    def remove(self) -> None:
        self.hooks.pop(self.key, None)


class _Forward:
    """A module's ``forward`` for the duration of a probe, put in the module's own ``__dict__`` (which
    attribute look-up reads before the class's ``forward``): calls ``capture`` on the positional
    inputs (a tap on the input) or on the output, then hands on what ``capture`` returns (None:
    unchanged), as a forward (pre-)hook would.

    Why not a hook: any hook switches the module's call onto PyTorch's slow path (the hooks' own
    bookkeeping for keyword, always-called and backward hooks), about 5–10 µs per layer per pass
    (digits-resnet's 51 layers at batch 1: the whole influence call 7.3 → 6.8 ms, 1.48–1.50 →
    1.36–1.38 × its floor, the same numbers bit for bit). Used only where it sees what a hook registered last
    would see (:func:`_register`). Also the handle: :meth:`remove` puts back what was there."""

    __slots__ = ("module", "prev", "inner", "capture", "on_input", "active")

    def __init__(self, module: nn.Module, capture: Callable[[object], object], on_input: bool) -> None:
        self.module, self.capture, self.on_input, self.active = module, capture, on_input, True
        self.prev = module.__dict__.get("forward")  # another wrapper (a probe inside a probe), or None
        self.inner = module.forward  # what is called: the wrapper below, or the class's forward, bound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.active:  # removed while a later wrapper of the same module still holds it
            return self.inner(*args, **kwargs)
        if self.on_input:
            replaced = self.capture(args)
            if replaced is not None:
                args = replaced if isinstance(replaced, tuple) else (replaced,)
            return self.inner(*args, **kwargs)
        output = self.inner(*args, **kwargs)
        replaced = self.capture(output)
        return output if replaced is None else replaced

    def remove(self) -> None:
        """Take this wrapper out; with others of the same module in any order, the module ends with
        what it had before the first (removed ones still in the chain only pass the call on)."""
        self.active = False
        found = self.module.__dict__
        top = found.get("forward")
        while isinstance(top, _Forward) and not top.active:
            top = top.prev
        if top is None:
            found.pop("forward", None)
        else:
            found["forward"] = top

    def __deepcopy__(self, memo: dict) -> Any:
        """A copy of the module made during the probe gets its own forward, not this wrapper (which
        would run the original module's forward with the original's weights). Copied without its
        module (not as part of the module's copy), it is itself, as a function would be."""
        twin = memo.get(id(self.module))
        if twin is None:
            return self
        if self.prev is not None:
            return copy.deepcopy(self.prev, memo)
        return type(twin).forward.__get__(twin)


def _wrappable(module: nn.Module, on_input: bool) -> bool:
    """Whether a :class:`_Forward` sees what a hook registered last would: the module's own forward
    hooks and PyTorch's global ones run after ``forward`` returns, so a wrapper would see the output
    before them (a hook sees it after); pre-hooks run before ``forward`` (the wrapper sees their
    result, as the last pre-hook does). A scripted module's ``forward`` cannot be replaced."""
    if isinstance(module, torch.jit.ScriptModule):
        return False
    if on_input:
        return True
    return not (module._forward_hooks or torch.nn.modules.module._global_forward_hooks)


def _register(where: Tap, capture: Callable[[object], object]) -> _Handle | _Forward:
    """The one place hooks are registered: ``capture(value)`` sees the module's output (or, for a
    tap on the input, its positional inputs) and returns a replacement or None (unchanged).

    Where it sees the same (:func:`_wrappable`), the module's ``forward`` is wrapped for the block
    (:class:`_Forward`: no slow call path). Otherwise the hook goes straight into the module's own
    hook dict (what ``register_forward_hook`` and ``register_forward_pre_hook`` do, less their
    bookkeeping for keyword and always-called hooks, which these are not), under a key from
    PyTorch's own counter, so it never collides with a hook registered the usual way."""
    module = where.module
    if _wrappable(module, where.on_input):
        wrapper = _Forward(module, capture, where.on_input)
        module.__dict__["forward"] = wrapper
        return wrapper
    key = torch.utils.hooks.RemovableHandle.next_id
    torch.utils.hooks.RemovableHandle.next_id += 1
    hooks: dict
    if where.on_input:
        hooks = module._forward_pre_hooks
        hooks[key] = lambda module, args: capture(args)
    else:
        hooks = module._forward_hooks
        hooks[key] = lambda module, inputs, output: capture(output)
    return _Handle(hooks, key)


def hook_count(model: nn.Module) -> int:
    """Every hook in the hook dicts of ``model``'s modules (forward, forward pre, backward, backward
    pre) and every ``forward`` replaced on an instance (a probe's :class:`_Forward`): what a block
    that leaves nothing behind must leave unchanged (the tests check it)."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {})) + ("forward" in m.__dict__)
        for m in model.modules()
    )


def _first_tensor(output: object) -> tuple[torch.Tensor | None, int | None]:
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)):
        for index, item in enumerate(output):
            if isinstance(item, torch.Tensor):
                return item, index
    return None, None


#: Per model object: facts that depend on its module tree only (not on its weights), e.g. the
#: modules a list of layer names resolves to. Looking them up again costs a walk over every module
#: (and, for a layer description, over the state dict) on every call: 2–10% of a small model's
#: forward and backward pass. A forward pass in which a remembered layer is not called (it was
#: replaced) forgets the model's memo and looks again.
_MEMO: weakref.WeakKeyDictionary[PixelModel, dict[object, Any]] = weakref.WeakKeyDictionary()


def memo(model: PixelModel) -> dict[object, Any]:
    """The model object's memo: a dict for facts that depend on its module tree, not its weights
    (cleared by :func:`forget`, and by a probe whose remembered layers were not called)."""
    return _MEMO.setdefault(model, {})


def forget(model: PixelModel) -> None:
    """Drop everything remembered about the model's module tree (after replacing one of its modules)."""
    _MEMO.pop(model, None)


def _resolve_modules(model: PixelModel, layers: Sequence[str]) -> tuple[list[Tap], bool]:
    """The taps of ``layers`` and whether they came from the model's memo."""
    layers = [layers] if isinstance(layers, str) else list(layers)
    key = ("taps", tuple(layers))
    remembered = memo(model).get(key)
    if remembered is not None:
        return list(remembered), True
    if not layers:
        raise InputError("no layers to probe")
    if len(set(layers)) != len(layers):
        raise InputError(f"a layer is named twice: {list(layers)}")
    taps = _taps(model, layers)
    memo(model)[key] = tuple(taps)
    return taps, False


Replacement = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def module_hooks(
    modules: Sequence[tuple[str, nn.Module]],
    pre: Callable[[str, nn.Module], None] | None = None,
    post: Callable[[str, nn.Module], None] | None = None,
) -> Iterator[None]:
    """Call ``pre(name, module)`` before and ``post(name, module)`` after each of ``modules`` runs,
    for the duration of the block; every hook is removed in ``finally``, also after an error.

    For the model checks that watch a whole network run (a budget check before every module,
    counting how often each module is called); what a layer computes is :func:`probe`'s job."""
    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        for name, module in modules:
            if pre is not None:
                handles.append(module.register_forward_pre_hook(lambda mod, _inputs, _name=name: pre(_name, mod)))
            if post is not None:
                handles.append(module.register_forward_hook(lambda mod, _inputs, _output, _name=name: post(_name, mod)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def probe(
    model: PixelModel, layers: Sequence[str], replace: Mapping[str, Replacement] | None = None
) -> Iterator[Recording]:
    """Record the outputs of ``layers`` (qualified names of ``model.net``) inside the block.

    Holds ``model.lock`` for the whole block; removes every hook in ``finally``. Outputs that
    do not already require grad are made to (as leaves), so their gradients can be taken
    without differentiating anything upstream of them.

    ``replace`` maps some of ``layers`` to a substitute output: a tensor (used as is; its batch
    size may differ from the input's, so a small dummy input can stand in for the layers before
    it) or a function of the layer's true output. The substitute is what is recorded and what
    the rest of the network receives. The model itself is not changed.
    """
    if not isinstance(model, PixelModel):
        raise InputError(f"probe needs a PixelModel, got {type(model).__name__}")
    modules, remembered = _resolve_modules(model, layers)
    names = tuple(t.name for t in modules)
    recording = Recording(model=model, layers=names, _modules=modules, _remembered=remembered)
    recording._replace = _checked_replace(replace, names) if replace else {}
    with model.lock:
        try:  # the layers to clone: the model's own set in _MODIFIED_IN_PLACE, filled by the first probed forward pass
            recording._attach()
            yield recording
        finally:
            recording._detach()


_INPLACE_FREE = cache.new_cache("probe.without_inplace", max_entries=1)


def _checked_replace(replace: Mapping[str, Replacement] | None, layers: tuple[str, ...]) -> dict[str, Replacement]:
    """``replace`` as a dict, refused if it names a layer not probed or holds neither a tensor nor a function."""
    replace = dict(replace or {})
    unknown = [name for name in replace if name not in layers]
    if unknown:
        raise InputError(f"replace names layers that are not probed: {unknown}; probed: {list(layers)}")
    for name, substitute in replace.items():
        if not (isinstance(substitute, torch.Tensor) or callable(substitute)):
            raise InputError(f"replace[{name!r}] must be a tensor or a function of the output, got {type(substitute).__name__}")
    return replace


def _make_hook(
    recording: Recording, replace: Mapping[str, Replacement], cloned: set[str], name: str, on_input: bool
) -> Callable[[object], object]:
    """The hook of layer ``name`` for :func:`probe`: records its output (a leaf when nothing upstream
    needs grad), applies ``replace``, and passes on a clone where the layer is in ``cloned``."""
    substitute = replace.get(name)
    outputs = recording.outputs
    versions = recording._versions
    order = recording.order

    def hook(output: object) -> object:  # the module's output, or its inputs (a tuple) for a tap on the input
        found, index = (output, None) if type(output) is torch.Tensor else _first_tensor(output)  # common case first
        if found is None:
            return None
        tensor: torch.Tensor = found
        if name not in outputs:
            return None
        if substitute is not None:
            tensor = substitute if isinstance(substitute, torch.Tensor) else substitute(tensor)
            if not isinstance(tensor, torch.Tensor):
                raise InputError(f"replace[{name!r}] returned {type(tensor).__name__}, not a tensor")
            if index is None:
                output = tensor
            else:  # put the substitute where the recorded tensor was
                items = list(cast("Sequence[object]", output))
                items[index] = tensor
                output = type(output)(items) if isinstance(output, tuple) else items
        fresh = not tensor.requires_grad and torch.is_grad_enabled() and tensor.is_floating_point()
        if fresh:  # a leaf from here on: gradients stop at this layer, nothing upstream is differentiated
            tensor = tensor.detach().requires_grad_(True)
        if not outputs[name]:
            order.append(name)
        outputs[name].append(tensor)
        versions[name].append((tensor, tensor._version))
        if index is not None and not on_input:
            recording.tuple_outputs.add(name)
        clone = name in cloned
        if not fresh and not clone:
            return output if substitute is not None else None  # None: the output goes on unchanged
        passed_on = tensor.clone() if clone else tensor
        if index is None:
            return passed_on
        replaced = list(cast("Sequence[object]", output))
        replaced[index] = passed_on
        return type(output)(replaced) if isinstance(output, tuple) else replaced

    return hook


def without_inplace(model: PixelModel) -> PixelModel:
    """The model itself, or (when it has in-place modules) a cached twin with them turned off.

    Captum's path methods (conductance, internal influence, Grad-CAM) can break on in-place
    ReLUs. The shared model is never changed: a twin is made once per model (one kept at a time,
    zoo models are large) and has its own lock.
    """
    if not any(getattr(m, "inplace", False) for m in model.modules()):
        return model
    key = (model.content_hash, str(model.device))
    twin = _INPLACE_FREE.get(key)
    if twin is None:
        twin = model.copy()
        for module in twin.modules():
            if getattr(module, "inplace", False):
                cast(Any, module).inplace = False
        _INPLACE_FREE.clear()
        _INPLACE_FREE[key] = twin
    return twin
