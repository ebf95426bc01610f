"""The neurons of a data set: what an attack does to every neuron, beyond a matched control.

Over ``N`` labelled images (an evaluation set) and one layer or every layer, one summary:

- per neuron, the distribution of its **activation change** and its **influence change**
  (perturbed − clean, per image) under the attack and under the matched control
  (:func:`neuronviz.methods.controls.matched_control`: random noise of the attack's norm and size, per
  image, seeded);
- per layer, NIP's observation counted in the paper's direction (METHODS.md §1):
  ``front_suppressed`` (a front neuron's activation fell), ``tail_enhanced`` (a tail neuron's
  activation rose), and the same on influence (``front_suppressed_influence``: a front neuron's
  influence fell; ``tail_enhanced_influence``: a tail neuron's influence fell, i.e. became more
  negative: it pushes harder against the clean class), as shares of neuron × image pairs over
  the images the attack fooled, attack beside control, each a Wilson interval
  (:func:`neuronviz.methods.stats.rate_of`), and the attack − control difference per image
  (:func:`neuronviz.methods.stats.paired_difference`);
- the median per-image Spearman ρ of the clean vs the perturbed influence, with a bootstrap
  interval (:func:`neuronviz.methods.stats.median_with_interval`), or ``None`` and a reason;
- the neurons the attack moves **consistently beyond the control**: per neuron, a paired
  t-test of (attack change − control change) over the fooled images (``scipy.stats.ttest_rel``,
  vectorised over the neurons, its 95% interval of the mean difference), the effect size
  (Cohen's d_z: mean difference ÷ its standard deviation) and the p-values corrected for the
  false discovery rate over every neuron of every layer analysed (:func:`neuronviz.methods.stats.fdr`,
  Benjamini–Hochberg); a neuron is *consistent* when its corrected q < ``alpha`` (0.05);
- for each consistent neuron (the strongest few): its top-activating images of the set
  (exemplars) with, for a layer with a spatial output, the crop of the input that reaches its
  strongest position (:func:`receptive_field`), and its mean activation against ε (attack and
  control at a few ε values, on the first images of the set).

Definitions (shared with the one-image Neurons page):

- influence ``I_j = a_j · ∂z_c/∂a_j`` (per channel: summed over positions) toward ``c`` = the
  model's prediction on the **clean** image, for the clean, the adversarial **and** the control
  image (:func:`neuronviz.methods.influence.neuron_influence`, every layer in one pass);
- activation of neuron ``j``: the layer's output reduced the same way (summed over positions or
  tokens);
- front = the top ``fraction`` of a layer's neurons by clean influence (per image), tail = the
  bottom ``fraction`` (at least one each);
- fooled: the attack, run away from the clean prediction, changed the prediction.

Everything is batched: the attack and the three influence passes run over blocks of
:data:`BLOCK` images (a block is the unit of the attack's randomness, so results do not depend
on how many images share a call).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuronviz.core.layers import layer_info
from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import probe
from neuronviz.infra.errors import InputError
from neuronviz.methods import stats
from neuronviz.methods.attacks import get_attack, run_attack
from neuronviz.methods.controls import control_norm_for, matched_control
from neuronviz.methods.influence import InfluenceMap, default_layer, neuron_influence, partition, probe_layers

#: Images per attack and influence call (the unit of the attack's randomness).
BLOCK = 128
#: The share of a layer's neurons in the front and in the tail (NIP's groups).
DEFAULT_FRACTION = 0.2
#: False discovery rate under which a neuron counts as moved consistently beyond the control.
ALPHA = 0.05
#: Multiples of the attack's ε at which the consistent neurons' activation is measured.
EPS_SCALES = (0.25, 0.5, 1.0, 1.5)
#: Images the activation-vs-ε curve is measured on (the first of the set).
CURVE_IMAGES = 64
#: Consistent neurons given exemplars and an ε curve (the strongest by |d_z|).
MAX_DETAILED = 8
#: Exemplars (top-activating images) per detailed neuron.
EXEMPLARS = 4
#: Resamples of the bootstrap intervals and permutation p-values of the per-layer statistics (p ≥ 1/1000).
RESAMPLES = 999
#: The most neurons one analysis takes (all layers together): bounds the time and memory before the work.
MAX_NEURONS = 20_000

SIGN_CONVENTION = (
    "Influence is toward the clean prediction: a front neuron is suppressed when its activation (or "
    "influence) falls; a tail neuron is enhanced when its activation rises, and on influence when its "
    "(negative) influence falls further, pushing harder against the clean class."
)
FOOLED_DEFINITION = "the adversarial prediction differs from the clean prediction (the attack runs away from the clean prediction)"
TEST_DESCRIPTION = (
    "per neuron, a paired t-test (scipy.stats.ttest_rel) of the attack's change against the control's change "
    "over the fooled images; effect size Cohen's d_z; p corrected by Benjamini-Hochberg over every neuron analysed"
)

QUANTITIES = ("activation", "influence")
#: The four counts of NIP's observation: (key, group, quantity, direction).
COUNTS = (
    ("front_suppressed", "front", "activation", "fell"),
    ("tail_enhanced", "tail", "activation", "rose"),
    ("front_suppressed_influence", "front", "influence", "fell"),
    ("tail_enhanced_influence", "tail", "influence", "fell"),
)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measures:
    """One layer's per-neuron activation and influence on the clean, adversarial and control
    images: each ``(N, neurons)``, all toward the clean prediction."""

    clean_activation: torch.Tensor
    adversarial_activation: torch.Tensor
    control_activation: torch.Tensor
    clean_influence: torch.Tensor
    adversarial_influence: torch.Tensor
    control_influence: torch.Tensor

    def change(self, quantity: str, perturbation: str) -> torch.Tensor:
        """``perturbed − clean`` per image and neuron (``perturbation`` "attack" or "control")."""
        clean = getattr(self, f"clean_{quantity}")
        after = getattr(self, f"{'adversarial' if perturbation == 'attack' else 'control'}_{quantity}")
        return after - clean


@dataclass(frozen=True)
class LayerPopulation:
    """One layer over the data set: its measures, NIP's four counts (attack, control, difference),
    the median Spearman per perturbation, and the per-neuron table (a list of rows)."""

    layer: str
    kind: str
    neurons: int
    labels: tuple[str, ...]
    spatial: bool
    measures: Measures
    front_size: int | None
    tail_size: int | None
    counts: dict[str, dict[str, Any]]
    spearman: dict[str, dict[str, Any]]
    table: list[dict[str, Any]]
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """The layer's entry of ``neurons.json`` without the per-neuron table."""
        out: dict[str, Any] = {"kind": self.kind, "neurons": self.neurons, "front_size": self.front_size,
                               "tail_size": self.tail_size}
        if self.reason:
            out["reason"] = self.reason
        for key, value in self.counts.items():
            out[key] = value
        out["spearman"] = self.spearman
        out["consistent_neurons"] = sum(1 for row in self.table if row["consistent"])
        return out


