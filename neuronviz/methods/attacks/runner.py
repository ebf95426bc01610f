"""Running a registered attack: validation, one batched call under the model's lock with a seed,
the trajectory, and the report.

The runner is generic: it reads what an attack needs from its entry
(:class:`~neuronviz.methods.attacks.registry.AttackInfo`: targeted support, the targets of an attack
targeted by nature, the cost estimate, the trace unit, when it draws random numbers) and never
branches on an attack's name.

Trajectory: while an attack runs, every forward pass of the whole batch through the model is
recorded (logits, detached). For the gradient-iteration family (BIM, PGD, MI-/NI-/DI-/TI-FGSM,
R-FGSM, TPGD, C&W) that is exactly one pass per step, so the trace is the per-step loss and
predicted class; for the others it is per forward pass and says so (``trace.unit``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuronviz.core.models.pixel import PixelModel, require_pixel_model
from neuronviz.infra import budget
from neuronviz.infra.errors import InputError
from neuronviz.infra.limits import MAX_WORK, check_batch
from neuronviz.methods.attacks.randomness import RequestRandomness
from neuronviz.methods.attacks.registry import AttackInfo, get_attack
from neuronviz.methods.attacks.report import AttackReport, AttackTrace

#: The most trace entries kept (forward passes recorded during one attack).
MAX_TRACE = 5_000


def resolve_params(info: AttackInfo, params: Mapping[str, Any] | None, model: PixelModel | None = None) -> dict[str, Any]:
    """The attack's defaults for this model, overridden by ``params``, each validated."""
    return info.resolve(params, model)


def estimate_work(info: AttackInfo, params: Mapping[str, Any], batch: int, classes: int = 10) -> float:
    """Estimated model evaluations (image × pass) of one request at most, the unit of
    :data:`MAX_WORK`, for a model with ``classes`` classes (AutoAttack's targeted stages run once
    per other class)."""
    return float(info.cost(params, int(classes))) * batch


def estimate_range(info: AttackInfo, params: Mapping[str, Any], batch: int, classes: int = 10) -> tuple[float, float]:
    """``(low, high)`` model evaluations of one request: ``high`` as :func:`estimate_work` (every
    step runs), ``low`` when the attack fools every image as early as it can stop (equal to
    ``high`` for attacks that always run all their steps). AutoAttack's real cost lies between:
    on an undefended model most images fall to its first stage (near ``low``); on a robust one
    they reach its 5,000-query Square stage (near ``high``). Multiply by seconds per evaluation
    (:func:`seconds_per_evaluation`) for seconds."""
    high = float(info.cost(params, int(classes))) * batch
    low = float(info.cost_low(params, int(classes))) * batch if info.cost_low is not None else high
    return min(low, high), high


def seconds_per_evaluation(model: PixelModel, batch: int = 16) -> float:
    """Seconds one model evaluation (one image through one forward or backward pass) takes on this
    model, measured now: one timed forward and backward pass of ``batch`` images (after one
    untimed warm-up pass). Takes the model's lock."""
    model = require_pixel_model(model, "seconds_per_evaluation")
    x = torch.rand(int(batch), model.channels, *model.input_size, device=model.device)
    elapsed = 0.0
    with model.lock, torch.enable_grad():
        for _timed in (False, True):
            z = x.clone().requires_grad_(True)
            started = time.perf_counter()
            model(z).sum().backward()
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            elapsed = time.perf_counter() - started
    return elapsed / (2 * int(batch))


class TraceRecorder(nn.Module):
    """Passes through to the model and keeps the logits of every full-batch forward pass.

    Copies the model's ``channels`` and ``num_classes``, which an entry's ``build`` reads."""

    def __init__(self, model: PixelModel, batch: int, limit: int = MAX_TRACE, rng: RequestRandomness | None = None) -> None:
        super().__init__()
        self.model = model
        self.channels: int = model.channels
        self.num_classes: int = model.num_classes
        self.batch = batch
        self.limit = limit
        self.logits: list[torch.Tensor] = []
        self.truncated = False
        self.rng = rng
        self.images_forward = 0  # images through a forward pass
        self.images_backward = 0  # images through a forward pass that builds a graph (a backward follows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_forward += int(x.shape[0])
        if torch.is_grad_enabled() and x.requires_grad:
            self.images_backward += int(x.shape[0])
        if self.rng is not None and self.rng.before_forward(x):
            try:
                out = self.model(x)
            finally:
                self.rng.after_forward()
        else:
            out = self.model(x)
        if x.shape[0] == self.batch:
            if len(self.logits) < self.limit:
                self.logits.append(out.detach().float().cpu())
            else:
                self.truncated = True
        return out


