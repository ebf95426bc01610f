"""Contract checks for registry entries: the checks the project runs on its own entries, for plugin authors.

Call one from your plugin's tests (like ``captum.testing``): each runs the entry the way the
dashboard, the batch evaluation and the CLI do, on a model and images you give, and raises an
:class:`AssertionError` naming the broken rule. Every built-in entry passes them
(``tests/test_contracts.py``). ::

    from neuronviz.testing import check_defence
    from neuronviz.core.models import load_model

    def test_my_defence(digits_test):
        model = load_model("digits-cnn", device="cpu")
        check_defence("median-3x3", model, digits_test[0][:4])

- :func:`check_attack`: the entry's facts (label, description, paper, a schema whose defaults lie
  in their bounds); pixels in [0, 1] of the input's shape; the seed reproduces the attack; the
  caller's tensor, the model's mode, gradients and hooks are left as they were; the budget holds;
  the report's numbers agree with its pixels.
- :func:`check_defence`: the facts (label, short label, paper, summary, description; deployable
  exactly when not an oracle); ``restore_for`` equals the explicit ``restore`` call; pixels in
  [0, 1] of the input's shape; the trace has the keys the entry declares; inputs untouched.
- :func:`check_attribution`: the facts; one map of the image's size per image, finite, toward the
  target asked for; the layer rule names a layer of the model.
- :func:`check_influence_method`: the facts; one value per neuron of every layer asked for, finite,
  toward the target asked for (and toward the prediction when the target is None).
- :func:`check_model_source`: the facts (name, label); it owns the spec, and the model it creates
  keeps the PixelModel contract (logits ``(N, len(class_names))`` for pixels in [0, 1], eval mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.models.registry import ModelSource, get_source
from neuronviz.core.probe import hook_count
from neuronviz.methods.attacks import get_attack, run_attack
from neuronviz.methods.attribution import get_attribution, input_attribution
from neuronviz.methods.defences import get_defence, restore
from neuronviz.methods.influence import get_influence_method, neuron_influence, probe_layers

__all__ = ["check_attack", "check_attribution", "check_defence", "check_influence_method", "check_model_source"]


def _hooks(model: torch.nn.Module) -> int:
    return hook_count(model)


def _model_state(model: torch.nn.Module) -> tuple[bool, bool, int]:
    return (model.training or any(m.training for m in model.modules()), any(p.requires_grad for p in model.parameters()), _hooks(model))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _check_params(owner: str, params: tuple) -> None:
    for param in params:
        _check(bool(param.help), f"{owner}: parameter {param.name!r} has no help text")
        _check(param.kind in ("float", "int", "bool", "choice", "layer"), f"{owner}: parameter {param.name!r} has kind {param.kind!r}")
        if param.kind in ("float", "int") and param.default is not None:
            _check(param.low <= param.default <= param.high, f"{owner}: the default of {param.name!r} is outside [{param.low}, {param.high}]")
        if param.kind == "choice":
            _check(param.default in param.choices, f"{owner}: the default of {param.name!r} is not one of its choices")


def _check_pixels(owner: str, out: torch.Tensor, like: torch.Tensor) -> None:
    _check(out.shape == like.shape, f"{owner}: returned shape {tuple(out.shape)}, expected {tuple(like.shape)}")
    _check(out.dtype == torch.float32, f"{owner}: returned {out.dtype}, expected torch.float32")
    _check(bool(torch.isfinite(out).all()), f"{owner}: returned non-finite pixels")
    _check(float(out.min()) >= 0.0 and float(out.max()) <= 1.0, f"{owner}: returned pixels outside [0, 1]")


def check_attack(name: str, model: PixelModel, x: torch.Tensor, labels: torch.Tensor | None = None, params: Mapping[str, Any] | None = None, seed: int = 7) -> None:
    """The registered attack ``name`` keeps the attack contract on ``model`` and pixels ``x``
    (``params``: overrides, e.g. few steps to keep a test fast; ``labels``: default the prediction)."""
    info = get_attack(name)
    owner = f"attack {name!r}"
    _check(bool(info.label and info.description and info.paper), f"{owner}: label, description and paper must be set")
    _check_params(owner, tuple(info.params))
    before, state = x.clone(), _model_state(model)
    first = run_attack(model, x, name, dict(params or {}), labels=labels, seed=seed)
    second = run_attack(model, x, name, dict(params or {}), labels=labels, seed=seed)
    adv = first.adversarial
    _check_pixels(owner, adv, x)
    _check(torch.equal(adv, second.adversarial), f"{owner}: the same seed must reproduce the attack")
    _check(torch.equal(x, before), f"{owner}: the caller's tensor was modified")
    _check(_model_state(model) == state, f"{owner}: the model's mode, gradients or hooks were left changed")
    resolved = first.params
    if info.budget_param:
        norm = resolved.get("norm", info.norm)
        measured = first.linf if norm == "Linf" else first.l2
        if norm in ("Linf", "L2"):
            _check(float(measured.max()) <= float(resolved[info.budget_param]) + 1e-5, f"{owner}: the perturbation exceeds its {norm} budget")
    with torch.no_grad():
        _check(torch.equal(model(adv).argmax(1).cpu(), first.adv_pred.cpu()), f"{owner}: the report's adversarial prediction differs from the model's")
    delta = (adv - x).flatten(1)
    _check(torch.allclose(first.l2, delta.norm(dim=1), atol=1e-5), f"{owner}: the report's L2 norms differ from the pixels'")
    if labels is not None:
        _check(torch.equal(first.success, first.adv_pred.cpu() != labels.cpu()) or torch.equal(first.success, first.adv_pred != labels), f"{owner}: success must mean the prediction left the label")


def check_defence(name: str, model: PixelModel, x: torch.Tensor, attack: str = "fgsm", params: Mapping[str, Any] | None = None) -> None:
    """The registered defence ``name`` keeps the defence contract on ``model``: it restores an
    FGSM-attacked copy of ``x`` (``attack``) as ``restore_for`` and ``restore`` both do."""
    entry = get_defence(name)
    owner = f"defence {name!r}"
    _check(bool(entry.label and entry.short_label and entry.paper and entry.summary and entry.description), f"{owner}: label, short_label, paper, summary and description must be set")
    _check(entry.deployable is not entry.oracle, f"{owner}: deployable must be the opposite of oracle")
    _check_params(owner, tuple(entry.params))
    report = run_attack(model, x, attack, seed=0)
    adversarial, benign = report.adversarial, report.clean_pred
    before, state = adversarial.clone(), _model_state(model)
    given = entry.restore_for(model, adversarial, benign=benign, clean=x, params=dict(params) if params else None)
    explicit = restore(
        model, adversarial, name, dict(params) if params else None,
        target=benign if entry.needs_target else None,
        reference=x if entry.needs_reference else None,
    )
    _check_pixels(owner, given.restored, adversarial)
    _check(torch.equal(given.restored, explicit.restored), f"{owner}: restore_for and restore disagree")
    _check(torch.equal(given.prediction, explicit.prediction), f"{owner}: restore_for and restore predict differently")
    _check(set(given.trace) == set(entry.trace_keys), f"{owner}: trace has {sorted(given.trace)}, the entry declares {sorted(entry.trace_keys)}")
    _check(torch.equal(adversarial, before), f"{owner}: the caller's tensor was modified")
    _check(_model_state(model) == state, f"{owner}: the model's mode, gradients or hooks were left changed")


def check_attribution(name: str, model: PixelModel, x: torch.Tensor, n_steps: int = 4) -> None:
    """The registered attribution method ``name`` gives one finite map of the image's size per
    image of ``x``, toward the target asked for."""
    entry = get_attribution(name)
    owner = f"attribution method {name!r}"
    _check(bool(entry.label and entry.unit and entry.paper and entry.summary), f"{owner}: label, unit, paper and summary must be set")
    layer = entry.layer_for(model)
    if layer is not None:
        model.layer(layer)  # raises for a layer the model does not have
    _check(bool(entry.caption(model, n_steps=n_steps)), f"{owner}: the caption is empty")
    target = torch.zeros(x.shape[0], dtype=torch.long)
    state = _model_state(model)
    found = input_attribution(model, x, name, target=target, n_steps=n_steps)
    _check(tuple(found.values.shape) == (x.shape[0], *x.shape[-2:]), f"{owner}: values of shape {tuple(found.values.shape)}, expected {(x.shape[0], *x.shape[-2:])}")
    _check(bool(torch.isfinite(found.values).all()), f"{owner}: non-finite values")
    _check(torch.equal(found.target, target), f"{owner}: the map is not toward the target asked for")
    _check(_model_state(model) == state, f"{owner}: the model's mode, gradients or hooks were left changed")


def check_influence_method(name: str, model: PixelModel, x: torch.Tensor, n_steps: int = 4) -> None:
    """The registered influence method ``name`` gives one finite value per neuron of every probe
    layer, per image, toward the target asked for, and toward the prediction when it is None."""
    entry = get_influence_method(name)
    owner = f"influence method {name!r}"
    _check(bool(entry.label and entry.unit and entry.paper and entry.description), f"{owner}: label, unit, paper and description must be set")
    layers = [info.name for info in probe_layers(model)]
    target = torch.zeros(x.shape[0], dtype=torch.long)
    state = _model_state(model)
    maps = neuron_influence(model, x, layers=layers, target=target, method=name, n_steps=n_steps)
    _check(list(maps) == layers, f"{owner}: maps for {list(maps)}, asked for {layers}")
    for layer, found in maps.items():
        values = found.values
        _check(values.shape[0] == x.shape[0] and values.dim() == 2, f"{owner}: {layer}: influence of shape {tuple(values.shape)}, expected (N, neurons)")
        _check(bool(torch.isfinite(values).all()), f"{owner}: {layer}: non-finite influence")
        _check(torch.equal(found.target.cpu(), target), f"{owner}: {layer}: not toward the target asked for")
    predicted = neuron_influence(model, x, layers=layers[:1], target=None, method=name, n_steps=n_steps)[layers[0]]
    with torch.no_grad():
        _check(torch.equal(predicted.target.cpu(), model(x).argmax(1).cpu()), f"{owner}: target None must mean the prediction")
    _check(_model_state(model) == state, f"{owner}: the model's mode, gradients or hooks were left changed")


def check_model_source(source: str | ModelSource, spec: str, images: int = 2, **create: Any) -> PixelModel:
    """The model source (a registered name or an instance) owns ``spec``, and the model it loads
    keeps the PixelModel contract. ``create``: keyword arguments for :meth:`ModelSource.load`
    (``weights=None`` for random initialisation, ``options={...}``). Returns the model."""
    entry = get_source(source) if isinstance(source, str) else source
    owner = f"model source {entry.name!r}"
    _check(bool(entry.name and entry.label), f"{owner}: name and label must be set")
    _check(entry.owns(spec), f"{owner}: does not own {spec!r}")
    for info in entry.list_models():
        _check(info.source == entry.name, f"{owner}: lists {info.name!r} under source {info.source!r}")
    model = entry.load(spec, **create)
    _check(isinstance(model, PixelModel), f"{owner}: load({spec!r}) returned {type(model).__name__}, not a PixelModel")
    _check(not model.training, f"{owner}: the model is not in eval mode")
    height, width = model.input_size
    x = torch.rand(images, model.channels, height, width, device=model.device)
    with torch.no_grad():
        logits = model(x)
    _check(tuple(logits.shape) == (images, len(model.class_names)), f"{owner}: logits of shape {tuple(logits.shape)}, expected {(images, len(model.class_names))}")
    _check(bool(torch.isfinite(logits).all()), f"{owner}: non-finite logits")
    return model