@dataclass(frozen=True)
class Exemplar:
    """One top-activating image of a neuron: its index in the set, its activation, and for a
    spatial layer the strongest position and the input box ``(top, left, bottom, right)`` that
    reaches it (bottom/right exclusive), or ``None`` with a reason."""

    image: int
    image_id: str
    activation: float
    position: tuple[int, int] | None
    box: tuple[int, int, int, int] | None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"image": self.image, "id": self.image_id, "activation": self.activation,
               "position": list(self.position) if self.position else None, "box": list(self.box) if self.box else None}
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class NeuronDetail:
    """A consistent neuron: its table row, exemplars and activation against ε."""

    layer: str
    neuron: int
    label: str
    row: dict[str, Any]
    exemplars: tuple[Exemplar, ...]
    curve: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "neuron": self.neuron, "label": self.label, "row": self.row,
                "exemplars": [e.to_dict() for e in self.exemplars], "activation_vs_eps": self.curve}


@dataclass(frozen=True)
class Population:
    """What :func:`population` measured (see the module docstring)."""

    model_name: str
    model_hash: str
    attack: str
    params: dict[str, Any]
    seed: int
    control_norm: str
    fraction: float
    images: int
    labels: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    control_pred: torch.Tensor
    fooled: torch.Tensor
    ids: tuple[str, ...]
    layers: dict[str, LayerPopulation]
    details: tuple[NeuronDetail, ...]
    eps_curve: dict[str, Any]
    alpha: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fooled_count(self) -> int:
        return int(self.fooled.sum())

    def rates(self) -> dict[str, Any]:
        """Attack success (fooled) and how often the control changed the prediction, with intervals."""
        return {
            "fooled": stats.rate_of(self.fooled).to_dict(),
            "control_changed_prediction": stats.rate_of(self.control_pred != self.clean_pred).to_dict(),
            "clean_accuracy": stats.rate_of(self.clean_pred == self.labels).to_dict(),
        }

    def summary_rows(self) -> list[dict[str, Any]]:
        """One row per layer (the per-layer CSV): every count's attack and control share with its
        interval and n, the difference, and the median Spearman of each perturbation."""
        rows = []
        for name, layer in self.layers.items():
            row: dict[str, Any] = {"layer": name, "kind": layer.kind, "neurons": layer.neurons,
                                   "front_size": layer.front_size, "tail_size": layer.tail_size}
            for key, _group, _quantity, _direction in COUNTS:
                entry = layer.counts.get(key, {})
                for side in ("attack", "control"):
                    rate = entry.get(side) or {}
                    for part in ("share", "low", "high", "n"):
                        row[f"{key}_{side}_{part}"] = rate.get(part)
                diff = entry.get("difference") or {}
                row[f"{key}_difference"] = diff.get("difference")
                row[f"{key}_difference_low"] = diff.get("low")
                row[f"{key}_difference_high"] = diff.get("high")
                row[f"{key}_difference_p"] = diff.get("p")
            for side in ("attack", "control"):
                entry = layer.spearman.get(side, {})
                row[f"spearman_{side}_median"] = entry.get("median")
                row[f"spearman_{side}_low"] = entry.get("low")
                row[f"spearman_{side}_high"] = entry.get("high")
                row[f"spearman_{side}_n"] = entry.get("n")
                row[f"spearman_{side}_reason"] = entry.get("reason")
            row["consistent_neurons"] = sum(1 for r in layer.table if r["consistent"])
            row["reason"] = layer.reason
            rows.append(row)
        return rows

    def neuron_rows(self) -> list[dict[str, Any]]:
        """Every neuron of every layer (the per-neuron CSV)."""
        return [row for layer in self.layers.values() for row in layer.table]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``neurons.json`` (without provenance)."""
        return {
            "model": self.model_name,
            "model_hash": self.model_hash,
            "attack": {"name": self.attack, "params": self.params, "seed": self.seed},
            "control": {"norm": self.control_norm, "seed": self.seed,
                        "description": f"random perturbation matching the attack's {self.control_norm} size per image"},
            "images": self.images,
            "fooled_definition": FOOLED_DEFINITION,
            **self.rates(),
            "fraction": self.fraction,
            "tail_rule": "bottom",
            "sign_convention": SIGN_CONVENTION,
            "alpha": self.alpha,
            "test": TEST_DESCRIPTION,
            "layers": {name: {**layer.summary(), "neuron_table": layer.table} for name, layer in self.layers.items()},
            "consistent": [detail.to_dict() for detail in self.details],
            "eps_curve": self.eps_curve,
            "timings_s": self.timings,
        }


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def resolve_layers(model: PixelModel, layers: str | Sequence[str] | None) -> list[str]:
    """``None``: NIP's default layer; ``"all"``: every probe layer; a name or a list of names."""
    if layers is None:
        return [default_layer(model)]
    if isinstance(layers, str):
        return [info.name for info in probe_layers(model)] if layers == "all" else [layers]
    names = list(layers)
    if not names:
        raise InputError("no layer given")
    return names


