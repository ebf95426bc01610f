"""The defence template, its result, and the registry every caller reads.

A defence takes adversarial (or clean) pixels and returns restored pixels. A defence is one
registry entry (an instance of a :class:`Defence` subclass) that carries all its facts: ``name``,
``label``, ``short_label`` (tables, figures, headings), ``summary`` (what it needs and is, in a few
words), ``paper``, ``params`` (its :class:`~neuronviz.infra.schema.Param` schema), ``needs_target`` /
``needs_reference`` (the benign class / the benign image), ``oracle`` (True when it uses either:
an analysis tool, not a deployable defence) and ``trace_keys`` / ``extras_keys`` (what its
:class:`Restoration` holds besides the pixels).

Callers never branch on a defence's needs: they give what they have to
:meth:`Defence.restore_for` (``benign=`` the clean prediction, ``clean=`` the clean images) and
the entry takes what it needs. Subclasses write one method, :meth:`Defence.restore_pixels`;
:meth:`Defence.restore` validates the input and parameters, holds the model's lock, restores the
model's mode in ``finally``, and measures time and the prediction on the restored images.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from neuronviz.core.models.pixel import PixelModel, require_pixel_model
from neuronviz.infra import budget
from neuronviz.infra.errors import InputError
from neuronviz.infra.limits import check_batch
from neuronviz.infra.schema import Param, resolve


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
    #: which form of the method ran ("" = the method its label names; "inpainting fallback"), and
    #: where its learned parts or borrowed data came from (``{"regenerator": "none"}``): see :class:`Variant`
    variant: str = ""
    label: str = ""
    method: dict = field(default_factory=dict)

    @property
    def method_label(self) -> str:
        """The label every table, figure panel and export shows: "PSSR (inpainting fallback)"."""
        return self.label or self.defense

    def to_dict(self) -> dict:
        """Everything but the pixels and masks, as plain Python values (for JSON export)."""
        return {
            "defense": self.defense,
            "method_label": self.method_label,
            "variant": self.variant,
            "method": dict(self.method),
            "params": dict(self.params),
            "prediction": self.prediction.tolist(),
            "confidence": self.probs.max(1).values.tolist(),
            "trace": {k: v.tolist() for k, v in self.trace.items()},
            "notes": list(self.notes),
            "seconds": self.seconds,
        }


@dataclass
class Restored:
    """What a subclass's :meth:`Defence.restore_pixels` returns: the restored pixels ``(N, C, H, W)``
    and, optionally, per-step ``trace`` tensors ``(T, N)``, per-image ``extras`` and ``notes``."""

    restored: torch.Tensor
    trace: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    variant: Variant | None = None  # None: :meth:`Defence.variant_for` (the method as labelled)


@dataclass(frozen=True)
class Variant:
    """Which form of a defence runs on a model: ``name`` "" for the method its label names, else
    the words every output appends to the label ("inpainting fallback"); ``provenance``: where its
    learned parts or borrowed data come from (``{"regenerator": "none"}``), for provenance records."""

    name: str = ""
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def label(self, short: str) -> str:
        """``short`` with the variant: "PSSR (inpainting fallback)", "NIP (reactive; profiles from your data)"."""
        if not self.name:
            return short
        return f"{short[:-1]}; {self.name})" if short.endswith(")") else f"{short} ({self.name})"


#: The benign class(es) a caller gives: one index for every image, or ``(N,)`` indices.
Benign = int | torch.Tensor


class Defence:
    """Base class: set the facts below and write :meth:`restore_pixels`; register an instance with
    :func:`register_defence` (see docs/architecture.md, "A new defence")."""

    name: str = ""  # the registry key, lower case with dashes ("nip-guided")
    label: str = ""  # the full name ("NIP (guided)", "PSSR (pixel surgery + semantic regeneration)")
    short_label: str = ""  # tables, figures, headings ("" = the label)
    summary: str = ""  # what it needs and is, a few words under the heading ("needs the benign class — analysis tool")
    params: tuple[Param, ...] = ()
    description: str = ""
    paper: str = ""
    reconstruction: str = ""  # what is reconstructed rather than certain ("" when nothing is)
    needs_target: bool = False  # needs a class to restore toward (the benign prediction)
    needs_reference: bool = False  # needs the benign image itself
    trace_keys: tuple[str, ...] = ()  # the keys of Restoration.trace it fills
    extras_keys: tuple[str, ...] = ()  # the keys of Restoration.extras it fills
    #: What an attacker who knows the defence needs (Athalye et al. 2018; see
    #: :mod:`neuronviz.methods.defences.adaptive`): ``"bpda"`` — the defence is not differentiable, or its
    #: gradient is not the one it computes with (a codec, quantisation, a median, pixel surgery, an
    #: inner optimisation): forward through it, backward as the identity; ``"differentiable"`` —
    #: gradients flow through it as it is.
    gradient: str = "bpda"
    #: True when the defence draws random numbers: the adaptive attack averages the defended
    #: model's logits over ``eot_samples`` draws per step (Expectation over Transformation).
    randomised: bool = False
    eot_samples: int = 8
    #: The adaptive attack in a few words when the entry supplies its own (:meth:`adaptive_model`).
    adaptive_method: str = ""

    @property
    def oracle(self) -> bool:
        """True when it uses what a deployed defence does not have (the benign class or image)."""
        return self.needs_target or self.needs_reference

    @property
    def deployable(self) -> bool:
        return not self.oracle

    def unavailable(self, model: PixelModel) -> str | None:
        """Why this defence cannot run on ``model`` at all, in the dashboard's words (None: it can).

        Pages show the reason in place of the defence's result instead of an error; a direct
        call on such a model still raises :class:`InputError` with the same words."""
        return None

    @property
    def short(self) -> str:
        """The short label, or the label when the entry has none."""
        return self.short_label or self.label or self.name

    def variant_for(self, model: PixelModel, params: Mapping[str, Any] | None = None) -> Variant:
        """Which form of this defence would run on ``model`` with ``params`` (a fallback, borrowed
        data), without running it; the restoration carries the one that ran."""
        return Variant()

    def label_for(self, model: PixelModel, params: Mapping[str, Any] | None = None) -> str:
        """The short label with the variant that runs on ``model``: "PSSR (inpainting fallback)"."""
        return self.variant_for(model, params).label(self.short)

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
        """Restore ``x (N, C, H, W)`` (at most :data:`neuronviz.infra.limits.MAX_BATCH` images) under the
        model's lock and the caller's time budget, if any (:func:`neuronviz.infra.budget.default`)."""
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
                result = self.restore_pixels(model, x.detach(), resolved, target_tensor, reference)
                variant = result.variant if result.variant is not None else self.variant_for(model, resolved)
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
            variant=variant.name,
            label=variant.label(self.short),
            method=dict(variant.provenance),
        )

    def restore_for(
        self,
        model: PixelModel,
        x_adv: torch.Tensor,
        *,
        benign: Benign | None = None,
        clean: torch.Tensor | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Restoration:
        """Restore ``x_adv`` given what the caller knows; the one call every caller uses.

        ``benign``: the benign (clean) prediction, one class or ``(N,)``; ``clean``: the clean
        images ``(N, C, H, W)``. The defence takes what it needs (``needs_target``: ``benign`` as
        the class to restore toward; ``needs_reference``: ``clean``) and ignores the rest, so a
        caller never asks which defence it holds. Raises :class:`InputError` when the defence
        needs something the caller did not give.
        """
        return self.restore(
            model,
            x_adv,
            params,
            target=benign if self.needs_target else None,
            reference=clean if self.needs_reference else None,
        )

    def adaptive_model(self, model: PixelModel, params: dict[str, Any]) -> PixelModel | None:
        """``defence → model`` as the entry's own differentiable model for an attacker who knows it
        (e.g. BPDA on one step only), or None: :func:`neuronviz.methods.defences.adaptive.defended_model`
        then builds it from :attr:`gradient` and :attr:`randomised`."""
        return None

    def restore_pixels(
        self,
        model: PixelModel,
        x: torch.Tensor,
        params: dict[str, Any],
        target: torch.Tensor | None,
        reference: torch.Tensor | None,
    ) -> Restored:  # pragma: no cover - abstract
        """The defence itself: ``x (N, C, H, W)`` on the model's device, ``params`` resolved,
        ``target (N,)`` when ``needs_target``, ``reference`` (the benign images) when
        ``needs_reference``. Called under the model's lock and the time budget."""
        raise NotImplementedError


