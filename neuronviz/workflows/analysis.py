"""One image's whole story under one attack choice, as a library: the dashboard, the CLI and a
notebook compute the same numbers with it.

- :class:`AttackChoice`: the attack, its parameter overrides, target and seed.
- :func:`compute_analysis`: the attack, the NIP (guided) and PSSR restorations, and the neuron
  influence of every probe layer for the clean, adversarial and restored images, all toward the
  benign (clean) prediction, in one forward and one backward pass over the four images.
- :func:`content_key` / :func:`digest`: a full-content key of arguments (a model by its weights'
  SHA-256, a tensor by the SHA-1 of every byte), for caches and provenance.

This module does not import Streamlit (``app/runs.py`` adds the session state and caches).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuronviz.core.models import PixelModel
from neuronviz.infra.digest import tensor_digest
from neuronviz.infra.errors import InputError, NeuronvizError
from neuronviz.methods.attacks import AttackReport, format_eps, get_attack, resolve_params, run_attack
from neuronviz.methods.defences import Restoration, get_defense
from neuronviz.methods.defences.pssr import companion_key
from neuronviz.methods.influence import InfluenceMap, default_layer, neuron_influence, probe_layers

__all__ = [
    "CONDITIONS", "CONDITION_LABELS", "DEFAULT_ATTACK", "DEFAULT_OVERRIDES", "DEFAULT_SAMPLE_ID", "RESTORATIONS",
    "Analysis", "AttackChoice", "compute_analysis", "content_key", "default_choice", "digest",
]

#: The attack a session starts with: PGD at its schema defaults (the same as picking it from the list;
#: ε = 0.1 on digits) and the sample it starts on (as ``app/runs.py`` on main).
DEFAULT_ATTACK = "pgd"
DEFAULT_OVERRIDES: dict[str, Any] = {}
DEFAULT_SAMPLE_ID = "digit-test-43"
#: The two restorations every analysis runs, in the order pages show them.
RESTORATIONS = ("nip-guided", "pssr")
#: Conditions of :attr:`Analysis.influence`, in the order pages show them.
CONDITIONS = ("clean", "adversarial", *RESTORATIONS)
CONDITION_LABELS = {"clean": "clean", "adversarial": "adversarial", **{n: get_defense(n).short for n in RESTORATIONS}}


# -- the attack choice -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackChoice:
    """What the attack form submitted. ``overrides`` are the parameters set in the form (validated
    against the model when the analysis runs); ``target`` is None (untargeted), a class index, or
    ``"least-likely"``."""

    attack: str = DEFAULT_ATTACK
    overrides: tuple[tuple[str, Any], ...] = tuple(sorted(DEFAULT_OVERRIDES.items()))
    target: int | str | None = None
    seed: int = 0

    @classmethod
    def make(cls, attack: str, overrides: Mapping[str, Any], target: int | str | None = None, seed: int = 0) -> AttackChoice:
        return cls(attack=get_attack(attack).name, overrides=tuple(sorted(overrides.items())), target=target, seed=int(seed))

    def params(self, model: PixelModel) -> dict[str, Any]:
        """The attack's full parameters for ``model`` (defaults + overrides). Raises InputError."""
        return resolve_params(get_attack(self.attack), dict(self.overrides), model)

    def with_params(self, **overrides: Any) -> AttackChoice:
        """The same choice with some parameters changed (e.g. ``eps`` for a sweep)."""
        merged = {**dict(self.overrides), **overrides}
        return dataclasses.replace(self, overrides=tuple(sorted(merged.items())))

    def describe(self, model: PixelModel | None = None) -> str:
        """One line: ``"PGD (L∞) · eps 0.1 (25.5/255), alpha 0.01, steps 20 · untargeted · seed 0"``."""
        info = get_attack(self.attack)
        try:
            params = self.params(model) if model is not None else dict(self.overrides)
        except NeuronvizError:
            params = dict(self.overrides)
        shown = []
        for name, value in params.items():
            param = next((p for p in info.params if p.name == name), None)
            if param is not None and param.pixel_scale and isinstance(value, float):
                shown.append(f"{name} {format_eps(value)}")
            elif isinstance(value, float):
                shown.append(f"{name} {value:.4g}")
            else:
                shown.append(f"{name} {value}")
        target = "untargeted" if self.target is None else f"target {self.target}"
        if model is not None and isinstance(self.target, int) and 0 <= self.target < model.num_classes:
            target = f"target {model.class_names[self.target]}"
        parts = [info.label, ", ".join(shown), target, f"seed {self.seed}"]
        return " · ".join(p for p in parts if p)