def _check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction) \
            or not 0 < fraction < 0.5:
        raise InputError(f"fraction must be a number in (0, 0.5), got {fraction!r}")
    return float(fraction)


def _block_seed(seed: int, block: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(block)]).generate_state(1)[0])


def _attack(model: PixelModel, x: torch.Tensor, attack: str, params: Mapping[str, Any], seed: int):
    """Adversarial images, clean and adversarial predictions, block by block (away from the clean prediction)."""
    adversarial, clean_pred, adv_pred, resolved = [], [], [], {}
    for block, start in enumerate(range(0, x.shape[0], BLOCK)):
        report = run_attack(model, x[start:start + BLOCK], attack, dict(params), seed=_block_seed(seed, block))
        adversarial.append(report.adversarial)
        clean_pred.append(report.clean_pred)
        adv_pred.append(report.adv_pred)
        resolved = dict(report.params)
    return torch.cat(adversarial), torch.cat(clean_pred), torch.cat(adv_pred), resolved


def _influence(model: PixelModel, x: torch.Tensor, layers: list[str], target: torch.Tensor) -> dict[str, InfluenceMap]:
    """Every layer's influence toward ``target`` (the clean prediction), block by block."""
    parts: list[dict[str, InfluenceMap]] = []
    for start in range(0, x.shape[0], BLOCK):
        parts.append(neuron_influence(model, x[start:start + BLOCK], layers, target=target[start:start + BLOCK]))
    out = {}
    for name in layers:
        first = parts[0][name]
        out[name] = InfluenceMap(
            layer=name, method=first.method, granularity=first.granularity, target=target.cpu(),
            values=torch.cat([p[name].values for p in parts]), activations=torch.cat([p[name].activations for p in parts]),
            shape=first.shape, kind=first.kind, tokens=first.tokens,
        )
    return out


