"""Batch evaluation: one attack and several defences over N images, chunk by chunk, with progress.

:func:`evaluate_batch` attacks every image (:func:`neuronviz.methods.attacks.run_attack`), restores the
adversarial *and* the clean images with each defence (the same per-defence call as
:func:`neuronviz.workflows.defence_table.defence_table`), and keeps one row per image: label, clean and
adversarial prediction, success, the perturbation's norms, and each defence's prediction.
:class:`BatchResult` turns the rows into the summary (:meth:`BatchResult.summary`) and a per-class
view (:meth:`BatchResult.per_class`). Definitions, as in ``defence_table`` (METHODS.md §1, §4):

- *attack success*: the adversarial prediction differs from the clean (benign) prediction
  (untargeted), or is the target (targeted); the attack moves away from the clean prediction;
- *targeted runs*: an image whose clean prediction already is the target is not attacked and is
  excluded from the attack success, the DSR and the restored counts; the summary says how many
  were excluded (``excluded``). Accuracies are over all images;
- *DSR* of a defence: among the successful adversarial images, the share whose prediction after
  the defence is the clean prediction again (NaN when the attack never succeeded);
- *accuracy after a defence*: against the labels, the defence applied to every adversarial image;
- *clean accuracy after a defence*: the defence applied to the clean images (its cost on benign
  inputs). ``nip-guided`` restores toward the clean prediction, so it leaves a clean image alone.

Determinism and chunks
    Attacks such as PGD draw random numbers for the whole batch they are given, so an image's
    adversarial version depends on which images share its call. To make results independent of
    how the work is chunked, every call of the library (attack and defences) covers one *block*
    of :data:`BLOCK` consecutive images, and block ``b`` is attacked with a seed derived from
    ``(seed, b)``. A chunk (the unit of progress and of the dashboard's cache) is a whole number
    of blocks: ``chunk`` is rounded up to a multiple of :data:`BLOCK`. So ``chunk=7`` and
    ``chunk=64`` give the same numbers, and the same seed gives the same numbers on every run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuronviz.core.models.pixel import PixelModel
from neuronviz.data.labelled import EvaluationSet, available_images, evaluation_set, is_digits_model
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import AttackedImages, get_attack, resolve_params, run_attack
from neuronviz.methods.attacks.report import SUCCESS_DEFINITION
from neuronviz.methods.defences import get_defence
from neuronviz.methods.stats import Rate, rate_of
from neuronviz.workflows.defence_table import split_spec

#: Images per library call; the unit of the attack's randomness (see the module docstring).
BLOCK = 16
#: The two defences every batch evaluates: NIP toward the benign prediction, and PSSR.
DEFAULT_DEFENCES = ("nip-guided", "pssr")
#: The one definition of attack success every batch number uses (stated where the numbers are).
ATTACK_SUCCESS_DEFINITION = SUCCESS_DEFINITION  # one definition for every page (methods.attacks.report)

DefenceSpec = str | tuple[str, Mapping[str, Any]]


def defence_label(name: str, labels: Mapping[str, str] | None = None) -> str:
    """The short display name of a defence for tables and figures (its registry entry's
    ``short_label``; the name itself for a name that is not registered); ``labels``: a result's
    ``method_labels``, the form that ran ("PSSR (inpainting fallback)"), used first."""
    if labels and name in labels:
        return labels[name]
    try:
        return get_defence(name).short
    except InputError:
        return name


# -- which images ------------------------------------------------------------------------------------


def batch_images(model: PixelModel, n: int) -> EvaluationSet:
    """Exactly ``n`` labelled images to evaluate ``model`` on (:func:`neuronviz.data.labelled.evaluation_set`:
    the digits test split for digits models, the sample images with a known class otherwise).

    Raises :class:`InputError` when ``n`` is not an integer in ``1..available_images(model)``.
    """
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise InputError(f"the number of images must be an integer, got {n!r}")
    n, available = int(n), available_images(model)
    if available and not 1 <= n <= available:
        where = "the digits test split" if is_digits_model(model) else "sample images with a known class"
        raise InputError(f"the number of images must be in 1..{available} ({where}), got {n}")
    return evaluation_set(model, n)


# -- results -----------------------------------------------------------------------------------------


def attacked_mask(result: AttackedImages) -> torch.Tensor:
    """``result.attacked`` as a tensor: every image when it was not given."""
    if result.attacked is None:
        return torch.ones_like(result.success, dtype=torch.bool)
    return result.attacked


@dataclass(frozen=True)
class BatchSummary:
    """The batch's numbers, as fractions in [0, 1] (NaN where undefined). Per-defence values are
    keyed by the defence's registry name, in the order the defences were given."""

    images: int
    attack_success: float
    clean_accuracy: float
    adversarial_accuracy: float
    dsr: dict[str, float]
    accuracy_after: dict[str, float]
    clean_accuracy_after: dict[str, float]
    #: images not attacked because their clean prediction already was the target (targeted runs)
    excluded: int = 0
    #: per defence, the label of the form that ran ("PSSR (inpainting fallback)"; see defence_label)
    method_labels: dict[str, str] = field(default_factory=dict)

    @property
    def attacked(self) -> int:
        """Images the attack ran on (``images - excluded``): the denominator of ``attack_success``."""
        return self.images - self.excluded

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "excluded": self.excluded,
            "attack_success": self.attack_success,
            "clean_accuracy": self.clean_accuracy,
            "adversarial_accuracy": self.adversarial_accuracy,
            "dsr": dict(self.dsr),
            "accuracy_after": dict(self.accuracy_after),
            "clean_accuracy_after": dict(self.clean_accuracy_after),
        }