def default_choice() -> AttackChoice:
    return AttackChoice()


# -- full-content keys -----------------------------------------------------------------------------


def content_key(value: Any) -> Any:
    """A JSON-able description of ``value`` that changes whenever any of its content changes.

    Models by their weights' SHA-256, name and device, tensors and arrays by the SHA-1 of every byte,
    dataclasses field by field; anything else unknown is refused (TypeError) rather than keyed
    by its identity, so two different inputs can never share a cached result.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else value
    if isinstance(value, PixelModel):
        # The name too: companions are found by it (PSSR's regenerator for "digits-cnn"), so two
        # models with the same weights under two names can restore differently.
        return {"model": value.content_hash, "name": value.name, "device": str(value.device), "defences": companion_key(value)}
    if isinstance(value, torch.Tensor):
        return {"tensor": tensor_digest(value)}
    if isinstance(value, np.ndarray):
        return {"array": tensor_digest(torch.from_numpy(np.ascontiguousarray(value)))}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return content_key(value.item())
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if type(value).__name__ in ("DataFrame", "Series") and type(value).__module__.startswith("pandas"):
        return _frame_key(value)
    if isinstance(value, Mapping):
        return {"map": sorted(([content_key(k), content_key(v)] for k, v in value.items()), key=json.dumps)}
    if isinstance(value, (list, tuple)):
        return [content_key(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__qualname__: {f.name: content_key(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"no content key for {type(value).__name__}: pass it as a tensor, number, string or mapping")


def _frame_key(frame) -> dict:
    """A pandas frame by its index, columns, dtypes and every value (pandas' own row hashes)."""
    import pandas as pd

    rows = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    columns = list(map(str, frame.columns)) if hasattr(frame, "columns") else [str(frame.name)]
    dtypes = [str(t) for t in (frame.dtypes if hasattr(frame, "columns") else [frame.dtype])]
    return {"frame": tensor_digest(torch.from_numpy(rows.astype(np.int64))), "columns": columns, "dtypes": dtypes}


def digest(*args: Any, **kwargs: Any) -> str:
    """SHA-256 of the content keys of the arguments."""
    text = json.dumps([content_key(list(args)), content_key(kwargs)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# -- the analysis of one image ---------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """One image under one attack choice: the attack, both restorations, and neuron influence.

    ``clean``, ``adversarial`` ``(1, C, H, W)``; ``benign_class``: the clean prediction (influence
    is computed toward it for every condition, and NIP restores toward it); ``influence``:
    condition (:data:`CONDITIONS`) → layer → :class:`InfluenceMap` of one image; ``layers``: the
    probe layers in forward order; ``seconds``: wall time of each part.
    """

    model_name: str
    params: dict
    choice: AttackChoice
    report: AttackReport
    clean: torch.Tensor
    adversarial: torch.Tensor
    benign_class: int
    restorations: dict[str, Restoration]
    influence: dict[str, dict[str, InfluenceMap]]
    layers: tuple[str, ...]
    default_layer: str
    seconds: dict[str, float] = field(default_factory=dict)

    def image(self, condition: str) -> torch.Tensor:
        """``(1, C, H, W)`` pixels of a condition: clean, adversarial, or a restoration's name."""
        if condition == "clean":
            return self.clean
        if condition == "adversarial":
            return self.adversarial
        return self.restorations[condition].restored

    def probabilities(self, condition: str) -> torch.Tensor:
        """``(K,)`` class probabilities of a condition."""
        if condition == "clean":
            return self.report.clean_probs[0]
        if condition == "adversarial":
            return self.report.adv_probs[0]
        return self.restorations[condition].probs[0]

    def prediction(self, condition: str) -> int:
        return int(self.probabilities(condition).argmax())

    @property
    def perturbation(self) -> torch.Tensor:
        """``(1, C, H, W)`` adversarial − clean, in pixel units."""
        return self.adversarial - self.clean

    @property
    def attack_succeeded(self) -> bool:
        return bool(self.report.success[0])


def compute_analysis(model: PixelModel, image: torch.Tensor, choice: AttackChoice) -> Analysis:
    """The attack, the NIP (guided) and PSSR restorations, and influence for every layer.

    Not cached (the dashboard caches it by :func:`digest` of its arguments). An untargeted attack moves away from the
    clean prediction (the benign class), as the defences and the batch evaluation measure it:
    "fooled" means the prediction changed, also for an image the model already gets wrong.
    """
    seconds: dict[str, float] = {}
    params = choice.params(model)
    started = time.perf_counter()
    report = run_attack(model, image, choice.attack, params, target=choice.target, seed=choice.seed)
    seconds["attack"] = time.perf_counter() - started
    benign = int(report.clean_pred[0])
    adversarial = report.adversarial
    restorations: dict[str, Restoration] = {}
    for name in RESTORATIONS:
        started = time.perf_counter()
        restorations[name] = get_defense(name).restore_for(model, adversarial, benign=benign, clean=image)
        seconds[name] = time.perf_counter() - started
    started = time.perf_counter()
    layers = tuple(info.name for info in probe_layers(model))
    batch = torch.cat([image.cpu(), adversarial, *(restorations[n].restored for n in RESTORATIONS)])
    maps = neuron_influence(model, batch, layers=list(layers), target=[benign] * batch.shape[0])
    influence = {
        condition: {name: m.select(index) for name, m in maps.items()} for index, condition in enumerate(CONDITIONS)
    }
    seconds["influence"] = time.perf_counter() - started
    return Analysis(
        model_name=model.name,
        params=params,
        choice=choice,
        report=report,
        clean=image.cpu(),
        adversarial=adversarial,
        benign_class=benign,
        restorations=restorations,
        influence=influence,
        layers=layers,
        default_layer=default_layer(model),
        seconds=seconds,
    )


def provenance(
    model: PixelModel,
    result: Analysis,
    image_name: str,
    defences: tuple[str, ...] | list[str] = RESTORATIONS,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record of a figure or table made from ``result``
    (:func:`neuronviz.workflows.provenance.record`): the model (name, architecture, content hash), the
    image (name, shape, content hash), the attack with its full parameters, target and seed, the
    defences shown with their full parameters, the benign class, device, versions and time."""
    from neuronviz.workflows import provenance as _provenance

    if model.name != result.model_name:
        raise InputError(f"the analysis was computed with {result.model_name!r}, not {model.name!r}")
    unknown = [name for name in defences if name not in result.restorations]
    if unknown:
        raise InputError(f"defences {unknown} are not in this analysis (it has {list(result.restorations)})")
    image = {
        "name": image_name,
        "shape": list(result.clean.shape),
        "content_hash": tensor_digest(result.clean),
    }
    attack = {
        "attack": result.choice.attack,
        "label": get_attack(result.choice.attack).label,
        "params": dict(result.params),
        "target": result.choice.target,
        "seed": result.choice.seed,
        "succeeded": result.attack_succeeded,
    }
    defence_rows = [
        {"defence": name, "label": result.restorations[name].method_label, "variant": result.restorations[name].variant,
         **result.restorations[name].method, "params": dict(result.restorations[name].params), "toward": result.benign_class}
        for name in defences
    ]
    out = _provenance.record(
        model,
        dataset={"image": image},
        attacks=[attack],
        defences=defence_rows,
        seeds={"attack": result.choice.seed},
        extra={"benign_class": result.benign_class, "analysis_digest": digest(model, result.clean, result.choice), **dict(extra or {})},
    )
    out["image"] = image
    return out