def _count(front_or_tail: torch.Tensor, change: torch.Tensor, direction: str) -> torch.Tensor:
    """Per image (rows) and group member: did the quantity move in ``direction``?"""
    picked = change.gather(1, front_or_tail)
    return picked < 0 if direction == "fell" else picked > 0


def layer_counts(measures: Measures, fooled: torch.Tensor, fraction: float) -> tuple[dict[str, dict[str, Any]], int, int]:
    """NIP's four counts on the fooled images: ``{key: {"attack": Rate, "control": Rate,
    "difference": Difference}}`` (as dicts), and the front and tail sizes."""
    rows = fooled.nonzero().flatten()
    groups = partition(measures.clean_influence[rows], fraction, fraction, "bottom")
    out: dict[str, dict[str, Any]] = {}
    for key, group, quantity, direction in COUNTS:
        members = groups.front if group == "front" else groups.tail
        hits = {side: _count(members, measures.change(quantity, side)[rows], direction) for side in ("attack", "control")}
        out[key] = {
            "attack": stats.rate_of(hits["attack"], empty_reason="the attack fooled no image").to_dict(),
            "control": stats.rate_of(hits["control"], empty_reason="the attack fooled no image").to_dict(),
            "difference": stats.paired_difference(hits["attack"].float(), hits["control"].float(), resamples=RESAMPLES).to_dict(),
            "group": group,
            "quantity": quantity,
            "direction": direction,
        }
    return out, groups.front_size, groups.tail_size


def _empty_counts(reason: str) -> dict[str, dict[str, Any]]:
    empty = stats.rate(0, 0, empty_reason=reason).to_dict()
    return {key: {"attack": empty, "control": empty, "difference": {"difference": None, "reason": reason},
                  "group": group, "quantity": quantity, "direction": direction}
            for key, group, quantity, direction in COUNTS}


def per_image_spearman(before: torch.Tensor, after: torch.Tensor) -> tuple[list[float | None], set[str]]:
    """Spearman's ρ of each row of ``before`` vs the same row of ``after`` (``(N, neurons)``), all
    rows at once: Pearson's r of the rows' average ranks (``scipy.stats.rankdata`` and
    ``scipy.stats.pearsonr`` along axis 1: what ``spearmanr`` computes for one pair). A row where
    :func:`neuronviz.methods.stats.undefined_reason` finds ρ undefined gives ``None``; the reasons are returned."""
    from scipy.stats import pearsonr, rankdata

    a, b = before.double().numpy(), after.double().numpy()
    values: list[float | None] = [None] * a.shape[0]
    reasons: set[str] = set()
    defined = []
    for i in range(a.shape[0]):
        reason = stats.undefined_reason(a[i], b[i])
        if reason:
            reasons.add(reason)
        else:
            defined.append(i)
    if defined:
        rho = pearsonr(rankdata(a[defined], axis=1), rankdata(b[defined], axis=1), axis=1).statistic
        for i, value in zip(defined, np.atleast_1d(rho)):
            values[i] = float(value) if math.isfinite(float(value)) else None
    return values, reasons