@dataclass(frozen=True, eq=False)
class BatchResult(AttackedImages):
    """One row per image, as detached CPU tensors ``(N,)``.

    ``labels``, ``clean_pred``, ``adv_pred``; ``success`` (bool); ``l0`` (changed pixel
    positions), ``l2``, ``linf`` (pixel units); ``restored[d]``: defence ``d``'s prediction on the
    adversarial image; ``restored_clean[d]``: its prediction on the clean image. ``defences``
    lists the defence names in order; ``seconds`` is the compute time (summed over chunks).
    ``attacked`` (bool): False for an image a targeted run left alone because its clean
    prediction already was the target (its ``success`` is False; see the module docstring).
    """

    attack: str
    params: dict
    target: int | str | None
    seed: int
    defences: tuple[str, ...]
    ids: tuple[str, ...]
    labels: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    success: torch.Tensor
    l0: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    restored: dict[str, torch.Tensor]
    restored_clean: dict[str, torch.Tensor]
    seconds: float = 0.0
    attacked: torch.Tensor | None = None
    method_labels: dict[str, str] = field(default_factory=dict)  # per defence, the form that ran

    @property
    def images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def attacked_rows(self) -> torch.Tensor:
        """``attacked`` as a tensor (every image when it was not given)."""
        return attacked_mask(self)

    def summary(self) -> BatchSummary:
        """Success rate, DSR, accuracies (see the module docstring for the definitions)."""
        return summarise(self, torch.ones_like(self.success))

    def rates(self, rows: torch.Tensor | None = None) -> BatchRates:
        """The summary's rates with n and 95% Wilson intervals (:func:`rates_of`)."""
        return rates_of(self, torch.ones_like(self.success, dtype=torch.bool) if rows is None else rows)

    def per_class(self, class_names: Sequence[str] | None = None):
        """A pandas DataFrame, one row per true class present in the batch (ascending): ``class``
        (index), ``name`` (when ``class_names`` is given), ``images`` and the summary's numbers
        (``attack_success``, ``clean_accuracy``, ``adversarial_accuracy``, then for each defence
        ``<d>:dsr``, ``<d>:accuracy``, ``<d>:clean_accuracy``) over that class's images."""
        import pandas as pd

        rows = []
        for cls in sorted(set(self.labels.tolist())):
            summary = summarise(self, self.labels == cls)
            row: dict[str, Any] = {"class": cls}
            if class_names is not None:
                row["name"] = str(class_names[cls])
            row.update(_flat(summary, self.defences))
            rows.append(row)
        return pd.DataFrame(rows)

    def to_frame(self, class_names: Sequence[str] | None = None):
        """One row per image (a pandas DataFrame): ``image``, ``label``, ``clean_pred``,
        ``adv_pred``, ``success``, then per defence ``<d>`` its prediction on the adversarial
        image, ``<d>:restored`` (that prediction is the clean prediction again; None for an image
        a targeted run did not attack, with an ``attacked`` column then) and ``<d>:clean``
        (its prediction on the clean image), then ``linf``, ``l2``, ``l0``. With ``class_names``,
        classes are shown by name."""
        import pandas as pd

        def classes(values: torch.Tensor) -> list:
            return [str(class_names[i]) for i in values.tolist()] if class_names is not None else values.tolist()

        columns: dict[str, list] = {
            "image": list(self.ids),
            "label": classes(self.labels),
            "clean_pred": classes(self.clean_pred),
            "adv_pred": classes(self.adv_pred),
            "success": self.success.tolist(),
        }
        left_alone = ~self.attacked_rows
        if bool(left_alone.any()):
            columns["attacked"] = self.attacked_rows.tolist()
        for name in self.defences:
            columns[name] = classes(self.restored[name])
            restored = (self.restored[name] == self.clean_pred).tolist()
            if bool(left_alone.any()):
                restored = [None if alone else value for value, alone in zip(restored, left_alone.tolist())]
            fooled = (self.success.bool() & self.attacked_rows).tolist()
            columns[f"{name}:restored"] = [
                "not attacked" if alone else ("nothing to restore" if not hit else ("restored" if value else "not restored"))
                for value, alone, hit in zip(restored, left_alone.tolist(), fooled)
            ]
            columns[f"{name}:clean"] = classes(self.restored_clean[name])
        columns["linf"] = self.linf.tolist()
        columns["l2"] = self.l2.tolist()
        columns["l0"] = self.l0.tolist()
        return pd.DataFrame(columns)

    @classmethod
    def concat(cls, parts: Sequence[BatchResult]) -> BatchResult:
        """The rows of several results of the same evaluation, in order."""
        if not parts:
            raise InputError("nothing to concatenate: no batch results")
        first = parts[0]
        for part in parts[1:]:
            if (part.attack, part.params, part.target, part.seed, part.defences) != (
                first.attack, first.params, first.target, first.seed, first.defences
            ):
                raise InputError("batch results of different evaluations cannot be concatenated")

        def cat(name: str) -> torch.Tensor:
            return torch.cat([getattr(p, name) for p in parts])

        return cls(
            attack=first.attack,
            params=dict(first.params),
            target=first.target,
            seed=first.seed,
            defences=first.defences,
            ids=tuple(i for p in parts for i in p.ids),
            labels=cat("labels"),
            clean_pred=cat("clean_pred"),
            adv_pred=cat("adv_pred"),
            success=cat("success"),
            l0=cat("l0"),
            l2=cat("l2"),
            linf=cat("linf"),
            restored={d: torch.cat([p.restored[d] for p in parts]) for d in first.defences},
            restored_clean={d: torch.cat([p.restored_clean[d] for p in parts]) for d in first.defences},
            seconds=sum(p.seconds for p in parts),
            attacked=cat("attacked"),
            method_labels=dict(first.method_labels),
        )


