"""An attacker who knows the defence: the whole defended model as one differentiable classifier.

Athalye, Carlini, Wagner ("Obfuscated Gradients Give a False Sense of Security", ICML 2018) and
Carlini et al. ("On Evaluating Adversarial Robustness", 2019) ask that a defence be attacked
through itself. :func:`defended_model` wraps ``defence → classifier`` as a
:class:`~neuronviz.core.models.pixel.PixelModel` that any registered attack runs on, following what the
defence's registry entry declares (:attr:`~neuronviz.methods.defences.Defence.gradient`,
:attr:`~neuronviz.methods.defences.Defence.randomised`):

- ``gradient = "bpda"`` (JPEG, bit depth, median, NIP's inner optimisation, PSSR's pixel surgery
  and regeneration): the forward pass is the defence itself, the backward pass the identity
  (Backward Pass Differentiable Approximation): ``x + (D(x) − x).detach()`` feeds the classifier;
- ``gradient = "differentiable"``: the defence is differentiated as it is;
- ``randomised = True`` (random resize-and-pad): each forward averages the classifier's logits
  over ``eot_samples`` draws, each with its own seed (Expectation over Transformation), so the
  attack's gradient is the expectation's.

Defences that use the benign class or image (NIP guided and oracle) are given them inside the
wrapper, as the defender is: the attacker then attacks the *defended prediction* of that analysis
tool.

:func:`adaptive_attack` runs an attack through the defended model and keeps, per image, the
stronger of that image and the plain attack's image (the attacker knows the defence, so it can
check which one gets through; AutoAttack keeps each image's worst case the same way). The choice
is made on the defence's own prediction with a *different* seed from the evaluation's for
randomised defences, so it cannot peek at the draw it is scored on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from neuronviz.core.models.pixel import ModelMeta, PixelModel
from neuronviz.infra.errors import InputError
from neuronviz.methods.defences.base import Defence, get_defence

#: Seed offset of the attacker's own draws of a randomised defence (EoT and its choice per image),
#: so they are never the evaluation's draws.
ATTACKER_SEED_OFFSET = 7919


def method(defense: Defence) -> str:
    """The adaptive attack a defence gets, in words for tables: ``"BPDA"``, ``"EoT"``,
    ``"BPDA + EoT"`` or ``"white-box"`` (differentiable and deterministic: the plain attack already
    knows it)."""
    if defense.adaptive_method:
        return defense.adaptive_method
    parts = (["BPDA"] if defense.gradient == "bpda" else []) + (["EoT"] if defense.randomised else [])
    return " + ".join(parts) or "white-box"


class _DefendedClassifier(nn.Module):
    """``classifier(D(x))`` with BPDA and/or EoT (see the module docstring)."""

    def __init__(self, model: PixelModel, defense: Defence, params: dict[str, Any],
                 benign: torch.Tensor | None, clean: torch.Tensor | None, samples: int) -> None:
        super().__init__()
        self.model = model
        self.defense = defense
        self.params = dict(params)
        self.benign = benign
        self.clean = clean
        self.samples = samples
        self.calls = 0

    def _given(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        target = reference = None
        if self.defense.needs_target or self.defense.needs_reference:
            if self.benign is None or self.benign.shape[0] != x.shape[0]:
                raise InputError(
                    f"the adaptive attack through {self.defense.label} needs the benign class of every image of the "
                    "batch it is called on; this attack calls the model on other batches"
                )
            target = self.benign.to(x.device) if self.defense.needs_target else None
            reference = self.clean.to(x.device) if self.defense.needs_reference and self.clean is not None else None
        return target, reference

    def _once(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        target, reference = self._given(x)
        if self.defense.gradient == "differentiable":
            restored = self.defense.restore_pixels(self.model, x, params, target, reference).restored
        else:
            with torch.enable_grad():  # NIP and PSSR take input gradients of their own
                restored = self.defense.restore_pixels(self.model, x.detach(), params, target, reference).restored
            restored = x + (restored.detach().clamp(0.0, 1.0) - x).detach()
        return self.model(restored)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.model.lock:
            if not self.defense.randomised:
                return self._once(x, self.params)
            logits = []
            for _ in range(self.samples):
                self.calls += 1
                draw = dict(self.params)
                draw["seed"] = (int(self.params.get("seed", 0)) + ATTACKER_SEED_OFFSET + self.calls) % (2**31 - 1)
                logits.append(self._once(x, draw))
            return torch.stack(logits).mean(0)


def defended_model(
    model: PixelModel,
    defence: str,
    params: Mapping[str, Any] | None = None,
    *,
    benign: torch.Tensor | None = None,
    clean: torch.Tensor | None = None,
    eot_samples: int | None = None,
) -> PixelModel:
    """``defence → model`` as a :class:`PixelModel` for an attacker who knows the defence.

    ``benign``/``clean``: the benign prediction and images of the batch the attack will run on
    (needed only by the defences that use them). ``eot_samples``: draws per forward of a
    randomised defence (default: the entry's ``eot_samples``)."""
    defense = get_defence(defence)
    resolved = defense.resolve(params, model)
    samples = int(eot_samples if eot_samples is not None else defense.eot_samples)
    if samples < 1:
        raise InputError(f"eot_samples must be at least 1, got {eot_samples!r}")
    own = defense.adaptive_model(model, resolved)
    if own is not None:
        return own
    wrapper = _DefendedClassifier(model, defense, resolved, benign, clean, samples)
    meta = ModelMeta(name=f"{defense.name}+{model.name}", architecture=f"{defense.name}+{model.meta.architecture}", source="defended")
    defended = PixelModel(wrapper, [0.0] * model.channels, [1.0] * model.channels, model.input_size, model.class_names,
                          meta, model.image_policy)
    return defended.to(model.device)


def attacker_params(defense: Defence, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the attacker's own check uses: a randomised defence's seed shifted so it
    never equals the evaluation's draw."""
    out = dict(params)
    if defense.randomised and "seed" in out:
        out["seed"] = (int(out["seed"]) + ATTACKER_SEED_OFFSET) % (2**31 - 1)
    return out


@dataclass(frozen=True)
class AdaptiveImages:
    """The adaptive attacker's images ``(N, C, H, W)`` and, per image, whether it took the image
    crafted through the defence (True) or the plain attack's (False)."""

    adversarial: torch.Tensor
    through: torch.Tensor


def choose_worst(
    model: PixelModel,
    defence: str,
    params: Mapping[str, Any],
    benign: torch.Tensor,
    clean: torch.Tensor,
    candidates: list[torch.Tensor],
) -> AdaptiveImages:
    """Per image, the candidate the defence handles worst, judged by the attacker on the defended
    prediction (with its own seed for a randomised defence). Priority: the defended prediction is
    not the benign one *and* the undefended prediction is fooled; then not benign; then neither
    fooled nor changed; the last resort is a fooled image the defence restores. Ties keep the
    earlier candidate (the image crafted through the defence comes first)."""
    defense = get_defence(defence)
    own = attacker_params(defense, params)
    device = model.device
    benign = benign.to(device)
    scores = []
    for x in candidates:
        x = x.to(device)
        after = defense.restore_for(model, x, benign=benign, clean=clean.to(device), params=own).prediction.to(device)
        fooled = model.predict(x)[0].to(device) != benign
        broken = after != benign
        scores.append(torch.where(broken, torch.where(fooled, 3, 2), torch.where(fooled, 0, 1)))
    stacked = torch.stack(scores)  # (candidates, N)
    best = stacked.argmax(0)  # the first maximum: earlier candidates win ties
    chosen = torch.stack([candidates[int(b)][i].to(device) for i, b in enumerate(best.tolist())])
    return AdaptiveImages(chosen.detach().cpu(), (best == 0).cpu())


def adaptive_attack(
    model: PixelModel,
    x: torch.Tensor,
    attack: str,
    attack_params: Mapping[str, Any] | None,
    defence: str,
    defence_params: Mapping[str, Any] | None = None,
    *,
    plain: torch.Tensor | None = None,
    seed: int = 0,
    eot_samples: int | None = None,
) -> AdaptiveImages:
    """Attack ``x`` through the defence (BPDA / EoT as the entry declares), untargeted, away from
    the undefended model's clean prediction; with ``plain`` (the plain attack's images) keep per
    image the one the defence handles worse (:func:`choose_worst`)."""
    from neuronviz.methods.attacks import run_attack

    x = model.check_pixels(x, "images")
    benign = model.predict(x)[0].to(model.device)
    resolved = get_defence(defence).resolve(defence_params, model)
    through = defended_model(model, defence, resolved, benign=benign, clean=x, eot_samples=eot_samples)
    report = run_attack(through, x, attack, attack_params, labels=benign, seed=seed)
    candidates = [report.adversarial] + ([plain] if plain is not None else [])
    return choose_worst(model, defence, resolved, benign, x, candidates)


@dataclass(frozen=True)
class KnownDefenceOutcome:
    """What the attacker who knows a defence achieved on some images: its images, the undefended
    prediction on them, and the defence's restoration of them (what the Defences page shows)."""

    defence: str
    method: str
    adversarial: torch.Tensor
    adv_pred: torch.Tensor
    restoration: Any  # a neuronviz.methods.defences.Restoration


def attack_knowing_defence(
    model: PixelModel,
    clean: torch.Tensor,
    attack: str,
    attack_params: Mapping[str, Any] | None,
    defence: str,
    defence_params: Mapping[str, Any] | None = None,
    *,
    plain: torch.Tensor | None = None,
    seed: int = 0,
) -> KnownDefenceOutcome:
    """:func:`adaptive_attack` on ``clean`` and the defence's restoration of the result (with the
    benign prediction and the clean images, as every caller gives them): one module-level call a
    cache can key on. Untargeted."""
    defense = get_defence(defence)
    clean = model.check_pixels(clean, "clean")
    benign = model.predict(clean)[0]
    if defense.name == "none":
        from neuronviz.methods.attacks import run_attack

        adversarial = run_attack(model, clean, attack, attack_params, seed=seed).adversarial if plain is None else plain
    else:
        adversarial = adaptive_attack(model, clean, attack, attack_params, defence, defence_params, plain=plain, seed=seed).adversarial
    adversarial = adversarial.to(model.device)
    restoration = defense.restore_for(model, adversarial, benign=benign.to(model.device), clean=clean, params=defence_params)
    return KnownDefenceOutcome(defense.name, method(defense), adversarial.detach().cpu(), model.predict(adversarial)[0], restoration)