def layer_spearman(measures: Measures, fooled: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Median over the fooled images of the per-image Spearman ρ of clean vs perturbed influence
    (images where ρ is not defined left out and counted), with its bootstrap interval."""
    rows = fooled.nonzero().flatten()
    out: dict[str, dict[str, Any]] = {}
    for side, after in (("attack", measures.adversarial_influence), ("control", measures.control_influence)):
        values, reasons = per_image_spearman(measures.clean_influence[rows], after[rows])
        entry = stats.median_with_interval(values, what="per-image correlations", resamples=RESAMPLES)
        if entry["median"] is None:
            entry["reason"] = "; ".join(sorted(reasons)) if reasons else "the attack fooled no image"
        elif entry["left_out"]:
            entry["left_out_reasons"] = sorted(reasons)
        out[side] = entry
    return out


def neuron_table(layer: str, labels: Sequence[str], measures: Measures, fooled: torch.Tensor) -> list[dict[str, Any]]:
    """Per neuron: the change under attack and control over the fooled images (mean and
    quartiles), and the paired test of attack − control (interval, p; ``q`` is filled in later
    across layers by :func:`population`). ``consistent`` is set by the caller."""
    from scipy import stats as sps

    rows = fooled.nonzero().flatten()
    table: list[dict[str, Any]] = [{"layer": layer, "neuron": j, "label": labels[j]} for j in range(len(labels))]
    for quantity in QUANTITIES:
        attack = measures.change(quantity, "attack")[rows].double().numpy()
        control = measures.change(quantity, "control")[rows].double().numpy()
        clean = getattr(measures, f"clean_{quantity}")[rows].double().numpy()
        n = attack.shape[0]
        diff = attack - control
        mean = diff.mean(0) if n else np.full(len(labels), np.nan)
        sd = diff.std(0, ddof=1) if n > 1 else np.full(len(labels), np.nan)
        testable = (sd > 0) if n > 1 else np.zeros(len(labels), bool)
        p = np.full(len(labels), np.nan)
        low = np.full(len(labels), np.nan)
        high = np.full(len(labels), np.nan)
        if testable.any():
            result = sps.ttest_rel(attack[:, testable], control[:, testable], axis=0)
            ci = result.confidence_interval(confidence_level=stats.CONFIDENCE)
            p[testable], low[testable], high[testable] = result.pvalue, ci.low, ci.high
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(testable, mean / np.where(sd > 0, sd, 1.0), np.nan)
        scale = np.abs(clean).mean(0) if n else np.full(len(labels), np.nan)
        for j, row in enumerate(table):
            row[f"{quantity}_clean_mean"] = _num(clean[:, j].mean()) if n else None
            for side, values in (("attack", attack), ("control", control)):
                if n:
                    q10, q25, q50, q75, q90 = np.quantile(values[:, j], [0.1, 0.25, 0.5, 0.75, 0.9])
                    row.update({f"{quantity}_{side}_mean": _num(values[:, j].mean()), f"{quantity}_{side}_median": _num(q50),
                                f"{quantity}_{side}_q10": _num(q10), f"{quantity}_{side}_q25": _num(q25),
                                f"{quantity}_{side}_q75": _num(q75), f"{quantity}_{side}_q90": _num(q90)})
                else:
                    row.update({f"{quantity}_{side}_{s}": None for s in ("mean", "median", "q10", "q25", "q75", "q90")})
            row[f"{quantity}_difference"] = _num(mean[j])
            row[f"{quantity}_difference_low"] = _num(low[j])
            row[f"{quantity}_difference_high"] = _num(high[j])
            row[f"{quantity}_relative_difference"] = _num(mean[j] / scale[j]) if n and scale[j] > 0 else None
            row[f"{quantity}_effect_dz"] = _num(effect[j])
            row[f"{quantity}_p"] = _num(p[j])
            row[f"{quantity}_q"] = None
            if not testable[j]:
                row[f"{quantity}_reason"] = ("fewer than two fooled images" if n < 2 else
                                             "attack and control change it identically on every image (no variance)")
        for row in table:
            row["n"] = int(n)
    return table


def _num(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _neuron_labels(influence: InfluenceMap) -> tuple[str, ...]:
    return tuple(influence.neuron_label(j) for j in range(influence.neurons))


def population(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "pgd",
    params: Mapping[str, Any] | None = None,
    layers: str | Sequence[str] | None = None,
    fraction: float = DEFAULT_FRACTION,
    seed: int = 0,
    alpha: float = ALPHA,
    ids: Sequence[str] | None = None,
    details: int = MAX_DETAILED,
    exemplars: int = EXEMPLARS,
    eps_scales: Sequence[float] | None = EPS_SCALES,
    curve_images: int = CURVE_IMAGES,
) -> Population:
    """The neurons of a data set under ``attack`` and its matched control (module docstring).

    Args:
        model: a :class:`PixelModel` (its lock is held by each library call).
        images: ``(N, C, H, W)`` pixels in [0, 1]; ``labels``: their true classes ``(N,)``.
        attack, params: a registered attack and its parameters (untargeted, away from the clean prediction).
        layers: ``None`` (NIP's default layer), ``"all"``, a name or a list of names.
        fraction: front and tail share of each layer, in (0, 0.5).
        seed: the attack's and the control's seed.
        alpha: false discovery rate of the consistent neurons.
        ids: one name per image (exemplars name them).
        details: how many consistent neurons get exemplars and an ε curve (the strongest by |d_z|).
        exemplars: top-activating images per detailed neuron.
        eps_scales: multiples of the attack's ε for the activation-vs-ε curve (``None``: no curve).
        curve_images: images of the curve (the first of the set).
    """
    x = model.check_pixels(images, "images")
    y = model.check_classes(labels, x.shape[0], "labels").cpu()
    fraction, names, ids = _checked_setup(model, x, fraction, seed, alpha, layers, ids)
    info = get_attack(attack)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    adversarial, clean_pred, adv_pred, resolved = _attack(model, x, info.name, params or {}, seed)
    timings["attack"] = time.perf_counter() - started
    norm = control_norm_for(info.name)
    control = matched_control(x.cpu(), adversarial, norm, seed)
    started = time.perf_counter()
    clean_pred = clean_pred.cpu()
    target = clean_pred.to(model.device)
    maps = {side: _influence(model, batch.to(model.device), names, target)
            for side, batch in (("clean", x), ("adversarial", adversarial), ("control", control))}
    timings["influence"] = time.perf_counter() - started
    with torch.no_grad():
        control_pred = torch.cat([model(control[s:s + BLOCK].to(model.device)).argmax(1).cpu()
                                  for s in range(0, control.shape[0], BLOCK)])
    fooled = adv_pred.cpu() != clean_pred

    started = time.perf_counter()
    results = {name: _layer_population(model, name, maps, fooled, fraction) for name in names}
    _correct(results, alpha)
    timings["statistics"] = time.perf_counter() - started

    started = time.perf_counter()
    detail_list, curve = _neuron_details(model, x, info.name, resolved, results, details, exemplars, ids,
                                         eps_scales, seed, target, curve_images)
    timings["details"] = time.perf_counter() - started

    return Population(
        model_name=model.name, model_hash=model.content_hash, attack=info.name, params=resolved, seed=seed,
        control_norm=norm, fraction=fraction, images=int(x.shape[0]), labels=y, clean_pred=clean_pred,
        adv_pred=adv_pred.cpu(), control_pred=control_pred, fooled=fooled, ids=ids, layers=results,
        details=tuple(detail_list), eps_curve=curve, alpha=float(alpha), timings=timings,
    )


def _checked_setup(
    model: PixelModel,
    x: torch.Tensor,
    fraction: float,
    seed: int,
    alpha: float,
    layers: str | Sequence[str] | None,
    ids: Sequence[str] | None,
) -> tuple[float, list[str], tuple[str, ...]]:
    """Check :func:`population`'s options before any work; the fraction, the layer names and the image ids."""
    fraction = _check_fraction(fraction)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must be in (0, 1), got {alpha!r}")
    names = resolve_layers(model, layers)
    model.layers(names)  # unknown names: the error with close names, before any work
    infos = [layer_info(model, name) for name in names]
    total = sum(info.neurons for info in infos)
    if total > MAX_NEURONS:
        raise InputError(f"{len(names)} layers hold {total:,} neurons; one analysis takes at most {MAX_NEURONS:,}. "
                         "Choose fewer layers.")
    ids = tuple(ids) if ids is not None else tuple(f"image {i}" for i in range(x.shape[0]))
    if len(ids) != x.shape[0]:
        raise InputError(f"{len(ids)} ids for {x.shape[0]} images")
    return fraction, names, ids


def _layer_population(
    model: PixelModel, name: str, maps: Mapping[str, Mapping[str, InfluenceMap]], fooled: torch.Tensor, fraction: float
) -> LayerPopulation:
    """One layer's counts, correlations and neuron table (not yet FDR-corrected: :func:`_correct`)."""
    measures = Measures(*(maps[side][name].activations for side in ("clean", "adversarial", "control")),
                        *(maps[side][name].values for side in ("clean", "adversarial", "control")))
    neuron_labels = _neuron_labels(maps["clean"][name])
    reason = None
    front_size = tail_size = None
    try:
        counts, front_size, tail_size = layer_counts(measures, fooled, fraction) if bool(fooled.any()) else \
            (_empty_counts("the attack fooled no image"), None, None)
        if not bool(fooled.any()):
            reason = "the attack fooled no image"
    except InputError as error:  # a layer too small for a front and a tail
        reason = str(error)
        counts = _empty_counts(reason)
    info_l = layer_info(model, name)
    return LayerPopulation(
        layer=name, kind=info_l.kind, neurons=len(neuron_labels), labels=neuron_labels,
        spatial=len(info_l.output_shape) == 3 and info_l.layout == "channels_first",
        measures=measures, front_size=front_size, tail_size=tail_size, counts=counts,
        spearman=layer_spearman(measures, fooled), table=neuron_table(name, neuron_labels, measures, fooled),
        reason=reason,
    )


def _neuron_details(
    model: PixelModel,
    x: torch.Tensor,
    attack: str,
    resolved: Mapping[str, Any],
    results: Mapping[str, LayerPopulation],
    details: int,
    exemplars: int,
    ids: Sequence[str],
    eps_scales: Sequence[float] | None,
    seed: int,
    target: torch.Tensor,
    curve_images: int,
) -> tuple[list[NeuronDetail], dict[str, Any]]:
    """Exemplars and the activation-vs-ε curve of the ``details`` strongest consistent neurons; the
    details and the curve (its per-neuron lines moved into the details)."""
    chosen = strongest(results, details)
    detail_list = []
    curve = eps_curve(model, x[:curve_images], attack, resolved, chosen, eps_scales, seed, target[:curve_images])
    for layer, j in chosen:
        row = next(r for r in results[layer].table if r["neuron"] == j)
        examples = top_exemplars(model, x, layer, j, results[layer].measures.clean_activation[:, j], ids,
                                 exemplars, results[layer].spatial)
        detail_list.append(NeuronDetail(layer, j, results[layer].labels[j], row, examples,
                                        curve.get("neurons", {}).get(f"{layer}#{j}", [])))
    curve.pop("neurons", None)
    return detail_list, curve


def _correct(results: Mapping[str, LayerPopulation], alpha: float) -> None:
    """Benjamini–Hochberg over every neuron of every layer, per quantity; marks ``consistent``
    (activation q < alpha) and ``direction`` (the sign of the attack − control difference)."""
    rows = [row for layer in results.values() for row in layer.table]
    for quantity in QUANTITIES:
        p = np.array([row[f"{quantity}_p"] if row[f"{quantity}_p"] is not None else np.nan for row in rows], float)
        q = stats.fdr(p)
        for row, value in zip(rows, q):
            row[f"{quantity}_q"] = _num(value)
    for row in rows:
        q = row["activation_q"]
        row["consistent"] = q is not None and q < alpha
        diff = row["activation_difference"]
        row["direction"] = None if not row["consistent"] or diff is None else ("lowered" if diff < 0 else "raised")


def strongest(results: Mapping[str, LayerPopulation], count: int) -> list[tuple[str, int]]:
    """The ``count`` consistent neurons with the largest |activation d_z|, as (layer, neuron)."""
    rows = [row for layer in results.values() for row in layer.table if row["consistent"]]
    rows.sort(key=lambda r: -abs(r["activation_effect_dz"] or 0.0))
    return [(r["layer"], int(r["neuron"])) for r in rows[:max(0, int(count))]]


# --------------------------------------------------------------------------------------------
# Exemplars and receptive fields
# --------------------------------------------------------------------------------------------


def receptive_field(model: PixelModel, image: torch.Tensor, layer: str, channel: int) -> tuple[tuple[int, int] | None, tuple[int, int, int, int] | None, str | None]:
    """The strongest position of ``channel`` of a spatial ``layer`` on one image ``(C, H, W)`` and
    the input box that reaches it: the bounding box of the pixels where the gradient of that one
    activation is non-zero (``(top, left, bottom, right)``, exclusive ends). ``(position, None,
    reason)`` when the gradient is zero everywhere (a dead position)."""
    x = model.check_pixels(image.unsqueeze(0) if image.dim() == 3 else image, "image").clone().requires_grad_(True)
    with probe(model, [layer]) as rec:
        rec.forward(x)
        activation = rec.activation(layer)
        if activation.dim() != 4:
            return None, None, "not a spatial layer"
        plane = activation[0, channel]
        flat = int(plane.detach().flatten().argmax())
        h, w = divmod(flat, plane.shape[1])
        (grad,) = torch.autograd.grad(plane[h, w], x)
    support = grad[0].abs().sum(0) > 0
    if not bool(support.any()):
        return (h, w), None, "the gradient of this position is zero everywhere (a dead unit)"
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    return (h, w), (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1), None


def top_exemplars(model: PixelModel, x: torch.Tensor, layer: str, neuron: int, activation: torch.Tensor,
                  ids: Sequence[str], count: int, spatial: bool) -> tuple[Exemplar, ...]:
    """The ``count`` images of the set with the highest clean activation of the neuron."""
    order = torch.argsort(activation, descending=True, stable=True)[:max(0, int(count))].tolist()
    out = []
    for i in order:
        position = box = reason = None
        if spatial:
            position, box, reason = receptive_field(model, x[i], layer, neuron)
        out.append(Exemplar(int(i), ids[i], float(activation[i]), position, box, reason))
    return tuple(out)


# --------------------------------------------------------------------------------------------
# Activation against ε
# --------------------------------------------------------------------------------------------


def eps_curve(model: PixelModel, x: torch.Tensor, attack: str, params: Mapping[str, Any], neurons: Sequence[tuple[str, int]],
              scales: Sequence[float] | None, seed: int, target: torch.Tensor) -> dict[str, Any]:
    """Mean activation of each chosen neuron at a few ε (multiples of the attack's), under the
    attack and its control, on ``x``; the attack's success (fooled share) at each ε."""
    base = params.get("eps")
    if not scales:
        return {"eps": [], "reason": "no ε values asked for"}
    if not isinstance(base, (int, float)) or base <= 0:
        return {"eps": [], "reason": f"{attack} has no ε budget to vary"}
    if not neurons:
        return {"eps": [], "reason": "no neuron moved consistently beyond the control"}
    layers = sorted({layer for layer, _ in neurons})
    eps_values = sorted({min(1.0, round(float(base) * float(s), 6)) for s in scales if s > 0})
    per_neuron: dict[str, list[dict[str, Any]]] = {f"{layer}#{j}": [] for layer, j in neurons}
    success = []
    with torch.no_grad():
        clean_maps = neuron_influence(model, x, layers, method="activation")
    for layer, j in neurons:
        per_neuron[f"{layer}#{j}"].append({"eps": 0.0, "attack": float(clean_maps[layer].activations[:, j].mean()),
                                           "control": float(clean_maps[layer].activations[:, j].mean())})
    for eps in eps_values:
        changed = dict(params)
        changed["eps"] = eps
        if "alpha" in changed and isinstance(changed["alpha"], (int, float)):
            changed["alpha"] = float(changed["alpha"]) * eps / float(base)  # the step keeps its share of the budget
        adversarial, clean_pred, adv_pred, _ = _attack(model, x, attack, changed, seed)
        control = matched_control(x.cpu(), adversarial, control_norm_for(attack), seed)
        success.append({"eps": eps, **stats.rate_of(adv_pred != clean_pred).to_dict()})
        attacked = neuron_influence(model, adversarial.to(model.device), layers, method="activation")
        noise = neuron_influence(model, control.to(model.device), layers, method="activation")
        for layer, j in neurons:
            per_neuron[f"{layer}#{j}"].append({"eps": eps, "attack": float(attacked[layer].activations[:, j].mean()),
                                               "control": float(noise[layer].activations[:, j].mean())})
    return {"eps": [0.0, *eps_values], "images": int(x.shape[0]), "success": success, "neurons": per_neuron,
            "step_rule": "alpha scaled with ε" if "alpha" in params else None}