def _rate(hits: torch.Tensor) -> float:
    return float(hits.to(torch.float64).mean()) if hits.numel() else float("nan")


def summarise(result: BatchResult, rows: torch.Tensor) -> BatchSummary:
    """The summary over the images ``rows`` selects (a boolean ``(N,)`` mask): the definitions of
    the module docstring, also used by :mod:`neuronviz.workflows.evaluate` for its tables."""
    labels, clean, success = result.labels[rows], result.clean_pred[rows], result.success[rows]
    attacked = result.attacked_rows[rows]
    fooled = success.bool() & attacked  # success is False for an image left alone; kept explicit
    return BatchSummary(
        images=int(rows.sum()),
        excluded=int((~attacked).sum()),
        attack_success=_rate(success[attacked]),
        clean_accuracy=_rate(clean == labels),
        adversarial_accuracy=_rate(result.adv_pred[rows] == labels),
        dsr={d: _rate(result.restored[d][rows][fooled] == clean[fooled]) for d in result.defences},
        accuracy_after={d: _rate(result.restored[d][rows] == labels) for d in result.defences},
        clean_accuracy_after={d: _rate(result.restored_clean[d][rows] == labels) for d in result.defences},
        method_labels=dict(result.method_labels),
    )


@dataclass(frozen=True)
class BatchRates:
    """The summary's rates as :class:`neuronviz.methods.stats.Rate` (k of n, 95% Wilson interval). The n
    of each: ``attack_success`` the attacked images, ``dsr`` the fooled images (an image the attack
    did not fool has nothing to restore and is left out), every accuracy all images."""

    attack_success: Rate
    clean_accuracy: Rate
    adversarial_accuracy: Rate
    dsr: dict[str, Rate]
    accuracy_after: dict[str, Rate]
    clean_accuracy_after: dict[str, Rate]

    def to_dict(self) -> dict[str, Any]:
        return {
            "attack_success": self.attack_success.to_dict(), "clean_accuracy": self.clean_accuracy.to_dict(),
            "adversarial_accuracy": self.adversarial_accuracy.to_dict(),
            "dsr": {d: r.to_dict() for d, r in self.dsr.items()},
            "accuracy_after": {d: r.to_dict() for d, r in self.accuracy_after.items()},
            "clean_accuracy_after": {d: r.to_dict() for d, r in self.clean_accuracy_after.items()},
        }