def resolve_target(target: Any, info: AttackInfo, model: PixelModel, clean_probs: torch.Tensor, n: int) -> torch.Tensor | None:
    """The ``(n,)`` target classes :func:`run_attack` uses for ``target`` (None: untargeted);
    ``"least-likely"`` from ``clean_probs (n, K)``. Raises InputError as run_attack does."""
    if target is None:
        return None
    if not info.targeted:
        raise InputError(f"{info.label} has no targeted mode; run it untargeted (target=None)")
    if isinstance(target, str):
        if target.replace("-", "_").replace(" ", "_").lower() not in ("least_likely", "ll"):
            raise InputError(f"target must be a class index, a tensor of them, or 'least-likely'; got {target!r}")
        return clean_probs.argmin(dim=1)
    return model.check_classes(target, n, "target")


def run_attack(
    model: PixelModel,
    x: torch.Tensor,
    name: str,
    params: Mapping[str, Any] | None = None,
    labels: torch.Tensor | None = None,
    target: int | str | torch.Tensor | None = None,
    seed: int | None = 0,
) -> AttackReport:
    """Attack a batch of pixel images with a registered torchattacks attack.

    (Long because its body is one critical section under the model's lock and the caller's budget:
    clean prediction, targets, attack (:func:`_attack_batch`) and adversarial prediction, then the report.)

    Args:
        model: a :class:`PixelModel`; the attack runs on its device, holding its lock.
        x: ``(N, C, H, W)`` pixels in [0, 1]; attacked in one batched call.
        name: a registered attack (:func:`list_attacks`), e.g. ``"pgd"``.
        params: overrides of the attack's defaults (see its schema); ε may be ``"8/255"``.
        labels: the classes to move away from; default: the model's clean prediction.
        target: ``None`` (untargeted), a class index, one per image, or ``"least-likely"``.
            Images whose clean prediction already is their target are not attacked (returned
            unchanged, ``attacked`` False) and are left out of the success rate.
        seed: seeds the attack's own random numbers (torch, NumPy, ``random``), reproducibly
            even while other threads attack; ``None`` draws from the global generators as they are.

    Returns:
        An :class:`AttackReport` of detached CPU tensors.

    Raises:
        InputError: unknown attack or parameter, out-of-range value, targeted mode where the
            attack has none, a target or label outside the model's classes, pixels outside [0, 1]
            or of a size the model does not take, a model that is not a PixelModel, or a request
            larger than :data:`MAX_BATCH` images or :data:`MAX_WORK` evaluations.
        TimeLimitError, CancelledError: the caller's budget (:func:`neuronviz.infra.budget.limit`;
            none by default) ran out, or the cancel flag was set.
    """
    model = require_pixel_model(model, "run_attack")
    info = get_attack(name)
    check_batch(x, "run_attack")
    x = model.check_pixels(x)
    resolved = resolve_params(info, params, model)
    _check_request(info, resolved, x.shape[0], model.num_classes, seed)
    n = x.shape[0]
    with budget.default(f"{info.label} on {n} image(s)"), model.lock:
        was_training = model.training
        started = time.perf_counter()
        with torch.no_grad():
            clean_logits = model(x)
        clean_probs = clean_logits.softmax(1).cpu()
        clean_pred = clean_probs.argmax(1)
        label_tensor = clean_pred.clone() if labels is None else model.check_classes(labels, n, "labels")
        target_tensor = resolve_target(target, info, model, clean_probs, n)
        attack_target = target_tensor
        if target_tensor is None and info.untargeted_target is not None:  # an attack targeted by nature (JSMA)
            attack_target = info.untargeted_target(label_tensor, model.num_classes)
        # targeted: an image already predicted as its target is not attacked (nothing to do)
        attacked = torch.ones(n, dtype=torch.bool) if target_tensor is None else clean_pred != target_tensor
        index = attacked.nonzero().flatten()
        adversarial = x.detach().clone()
        recorder: TraceRecorder | None = None
        if index.numel():
            xa = x[index.to(x.device)] if index.numel() < n else x
            chosen = attack_target if attack_target is not None else label_tensor
            out, recorder = _attack_batch(model, info, resolved, xa, chosen[index], attack_target is not None, seed,
                                          was_training)
            adversarial[index.to(x.device)] = out.detach().clamp(0.0, 1.0)
        with torch.no_grad():
            adv_probs = model(adversarial).softmax(1).cpu()
        seconds = time.perf_counter() - started

    adv_pred = adv_probs.argmax(1)
    success = adv_pred == target_tensor if target_tensor is not None else adv_pred != label_tensor
    success = success & attacked
    delta = (adversarial - x).detach().cpu()
    reference = target_tensor if target_tensor is not None else label_tensor
    return AttackReport(
        attack=info.name,
        params=resolved,
        targeted=target_tensor is not None,
        target=target_tensor,
        labels=label_tensor,
        adversarial=adversarial.cpu(),
        clean_pred=clean_pred,
        clean_probs=clean_probs,
        adv_pred=adv_pred,
        adv_probs=adv_probs,
        success=success,
        l0=(delta.abs() > 1e-6).any(dim=1).flatten(1).sum(1),
        l2=delta.flatten(1).norm(dim=1),
        linf=delta.flatten(1).abs().max(dim=1).values,
        seconds=seconds,
        device=str(model.device),
        seed=seed,
        trace=_trace(recorder, info, reference, index, clean_logits.detach().float().cpu()) if recorder is not None else None,
        attacked=attacked,
        evaluations=(recorder.images_forward + recorder.images_backward) if recorder is not None else 0,
    )


