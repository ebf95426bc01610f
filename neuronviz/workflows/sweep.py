"""The ε sweep: one attack at a range of budgets, with predictions and the front/tail shift.

:func:`eps_sweep` answers "how do the prediction and the neuron ranking move as the attack gets
stronger?" for one image. For each budget ε it runs the attack (:func:`neuronviz.methods.attacks.run_attack`,
the same seed and the other parameters unchanged, so a random start is the same draw at every ε),
then computes the neuron influence of the clean image and of every adversarial image **in one
batched** :func:`neuronviz.methods.influence.neuron_influence` call, toward the benign class (the clean
prediction), and compares each adversarial ranking with the clean one by
:func:`neuronviz.methods.influence.influence_shift` (front overlap, Spearman ρ, mean change of the front
and tail neurons' influence).

Beside every ε, the matched control (:func:`neuronviz.methods.controls.matched_control`): random noise of
the attack's norm and of the size its perturbation has at that ε, in the same influence pass, so
the front/tail shift at each budget is read beside what noise of that size does to the same
neurons (``control_*`` fields).

Every number of the shift carries its uncertainty, with the definitions of the single-ε evidence
views (:mod:`neuronviz.workflows.evidence`, the Neurons page): at each ε, for the attack and for its
control, the front overlap is a :class:`~neuronviz.methods.stats.Rate` (k of the front's n neurons
still front, 95% Wilson interval: :meth:`InfluenceShift.overlap_rate`), ρ a
:class:`~neuronviz.methods.stats.Correlation` (bootstrap interval over the layer's neurons and
permutation p, :func:`neuronviz.methods.stats.correlation` with the Neurons page's
:data:`RHO_RESAMPLES`; "not defined" with the reason where the ranking is degenerate), and each of
the paper's direction counts the :class:`~neuronviz.workflows.evidence.MeasureEvidence` of a
:class:`~neuronviz.workflows.evidence.ShiftEvidence` whose "images" are the budgets. One image's
neurons are not independent observations, so the difference from the control is reported (attack
− control), not tested.

ε = 0 is the clean image by definition: no attack is run for it (some attacks divide by their
budget), its row is the clean image, its prediction the clean prediction and its shift the
identity (front overlap 1, ρ 1, changes 0).

Targeted sweeps: when the clean prediction already is the target, the image is not attacked at
any ε (every row is the clean image, ``success`` is False throughout) and ``already_target`` is
True, so the sweep is not read as a success (the rule of ``neuronviz.workflows.batch``).

Only attacks with a budget parameter (:attr:`neuronviz.methods.attacks.AttackInfo.budget_param`) can be
swept; ε values are in that parameter's units (pixel units [0, 1] for L∞ budgets, the L2 norm in
pixel units for L2 budgets).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuronviz.core.models.pixel import PixelModel, require_pixel_model
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import get_attack, resolve_params, resolve_target, run_attack
from neuronviz.methods.controls import control_norm_for, matched_control
from neuronviz.methods.influence import (
    DEFAULT_GROUP_FRACTION,
    DIRECTION_MEASURES,
    InfluenceMap,
    InfluenceShift,
    NeuronGroups,
    default_layer,
    influence_shift,
    neuron_influence,
    partition,
)
from neuronviz.methods.stats import Correlation, Rate, correlation
from neuronviz.workflows.evidence import MeasureEvidence, ShiftEvidence

#: The most budgets one sweep may ask for (each one is a full attack run).
MAX_EPS_VALUES = 64
#: Front and tail set sizes: the dashboard's one default (METHODS.md's analysis used 5%; pass front=/tail= for that).
DEFAULT_FRONT = DEFAULT_TAIL = DEFAULT_GROUP_FRACTION  # the dashboard's one front/tail size
#: Resamples of each ε's ρ interval and permutation p: the Neurons page's count (its one-image ρ), so
#: the sweep's interval at the analysis' ε is the one the Neurons page shows.
RHO_RESAMPLES = 500


@dataclass(frozen=True)
class EpsSweep:
    """One image attacked at several budgets, as detached CPU tensors.

    ``eps (E,)`` in increasing order, in the units of ``budget_param``; ``adversarial (E, C, H, W)``;
    ``probs (E, K)``; ``prediction``, ``success (E,)``; ``linf``, ``l2 (E,)`` the norms of the
    perturbation (pixel units); ``clean (1, C, H, W)`` and ``clean_probs (K,)``; ``benign_class``:
    the clean prediction, toward which influence is computed. The shift at ``layer`` compares each
    ε's influence with the clean image's: ``front_overlap``, ``spearman``,
    ``front_influence_change``, ``tail_influence_change (E,)``. ``params`` are the attack's
    other parameters (resolved at the first ε); ``norm`` is the budget's norm (``"Linf"``,
    ``"L2"``); ``seconds``: wall time of the attacks and of the influence pass.
    """

    attack: str
    budget_param: str
    norm: str | None
    params: dict
    eps: torch.Tensor
    clean: torch.Tensor
    clean_probs: torch.Tensor
    benign_class: int
    labels: torch.Tensor
    target: torch.Tensor | None
    adversarial: torch.Tensor
    probs: torch.Tensor
    prediction: torch.Tensor
    success: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    layer: str
    front: float | int
    tail: float | int
    front_overlap: torch.Tensor
    spearman: torch.Tensor
    front_influence_change: torch.Tensor
    tail_influence_change: torch.Tensor
    seconds: dict
    #: targeted sweep of an image whose clean prediction already is the target: not attacked
    already_target: bool = False
    #: the paper's direction per ε (:data:`neuronviz.methods.influence.DIRECTION_MEASURES`): counts of the
    #: clean front/tail neurons, ``{measure: (E,)}``, under the attack and under the matched control
    directions: dict = field(default_factory=dict)
    control_directions: dict = field(default_factory=dict)
    front_size: int = 0
    tail_size: int = 0
    #: the matched control at each ε: its norm, prediction ``(E,)``, front overlap and ρ ``(E,)``
    control_norm: str = ""
    control_prediction: torch.Tensor | None = None
    control_front_overlap: torch.Tensor | None = None
    control_spearman: torch.Tensor | None = None
    #: the uncertainty of each ε's shift (see the module's docstring): the attack's and the control's
    #: shifts on the same groups (its "images" are the budgets), the front overlap as rates and ρ as
    #: correlations with their intervals, one per ε
    evidence: ShiftEvidence | None = None
    overlap: tuple[Rate, ...] = ()
    control_overlap: tuple[Rate, ...] = ()
    correlations: tuple[Correlation, ...] = ()
    control_correlations: tuple[Correlation, ...] = ()

    def __len__(self) -> int:
        return int(self.eps.shape[0])

    @property
    def benign_confidence(self) -> torch.Tensor:
        """``(E,)`` probability of the benign class at each ε."""
        return self.probs[:, self.benign_class]

    def index(self, eps: float) -> int:
        """The position of the computed budget closest to ``eps``."""
        return int((self.eps - float(eps)).abs().argmin())

    def measure(self, measure: str, index: int) -> MeasureEvidence:
        """One of the paper's direction measures at the ``index``-th ε: the attack's and the control's
        :class:`~neuronviz.methods.stats.Rate` (k of the group's neurons, Wilson interval)."""
        if self.evidence is None:
            raise InputError("this sweep has no matched control (it was made by an older version): compute it again")
        return self.evidence.measure(measure, image=index)

    def statistics_frame(self):
        """One row per ε: every rate with k, n and its 95% interval, every ρ with its interval, p, n
        and the reason where it is not defined, for the attack and the control (``control_``), and
        the attack's difference from the control (``_minus_control``: share or ρ, attack − control)."""
        import pandas as pd

        rows = []
        for i in range(len(self.overlap)):
            row: dict[str, Any] = {}
            for prefix, overlap, rho in (("", self.overlap, self.correlations),
                                         ("control_", self.control_overlap, self.control_correlations)):
                row.update(_rate_columns(f"{prefix}front_overlap", overlap[i]))
                row.update(_correlation_columns(f"{prefix}spearman", rho[i]))
            for measure in DIRECTION_MEASURES:
                evidence = self.measure(measure, i)
                row.update(_rate_columns(f"{measure}", evidence.attack))
                row.update(_rate_columns(f"control_{measure}", evidence.control))
                row[f"{measure}_minus_control"] = _minus(evidence.attack.share, evidence.control.share)
            row["front_overlap_minus_control"] = _minus(self.overlap[i].share, self.control_overlap[i].share)
            row["spearman_minus_control"] = _minus(self.correlations[i].value, self.control_correlations[i].value)
            rows.append(row)
        return pd.DataFrame(rows)

    def to_frame(self):
        """One row per ε: prediction, benign confidence, success, norms and the shift, with the
        columns of :meth:`statistics_frame` (n and 95% intervals) when the sweep has them."""
        import pandas as pd

        frame = pd.DataFrame(
            {
                "eps": self.eps.tolist(),
                "prediction": self.prediction.tolist(),
                "confidence": self.probs.max(1).values.tolist(),
                "benign_confidence": self.benign_confidence.tolist(),
                "success": self.success.tolist(),
                "linf": self.linf.tolist(),
                "l2": self.l2.tolist(),
                "front_overlap": self.front_overlap.tolist(),
                "spearman": self.spearman.tolist(),
                "front_influence_change": self.front_influence_change.tolist(),
                "tail_influence_change": self.tail_influence_change.tolist(),
                **{f"{m}_count": v.tolist() for m, v in self.directions.items()},
                **({"control_prediction": self.control_prediction.tolist()} if self.control_prediction is not None else {}),
                **({"control_front_overlap": self.control_front_overlap.tolist()}
                   if self.control_front_overlap is not None else {}),
                **({"control_spearman": self.control_spearman.tolist()} if self.control_spearman is not None else {}),
                **{f"control_{m}_count": v.tolist() for m, v in self.control_directions.items()},
                **({"front_size": self.front_size, "tail_size": self.tail_size} if self.front_size else {}),
                **({"control_norm": self.control_norm} if self.control_norm else {}),
            }
        )
        if not self.overlap:
            return frame
        statistics = self.statistics_frame()
        return frame.join(statistics[[c for c in statistics.columns if c not in frame.columns]])


def _minus(a: float | None, b: float | None) -> float:
    """``a − b``, NaN when either is not defined."""
    return float("nan") if a is None or b is None else float(a) - float(b)


def _rate_columns(name: str, value: Rate) -> dict[str, Any]:
    """``name`` (the share; an existing share column keeps its name), ``name_k``, ``_n``, ``_low``,
    ``_high`` of a rate; NaN with ``name_note`` when it is not defined."""
    nan = float("nan")
    share = name if name.endswith("overlap") else f"{name}_share"
    return {share: nan if value.share is None else value.share, f"{name}_k": value.k, f"{name}_n": value.n,
            f"{name}_low": nan if value.low is None else value.low, f"{name}_high": nan if value.high is None else value.high,
            **({f"{name}_note": f"not defined ({value.reason})"} if value.share is None else {})}


def _correlation_columns(name: str, value: Correlation) -> dict[str, Any]:
    """``name`` (ρ), ``name_low``, ``_high``, ``_p``, ``_n`` and ``name_note`` (why it, or its
    interval, is not defined, else empty); NaN where not defined."""
    nan = float("nan")
    return {name: nan if value.value is None else value.value, f"{name}_low": nan if value.low is None else value.low,
            f"{name}_high": nan if value.high is None else value.high, f"{name}_p": nan if value.p is None else value.p,
            f"{name}_n": value.n, f"{name}_note": _correlation_note(value)}


def _correlation_note(value: Correlation) -> str:
    """Why a correlation, or its interval, is not defined ("" when both are)."""
    if not value.defined:
        return f"not defined ({value.reason})"
    if value.low is None and getattr(value, "interval_reason", None):
        return f"interval not defined ({value.interval_reason})"
    return ""


def _eps_values(
    values: Sequence[float] | torch.Tensor | np.ndarray, low: float | None, high: float | None, name: str
) -> list[float]:
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = [float(v) for v in np.asarray(values.tolist() if isinstance(values, torch.Tensor) else values).ravel()]
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise InputError(f"eps_values must be a sequence of numbers, got {type(values).__name__}")
    if not values:
        raise InputError("eps_values is empty: give at least one budget")
    result = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(f"eps_values must hold numbers, got {value!r}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise InputError(f"every budget must be a finite number ≥ 0, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InputError(f"{name} = {value:g} is out of the attack's range [{low:g}, {high:g}]")
        result.append(value)
    unique = sorted(set(result))
    if len(unique) > MAX_EPS_VALUES:
        raise InputError(f"{len(unique)} budgets in one sweep; the cap is {MAX_EPS_VALUES}")
    return unique


def eps_sweep(
    model: PixelModel,
    image: torch.Tensor,
    attack: str,
    params: Mapping[str, Any] | None,
    eps_values: Sequence[float] | torch.Tensor | np.ndarray,
    labels: int | torch.Tensor | None = None,
    target: int | str | torch.Tensor | None = None,
    seed: int | None = 0,
    layer: str | None = None,
    front: int | float = DEFAULT_FRONT,
    tail: int | float = DEFAULT_TAIL,
) -> EpsSweep:
    """Attack one image at every budget in ``eps_values`` and measure the front/tail shift.

    (Long because it checks its inputs and fills the :class:`EpsSweep` record field by field;
    the attacks and the influence pass are :func:`_attack_each_eps` and :func:`_sweep_shifts`.)

    Args:
        model: a :class:`PixelModel`.
        image: ``(1, C, H, W)`` pixels in [0, 1].
        attack: a registered attack with a budget parameter (e.g. ``"pgd"``, ``"fgsm"``).
        params: the attack's other parameters (its budget parameter, if present, is replaced).
        eps_values: budgets, in the budget parameter's units; sorted and de-duplicated.
        labels: the class to move away from (e.g. the true class); default the clean prediction.
        target: as in :func:`run_attack` (None, a class index, or ``"least-likely"``).
        seed: the same seed for every ε (so a random start is the same draw at every budget).
        layer: the layer whose influence is compared; None or ``""``: :func:`default_layer`.
        front, tail: front and tail set sizes (counts or fractions), as in :func:`partition`.

    Returns:
        An :class:`EpsSweep`.

    Raises:
        InputError: an attack without a budget, budgets out of the attack's range, more than
            :data:`MAX_EPS_VALUES` budgets, more than one image, or what :func:`run_attack`
            and :func:`neuron_influence` refuse.
    """
    info = get_attack(attack)
    if info.budget_param is None:
        raise InputError(f"{info.label} has no budget parameter to sweep (it finds its own perturbation size)")
    budget = info.param(info.budget_param)
    model = require_pixel_model(model, "eps_sweep")
    image = model.check_pixels(image)
    if image.shape[0] != 1:
        raise InputError(f"eps_sweep attacks one image; got a batch of {image.shape[0]}")
    values = _eps_values(eps_values, budget.low, budget.high, info.budget_param)
    base = {k: v for k, v in dict(params or {}).items() if k != info.budget_param}
    layer_name = layer or default_layer(model)  # None or "" = the default layer
    model.layer(layer_name)  # raises with close names when unknown
    resolved = resolve_params(info, {**base, info.budget_param: values[0]}, model)  # validates the rest once
    norm = resolved["norm"] if "norm" in resolved else info.norm
    label_tensor = None if labels is None else model.check_classes(labels, 1, "labels").cpu()

    started = time.perf_counter()
    clean = image.detach().cpu()
    clean_probs = model.predict(image)[1][0]
    benign = int(clean_probs.argmax())
    reference = label_tensor if label_tensor is not None else torch.tensor([benign])
    target_tensor = resolve_target(target, info, model, clean_probs[None], 1)  # as run_attack resolves it
    target_tensor = None if target_tensor is None else target_tensor.cpu()
    adversarial, probs, success = _attack_each_eps(
        model, image, info.name, info.budget_param, base, values, clean, clean_probs, reference, label_tensor, target,
        target_tensor is not None, seed,
    )
    attack_seconds = time.perf_counter() - started

    started = time.perf_counter()
    adversarial_t = torch.cat(adversarial)
    control_norm = control_norm_for(info.name)
    shift, control_shift, groups, control_prediction, maps = _sweep_shifts(
        model, clean, adversarial_t, control_norm, seed, layer_name, benign, front, tail
    )
    influence_seconds = time.perf_counter() - started
    started = time.perf_counter()
    statistics = _sweep_statistics(maps, shift, control_shift)
    statistics_seconds = time.perf_counter() - started

    probs_t = torch.cat(probs)
    delta = (adversarial_t - clean).flatten(1)
    return EpsSweep(
        attack=info.name,
        budget_param=info.budget_param,
        norm=norm,
        params={k: v for k, v in resolved.items() if k != info.budget_param},
        eps=torch.tensor(values, dtype=torch.float64),
        clean=clean,
        clean_probs=clean_probs,
        benign_class=benign,
        labels=reference,
        target=target_tensor,
        adversarial=adversarial_t,
        probs=probs_t,
        prediction=probs_t.argmax(1),
        success=torch.tensor(success, dtype=torch.bool),
        linf=delta.abs().max(1).values,
        l2=delta.norm(dim=1),
        layer=layer_name,
        front=front,
        tail=tail,
        seconds={"attacks": attack_seconds, "influence": influence_seconds, "statistics": statistics_seconds},
        already_target=target_tensor is not None and benign == int(target_tensor[0]),
        control_norm=control_norm,
        control_prediction=control_prediction,
        **_shift_fields(shift, control_shift, groups),
        **statistics,
    )


def _attack_each_eps(
    model: PixelModel,
    image: torch.Tensor,
    attack: str,
    budget_param: str,
    base: dict[str, Any],
    values: Sequence[float],
    clean: torch.Tensor,
    clean_probs: torch.Tensor,
    reference: torch.Tensor,
    label_tensor: torch.Tensor | None,
    target: int | str | torch.Tensor | None,
    targeted: bool,
    seed: int | None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[bool]]:
    """Run the attack at every ε (ε = 0: the clean image); each ε's adversarial image, probabilities and success."""
    benign = int(clean_probs.argmax())
    adversarial, probs, success = [], [], []
    for value in values:
        if value == 0.0:  # the clean image, judged as run_attack judges success
            adversarial.append(clean)
            probs.append(clean_probs[None])
            # targeted: at ε = 0 nothing reached the target (an image already there is excluded)
            success.append(False if targeted else benign != int(reference[0]))
            continue
        report = run_attack(
            model, image, attack, {**base, budget_param: value}, labels=label_tensor, target=target, seed=seed
        )
        adversarial.append(report.adversarial)
        probs.append(report.adv_probs)
        success.append(bool(report.success[0]))
    return adversarial, probs, success


def _sweep_shifts(
    model: PixelModel,
    clean: torch.Tensor,
    adversarial: torch.Tensor,
    control_norm: str,
    seed: int | None,
    layer_name: str,
    benign: int,
    front: int | float,
    tail: int | float,
) -> tuple[InfluenceShift, InfluenceShift, NeuronGroups, torch.Tensor, tuple[InfluenceMap, InfluenceMap, InfluenceMap]]:
    """The influence shift clean → each ε's adversarial image and clean → its matched control, in one
    :func:`neuron_influence` pass; also the groups, the controls' predictions and the three maps
    (the clean one repeated, the attack's and the control's, one row per ε)."""
    # Each ε's control is drawn as the analysis draws its own (image index 0 of its seed), so the
    # sweep's control at the chosen ε is the analysis' control: one draw, scaled to each ε's size.
    controls = torch.cat([matched_control(clean, adversarial[i : i + 1], control_norm, seed=seed or 0)
                          for i in range(adversarial.shape[0])])
    batch = torch.cat([clean, adversarial, controls])
    maps = neuron_influence(model, batch, layers=[layer_name], target=[benign] * batch.shape[0])[layer_name]
    count = adversarial.shape[0]
    before = maps.select([0] * count)
    after = maps.select(range(1, count + 1))
    noise = maps.select(range(count + 1, 2 * count + 1))
    groups = partition(before, front, tail)
    shift = influence_shift(before, after, groups=groups)
    control_shift = influence_shift(before, noise, groups=groups)
    with model.lock, torch.no_grad():
        control_prediction = model(controls.to(model.device)).argmax(1).cpu()
    return shift, control_shift, groups, control_prediction, (before, after, noise)


def _sweep_statistics(
    maps: tuple[InfluenceMap, InfluenceMap, InfluenceMap], shift: InfluenceShift, control_shift: InfluenceShift
) -> dict[str, Any]:
    """The :class:`EpsSweep` fields of uncertainty: per ε, the front overlap as a rate and ρ as a
    correlation with its interval, for the attack and the control, and their :class:`ShiftEvidence`."""
    before, after, noise = maps

    def rho(changed: InfluenceMap, moved: InfluenceShift, index: int) -> Correlation:
        a, b = before.values[index], changed.values[index]
        reason = moved.correlation_reason(index)  # the shift's rule (too few neurons, constant ranks, …)
        if reason is not None:
            return Correlation("spearman", None, None, None, None, int(a.numel()), reason)
        return correlation(a, b, "spearman", resamples=RHO_RESAMPLES)

    count = int(shift.spearman.shape[0])
    return {
        "evidence": ShiftEvidence(layer=shift.layer, attack=shift, control=control_shift, group_source="clean"),
        "overlap": tuple(shift.overlap_rate(i) for i in range(count)),
        "control_overlap": tuple(control_shift.overlap_rate(i) for i in range(count)),
        "correlations": tuple(rho(after, shift, i) for i in range(count)),
        "control_correlations": tuple(rho(noise, control_shift, i) for i in range(count)),
    }


def _shift_fields(shift: InfluenceShift, control_shift: InfluenceShift, groups: NeuronGroups) -> dict[str, Any]:
    """The :class:`EpsSweep` fields read off the attack's and the control's influence shift."""
    return {
        "front_overlap": shift.front_overlap,
        "spearman": shift.spearman,
        "front_influence_change": shift.front_influence_change,
        "tail_influence_change": shift.tail_influence_change,
        "directions": {m: shift.count(m) for m in DIRECTION_MEASURES},
        "control_directions": {m: control_shift.count(m) for m in DIRECTION_MEASURES},
        "front_size": groups.front_size,
        "tail_size": groups.tail_size,
        "control_front_overlap": control_shift.front_overlap,
        "control_spearman": control_shift.spearman,
    }