def rates_of(result: BatchResult, rows: torch.Tensor) -> BatchRates:
    """The rates of :func:`summarise` over the images ``rows`` selects, with n and intervals."""
    labels, clean, success = result.labels[rows], result.clean_pred[rows], result.success[rows]
    attacked = result.attacked_rows[rows]
    fooled = success.bool() & attacked
    return BatchRates(
        attack_success=rate_of(success[attacked], empty_reason="no image was attacked"),
        clean_accuracy=rate_of(clean == labels, empty_reason="no images"),
        adversarial_accuracy=rate_of(result.adv_pred[rows] == labels, empty_reason="no images"),
        dsr={d: rate_of(result.restored[d][rows][fooled] == clean[fooled], empty_reason="the attack fooled no image: nothing to restore")
             for d in result.defences},
        accuracy_after={d: rate_of(result.restored[d][rows] == labels, empty_reason="no images") for d in result.defences},
        clean_accuracy_after={d: rate_of(result.restored_clean[d][rows] == labels, empty_reason="no images") for d in result.defences},
    )


def summary_frame(result: BatchResult):
    """The summary as a table (pandas): one row per (defence, rate) with share, 95% Wilson
    interval, k and n — the Batch page's export."""
    import pandas as pd

    r = result.rates()
    rows: list[dict[str, Any]] = []

    def add(defence: str, name: str, value: Rate, over: str) -> None:
        rows.append({"defence": defence, "rate": name, "share": value.share, "low": value.low, "high": value.high,
                     "k": value.k, "n": value.n, "over": over, "reason": value.reason or ""})

    add("no defence", "attack_success", r.attack_success, "attacked images")
    add("no defence", "clean_accuracy", r.clean_accuracy, "all images")
    add("no defence", "adversarial_accuracy", r.adversarial_accuracy, "all images")
    for d in result.defences:
        add(defence_label(d), "dsr", r.dsr[d], "fooled images")
        add(defence_label(d), "accuracy_after", r.accuracy_after[d], "all images (attacked)")
        add(defence_label(d), "clean_accuracy_after", r.clean_accuracy_after[d], "all images (clean)")
    return pd.DataFrame(rows)


def _flat(summary: BatchSummary, defences: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "images": summary.images,
        "excluded": summary.excluded,
        "attack_success": summary.attack_success,
        "clean_accuracy": summary.clean_accuracy,
        "adversarial_accuracy": summary.adversarial_accuracy,
    }
    for name in defences:
        row[f"{name}:dsr"] = summary.dsr[name]
        row[f"{name}:accuracy"] = summary.accuracy_after[name]
        row[f"{name}:clean_accuracy"] = summary.clean_accuracy_after[name]
    return row


# -- evaluation ----------------------------------------------------------------------------------------


def block_seed(seed: int, block: int) -> int:
    """The attack seed of block ``block`` under the evaluation seed ``seed`` (NumPy SeedSequence)."""
    return int(np.random.SeedSequence([int(seed), int(block)]).generate_state(1)[0])


def defence_specs(defences: Sequence[DefenceSpec]) -> tuple[tuple[str, dict], ...]:
    """Names or ``(name, params)`` → ``((registry name, params), ...)``; raises :class:`InputError`
    for an unknown defence, a defence listed twice, or something that is not a sequence of them."""
    if isinstance(defences, (str, bytes)) or not isinstance(defences, Sequence):
        raise InputError(f"defences must be a sequence of names or (name, params), got {defences!r}")
    specs = []
    for item in defences:
        name, params = split_spec(item)
        defense = get_defence(name)
        specs.append((defense.name, params))
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise InputError(f"a defence is listed twice: {names}")
    return tuple(specs)


