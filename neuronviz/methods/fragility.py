"""Fragile and robust first-layer filters: nodal dropout, adversarial targeting, compress/amplify.

Pravin, Martino, Nicosia, Ojha, "Adversarial Robustness in Deep Learning: Attacks on Fragile
Neurons", ICANN 2021 (arXiv:2201.12347). Certain (abstract): fragile and robust neurons are found
by **nodal dropout of the first convolutional layer** (of a vision transformer: its patch
embedding, whose filters are its first layer); an "adversarial targeting" algorithm
correlates them with the distribution of an FGSM attack; the fix compresses features in robust
neurons and amplifies fragile ones proportionally. No code is public. **Reconstruction**
(METHODS.md §3), with the uncertain choices as parameters:

1. Nodal dropout: for each filter ``i`` of the first convolution, zero its output channel and
   measure accuracy on the clean images and on their attacked versions:
   ``ΔA_clean(i)``, ``ΔA_adv(i)`` (accuracy with the filter dropped − accuracy without dropout).
2. Targeting: ``T(i) = mean|a_i(x') − a_i(x)| / mean|a_i(x)|`` (the first convolution's output,
   over images and positions), normalised into a distribution over filters.
3. Fragility score ``s_i = (d_i / max d + T_i / max T) / 2 ∈ [0, 1]`` with ``d_i = |ΔA_adv(i)|``.
   A filter is **robust** when dropping it changes neither accuracy by more than ``tolerance``
   (default 0.01), **fragile** when it is not robust and ``s_i ≥ fragile_threshold`` (0.5),
   **neutral** otherwise. ``correlation`` is Spearman's rank correlation between ``d`` (the
   dropout ranking) and ``T`` (the targeting distribution): the paper's "correlation".
**The control** (METHODS.md, "Measuring a claim"): the same targeting computed from a matched
random perturbation (:func:`neuronviz.methods.controls.matched_control`: random signs × the attack's L∞
per image, or its L2 / L0 size) beside the attack's. A first layer's filters are moved by *any*
change in proportion to their own size, so the attack's targeting says something about the
attack only where it differs from the noise's. Reported: ρ of dropout vs the attack's targeting
and vs the noise's (each with a bootstrap interval over filters and a permutation p,
:func:`neuronviz.methods.stats.correlation`), ρ of the two targetings, and the **specificity** of the
fragile filters: per image, the share of the first layer's change that falls on the fragile
filters under the attack minus under the noise (:func:`neuronviz.methods.stats.paired_difference` over
images). The fragile filters are *specific to the attack* only when that difference's interval
lies above zero.

4. Compress/amplify (:func:`rescale_first_layer`): on a **copy** of the model, multiply the
   first convolution's output channel ``i`` (its weights and bias) by ``1 + β·r_i`` if fragile,
   ``1 − β·r_i`` if robust, 1 if neutral; ``r_i = s_i`` for a fragile filter and ``1 − s_i`` for
   a robust one (its normalised fragility or robustness), ``β`` default 0.2.

The sweep is batched: the attack and the first convolution run once on the clean and attacked
batch (one :func:`neuronviz.core.probe.probe` pass records the first layer's output ``A``); then
chunks of ``K`` filters at a time feed ``K`` channel-masked copies of ``A`` through the rest of
the network in one forward pass each, using probe's ``replace`` with a tiny dummy input (the
first convolution then costs nothing). The dummy shortcut is checked against the recorded
logits on a few images first; if the network uses its input anywhere else, the sweep falls back
to feeding the real images (still batched, ``sweep_path="full-input"``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import probe
from neuronviz.infra.errors import InputError
from neuronviz.methods import stats
from neuronviz.methods.attacks import get_attack, run_attack
from neuronviz.methods.attacks.report import SUCCESS_DEFINITION, AttackReport
from neuronviz.methods.controls import control_norm_for, matched_control
from neuronviz.methods.influence import probe_layers, spearman

LABELS = ("fragile", "neutral", "robust")
#: Resamples of the control's bootstrap intervals and permutation p-values (p ≥ 1/1000).
RESAMPLES = 999
#: Memory budget of one chunk of channel-masked first-layer outputs (bytes).
CHUNK_BYTES = 256 * 2**20


def first_conv(model: PixelModel) -> str:
    """The qualified name of the model's first 2-D convolution in forward order (called once),
    found by module type, whatever its name: a CNN's first layer, a vision transformer's patch
    embedding (timm ``patch_embed.proj``: each filter embeds a patch)."""
    convs = probe_layers(model, kinds=[nn.Conv2d])
    if not convs:
        raise InputError(f"{model.name} has no convolutional layer; first-layer fragility needs one")
    return convs[0].name


# --------------------------------------------------------------------------------------------
# Nodal dropout sweep
# --------------------------------------------------------------------------------------------


def _dummy_size(conv: nn.Conv2d) -> tuple[int, int]:
    """The smallest input on which ``conv`` still produces an output (the first layer's input)."""
    size = []
    padding = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    for k, p, d in zip(conv.kernel_size, padding, conv.dilation):
        size.append(max(1, d * (k - 1) + 1 - 2 * p))
    return size[0], size[1]


@dataclass(frozen=True)
class DropoutSweep:
    """What :func:`nodal_dropout` measured: ``logits (F, N, K)`` with filter ``filters[i]``
    dropped in row ``i``; ``base_logits (N, K)`` and ``first_output (N, F, H, W)`` without
    dropout; ``path``: "dummy-input", "full-input" or "loop" (how the sweep was fed)."""

    layer: str
    filters: tuple[int, ...]
    logits: torch.Tensor
    base_logits: torch.Tensor
    first_output: torch.Tensor
    path: str

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(2)


def nodal_dropout(
    model: PixelModel,
    x: torch.Tensor,
    layer: str | None = None,
    filters: list[int] | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    batched: bool = True,
    filters_per_pass: int | None = None,
) -> DropoutSweep:
    """Logits of ``x`` with each filter of ``layer`` dropped in turn (its output channel zeroed).

    ``batched=True`` (the default) runs the network once to record the layer's output ``A``
    (and the logits without dropout), then only the layers after it: ``filters_per_pass``
    filters per forward pass, fed through probe's ``replace`` with a tiny dummy input. With one
    filter per pass (the default on a CPU, where bigger batches lose the cache) the channel is
    zeroed in ``A`` in place and restored after the pass, so nothing of ``A``'s size is copied;
    with ``K > 1`` (the default on a GPU: as many as fit in ``chunk_bytes``) ``K`` masked copies
    are stacked into one batch. ``batched=False`` is the naive reference: one full forward pass
    of ``x`` per filter.
    """
    x = model.check_pixels(x)
    layer = layer or first_conv(model)
    module = model.layer(layer)
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise InputError(f"chunk_bytes must be a positive integer, got {chunk_bytes!r}")
    if filters_per_pass is not None and (
        isinstance(filters_per_pass, bool) or not isinstance(filters_per_pass, int) or filters_per_pass < 1
    ):
        raise InputError(f"filters_per_pass must be a positive integer, got {filters_per_pass!r}")
    with model.lock, torch.no_grad():
        with probe(model, [layer]) as rec:
            base_logits = rec.forward(x)
            first = rec.activation(layer).detach()
        count = first.shape[1]
        filters = list(range(count)) if filters is None else list(filters)
        if any(not 0 <= f < count for f in filters):
            raise InputError(f"filters must be in 0..{count - 1}")
        if not batched:
            rows = []
            for f in filters:
                with probe(model, [layer], replace={layer: partial_zero(f)}) as rec:
                    rows.append(rec.forward(x).cpu())
            return DropoutSweep(layer, tuple(filters), torch.stack(rows), base_logits.cpu(), first.cpu(), "loop")
        n = x.shape[0]
        path = "dummy-input"
        dummy_size = _dummy_size(module) if isinstance(module, nn.Conv2d) else model.input_size
        check = min(n, 4)
        try:  # the shortcut is valid only if the network's input reaches the rest only through `layer`
            with probe(model, [layer], replace={layer: first[:check]}) as rec:
                same = rec.forward(x.new_zeros(check, model.channels, *dummy_size))
            if not torch.allclose(same, base_logits[:check], rtol=1e-4, atol=1e-5):
                path = "full-input"
        except (RuntimeError, InputError, AssertionError, ValueError):  # timm's PatchEmbed asserts the input size
            path = "full-input"
        if filters_per_pass is None:  # CPU: one filter per pass (bigger batches lose the cache); GPU: fill the budget
            budget = max(1, chunk_bytes // max(1, first.numel() * first.element_size()))
            filters_per_pass = 1 if first.device.type == "cpu" else budget
        per_pass = min(len(filters), filters_per_pass)
        rows = []
        for start in range(0, len(filters), per_pass):
            chunk = filters[start : start + per_pass]
            if len(chunk) == 1:
                # Zero the channel of the recorded output in place and put it back afterwards: no
                # copy of the whole output (a fresh tensor of its size costs as much as a layer).
                saved = first[:, chunk[0]].clone()
                first[:, chunk[0]] = 0
                try:
                    logits = _forward_replaced(model, layer, first, x, n, path, dummy_size)
                finally:
                    first[:, chunk[0]] = saved
            else:
                masked = first.unsqueeze(0).repeat(len(chunk), 1, 1, 1, 1)  # (K, N, F, H, W)
                masked[torch.arange(len(chunk)), :, torch.tensor(chunk)] = 0
                logits = _forward_replaced(model, layer, masked.flatten(0, 1), x, n * len(chunk), path, dummy_size)
            rows.append(logits.view(len(chunk), n, -1).cpu())
    return DropoutSweep(layer, tuple(filters), torch.cat(rows), base_logits.cpu(), first.cpu(), path)


def _forward_replaced(
    model: PixelModel, layer: str, output: torch.Tensor, x: torch.Tensor, rows: int, path: str, dummy_size: tuple[int, int]
) -> torch.Tensor:
    """The logits when ``layer`` outputs ``output`` (``rows`` images), fed a dummy or the real input."""
    feed = x.new_zeros(rows, model.channels, *dummy_size) if path == "dummy-input" else x.repeat(rows // len(x), 1, 1, 1)
    with probe(model, [layer], replace={layer: output}) as rec:
        return rec.forward(feed)


def partial_zero(channel: int):
    """A ``replace`` function for :func:`neuronviz.core.probe.probe` that zeroes one output channel."""

    def zero(output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, channel] = 0
        return output

    return zero


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FragilityReport:
    """Nodal dropout of every first-layer filter, the attack's targeting, and the verdicts.

    Per filter ``(F,)``: ``clean_accuracy_dropped``, ``adv_accuracy_dropped``, ``delta_clean``,
    ``delta_adv`` (dropped − baseline accuracy), ``targeting`` (a distribution: sums to 1, or all
    zero), ``targeting_raw`` (``T(i)`` before normalisation), ``score`` (fragility in [0, 1]),
    ``strength`` (``r_i`` used by :func:`rescale_first_layer`), ``labels`` ("fragile",
    "neutral", "robust"). ``adversarial (N, C, H, W)``: the attacked images.

    ``attack_clean_pred``, ``attack_adv_pred (N,)``: the attack's own clean and adversarial
    predictions, and ``inputs_digest`` (:func:`inputs_digest` of the images and labels), so that
    :func:`evaluate_rescaled` on the same images with the same seed reuses this attack of the
    unchanged model instead of running it again (None in a report built by hand: then it runs).
    """

    model_name: str
    model_hash: str
    layer: str
    attack: str
    params: dict
    seed: int | None
    images: int
    clean_accuracy: float
    adv_accuracy: float
    clean_accuracy_dropped: torch.Tensor
    adv_accuracy_dropped: torch.Tensor
    delta_clean: torch.Tensor
    delta_adv: torch.Tensor
    targeting: torch.Tensor
    targeting_raw: torch.Tensor
    score: torch.Tensor
    strength: torch.Tensor
    labels: tuple[str, ...]
    correlation: float
    tolerance: float
    fragile_threshold: float
    adversarial: torch.Tensor
    sweep_path: str
    attack_clean_pred: torch.Tensor | None = None
    attack_adv_pred: torch.Tensor | None = None
    inputs_digest: str | None = None
    control: FragilityControl | None = None
    success: stats.Rate | None = None

    @property
    def filters(self) -> int:
        return len(self.labels)

    def indices(self, label: str) -> list[int]:
        """The filters with that label ("fragile", "neutral" or "robust"), most fragile first."""
        if label not in LABELS:
            raise InputError(f"label must be one of {LABELS}, got {label!r}")
        chosen = [i for i, lab in enumerate(self.labels) if lab == label]
        return sorted(chosen, key=lambda i: -float(self.score[i]))

    @property
    def fragile(self) -> list[int]:
        return self.indices("fragile")

    @property
    def robust(self) -> list[int]:
        return self.indices("robust")

    def factors(self, beta: float = 0.2) -> torch.Tensor:
        """Per-filter multipliers of the compress/amplify fix: ``1 ± β·r_i`` (1 for neutral)."""
        beta = _check_beta(beta)
        sign = torch.tensor([{"fragile": 1.0, "robust": -1.0, "neutral": 0.0}[lab] for lab in self.labels])
        return 1.0 + sign * beta * self.strength

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame(
            {
                "filter": np.arange(self.filters),
                "label": list(self.labels),
                "score": self.score.numpy(),
                "delta_clean": self.delta_clean.numpy(),
                "delta_adv": self.delta_adv.numpy(),
                "clean_accuracy_dropped": self.clean_accuracy_dropped.numpy(),
                "adv_accuracy_dropped": self.adv_accuracy_dropped.numpy(),
                "targeting": self.targeting.numpy(),
                "targeting_raw": self.targeting_raw.numpy(),
            }
        )
        if self.control is not None:
            frame["targeting_control"] = self.control.targeting.numpy()
            frame["targeting_control_raw"] = self.control.targeting_raw.numpy()
            frame["targeting_excess"] = self.control.excess.numpy()
            frame["targeting_excess_low"] = self.control.excess_low.numpy()
            frame["targeting_excess_high"] = self.control.excess_high.numpy()
            frame["targeting_excess_q"] = self.control.excess_q.numpy()
        return frame

    def rho(self) -> stats.Correlation:
        """ρ of |Δ adversarial accuracy| (dropout) vs the attack's targeting, with its bootstrap
        interval and permutation p (or "not defined" and the reason)."""
        if self.control is not None:
            return self.control.dropout_vs_attack
        return stats.correlation(self.delta_adv.abs().numpy(), self.targeting_raw.numpy(), resamples=RESAMPLES)

    def specific_to_attack(self) -> bool | None:
        """Whether the fragile filters take more of the attack's change than of the noise's (the
        interval of the per-image difference lies above zero); None without a control or fragile filters."""
        if self.control is None or not self.control.specificity.defined:
            return None
        return self.control.specificity.distinguishable and (self.control.specificity.value or 0.0) > 0

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "layer": self.layer,
            "attack": self.attack,
            "params": self.params,
            "seed": self.seed,
            "images": self.images,
            "clean_accuracy": self.clean_accuracy,
            "adv_accuracy": self.adv_accuracy,
            "correlation": None if math.isnan(self.correlation) else self.correlation,
            "tolerance": self.tolerance,
            "fragile_threshold": self.fragile_threshold,
            "fragile": self.fragile,
            "robust": self.robust,
            "sweep_path": self.sweep_path,
            "success": self.success.to_dict() if self.success is not None else None,
            "success_definition": SUCCESS_DEFINITION,
            "rho": self.rho().to_dict(),
            "control": self.control.to_dict() if self.control is not None else None,
            "specific_to_attack": self.specific_to_attack(),
            "filters": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                        for row in self.to_frame().to_dict(orient="records")],
        }


#: The one definition of an attack's success on a labelled set (the Batch page uses the same).
def success_rate(clean_pred: torch.Tensor, adv_pred: torch.Tensor) -> stats.Rate:
    """The attack's success as every page counts it (:data:`SUCCESS_DEFINITION`: the adversarial
    prediction differs from the clean one, over all images), with its Wilson interval."""
    clean_pred, adv_pred = clean_pred.cpu(), adv_pred.cpu()
    return stats.rate(int((adv_pred != clean_pred).sum()), int(clean_pred.numel()), empty_reason="no images")


@dataclass(frozen=True)
class FragilityControl:
    """The targeting computed from a matched random perturbation beside the attack's.

    ``norm``: the control's norm (the attack's); ``targeting``/``targeting_raw`` ``(F,)`` as the
    report's, from the noise; ``dropout_vs_attack``, ``dropout_vs_control``: ρ of |Δ adv. acc.|
    with each targeting; ``attack_vs_control``: ρ of the two targetings (near 1: the attack moves
    the filters as noise does). ``specificity``: per image, the fragile filters' share of the
    first layer's change under the attack minus under the noise (mean over images, interval, p).
    ``excess``, ``excess_low``, ``excess_high``, ``excess_q`` ``(F,)``: the same per filter
    (share under attack − share under noise, mean over images, a paired t-test's 95% interval,
    its p corrected by Benjamini–Hochberg over the filters).
    """

    norm: str
    seed: int | None
    targeting: torch.Tensor
    targeting_raw: torch.Tensor
    dropout_vs_attack: stats.Correlation
    dropout_vs_control: stats.Correlation
    attack_vs_control: stats.Correlation
    specificity: stats.Difference
    excess: torch.Tensor
    excess_low: torch.Tensor
    excess_high: torch.Tensor
    excess_q: torch.Tensor
    control_accuracy: float

    def to_dict(self) -> dict:
        return {
            "norm": self.norm,
            "seed": self.seed,
            "rho_dropout_vs_attack_targeting": self.dropout_vs_attack.to_dict(),
            "rho_dropout_vs_control_targeting": self.dropout_vs_control.to_dict(),
            "rho_attack_vs_control_targeting": self.attack_vs_control.to_dict(),
            "fragile_share_attack_minus_control": self.specificity.to_dict(),
            "control_accuracy": self.control_accuracy,
        }


def per_image_shares(clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """``(N, F)``: per image, each filter's share of the first layer's change (``mean|Δa_i|``
    over positions, divided by the filter's clean ``mean|a_i|`` over the set, normalised to sum 1)."""
    size = clean.abs().transpose(0, 1).flatten(1).mean(1).clamp_min(1e-12)  # (F,) over the set, as targeting()
    change = (perturbed - clean).abs().flatten(2).mean(2) / size  # (N, F)
    total = change.sum(1, keepdim=True)
    return torch.where(total > 0, change / total.clamp_min(1e-30), torch.zeros_like(change))


def fragility_control(
    clean: torch.Tensor, adversarial: torch.Tensor, control: torch.Tensor, delta_adv: torch.Tensor,
    raw_attack: torch.Tensor, fragile: list[int], norm: str, seed: int | None, control_accuracy: float,
) -> FragilityControl:
    """The control's targeting and the tests beside the attack's (first-layer outputs ``(N, F, H, W)``)."""
    raw_control = targeting(clean, control)
    total = raw_control.sum()
    distribution = raw_control / total if total > 0 else torch.zeros_like(raw_control)
    dropout = delta_adv.abs().numpy()
    attack_shares, control_shares = per_image_shares(clean, adversarial), per_image_shares(clean, control)
    if fragile:
        specificity = stats.paired_difference(attack_shares[:, fragile].sum(1), control_shares[:, fragile].sum(1),
                                              resamples=RESAMPLES)
    else:
        specificity = stats.Difference(None, None, None, None, int(clean.shape[0]), "no fragile filter")
    # Per filter: a paired t-test over images (scipy, vectorised over the filters), BH-corrected.
    from scipy.stats import ttest_rel

    a, c = attack_shares.double().numpy(), control_shares.double().numpy()
    count = a.shape[1]
    excess = (a - c).mean(0)
    low, high, p = np.full(count, np.nan), np.full(count, np.nan), np.full(count, np.nan)
    varies = (a - c).std(0) > 0
    if a.shape[0] > 1 and varies.any():
        result = ttest_rel(a[:, varies], c[:, varies], axis=0)
        interval = result.confidence_interval(confidence_level=stats.CONFIDENCE)
        p[varies], low[varies], high[varies] = result.pvalue, interval.low, interval.high
    return FragilityControl(
        norm=norm, seed=seed, targeting=distribution, targeting_raw=raw_control,
        dropout_vs_attack=stats.correlation(dropout, raw_attack.numpy(), resamples=RESAMPLES),
        dropout_vs_control=stats.correlation(dropout, raw_control.numpy(), resamples=RESAMPLES),
        attack_vs_control=stats.correlation(raw_attack.numpy(), raw_control.numpy(), resamples=RESAMPLES),
        specificity=specificity,
        excess=torch.tensor(excess), excess_low=torch.tensor(low), excess_high=torch.tensor(high),
        excess_q=torch.tensor(stats.fdr(p)), control_accuracy=control_accuracy,
    )


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or not 0 <= beta <= 1:
        raise InputError(f"beta must be in [0, 1], got {beta!r}")
    return float(beta)


def _check_unit(value: float, name: str, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a number, got {value!r}")
    if not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise InputError(f"{name} must be in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return float(value)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two per-filter scores (:func:`neuronviz.methods.influence.spearman`)."""
    return spearman(a.numpy(), b.numpy())


def targeting(clean: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """``T(i) = mean|a_i(x') − a_i(x)| / mean|a_i(x)|`` per channel of ``(N, F, H, W)`` outputs
    (0 for a channel that is zero on the clean images and unchanged by the attack)."""
    change = (adversarial - clean).abs().transpose(0, 1).flatten(1).mean(1)
    size = clean.abs().transpose(0, 1).flatten(1).mean(1)
    return torch.where(change == 0, torch.zeros_like(change), change / size.clamp_min(1e-12))


def first_layer_fragility(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str = "fgsm",
    eps: float = 0.1,
    params: Mapping | None = None,
    seed: int | None = 0,
    tolerance: float = 0.01,
    fragile_threshold: float = 0.5,
    layer: str | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> FragilityReport:
    """Nodal dropout of every filter of the first convolution, on clean and attacked images.

    (Long because it checks its options and fills the :class:`FragilityReport` field by field; the
    attack and sweeps are :func:`_attack_and_sweep`, the verdicts :func:`_verdicts`.)

    Args:
        model: a :class:`PixelModel` with a convolution (never changed; its lock is held).
        images: ``(N, C, H, W)`` pixels in [0, 1].
        labels: the true classes ``(N,)``.
        attack: a registered attack (default FGSM, as in the paper), run once by
            :func:`neuronviz.methods.attacks.run_attack` against ``labels``.
        eps: the attack's L∞ budget in (0, 1] (default 0.1, pixel units).
        params: other attack parameters.
        tolerance: largest accuracy change still "negligible" (robust filter).
        fragile_threshold: smallest fragility score of a fragile filter.
        layer: the convolution to sweep; default :func:`first_conv`.
        chunk_bytes: memory budget of the channel-masked copies fed per forward pass.
    """
    x = model.check_pixels(images, "images")
    y = model.check_classes(labels, x.shape[0], "labels")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or not 0 < eps <= 1:
        raise InputError(f"eps must be in (0, 1] (pixel units), got {eps!r}")
    tolerance = _check_unit(tolerance, "tolerance")
    fragile_threshold = _check_unit(fragile_threshold, "fragile_threshold")
    info = get_attack(attack)
    attack_params = dict(params or {})
    if any(p.name == "eps" for p in info.params):
        attack_params["eps"] = float(eps)
    layer = layer or first_conv(model)
    if not isinstance(model.layer(layer), nn.Conv2d):
        raise InputError(f"layer {layer!r} is not a 2-D convolution")

    norm = control_norm_for(info.name)
    report, sweep, control_logits, control_first = _attack_and_sweep(
        model, x, y, attack, attack_params, seed, layer, chunk_bytes, norm
    )
    predictions, base_logits, first, path = sweep.predictions, sweep.base_logits, sweep.first_output, sweep.path
    n = x.shape[0]
    truth = y.cpu()
    base_correct = base_logits.argmax(1) == torch.cat([truth, truth])
    clean_accuracy, adv_accuracy = float(base_correct[:n].float().mean()), float(base_correct[n:].float().mean())
    dropped_correct = predictions == torch.cat([truth, truth]).unsqueeze(0)  # (F, 2N)
    clean_dropped = dropped_correct[:, :n].float().mean(1)
    adv_dropped = dropped_correct[:, n:].float().mean(1)
    delta_clean, delta_adv = clean_dropped - clean_accuracy, adv_dropped - adv_accuracy

    raw = targeting(first[:n], first[n:])
    total = raw.sum()
    distribution = raw / total if total > 0 else torch.zeros_like(raw)
    dropout = delta_adv.abs()
    score = (_unit_max(dropout) + _unit_max(raw)) / 2
    verdicts, strength, fragile = _verdicts(score, delta_clean, delta_adv, tolerance, fragile_threshold)
    control = fragility_control(
        first[:n], first[n:], control_first, delta_adv, raw, fragile, norm, seed,
        float((control_logits.argmax(1).cpu() == truth).float().mean()),
    )
    return FragilityReport(
        model_name=model.name,
        model_hash=model.content_hash,
        layer=layer,
        attack=info.name,
        params=attack_params,
        seed=seed,
        images=n,
        clean_accuracy=clean_accuracy,
        adv_accuracy=adv_accuracy,
        clean_accuracy_dropped=clean_dropped,
        adv_accuracy_dropped=adv_dropped,
        delta_clean=delta_clean,
        delta_adv=delta_adv,
        targeting=distribution,
        targeting_raw=raw,
        score=score,
        strength=strength,
        labels=verdicts,
        correlation=rank_correlation(dropout, raw),
        tolerance=tolerance,
        fragile_threshold=fragile_threshold,
        adversarial=report.adversarial.detach().cpu(),
        sweep_path=path,
        attack_clean_pred=report.clean_pred.detach().cpu(),
        attack_adv_pred=report.adv_pred.detach().cpu(),
        inputs_digest=inputs_digest(x, y),
        control=control,
        success=success_rate(base_logits[:n].argmax(1), base_logits[n:].argmax(1)),
    )


def _attack_and_sweep(
    model: PixelModel,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str,
    attack_params: dict,
    seed: int | None,
    layer: str,
    chunk_bytes: int,
    norm: str,
) -> tuple[AttackReport, DropoutSweep, torch.Tensor, torch.Tensor]:
    """Under the model's lock: the attack, the nodal-dropout sweep of clean + attacked images, and the
    matched control's logits and ``layer`` activations."""
    with model.lock:
        report = run_attack(model, x, attack, attack_params, labels=y, seed=seed)
        both = torch.cat([x, report.adversarial.to(x.device)])
        sweep = nodal_dropout(model, both, layer, chunk_bytes=chunk_bytes)
        noise = matched_control(x, report.adversarial.to(x.device), norm, seed or 0)
        with probe(model, [layer]) as rec, torch.no_grad():
            control_logits = rec.forward(noise)
            control_first = rec.activation(layer).detach().cpu()
    return report, sweep, control_logits, control_first


def _verdicts(
    score: torch.Tensor, delta_clean: torch.Tensor, delta_adv: torch.Tensor, tolerance: float, fragile_threshold: float
) -> tuple[tuple[str, ...], torch.Tensor, list[int]]:
    """Each filter's verdict (robust: negligible accuracy change on both; fragile: score ≥ the threshold;
    else neutral), its verdict strength, and the fragile filters, strongest first."""
    negligible = (delta_clean.abs() <= tolerance + 1e-9) & (delta_adv.abs() <= tolerance + 1e-9)
    verdicts = tuple(
        "robust" if negligible[i] else "fragile" if score[i] >= fragile_threshold else "neutral" for i in range(len(score))
    )
    strength = torch.tensor(
        [float(score[i]) if v == "fragile" else 1.0 - float(score[i]) if v == "robust" else 0.0 for i, v in enumerate(verdicts)]
    )
    fragile = sorted((i for i, v in enumerate(verdicts) if v == "fragile"), key=lambda i: -float(score[i]))
    return verdicts, strength, fragile


def inputs_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-1 of the images' and labels' dtype, shape and bytes (which inputs a report was measured on)."""
    digest = hashlib.sha1()
    for tensor in (images, labels):
        array = tensor.detach().cpu().contiguous().numpy()
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _unit_max(values: torch.Tensor) -> torch.Tensor:
    top = values.max()
    return values / top if top > 0 else torch.zeros_like(values)


# --------------------------------------------------------------------------------------------
# Compress / amplify
# --------------------------------------------------------------------------------------------


def rescale_first_layer(model: PixelModel, report: FragilityReport, beta: float = 0.2) -> PixelModel:
    """A **copy** of ``model`` whose first-layer output channels are scaled by ``report.factors(beta)``.

    Fragile filters are amplified (``1 + β·r_i``), robust ones compressed (``1 − β·r_i``): the
    filter's weights and bias are multiplied, so its output channel is scaled exactly. The
    shared model is never changed.
    """
    factors = report.factors(beta)
    if report.model_hash != model.content_hash:
        raise InputError(f"this report was computed on another model ({report.model_name}), not on {model.name}")
    twin = model.copy()
    conv = twin.layer(report.layer)
    if not isinstance(conv, nn.Conv2d):
        raise InputError(f"layer {report.layer!r} is not a 2-D convolution")
    with torch.no_grad():
        scale = factors.to(conv.weight.device, conv.weight.dtype)
        conv.weight.mul_(scale.view(-1, *([1] * (conv.weight.dim() - 1))))
        if conv.bias is not None:
            conv.bias.mul_(scale)
    twin.meta = replace(twin.meta, name=f"{model.name} (first layer rescaled, β={float(beta):g})")
    return twin


@dataclass(frozen=True)
class RescaleEvaluation:
    """Clean and adversarial accuracy before and after :func:`rescale_first_layer`.

    ``adv_after`` attacks the rescaled copy itself (white-box); ``adv_transfer_after`` feeds it
    the adversarial images made against the original model.
    """

    beta: float
    attack: str
    params: dict
    images: int
    clean_before: float
    clean_after: float
    adv_before: float
    adv_after: float
    adv_transfer_after: float
    factors: torch.Tensor

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "metric": ["clean accuracy", "adversarial accuracy (white-box)", "adversarial accuracy (transfer)"],
                "before": [self.clean_before, self.adv_before, self.adv_before],
                "after": [self.clean_after, self.adv_after, self.adv_transfer_after],
            }
        )


def evaluate_rescaled(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    report: FragilityReport,
    beta: float = 0.2,
    seed: int | None = 0,
) -> RescaleEvaluation:
    """Accuracy of ``model`` and of its rescaled copy, clean and under the report's attack.

    "Before" is the report's attack of the unchanged model (the same call: attack, parameters,
    labels, seed): when the report was measured on these very images and labels with this seed
    (``report.inputs_digest``), its predictions and adversarial images are reused, so a curve over
    β attacks the unchanged model no more times than the dropout did; otherwise (another seed,
    other images, ``seed=None``, a report without them) the attack is run again here.
    """
    x = model.check_pixels(images, "images")
    y = model.check_classes(labels, x.shape[0], "labels")
    twin = rescale_first_layer(model, report, beta)
    reuse = (
        seed is not None
        and seed == report.seed
        and report.inputs_digest == inputs_digest(x, y)
    )
    if reuse and report.attack_clean_pred is not None and report.attack_adv_pred is not None:  # (a report built by hand has none)
        clean_pred, adv_pred, adversarial = report.attack_clean_pred, report.attack_adv_pred, report.adversarial
    else:
        before = run_attack(model, x, report.attack, report.params, labels=y, seed=seed)
        clean_pred, adv_pred, adversarial = before.clean_pred, before.adv_pred, before.adversarial
    after = run_attack(twin, x, report.attack, report.params, labels=y, seed=seed)
    transfer, _ = twin.predict(adversarial.to(x.device))

    def accuracy(pred: torch.Tensor) -> float:
        return float((pred == y).float().mean())

    return RescaleEvaluation(
        beta=float(beta),
        attack=report.attack,
        params=dict(report.params),
        images=int(x.shape[0]),
        clean_before=accuracy(clean_pred),
        clean_after=accuracy(after.clean_pred),
        adv_before=accuracy(adv_pred),
        adv_after=accuracy(after.adv_pred),
        adv_transfer_after=accuracy(transfer),
        factors=report.factors(beta),
    )


# --------------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstLayerMaps:
    """The first convolution on one clean and one adversarial image.

    ``weights (F, C, kh, kw)``; ``clean``, ``adversarial`` ``(F, H, W)`` feature maps; per
    filter ``(F,)``: ``shift`` (``mean|Δa| / mean|a|``, the targeting of this image) and
    ``mean_shift`` (signed mean of ``a(x') − a(x)``).
    """

    layer: str
    weights: torch.Tensor
    clean: torch.Tensor
    adversarial: torch.Tensor
    shift: torch.Tensor
    mean_shift: torch.Tensor

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "filter": np.arange(self.weights.shape[0]),
                "shift": self.shift.numpy(),
                "mean_shift": self.mean_shift.numpy(),
                "clean_mean_abs": self.clean.abs().flatten(1).mean(1).numpy(),
            }
        )

    def to_dict(self) -> dict:
        return {"layer": self.layer, "shift": self.shift.tolist(), "mean_shift": self.mean_shift.tolist()}


def first_layer_maps(
    model: PixelModel, image: torch.Tensor, adversarial: torch.Tensor, layer: str | None = None
) -> FirstLayerMaps:
    """Filter weights and feature maps of the first convolution for one image and its attack."""
    if isinstance(image, torch.Tensor) and image.dim() == 3:
        image = image.unsqueeze(0)
    if isinstance(adversarial, torch.Tensor) and adversarial.dim() == 3:
        adversarial = adversarial.unsqueeze(0)
    x = model.check_pixels(image, "image")
    x_adv = model.check_pixels(adversarial, "adversarial")
    if x.shape[0] != 1 or x.shape != x_adv.shape:
        raise InputError(f"one image and its adversarial version are needed, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    layer = layer or first_conv(model)
    with probe(model, [layer]) as rec, torch.no_grad():
        rec.forward(torch.cat([x, x_adv]))
        maps = rec.activation(layer).detach().cpu()
        weight = getattr(model.layer(layer), "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise InputError(f"layer {layer!r} has no filter weights")
        weights = weight.detach().cpu().clone()
    return FirstLayerMaps(
        layer=layer,
        weights=weights,
        clean=maps[0],
        adversarial=maps[1],
        shift=targeting(maps[:1], maps[1:]),
        mean_shift=(maps[1] - maps[0]).flatten(1).mean(1),
    )