def _check_request(info: AttackInfo, resolved: Mapping[str, Any], n: int, classes: int, seed: int | None) -> None:
    """Refuse a request above :data:`MAX_WORK` model evaluations or a seed that is not a non-negative integer."""
    work = estimate_work(info, resolved, n, classes)
    if work > MAX_WORK:
        raise InputError(
            f"{info.label} on {n} image(s) with these parameters needs about {work:,.0f} model "
            f"evaluations; one request may ask for at most {MAX_WORK:,}. Use fewer images, steps or queries."
        )
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")


def _attack_batch(
    model: PixelModel,
    info: AttackInfo,
    resolved: Mapping[str, Any],
    xa: torch.Tensor,
    classes: torch.Tensor,
    targeted: bool,
    seed: int | None,
    was_training: bool,
) -> tuple[torch.Tensor, TraceRecorder]:
    """Run the torchattacks attack on ``xa`` (towards ``classes`` when ``targeted``, else away from them)
    with the request's own random numbers; its raw output and the recorder that traced it.
    The model's training flag is restored to ``was_training`` afterwards."""
    mode = info.draws(resolved) if seed is not None else "none"
    rng = RequestRandomness(int(seed), model.device, mode) if seed is not None and mode != "none" else None
    recorder = TraceRecorder(model, xa.shape[0], rng=rng)
    try:
        with (rng.active() if rng is not None else nullcontext()), torch.enable_grad():
            attack = info.build(recorder, resolved, int(seed or 0))
            if targeted:
                attack.set_mode_targeted_by_label(quiet=True)
            out = attack(xa, classes.to(model.device))
    finally:
        model.train(was_training)
    return out, recorder


def _trace(
    recorder: TraceRecorder, info: AttackInfo, reference: torch.Tensor, index: torch.Tensor, clean_logits: torch.Tensor
) -> AttackTrace | None:
    """The trace over all N images; an image that was not attacked keeps its clean logits."""
    if info.trace_unit is None or not recorder.logits:
        return None
    attacked_logits = torch.stack(recorder.logits)  # (T, n_attacked, K)
    steps, _, k = attacked_logits.shape
    n = clean_logits.shape[0]
    logits = clean_logits[None].expand(steps, n, k).clone()
    logits[:, index] = attacked_logits
    loss = F.cross_entropy(logits.reshape(-1, k), reference.repeat(steps), reduction="none").reshape(steps, n)
    return AttackTrace(loss=loss, predicted=logits.argmax(2), unit=info.trace_unit, truncated=recorder.truncated)