def evaluate_chunk(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    params: Mapping[str, Any] | None,
    defences: Sequence[DefenceSpec],
    target: int | str | None = None,
    seed: int = 0,
    first_block: int = 0,
    ids: Sequence[str] | None = None,
    surrogate: PixelModel | None = None,
) -> BatchResult:
    """Evaluate consecutive images, :data:`BLOCK` at a time; block ``j`` of the chunk is block
    ``first_block + j`` of the whole batch (its attack seed is :func:`block_seed`). Prefer
    :func:`evaluate_batch`, which validates everything first and reports progress.

    ``surrogate``: a transfer attack: the images are crafted on that model
    (:func:`transfer_report`) and every verdict is the victim ``model``'s."""
    started = time.perf_counter()
    x = model.check_pixels(images, "images")
    y = model.check_classes(labels, x.shape[0], "labels")
    specs = defence_specs(defences)
    entries = [(get_defence(n), p) for n, p in specs]
    names = tuple(n for n, _ in specs)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in ("clean", "adv", "success", "attacked", "l0", "l2", "linf")}
    restored: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    restored_clean: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    resolved: dict = {}
    method_labels: dict[str, str] = {}
    for j, start in enumerate(range(0, x.shape[0], BLOCK)):
        xb = x[start : start + BLOCK]
        if surrogate is None:
            report = run_attack(model, xb, attack, params, target=target, seed=block_seed(seed, first_block + j))
        else:
            report = transfer_report(model, surrogate, xb, attack, params, target=target, seed=block_seed(seed, first_block + j))
        resolved = report.params
        benign = report.clean_pred.to(model.device)
        adversarial = report.adversarial.to(model.device)
        for defense, defence_params in entries:
            after = defense.restore_for(model, adversarial, benign=benign, clean=xb, params=defence_params)
            on_clean = defense.restore_for(model, xb, benign=benign, clean=xb, params=defence_params)
            restored[defense.name].append(after.prediction)
            restored_clean[defense.name].append(on_clean.prediction)
            method_labels[defense.name] = after.method_label
        rows["clean"].append(report.clean_pred)
        rows["adv"].append(report.adv_pred)
        rows["success"].append(report.success.bool())
        rows["attacked"].append(attacked_mask(report).bool())
        rows["l0"].append(report.l0)
        rows["l2"].append(report.l2)
        rows["linf"].append(report.linf)
    n = x.shape[0]
    return BatchResult(
        attack=get_attack(attack).name,
        params=dict(resolved),
        target=target,
        seed=int(seed),
        defences=names,
        ids=tuple(ids) if ids is not None else tuple(str(first_block * BLOCK + i) for i in range(n)),
        labels=y,
        clean_pred=torch.cat(rows["clean"]),
        adv_pred=torch.cat(rows["adv"]),
        success=torch.cat(rows["success"]),
        l0=torch.cat(rows["l0"]),
        l2=torch.cat(rows["l2"]),
        linf=torch.cat(rows["linf"]),
        restored={k: torch.cat(v) for k, v in restored.items()},
        restored_clean={k: torch.cat(v) for k, v in restored_clean.items()},
        method_labels=method_labels,
        seconds=time.perf_counter() - started,
        attacked=torch.cat(rows["attacked"]),
    )