class Identity(Defence):
    """No defence: the image is returned unchanged (the null object of the registry)."""

    name = "none"
    label = "None"
    short_label = "no defence"
    summary = "the image as it arrives"
    gradient = "differentiable"
    description = "No defence: the image as it arrives."
    paper = "—"

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        return Restored(restored=x.clone())


DEFENCES: dict[str, Defence] = {}


def register_defence(defense: Defence) -> Defence:
    """Add a defence to the registry (at import time of its module); returns it.

    Raises :class:`InputError` for a name already registered, an entry without a name or label,
    or one whose class does not write :meth:`Defence.restore_pixels`."""
    if not isinstance(defense, Defence):
        raise InputError(f"register_defence takes a Defence instance, got {type(defense).__name__}")
    if not defense.name or not defense.label:
        raise InputError(f"{type(defense).__name__}: a defence needs a name and a label")
    if type(defense).restore_pixels is Defence.restore_pixels:
        raise InputError(f"{type(defense).__name__}: a defence writes restore_pixels(model, x, params, target, reference)")
    if defense.name in DEFENCES:
        raise InputError(f"defence {defense.name!r} is already registered")
    DEFENCES[defense.name] = defense
    return defense


def list_defences(include_none: bool = True) -> list[Defence]:
    """Every registered defence in registration order: identity first (unless ``include_none`` is
    False), then the project's (NIP guided, oracle, reactive, PSSR), then plugins'."""
    return [d for d in DEFENCES.values() if include_none or d.name != Identity.name]


def get_defence(name: str) -> Defence:
    if name not in DEFENCES:
        raise InputError(f"unknown defence {name!r}; registered: {list(DEFENCES)}")
    return DEFENCES[name]


def restore_for(
    name: str,
    model: PixelModel,
    x_adv: torch.Tensor,
    *,
    benign: Benign | None = None,
    clean: torch.Tensor | None = None,
    params: Mapping[str, Any] | None = None,
) -> Restoration:
    """:meth:`Defence.restore_for` of the defence ``name``: a module-level function, so a cache can
    key on it (the dashboard's ``memo``) with the name among the arguments."""
    return get_defence(name).restore_for(model, x_adv, benign=benign, clean=clean, params=params)


def restore(
    model: PixelModel,
    x: torch.Tensor,
    name: str,
    params: Mapping[str, Any] | None = None,
    target: int | torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> Restoration:
    """Restore ``x`` with a registered defence (see :func:`list_defences` for names and schemas)."""
    return get_defence(name).restore(model, x, params, target=target, reference=reference)


register_defence(Identity())
