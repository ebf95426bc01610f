"""The defence template, its result, and the registry the UI and CLI read.

A defence takes adversarial (or clean) pixels and returns restored pixels. Subclasses write one
method, :meth:`Defense._restore`; :meth:`Defense.restore` validates the input and parameters,
holds the model's lock, restores the model's mode in ``finally``, and measures time and the
prediction on the restored images.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from neuronviz import budget
from neuronviz.errors import InputError
from neuronviz.limits import check_batch
from neuronviz.models.pixel import PixelModel, require_pixel_model
from neuronviz.schema import Param, resolve


@dataclass(frozen=True)
class Restoration:
    """What a defence did, as detached CPU tensors.

    ``restored (N, C, H, W)`` in [0, 1]; ``prediction (N,)`` and ``probs (N, K)`` on the restored
    images; ``trace``: per-step tensors ``(T, N)`` (e.g. ``objective``, ``predicted``);
    ``extras``: per-image tensors a figure may show (masks, the surgery image); ``notes``: plain
    sentences about how the result was made (a fallback used, a mode's caveat).
    """

    defense: str
    params: dict
    restored: torch.Tensor
    prediction: torch.Tensor
    probs: torch.Tensor
    trace: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor]
    notes: tuple[str, ...]
    seconds: float

    def to_dict(self) -> dict:
        """Everything but the pixels and masks, as plain Python values (for JSON export)."""
        return {
            "defense": self.defense,
            "params": dict(self.params),
            "prediction": self.prediction.tolist(),
            "confidence": self.probs.max(1).values.tolist(),
            "trace": {k: v.tolist() for k, v in self.trace.items()},
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


@dataclass
class _Result:
    """What a subclass's ``_restore`` returns."""

    restored: torch.Tensor
    trace: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


class Defense:
    """Base class: set ``name``, ``label``, ``params``, ``description``, ``paper``; write ``_restore``."""

    name: str = ""
    label: str = ""
    params: tuple[Param, ...] = ()
    description: str = ""
    paper: str = ""
    reconstruction: str = ""  # what is reconstructed rather than certain ("" when nothing is)
    needs_target: bool = False  # needs a class to restore toward (the benign prediction)
    needs_reference: bool = False  # needs the benign image itself

    def defaults(self, model: PixelModel | None = None) -> dict[str, Any]:
        return {p.name: p.default_for(model) for p in self.params}

    def resolve(self, params: Mapping[str, Any] | None, model: PixelModel | None = None) -> dict[str, Any]:
        return resolve(self.params, params, model, self.name)

    def restore(
        self,
        model: PixelModel,
        x: torch.Tensor,
        params: Mapping[str, Any] | None = None,
        target: int | torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
    ) -> Restoration:
        """Restore ``x (N, C, H, W)`` (at most :data:`neuronviz.limits.MAX_BATCH` images) under the
        model's lock and the default time budget (:func:`neuronviz.budget.default`)."""
        model = require_pixel_model(model, f"restore ({self.name})")
        check_batch(x, f"restore ({self.name})")
        x = model.check_pixels(x)
        resolved = self.resolve(params, model)
        if self.needs_target and target is None:
            raise InputError(f"{self.label} restores toward a named class: give target= (e.g. the benign prediction)")
        target_tensor = None if target is None else model.check_classes(target, x.shape[0]).to(model.device)
        if self.needs_reference:
            if reference is None:
                raise InputError(f"{self.label} needs the benign image: give reference= (analysis only, not deployable)")
            reference = model.check_pixels(reference, "reference")
            if reference.shape != x.shape:
                raise InputError(f"reference has shape {tuple(reference.shape)}, x has {tuple(x.shape)}")
        with budget.default(f"{self.label} on {x.shape[0]} image(s)"), model.lock:
            was_training = model.training
            started = time.perf_counter()
            try:
                result = self._restore(model, x.detach(), resolved, target_tensor, reference)
                restored = result.restored.detach().clamp(0.0, 1.0)
                with torch.no_grad():
                    probs = model(restored).softmax(1)
            finally:
                model.train(was_training)
            seconds = time.perf_counter() - started
        return Restoration(
            defense=self.name,
            params=resolved,
            restored=restored.cpu(),
            prediction=probs.argmax(1).cpu(),
            probs=probs.cpu(),
            trace={k: v.detach().cpu() for k, v in result.trace.items()},
            extras={k: v.detach().cpu() for k, v in result.extras.items()},
            notes=result.notes,
            seconds=seconds,
        )

    def _restore(self, model, x, params, target, reference) -> _Result:  # pragma: no cover - abstract
        raise NotImplementedError


class Identity(Defense):
    """No defence: the image is returned unchanged (the null object of the registry)."""

    name = "none"
    label = "None"
    description = "No defence: the image as it arrives."
    paper = "—"

    def _restore(self, model, x, params, target, reference) -> _Result:
        return _Result(restored=x.clone())


DEFENSES: dict[str, Defense] = {}


def register_defense(defense: Defense) -> Defense:
    if defense.name in DEFENSES:
        raise InputError(f"defence {defense.name!r} is already registered")
    DEFENSES[defense.name] = defense
    return defense


def list_defenses() -> list[Defense]:
    """Every registered defence, identity first."""
    return list(DEFENSES.values())


def get_defense(name: str) -> Defense:
    if name not in DEFENSES:
        raise InputError(f"unknown defence {name!r}; registered: {list(DEFENSES)}")
    return DEFENSES[name]


def restore(
    model: PixelModel,
    x: torch.Tensor,
    name: str,
    params: Mapping[str, Any] | None = None,
    target: int | torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> Restoration:
    """Restore ``x`` with a registered defence (see :func:`list_defenses` for names and schemas)."""
    return get_defense(name).restore(model, x, params, target=target, reference=reference)


register_defense(Identity())