def chunk_bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the chunks of ``n`` images: ``chunk`` rounded up to a whole
    number of blocks (:data:`BLOCK`), the last chunk shorter."""
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}")
    size = math.ceil(int(chunk) / BLOCK) * BLOCK
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def evaluate_batch(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    params: Mapping[str, Any] | None = None,
    defences: Sequence[DefenceSpec] = DEFAULT_DEFENCES,
    target: int | str | None = None,
    seed: int = 0,
    chunk: int = 32,
    progress: Callable[[int, int], None] | None = None,
    ids: Sequence[str] | None = None,
    call: Callable[..., BatchResult] | None = None,
    surrogate: PixelModel | None = None,
) -> BatchResult:
    """Attack ``images`` and restore them with each defence, chunk by chunk.

    Args:
        model: a :class:`PixelModel`.
        images: ``(N, C, H, W)`` pixels in [0, 1]; ``labels``: ``(N,)`` their classes.
        attack, params: a registered attack and overrides of its defaults (validated first).
        defences: names or ``(name, params)``; default NIP (guided, toward the clean prediction)
            and PSSR. ``nip-oracle`` gets the clean images as its reference.
        target: ``None`` (untargeted), a class index, or ``"least-likely"``.
        seed: the evaluation seed; block ``b`` is attacked with :func:`block_seed` ``(seed, b)``.
        chunk: images per chunk, rounded up to a multiple of :data:`BLOCK`; it changes only how
            often ``progress`` is called, never the numbers.
        progress: called after every chunk with ``(images done, N)``; the last call is ``(N, N)``.
        ids: one name per image for the table (default: the index).
        call: how a chunk is computed: ``call(evaluate_chunk, *args, **kwargs)``; default: called
            directly. The dashboard passes its content-keyed cache.
        surrogate: a transfer attack: the images are crafted on this model and judged on ``model``.

    Returns:
        A :class:`BatchResult`, one row per image in the given order.

    Raises:
        InputError: an empty batch, labels that do not match, an unknown attack or defence, a
            parameter out of range, a bad seed or chunk: before any work is done.
    """
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")
    x = model.check_pixels(images, "images").cpu()
    y = model.check_classes(labels, x.shape[0], "labels")
    resolved = resolve_params(get_attack(attack), params, model)
    specs = defence_specs(defences)
    for name, defence_params in specs:
        get_defence(name).resolve(defence_params, model)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if target is not None and not get_attack(attack).targeted:
        raise InputError(f"{get_attack(attack).label} has no targeted mode; run it untargeted")
    names = tuple(ids) if ids is not None else tuple(str(i) for i in range(x.shape[0]))
    if len(names) != x.shape[0]:
        raise InputError(f"{len(names)} ids for {x.shape[0]} images")
    if surrogate is not None:
        check_surrogate(model, surrogate)
    bounds = chunk_bounds(x.shape[0], chunk)
    run = call if call is not None else (lambda fn, *a, **k: fn(*a, **k))
    parts = []
    for start, stop in bounds:
        parts.append(
            run(
                evaluate_chunk,
                model,
                x[start:stop],
                y[start:stop],
                attack,
                resolved,
                specs,
                target=target,
                seed=int(seed),
                first_block=start // BLOCK,
                ids=names[start:stop],
                **({"surrogate": surrogate} if surrogate is not None else {}),
            )
        )
        if progress is not None:
            progress(stop, x.shape[0])
    return BatchResult.concat(parts)


# -- transfer attacks (issue 23) -------------------------------------------------------------------


def check_surrogate(model: PixelModel, surrogate: PixelModel) -> None:
    """Raise :class:`InputError` unless ``surrogate`` takes the victim's images and predicts its
    classes (same channels, input size and number of classes)."""
    if not isinstance(surrogate, PixelModel):
        raise InputError(f"the surrogate must be a PixelModel, got {type(surrogate).__name__}")
    mine = (model.channels, tuple(model.input_size), len(model.class_names))
    theirs = (surrogate.channels, tuple(surrogate.input_size), len(surrogate.class_names))
    if mine != theirs:
        raise InputError(
            f"surrogate {surrogate.name} takes {theirs[0]}×{theirs[1][0]}×{theirs[1][1]} images with {theirs[2]} classes; "
            f"the victim {model.name} takes {mine[0]}×{mine[1][0]}×{mine[1][1]} with {mine[2]}: a transfer attack needs the same"
        )


def transfer_report(model: PixelModel, surrogate: PixelModel, x: torch.Tensor, attack: str, params: Mapping[str, Any] | None,
                    target: int | str | None = None, seed: int | None = 0):
    """The attack crafted on ``surrogate`` (white-box on it, away from its own clean prediction or
    toward ``target``), judged on the victim ``model``: the returned report's ``clean_pred``,
    ``adv_pred`` and ``success`` are the victim's (success: the victim's prediction changed, or
    is the target); so are the probabilities; ``attacked`` and the norms are the surrogate run's."""
    import dataclasses

    check_surrogate(model, surrogate)
    crafted = run_attack(surrogate, x.to(surrogate.device), attack, params, target=target, seed=seed)
    adversarial = crafted.adversarial.to(model.device)
    clean_pred, clean_probs = model.predict(x.to(model.device))
    adv_pred, adv_probs = model.predict(adversarial)
    attacked = attacked_mask(crafted)
    if crafted.target is None:
        success = adv_pred != clean_pred
    else:
        success = adv_pred == crafted.target.cpu()
    success = success & attacked
    return dataclasses.replace(crafted, clean_pred=clean_pred, adv_pred=adv_pred, success=success,
                               clean_probs=clean_probs, adv_probs=adv_probs)
