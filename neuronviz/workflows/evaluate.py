"""Evaluation at scale: attacks × defences (× an ε grid) over a data set, resumable and sharded.

:func:`evaluate` runs every *cell* (one attack with its full parameters, one ε, one target) over
every *block* of ``block_size`` consecutive images, restores the adversarial and the clean images
with every defence, and writes one JSON file per (cell, block) under ``out/blocks/``. The work is
the Batch page's: :func:`neuronviz.workflows.batch.evaluate_chunk` (attack through
:func:`neuronviz.methods.attacks.run_attack`, defences through the registry), the same definitions
(:func:`neuronviz.workflows.batch.summarise`: attack success, DSR, accuracies) and the same per-block seeds
(:func:`neuronviz.workflows.batch.block_seed` over units of :data:`neuronviz.workflows.batch.BLOCK` images). So:

- the numbers do not depend on ``block_size``, on the order blocks run in, or on how many
  processes share them (``torchrun``: block ``i`` of the plan goes to rank ``i mod N``; on any
  scheduler, :func:`evaluate_shard` computes shard ``I/N``'s blocks by the same rule and
  :func:`merge` builds the tables from the block files of one or several folders, the rows of a
  single-process run: both build them from ``plan.json``'s record, :func:`plan_rows`);
- a rerun with the same output folder skips every finished block; each block file is written to
  a temporary name and renamed, so a run killed at any moment loses at most the blocks in flight;
- the output folder keeps ``plan.json`` (what is evaluated); a rerun with a different plan in the
  same folder is refused, so blocks of two evaluations are never mixed.

Targeted cells follow the project's rule (as :mod:`neuronviz.workflows.batch`): an image whose clean
prediction already is the target is not attacked and is excluded from the attack success, the DSR
and the restored counts; the table counts them (``excluded``). Accuracies are over all images (an
image left alone is its own "adversarial" image, and the defences see it as it is).

Data sets are named by a spec string, ``NAME`` or ``NAME:key=value,...`` (:func:`load_dataset`);
``digits`` (the digits test split, ``split=train|test|all``) and ``samples`` (the sample images
with a known class) are registered; :func:`register_dataset` adds more (image folders, MNIST,
CIFAR-10 from a local root) without touching the rest.

The tables (:func:`write_tables`): ``results.csv``, ``results.md``, ``results.tex`` and
``results.json`` (rows + the provenance record of :mod:`neuronviz.workflows.provenance`).

Longer than 500 lines on purpose: data sets, plan, blocks, files, tables and the torchrun wrapper
are one pipeline whose parts share the file format (:data:`FORMAT`) and are read top to bottom;
the per-image work and its definitions are :mod:`neuronviz.workflows.batch`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuronviz.core.models.pixel import PixelModel
from neuronviz.data.datasets import SPLITS, digits
from neuronviz.data.images import list_samples
from neuronviz.data.labelled import USER_DATASETS, evaluation_set, is_digits_model, user_evaluation_set
from neuronviz.infra.errors import InputError, NeuronvizError
from neuronviz.infra.schema import parse_eps
from neuronviz.methods.attacks import get_attack, resolve_params, resolve_target
from neuronviz.methods.defences import get_defence
from neuronviz.workflows import provenance
from neuronviz.workflows.batch import BLOCK, BatchResult, defence_label, defence_specs, evaluate_chunk

#: Images per block (a file under ``blocks/``; the unit of resuming and of sharding). A multiple of
#: :data:`neuronviz.workflows.batch.BLOCK`, the unit of the attacks' randomness.
DEFAULT_BLOCK_SIZE = 64
#: Attacks evaluated by default.
DEFAULT_ATTACKS = ("fgsm", "pgd:steps=20")
#: Defences evaluated by default: none (the attack's own numbers), guided NIP, PSSR.
DEFAULT_DEFENCES = ("none", "nip-guided", "pssr")
#: The format of the files under ``blocks/`` and of ``plan.json``.
FORMAT = 1
#: The table's columns, in order (see :func:`summary_rows` for what each means).
COLUMNS = (
    "attack", "eps", "target", "params", "defence", "variant", "deployable", "images", "excluded",
    "clean_accuracy", "attack_success", "robust_accuracy", "dsr", "accuracy_adversarial", "accuracy_clean",
    # issue 23: how the images were made, the adaptive numbers beside the plain ones, the masking
    # flags, and every rate's n and 95% Wilson interval (neuronviz.methods.stats.rate)
    "mode", "method", "attack_id", "fooled", "dsr_adaptive", "accuracy_adversarial_adaptive", "masking",
    "clean_accuracy_n", "clean_accuracy_low", "clean_accuracy_high",
    "attack_success_n", "attack_success_low", "attack_success_high",
    "robust_accuracy_n", "robust_accuracy_low", "robust_accuracy_high",
    "dsr_n", "dsr_low", "dsr_high",
    "accuracy_adversarial_n", "accuracy_adversarial_low", "accuracy_adversarial_high",
    "accuracy_clean_n", "accuracy_clean_low", "accuracy_clean_high",
)


# -- data sets -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled images for one model: ``images (N, C, H, W)`` in [0, 1], ``labels (N,)``, one id
    per image. ``spec`` is the canonical spec string; ``files`` the source files when there are
    any (an image folder lists them)."""

    spec: str
    images: torch.Tensor
    labels: torch.Tensor
    ids: tuple[str, ...]
    description: str
    files: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    @property
    def digest(self) -> str:
        cached = self.__dict__.get("_digest")
        if cached is None:
            cached = provenance.tensor_set_digest(self.images, self.labels, self.ids)
            object.__setattr__(self, "_digest", cached)
        return cached

    def describe(self) -> dict[str, Any]:
        out = {"spec": self.spec, "description": self.description, "images": self.size, "sha256": self.digest}
        if self.files:
            out["files"] = list(self.files)
        return out

    def head(self, n: int) -> Dataset:
        """The first ``n`` images (all of them when there are fewer)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"the number of images must be a positive integer, got {n!r}")
        n = min(int(n), self.size)
        if n == self.size:
            return self
        return Dataset(
            spec=f"{self.spec}[:{n}]",
            images=self.images[:n].clone(),
            labels=self.labels[:n].clone(),
            ids=self.ids[:n],
            description=f"the first {n} of {self.description}",
            files=self.files[:n],
        )


DatasetLoader = Callable[[PixelModel, dict[str, str]], Dataset]
DATASETS: dict[str, tuple[DatasetLoader, str]] = {}


def register_dataset(name: str, loader: DatasetLoader, help_text: str) -> None:
    """Make ``NAME[:key=value,...]`` a data-set spec: ``loader(model, options)`` returns a
    :class:`Dataset` for that model (raising :class:`InputError` for options it does not know)."""
    if name in DATASETS:
        raise InputError(f"data set {name!r} is already registered")
    DATASETS[name] = (loader, help_text)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"digits:split=test"`` → ``("digits", {"split": "test"})``; ``"digits:test"`` gives the
    loader's first option positionally as ``{"": "test"}``."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"a data set is named NAME or NAME:key=value,...; got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "", part
        if key in options:
            raise InputError(f"data set option {key or 'positional'!r} given twice in {spec!r}")
        options[key.strip()] = value.strip()
    return name.strip().lower(), options


def load_dataset(spec: str, model: PixelModel, limit: int | None = None) -> Dataset:
    """The data set a spec names, for ``model`` (its input size and classes), optionally only
    the first ``limit`` images. Raises :class:`InputError` for an unknown name or option."""
    name, options = parse_spec(spec)
    if name not in DATASETS:
        raise InputError(f"unknown data set {name!r}; registered: {sorted(DATASETS)}")
    data = DATASETS[name][0](model, options)
    return data if limit is None else data.head(limit)


def _options(name: str, options: dict[str, str], allowed: Sequence[str]) -> dict[str, str]:
    options = dict(options)
    if "" in options:
        options[allowed[0]] = options.pop("")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"data set {name!r} has no option {unknown[0]!r}; it has {list(allowed)}")
    return options


def _digits_dataset(model: PixelModel, options: dict[str, str]) -> Dataset:
    split = _options("digits", options, ("split",)).get("split", "test")
    if split not in SPLITS:
        raise InputError(f"digits: split must be one of {SPLITS}, got {split!r}")
    if not is_digits_model(model):
        raise InputError(f"{model.name} is not a digits model (1 channel, classes 0-9); choose a data set of its classes")
    x, y = digits(split, size=model.input_size[0])
    return Dataset(
        spec=f"digits:split={split}",
        images=x,
        labels=y,
        ids=tuple(f"digit-{split}-{i}" for i in range(int(y.shape[0]))),
        description=f"the {y.shape[0]} scikit-learn digits of the {split} split at {model.input_size[0]}×{model.input_size[1]}",
    )


def _samples_dataset(model: PixelModel, options: dict[str, str]) -> Dataset:
    _options("samples", options, ())
    labelled = sum(1 for s in list_samples(model) if s.true_class is not None)
    found = evaluation_set(model, max(labelled, 1))
    return Dataset(spec="samples", images=found.images, labels=found.labels, ids=found.ids, description=found.description)


def user_dataset(kind: str, model: PixelModel, options: dict[str, str]) -> Dataset:
    """:func:`neuronviz.data.labelled.user_evaluation_set` as a :class:`Dataset` (the loader
    registered for each of :data:`neuronviz.data.labelled.USER_DATASETS`)."""
    found = user_evaluation_set(kind, model, options)
    spec = f"{kind}:{found.origin}" + (f",limit={options['limit']}" if "limit" in options else "")
    files = tuple(str(Path(found.origin) / i) for i in found.ids) if kind == "folder" else ()
    return Dataset(spec=spec, images=found.images, labels=found.labels, ids=found.ids, description=found.description, files=files)


register_dataset("digits", _digits_dataset, "the scikit-learn digits (split=test by default; train, all)")
register_dataset("samples", _samples_dataset, "the sample images whose class the model has")
for _kind, _help in USER_DATASETS.items():  # the user's data: folder:PATH, zip:PATH, mnist:ROOT, cifar10:ROOT
    register_dataset(_kind, functools.partial(user_dataset, _kind), _help)


# -- the plan ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One attack configuration: registry name, full resolved parameters, ε (its budget parameter,
    None when it has none), target (None, a class index or ``"least-likely"``)."""

    attack: str
    params: dict
    eps: float | None
    target: int | str | None
    #: "white-box" (the attack on the model), "adaptive" (through each defence, see
    #: :func:`run_adaptive_block`) or "transfer" (crafted on the surrogate ``source``)
    mode: str = "white-box"
    source: str | None = None

    @property
    def name(self) -> str:
        """The attack as a table names it: its label, with the steps (``PGD-20 (L∞)``) or the
        AutoAttack version (``AutoAttack (standard)``), and "· adaptive" or "· transfer from S"."""
        text = get_attack(self.attack).run_name(self.params)
        if self.mode == "adaptive":
            text += " · adaptive"
        elif self.mode == "transfer":
            text += f" · transfer from {self.source}"
        return text

    @property
    def label(self) -> str:
        """The name with ε and target, for progress bars."""
        text = self.name
        if self.eps is not None:
            text += f" ε={self.eps:.4g}"
        if self.target is not None:
            text += f" → {self.target}"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = {"attack": self.attack, "params": dict(self.params), "eps": self.eps, "target": self.target}
        if self.mode != "white-box":  # (white-box cells keep the plan.json of earlier versions)
            out["mode"] = self.mode
        if self.source is not None:
            out["source"] = self.source
        return out


AttackSpec = str | tuple[str, Mapping[str, Any]]


def parse_item(text: str) -> tuple[str, dict[str, Any]]:
    """``"pgd:steps=20,alpha=0.01"`` → ``("pgd", {"steps": 20, "alpha": 0.01})``; values are
    read as JSON (numbers, true/false) or k/255, else kept as strings (choices, layer names)."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"expected NAME or NAME:key=value,...; got {text!r}")
    name, _, rest = text.strip().partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = part.partition("=")
        if not eq or not key.strip():
            raise InputError(f"{name}: parameters are key=value, got {part!r}")
        raw = raw.strip()
        value: Any
        try:
            value = json.loads(raw)
        except ValueError:
            try:
                value = parse_eps(raw) if "/" in raw else raw
            except InputError:
                value = raw
        params[key.strip()] = value
    return name.strip(), params


def _spec(item: AttackSpec) -> tuple[str, dict[str, Any]]:
    if isinstance(item, str):
        return parse_item(item)
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], dict(item[1] or {})
    raise InputError(f"expected a name, 'name:key=value,...' or (name, params); got {item!r}")


def _target(target: Any) -> int | str | None:
    if target is None or isinstance(target, str) and target.strip().lower() in ("", "none", "untargeted"):
        return None
    if isinstance(target, str):
        raw = target.strip().lower().replace("_", "-")
        if raw in ("least-likely", "ll"):
            return "least-likely"
        try:
            return int(raw)
        except ValueError:
            raise InputError(f"target must be none, a class index or least-likely; got {target!r}") from None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    raise InputError(f"target must be none, a class index or least-likely; got {target!r}")


def build_plan(
    model: PixelModel,
    attacks: Sequence[AttackSpec],
    eps: Sequence[float | str] | None = None,
    target: int | str | None = None,
    autoattack: bool = False,
) -> list[Cell]:
    """The cells: every attack at every ε of the grid (attacks without a budget once), then the
    AutoAttack "standard" row (L∞, untargeted, torchattacks' ``version='standard'``) at every ε.
    Parameters are validated and resolved against the model here, before any work."""
    grid = [parse_eps(e) for e in eps] if eps else [None]
    target = _target(target)
    if target is not None and not isinstance(target, str):
        model.check_classes(target, 1, "target")
    cells: list[Cell] = []
    for item in attacks:
        name, params = _spec(item)
        info = get_attack(name)
        if target is not None and not info.targeted:
            raise InputError(f"{info.label} has no targeted mode; run it untargeted or leave it out")
        budget = info.budget_param
        for value in grid if budget else [None]:
            given = dict(params)
            if value is not None and budget:
                given[budget] = value
            resolved = resolve_params(info, given, model)
            cells.append(Cell(info.name, resolved, resolved.get(budget) if budget else None, target))
    if autoattack:
        info = get_attack("autoattack")
        for value in grid:
            given = {"version": "standard", "norm": "Linf"} | ({"eps": value} if value is not None else {})
            resolved = resolve_params(info, given, model)
            cells.append(Cell(info.name, resolved, resolved["eps"], None))
    if not cells:
        raise InputError("give at least one attack (or the AutoAttack row)")
    keys = [json.dumps(c.to_dict(), sort_keys=True) for c in cells]
    if len(set(keys)) != len(keys):
        raise InputError("an attack configuration is listed twice")
    return cells


def resolve_defences(model: PixelModel, defences: Sequence[AttackSpec]) -> tuple[tuple[str, dict], ...]:
    """Names or ``name:key=value`` specs → ``((name, full resolved params), ...)``, validated."""
    specs = defence_specs(every_defence([_spec(d) for d in defences]))
    if not specs:
        raise InputError("give at least one defence (none: the attack's own numbers)")
    return tuple((name, get_defence(name).resolve(params, model)) for name, params in specs)


def block_bounds(n: int, block_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the blocks of ``n`` images."""
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1 or block_size % BLOCK:
        raise InputError(f"block size must be a positive multiple of {BLOCK} (the unit of the attacks' seeds), got {block_size!r}")
    return [(start, min(start + int(block_size), n)) for start in range(0, n, int(block_size))]


# -- one block -----------------------------------------------------------------------------------------


def run_block(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    cell: Cell,
    defences: Sequence[tuple[str, dict]],
    seed: int,
    start: int,
    surrogate: PixelModel | None = None,
) -> dict[str, Any]:
    """Evaluate one block (images ``start..start+len``) of a cell; the block file's content.

    Per unit of :data:`BLOCK` images, :func:`evaluate_chunk` attacks and restores them with seed
    ``block_seed(seed, unit)``; in a targeted cell, the images already predicted as the target are
    left out of that call and marked ``excluded``: their adversarial image is the clean image
    (``adv_pred`` = ``clean_pred``, not a success) and each defence is applied to it once."""
    if start % BLOCK:
        raise InputError(f"a block starts at a multiple of {BLOCK}, got {start}")
    if cell.mode == "adaptive":
        return run_adaptive_block(model, images, labels, cell, defences, seed, start)
    started = time.perf_counter()
    n = int(images.shape[0])
    excluded = torch.zeros(n, dtype=torch.bool)
    clean_pred = None
    if cell.target is not None:
        clean_pred, clean_probs = model.predict(images)
        target = resolve_target(cell.target, get_attack(cell.attack), model, clean_probs, n)
        assert target is not None  # a cell with a target resolves it to one class per image
        excluded = torch.eq(clean_pred, target)
    parts, kept_index = _attack_units(model, images, labels, cell, defences, seed, start, excluded, surrogate)
    row = _empty_row(start, n, labels, excluded, [d for d, _ in defences])
    if clean_pred is not None:
        row["clean_pred"] = clean_pred.tolist()
    if parts:
        _fill_row(row, BatchResult.concat(parts), kept_index)
    alone = [i for i in range(n) if bool(excluded[i])]
    if alone:
        assert clean_pred is not None  # only a targeted cell excludes images
        _restore_excluded(row, model, images, clean_pred, alone, defences)
    row["seconds"] = time.perf_counter() - started
    return row


def _attack_units(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    cell: Cell,
    defences: Sequence[tuple[str, dict]],
    seed: int,
    start: int,
    excluded: torch.Tensor,
    surrogate: PixelModel | None,
) -> tuple[list[BatchResult], list[int]]:
    """Attack and restore the images not ``excluded``, one :func:`evaluate_chunk` per unit of
    :data:`BLOCK` images; the results and the block indices of the images they cover."""
    n = int(images.shape[0])
    parts: list[BatchResult] = []
    kept_index: list[int] = []
    for unit_start in range(0, n, BLOCK):
        idx = [i for i in range(unit_start, min(unit_start + BLOCK, n)) if not bool(excluded[i])]
        if not idx:
            continue
        sel = torch.tensor(idx)
        parts.append(
            evaluate_chunk(
                model, images[sel], labels[sel], cell.attack, cell.params, list(defences),
                target=cell.target, seed=seed, first_block=(start + unit_start) // BLOCK,
                surrogate=surrogate if cell.mode == "transfer" else None,
            )
        )
        kept_index += idx
    return parts, kept_index


def _empty_row(start: int, n: int, labels: torch.Tensor, excluded: torch.Tensor, names: Sequence[str]) -> dict[str, Any]:
    """A block file's content before any image is filled in (predictions -1, no success, zero norms)."""
    return {
        "format": FORMAT,
        "start": start,
        "stop": start + n,
        "labels": labels.tolist(),
        "excluded": excluded.tolist(),
        "clean_pred": [-1] * n, "adv_pred": [-1] * n, "success": [False] * n,
        "l0": [0] * n, "l2": [0.0] * n, "linf": [0.0] * n,
        "restored": {d: [-1] * n for d in names},
        "restored_clean": {d: [-1] * n for d in names},
    }


def _fill_row(row: dict[str, Any], done: BatchResult, kept_index: Sequence[int]) -> None:
    """Write the attacked images' results into ``row`` at their block indices."""
    for j, i in enumerate(kept_index):
        row["clean_pred"][i] = int(done.clean_pred[j])
        row["adv_pred"][i] = int(done.adv_pred[j])
        row["success"][i] = bool(done.success[j])
        row["l0"][i] = int(done.l0[j])
        row["l2"][i] = float(done.l2[j])
        row["linf"][i] = float(done.linf[j])
        for d in row["restored"]:
            row["restored"][d][i] = int(done.restored[d][j])
            row["restored_clean"][d][i] = int(done.restored_clean[d][j])


def _restore_excluded(
    row: dict[str, Any],
    model: PixelModel,
    images: torch.Tensor,
    clean_pred: torch.Tensor,
    alone: Sequence[int],
    defences: Sequence[tuple[str, dict]],
) -> None:
    """The excluded images (already the target): adversarial = clean, each defence applied once."""
    sel = torch.tensor(alone)
    xe, benign = images[sel].to(model.device), clean_pred[sel].to(model.device)
    for i in alone:
        row["adv_pred"][i] = row["clean_pred"][i]
    for d, params in defences:
        prediction = get_defence(d).restore_for(model, xe, benign=benign, clean=xe, params=params).prediction.tolist()
        for i, value in zip(alone, prediction, strict=True):
            row["restored"][d][i] = row["restored_clean"][d][i] = int(value)


# -- files ---------------------------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename, so a
    reader (or a rerun after a kill) sees either the old file, or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _block_path(out: Path, cell_index: int, block_index: int) -> Path:
    return out / "blocks" / f"cell-{cell_index:03d}" / f"block-{block_index:05d}.json"


def _read_block(path: Path, start: int, stop: int) -> dict[str, Any] | None:
    """A finished block, or None when it is absent (or not a whole, matching block file)."""
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("format") != FORMAT or (row.get("start"), row.get("stop")) != (start, stop):
        return None
    return row


def _plan_record(model: PixelModel, data: Dataset, cells: Sequence[Cell], defences, seed: int, block_size: int) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "model": {"name": model.name, "content_hash": model.content_hash},
        "dataset": {"spec": data.spec, "images": data.size, "sha256": data.digest},
        "cells": [c.to_dict() for c in cells],
        "defences": [{"defence": d, "params": p, "variant": _variant(model, d, p)} for d, p in defences],
        "seed": int(seed),
        "block_size": int(block_size),
    }


def _variant(model: PixelModel, name: str, params: dict) -> dict[str, Any]:
    """Which form of a defence runs on ``model`` (a fallback, borrowed data): label, name, provenance."""
    variant = get_defence(name).variant_for(model, params)
    return {"label": variant.label(defence_label(name)), "variant": variant.name, **dict(variant.provenance)}


def _check_folder(out: Path, plan: dict[str, Any]) -> bool:
    """True when ``out`` already holds this plan, False when it holds none; raises InputError
    when it holds another one (or is a file)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"the output folder {out} is a file")
    path = out / "plan.json"
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        existing = None
    if existing != json.loads(json.dumps(plan)):
        raise InputError(
            f"{out} holds the blocks of a different evaluation (its plan.json differs: model, data, "
            "attacks, defences, seed or block size); use a new output folder"
        )
    return True


def _claim_folder(out: Path, plan: dict[str, Any]) -> None:
    if not _check_folder(out, plan):
        atomic_write(out / "plan.json", json.dumps(plan, indent=2, sort_keys=True))


# -- the run -------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What :func:`evaluate` computed: the plan, the block contents in plan order, the table
    rows, and the provenance record. ``computed``/``reused``: blocks done now / found on disk
    (this process's share)."""

    cells: list[Cell]
    defences: tuple[tuple[str, dict], ...]
    data: Dataset
    blocks: list[list[dict[str, Any]]]
    rows: list[dict[str, Any]]
    provenance: dict[str, Any]
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)
    by_rank: list[tuple[int, int]] = field(default_factory=list)  # (computed, reused) per process

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))


def _progress(total: int, desc: str, enabled: bool, position: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, position=position, leave=True, dynamic_ncols=True, smoothing=0.1)


def evaluate(
    model: PixelModel,
    data: Dataset,
    attacks: Sequence[AttackSpec],
    defences: Sequence[AttackSpec] = DEFAULT_DEFENCES,
    eps: Sequence[float | str] | None = None,
    target: int | str | None = None,
    autoattack: bool = False,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    gather: Callable[[Any], list[Any] | None] | None = None,
    adaptive: bool = False,
    surrogate: PixelModel | str | None = None,
) -> Evaluation | None:
    """Attacks × defences (× an ε grid) over ``data``, block by block (see the module docstring).

    Args:
        model, data: a :class:`PixelModel` and a :class:`Dataset` for it (:func:`load_dataset`).
        attacks: names or ``"name:key=value,..."`` or ``(name, params)``; ``eps``: an ε grid
            (each attack with a budget runs at every ε); ``target``: None, a class or
            ``"least-likely"`` for every attack; ``autoattack``: add the AutoAttack standard row.
        defences: as attacks; default none, guided NIP, PSSR.
        seed: the evaluation seed (per-unit seeds derive from it); ``block_size``: images per
            block file (a multiple of 16; it never changes the numbers).
        out: the output folder (blocks, plan, tables); None keeps everything in memory.
        progress: tqdm bars on stderr (one per attack configuration, in images, with rate and ETA).
        rank, world_size, gather: this process's share of the blocks (block ``i`` to rank
            ``i mod world_size``) and how block contents reach rank 0 (``gather(obj)`` returns
            every rank's object on rank 0, None elsewhere); see :func:`evaluate_distributed`.

    Returns:
        An :class:`Evaluation` on rank 0 (tables written when ``out`` is given), None on others.

    Raises:
        InputError: an unknown attack, defence or parameter, a bad block size or seed, or an
            output folder that holds a different evaluation: before any block runs.
    """
    started = time.perf_counter()
    _check_inputs(model, data, seed, world_size, gather)
    setup = _setup(model, data, attacks, defences, eps, target, autoattack, seed, block_size, adaptive, surrogate)
    cells, specs, bounds, surrogate = setup.cells, setup.specs, setup.bounds, setup.surrogate
    folder = Path(out) if out is not None else None
    if folder is not None:
        _prepare_folder(folder, setup.plan, rank, gather)

    items = setup.items
    results, computed, reused = _run_blocks(
        model, setup.x, setup.y, cells, specs, bounds, items[rank::world_size], int(seed), folder, surrogate, progress, rank, world_size
    )
    collected = _collect_blocks(results, computed, reused, folder, rank, world_size, gather)
    if collected is None:
        return None
    results, by_rank = collected
    missing = [item for item in items if item not in results]
    if missing:
        raise NeuronvizError(f"{len(missing)} block(s) never came back from the other processes")
    blocks = [[results[(c, b)] for b in range(len(bounds))] for c in range(len(cells))]
    rows = plan_rows(setup.plan, blocks)  # as merge() builds them: from plan.json's record, not the objects
    record = _evaluation_record(model, data, cells, specs, int(seed), block_size, world_size, len(items), surrogate)
    computed, reused = sum(c for c, _ in by_rank), sum(r for _, r in by_rank)
    result = Evaluation(cells, specs, data, blocks, rows, record, computed, reused, time.perf_counter() - started, by_rank=by_rank)
    if folder is not None:
        result.files = write_tables(result, folder)
    return result


@dataclass
class _Setup:
    """What :func:`evaluate` and :func:`evaluate_shard` prepare before any block runs."""

    cells: list[Cell]
    specs: tuple[tuple[str, dict], ...]
    x: torch.Tensor
    y: torch.Tensor
    bounds: list[tuple[int, int]]
    plan: dict[str, Any]
    surrogate: PixelModel | None

    @property
    def items(self) -> list[tuple[int, int]]:
        """Every ``(cell, block)`` of the plan, in plan order: item ``k`` goes to rank (or shard) ``k mod N``."""
        return [(c, b) for c in range(len(self.cells)) for b in range(len(self.bounds))]


def _setup(model: PixelModel, data: Dataset, attacks, defences, eps, target, autoattack: bool, seed: int, block_size: int,
           adaptive: bool, surrogate: PixelModel | str | None) -> _Setup:
    """The plan's cells, defences, pixels, block bounds and ``plan.json`` record, validated."""
    surrogate = load_surrogate(model, surrogate)
    cells = extend_plan(build_plan(model, attacks, eps=eps, target=target, autoattack=autoattack), adaptive, surrogate)
    specs = resolve_defences(model, defences)
    x = model.check_pixels(data.images, "images").cpu()
    y = model.check_classes(data.labels, x.shape[0], "labels")
    bounds = block_bounds(x.shape[0], block_size)
    plan = _plan_record(model, data, cells, specs, int(seed), block_size)
    if surrogate is not None:
        plan["surrogate"] = {"name": surrogate.name, "content_hash": surrogate.content_hash}
    return _Setup(cells, specs, x, y, bounds, plan, surrogate)


def _check_inputs(model: PixelModel, data: Dataset, seed: int, world_size: int, gather: Callable | None) -> None:
    """Raise :class:`InputError` for a model, data set, seed or process set-up :func:`evaluate` cannot run."""
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")
    if not isinstance(data, Dataset):
        raise InputError(f"data must be a Dataset (see load_dataset), got {type(data).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if world_size > 1 and gather is None:
        raise InputError("several processes need a gather function (use evaluate_distributed)")


def _prepare_folder(folder: Path, plan: dict[str, Any], rank: int, gather: Callable | None) -> None:
    """Refuse a folder of another evaluation, claim it (rank 0 first) and drop a killed run's half-written blocks."""
    _check_folder(folder, plan)  # every rank refuses a folder of another evaluation, before any barrier
    if rank == 0:
        _claim_folder(folder, plan)
        for stale in (folder / "blocks").glob("*/.*.tmp"):  # a killed run's half-written block
            stale.unlink(missing_ok=True)
    if gather is not None:
        gather(None)  # the others wait for rank 0's plan.json
    if rank != 0:
        _claim_folder(folder, plan)  # (a folder that is not shared between nodes gets its own)


def _run_blocks(
    model: PixelModel,
    x: torch.Tensor,
    y: torch.Tensor,
    cells: Sequence[Cell],
    specs: tuple[tuple[str, dict], ...],
    bounds: Sequence[tuple[int, int]],
    mine: Sequence[tuple[int, int]],
    seed: int,
    folder: Path | None,
    surrogate: PixelModel | None,
    progress: bool,
    rank: int,
    world_size: int,
) -> tuple[dict[tuple[int, int], dict], int, int]:
    """Run (or reuse from ``folder``) this process's ``(cell, block)`` items, one progress bar per cell.

    Returns the block contents by ``(cell, block)``, and how many blocks were computed and reused.
    """
    results: dict[tuple[int, int], dict] = {}
    computed = reused = 0
    by_cell: dict[int, list[int]] = {}
    for c, b in mine:
        by_cell.setdefault(c, []).append(b)
    for c, cell_blocks in by_cell.items():
        cell = cells[c]
        total = sum(bounds[b][1] - bounds[b][0] for b in cell_blocks)
        prefix = f"[{rank}/{world_size}] " if world_size > 1 else ""
        bar = _progress(total, f"{prefix}{cell.label}", progress and rank == 0, 0)
        try:
            for k, b in enumerate(cell_blocks):
                start, stop = bounds[b]
                path = _block_path(folder, c, b) if folder is not None else None
                row = _read_block(path, start, stop) if path is not None else None
                if row is not None and not _whole(row, (start, stop), cell, {d for d, _ in specs}):
                    row = None  # a block file cut short or edited: computed again (and rewritten whole)
                if row is None:
                    row = run_block(model, x[start:stop], y[start:stop], cell, specs, seed, start, surrogate=surrogate)
                    if path is not None:
                        atomic_write(path, json.dumps(row))
                    computed += 1
                else:
                    reused += 1
                results[(c, b)] = row
                if bar is not None:
                    bar.set_postfix_str(f"block {k + 1}/{len(cell_blocks)}", refresh=False)
                    bar.update(stop - start)
        finally:
            if bar is not None:
                bar.close()
    return results, computed, reused


def _collect_blocks(
    results: dict[tuple[int, int], dict],
    computed: int,
    reused: int,
    folder: Path | None,
    rank: int,
    world_size: int,
    gather: Callable[[Any], list[Any] | None] | None,
) -> tuple[dict[tuple[int, int], dict], list[tuple[int, int]]] | None:
    """Bring every process's blocks to rank 0: all block contents and ``(computed, reused)`` per rank.

    None on the other ranks. A single process writes any block missing from ``folder`` (a rank's
    folder may not be shared between nodes: rank 0 keeps every block).
    """
    if gather is not None and world_size > 1:
        gathered = gather({"results": results, "computed": computed, "reused": reused})
        if rank != 0:
            return None
        results = {}
        by_rank = [(part["computed"], part["reused"]) for part in gathered or []]
        for part in gathered or []:
            results.update(part["results"])
        return results, by_rank
    if folder is not None:  # a rank's folder may not be shared (multi-node): rank 0 keeps every block
        for (c, b), row in results.items():
            path = _block_path(folder, c, b)
            if not path.exists():
                atomic_write(path, json.dumps(row))
    return results, [(computed, reused)]


def _evaluation_record(
    model: PixelModel,
    data: Dataset,
    cells: Sequence[Cell],
    specs: tuple[tuple[str, dict], ...],
    seed: int,
    block_size: int,
    world_size: int,
    n_blocks: int,
    surrogate: PixelModel | None,
) -> dict[str, Any]:
    """The provenance record of an evaluation: model, data set, attacks, defences, seeds and blocks."""
    return provenance.record(
        model,
        dataset=data.describe(),
        attacks=[{"attack": c.attack, "label": c.label, "params": c.params, "eps": c.eps, "target": c.target} for c in cells],
        defences=[{"defence": d, "params": p, **_variant(model, d, p)} for d, p in specs],
        seeds={"evaluation": int(seed), "unit": BLOCK, "rule": "block_seed(seed, image index // 16) (numpy SeedSequence)"},
        extra={"block_size": int(block_size), "world_size": int(world_size), "blocks": n_blocks} | _attacker_record(cells, specs, surrogate),
    )


def _nan_to_none(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def summary_rows(
    cells: Sequence[Cell], defences: Sequence[tuple[str, dict]], blocks: Sequence[Sequence[dict]],
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict]:
    """One row per (cell, defence):

    ``images`` (all of the data set), ``excluded`` (targeted: already the target, not attacked),
    ``clean_accuracy``, ``attack_success`` (over the attacked images: the prediction changed from
    the clean prediction, or is the target), ``robust_accuracy`` (correct both clean and under
    attack, undefended: the number published robust-accuracy tables give), ``dsr`` (among the
    fooled images — ``fooled`` of them — the defence gives the clean prediction back; an image the
    attack did not fool has nothing to restore and is left out), ``accuracy_adversarial``
    (accuracy after the defence on the adversarial images; an excluded image counts as it is),
    ``accuracy_clean`` (after the defence on the clean images). Fractions in [0, 1], NaN where
    undefined (as in :class:`neuronviz.workflows.batch.BatchResult`); each rate ``R`` also has ``R_n`` and
    its 95% Wilson interval ``R_low``, ``R_high`` (:func:`neuronviz.methods.stats.rate`).

    ``mode``: white-box, adaptive (the attack made through each defence: ``method`` says how,
    BPDA / EoT; the image kept per image is the one the defence handles worse of that and the
    plain attack's) or transfer (crafted on a surrogate, judged on this model). A white-box row
    carries its adaptive row's ``dsr_adaptive`` and ``accuracy_adversarial_adaptive`` beside its
    own; ``masking`` lists the masked-gradient checks that fired (:func:`masking_checks`)."""
    names = tuple(d for d, _ in defences)
    variants = variants or {}
    rows = []
    for cell, parts in zip(cells, blocks, strict=True):
        if cell.mode == "adaptive":
            rows += _adaptive_rows(cell, defences, parts, variants)
            continue

        def cat(key: str, dtype: torch.dtype, parts: Sequence[dict] = parts) -> torch.Tensor:
            return torch.tensor([v for p in parts for v in p[key]], dtype=dtype)

        excluded = cat("excluded", torch.bool)
        result = BatchResult(
            attack=cell.attack, params=cell.params, target=cell.target, seed=0, defences=names,
            ids=tuple(str(i) for i in range(excluded.numel())),
            labels=cat("labels", torch.long), clean_pred=cat("clean_pred", torch.long), adv_pred=cat("adv_pred", torch.long),
            success=cat("success", torch.bool), l0=cat("l0", torch.long), l2=cat("l2", torch.float64), linf=cat("linf", torch.float64),
            restored={d: torch.tensor([v for p in parts for v in p["restored"][d]], dtype=torch.long) for d in names},
            restored_clean={d: torch.tensor([v for p in parts for v in p["restored_clean"][d]], dtype=torch.long) for d in names},
        )
        for d, _ in defences:
            rows.append(_row(cell, d, result.labels, result.clean_pred, result.adv_pred, result.success, excluded,
                             result.restored[d], result.restored_clean[d], variant=variants.get(d, {})))
    _pair_adaptive(rows)
    for flag in masking_checks(rows):
        for index in flag["rows"][:1]:  # the flagged row (the others are what it was compared with)
            rows[index]["masking"] = "; ".join(filter(None, [rows[index]["masking"], flag["check"]]))
    return rows


# -- tables --------------------------------------------------------------------------------------------

_PERCENT = ("clean_accuracy", "attack_success", "robust_accuracy", "dsr", "accuracy_adversarial", "accuracy_clean",
            "dsr_adaptive", "accuracy_adversarial_adaptive")
_HEADERS = {
    "attack": "Attack", "eps": "ε", "target": "Target", "defence": "Defence", "variant": "Variant", "deployable": "Deployable",
    "images": "Images", "excluded": "Excluded", "clean_accuracy": "Clean acc.", "attack_success": "Attack success",
    "robust_accuracy": "Robust acc.", "dsr": "DSR", "accuracy_adversarial": "Acc. (adv.)", "accuracy_clean": "Acc. (clean)",
    "method": "Adaptive attack", "fooled": "Fooled", "dsr_adaptive": "DSR (adaptive)",
    "accuracy_adversarial_adaptive": "Acc. (adv., adaptive)", "masking": "Masking checks",
}
_BASE_SHOWN = ["attack", "eps", "target", "defence", "variant", "deployable", "images", "excluded", "clean_accuracy", "attack_success",
               "robust_accuracy", "fooled", "dsr", "accuracy_adversarial", "accuracy_clean"]


def _shown(rows: Sequence[dict]) -> list[str]:
    """The table's columns: the base ones, the adaptive ones beside theirs when there are adaptive
    rows, the masking flags when one fired."""
    shown = list(_BASE_SHOWN)
    if any(r.get("mode") == "adaptive" for r in rows):
        shown.insert(shown.index("deployable") + 1, "method")
        shown.insert(shown.index("dsr") + 1, "dsr_adaptive")
        shown.insert(shown.index("accuracy_adversarial") + 1, "accuracy_adversarial_adaptive")
    if any(r.get("masking") for r in rows):
        shown.append("masking")
    return shown


def _cell_text(column: str, value: Any, row: Mapping[str, Any] | None = None) -> str:
    if value is None or isinstance(value, float) and math.isnan(value):
        return "–"
    if column in _PERCENT:
        low, high = (row or {}).get(f"{column}_low"), (row or {}).get(f"{column}_high")
        if low is None or high is None or isinstance(low, float) and math.isnan(low):
            return f"{100 * value:.1f}%"
        return f"{100 * value:.1f}% ({100 * low:.1f}–{100 * high:.1f})"
    if column == "eps":
        return f"{value:.4g}"
    if column == "deployable":
        return "yes" if value else "no"
    return str(value)


def masking_text(rows: Sequence[dict]) -> str:
    """The masking checks that fired, as Markdown lines under the table ("" when none did)."""
    fired = [f for f in masking_checks(rows) if f["rows"]]
    if not fired:
        return ""
    lines = ["", "Masking checks (Carlini et al. 2019; Athalye et al. 2018):", ""]
    for f in fired:
        lines.append(f"- **{f['check']}** — {f['message']}. Suggests: {f['suggests']}. See {f['see']}.")
    return "\n".join(lines) + "\n"


def to_markdown(rows: Sequence[dict]) -> str:
    """A GitHub Markdown table of the rows (percentages to 0.1 with their 95% Wilson interval;
    – where undefined), then the masking checks that fired."""
    shown = _shown(rows)
    numeric = set(_PERCENT) | {"eps", "images", "excluded", "fooled"}
    lines = ["| " + " | ".join(_HEADERS[c] for c in shown) + " |", "|" + "|".join("---:" if c in numeric else "---" for c in shown) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell_text(c, row.get(c), row).replace("|", "\\|") for c in shown) + " |")
    return "\n".join(lines) + "\n" + undefined_text(rows, shown) + masking_text(rows)


def undefined_text(rows: Sequence[dict], shown: Sequence[str]) -> str:
    """Under a table, what each "–" in it means ("" when there is none): the rates it could be."""
    def blank(value: Any) -> bool:
        return value is None or isinstance(value, float) and math.isnan(value)

    said = []
    if any(blank(r.get("dsr")) for r in rows):
        said.append("DSR: the attack fooled no image on the undefended model (Fooled = 0), so there is nothing to restore")
    if "dsr_adaptive" in shown:
        empty = [r for r in rows if blank(r.get("dsr_adaptive")) or blank(r.get("accuracy_adversarial_adaptive"))]
        if any(r.get("mode") == "adaptive" for r in empty):
            said.append("the (adaptive) columns of an adaptive row: it is the adaptive attack itself")
        if any(r.get("mode") != "adaptive" and blank(r.get("accuracy_adversarial_adaptive")) for r in empty):
            said.append("the (adaptive) columns of a row without an adaptive attack beside it")
        if any(r.get("mode") != "adaptive" and not blank(r.get("accuracy_adversarial_adaptive")) for r in empty):
            said.append("DSR (adaptive): the adaptive attack fooled no image on the undefended model")
    if not said:
        return ""
    return "\n– is a rate that is not defined. " + "; ".join(said) + ".\n"


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "ε": r"$\varepsilon$", "→": r"$\to$", "–": "--", "∞": r"$\infty$",
}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(rows: Sequence[dict]) -> str:
    """A booktabs ``tabular`` of the rows (needs ``\\usepackage{booktabs}``)."""
    shown = _shown(rows)
    align = "".join("r" if c in _PERCENT or c in ("eps", "images", "excluded", "fooled") else "l" for c in shown)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(_latex_escape(_HEADERS[c]) for c in shown) + r" \\", r"\midrule"]
    for row in rows:
        lines.append(" & ".join(_latex_escape(_cell_text(c, row.get(c), row)) for c in shown) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(result: Evaluation, folder: str | os.PathLike) -> dict[str, Path]:
    """``results.csv`` (every column, full precision), ``results.md``, ``results.tex`` and
    ``results.json`` (rows with NaN as null, the plan, the provenance record), each atomically."""
    blocks = {"computed": result.computed, "reused": result.reused, "by_rank": [list(p) for p in result.by_rank]}
    return _write_table_files(Path(folder), result.rows, result.provenance, result.seconds, blocks)


def _write_table_files(folder: Path, rows: Sequence[dict], record: dict[str, Any], seconds: float, blocks: dict[str, Any]) -> dict[str, Path]:
    """The four table files from the rows (:func:`write_tables`, :func:`merge`): ``results.csv``,
    ``.md`` and ``.tex`` depend on the rows (and the model's assumed facts) only; ``results.json``
    also keeps the provenance record, the seconds and how the blocks were computed."""
    import pandas as pd

    paths = {fmt: folder / f"results.{fmt}" for fmt in ("csv", "md", "tex", "json")}
    atomic_write(paths["csv"], pd.DataFrame(list(rows), columns=list(COLUMNS)).to_csv(index=False))
    atomic_write(paths["md"], to_markdown(rows) + (f"\n{note}\n" if (note := provenance.assumed_note(record)) else ""))
    atomic_write(paths["tex"], to_latex(rows))
    document = {
        "rows": [{k: _nan_to_none(v) for k, v in row.items()} for row in rows],
        "provenance": record,
        "seconds": seconds,
        "blocks": blocks,
        "definitions": summary_rows.__doc__,
        "masking_checks": masking_checks(rows),
    }
    atomic_write(paths["json"], json.dumps(document, indent=2, default=str))
    return paths


# -- several processes ---------------------------------------------------------------------------------


def distributed_env() -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` when started by torchrun (``WORLD_SIZE`` > 1), else None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def evaluate_distributed(load: Callable[[str | None], tuple[PixelModel, Dataset]], device: str | None = None, **kwargs) -> Evaluation | None:
    """:func:`evaluate` in every process of a ``torchrun`` job: nccl with one GPU per process
    (``cuda:LOCAL_RANK``) when CUDA is there and ``device`` is not ``"cpu"``, else gloo on the CPU.
    ``load(device)`` gives the model and data set in each process. Block ``i`` runs on rank
    ``i mod world size``; rank 0 gathers every block and writes the tables; returns the
    :class:`Evaluation` on rank 0, None elsewhere."""
    import torch.distributed as dist

    env = distributed_env()
    if env is None:
        model, data = load(device)
        return evaluate(model, data, **kwargs)
    rank, world, local = env
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise InputError(
                f"process {local} of this node has no GPU of its own: the node has {torch.cuda.device_count()} "
                "(use --nproc_per_node with at most that many, or --device cpu for gloo on the CPU)"
            )
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    else:
        device = "cpu"
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        model, data = load(device)

        def gather(obj: Any) -> list[Any] | None:
            parts: list[Any] | None = [None] * world if rank == 0 else None
            dist.gather_object(obj, parts, dst=0)
            return parts

        return evaluate(model, data, rank=rank, world_size=world, gather=gather, **kwargs)
    finally:
        dist.destroy_process_group()


# -- shards and merging: evaluation on any scheduler (issue 25) -----------------------------------------
# A shard is one process that computes items k ≡ i (mod N) of the plan (the torchrun rank rule), so a
# Slurm array, submitit, Ray or `xargs -P` can run an evaluation; `merge` builds the tables from the
# block files of one or several folders, with the same rows as a single-process run.

#: Where a shard keeps its record (provenance, items, counts): ``shards/shard-I-of-N.json``.
SHARD_RECORDS = "shards"


@dataclass
class ShardRun:
    """What :func:`evaluate_shard` did: ``shard`` (I, N), its ``(cell, block)`` items, how many it
    computed and reused, the seconds, how many of the plan's ``total`` blocks ``folder`` now holds
    (``present``), and the shard record it wrote."""

    shard: tuple[int, int]
    items: list[tuple[int, int]]
    computed: int
    reused: int
    seconds: float
    present: int
    total: int
    folder: Path
    record: Path


def parse_shard(value: str | tuple[int, int]) -> tuple[int, int]:
    """``"1/4"`` (or ``(1, 4)``) → ``(1, 4)``: shard ``I`` of ``N``, counted from 0 (``0/4`` … ``3/4``),
    as a Slurm array's ``$SLURM_ARRAY_TASK_ID`` gives it. Raises :class:`InputError` otherwise."""
    if isinstance(value, tuple) and len(value) == 2:
        index, count = value
    else:
        head, slash, tail = str(value).strip().partition("/")
        try:
            index, count = int(head), int(tail)
        except ValueError:
            raise InputError(f"a shard is I/N: shard I of N, counted from 0 (0/4, 1/4, 2/4, 3/4); got {value!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (index, count)) or count < 1 or not 0 <= index < count:
        raise InputError(f"a shard is I/N with N ≥ 1 and 0 ≤ I < N (counted from 0, as --array=0-{{N-1}} gives); got {value!r}")
    return int(index), int(count)


def plan_digest(plan: Mapping[str, Any]) -> str:
    """SHA-256 of a plan record as ``plan.json`` keeps it (JSON, sorted keys): two folders hold
    blocks of one evaluation (model, data, attacks, ε grid, target, defences, seed, block size)
    exactly when their digests agree."""
    canonical = json.dumps(json.loads(json.dumps(plan)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def evaluate_shard(
    model: PixelModel,
    data: Dataset,
    attacks: Sequence[AttackSpec],
    shard: str | tuple[int, int],
    out: str | os.PathLike,
    defences: Sequence[AttackSpec] = DEFAULT_DEFENCES,
    eps: Sequence[float | str] | None = None,
    target: int | str | None = None,
    autoattack: bool = False,
    seed: int = 0,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool = True,
    adaptive: bool = False,
    surrogate: PixelModel | str | None = None,
) -> ShardRun:
    """One deterministic share of :func:`evaluate`'s blocks, for any scheduler: item ``k`` of the
    plan (``(cell, block)`` in plan order) is shard ``k mod N``'s, the rule torchrun's ranks follow,
    so a shard writes the block files a rank or a single process writes (the same numbers: the
    seeds are per unit of images, see the module docstring).

    Writes ``plan.json`` and the shard's block files into ``out`` (a folder of its own, or one every
    shard shares), then ``shards/shard-I-of-N.json`` (its provenance record, items and counts). A
    rerun reuses its finished blocks and deletes its own half-written temporary files (never another
    shard's, which may be in flight in a shared folder). No tables: :func:`merge` builds them.

    Raises:
        InputError: as :func:`evaluate`, a bad shard, no ``out``, or ``out`` holding another plan.
    """
    started = time.perf_counter()
    index, count = parse_shard(shard)
    if out is None or not str(out).strip():
        raise InputError("a shard writes block files for a later merge: give it an output folder (--out)")
    _check_inputs(model, data, seed, 1, None)
    setup = _setup(model, data, attacks, defences, eps, target, autoattack, seed, block_size, adaptive, surrogate)
    folder = Path(out)
    _claim_folder(folder, setup.plan)
    items = setup.items
    mine = items[index::count]
    _drop_own_temporaries(folder, set(mine))
    _, computed, reused = _run_blocks(
        model, setup.x, setup.y, setup.cells, setup.specs, setup.bounds, mine, int(seed), folder, setup.surrogate, progress, 0, 1
    )
    seconds = time.perf_counter() - started
    record = _evaluation_record(model, data, setup.cells, setup.specs, int(seed), block_size, 1, len(items), setup.surrogate)
    record["extra"]["shard"] = {"index": index, "count": count}
    path = folder / SHARD_RECORDS / f"shard-{index}-of-{count}.json"
    document = {
        "format": FORMAT, "shard": index, "shards": count, "plan_sha256": plan_digest(setup.plan), "items": [list(i) for i in mine],
        "computed": computed, "reused": reused, "seconds": seconds, "provenance": record,
    }
    atomic_write(path, json.dumps(document, indent=2, default=str))
    present = sum(1 for c, b in items if _block_path(folder, c, b).exists())
    return ShardRun((index, count), mine, computed, reused, seconds, present, len(items), folder, path)


def _drop_own_temporaries(folder: Path, mine: set[tuple[int, int]]) -> None:
    """Delete the half-written temporary files (``.block-BBBBB.json.*.tmp``) a killed run of these items left."""
    for stale in (folder / "blocks").glob("cell-*/.block-*.json.*.tmp"):
        try:
            item = (int(stale.parent.name[len("cell-"):]), int(stale.name[len(".block-"):].split(".", 1)[0]))
        except ValueError:
            continue
        if item in mine:
            stale.unlink(missing_ok=True)


@dataclass
class Merged:
    """What :func:`merge` built: the table rows, the provenance record, the files written into
    ``folder``, the source ``folders`` (sorted), the plan's number of ``blocks``, how many block files
    were copied into ``folder`` and how many identical duplicates were met."""

    rows: list[dict[str, Any]]
    provenance: dict[str, Any]
    files: dict[str, Path]
    folder: Path
    folders: list[Path]
    blocks: int
    copied: int
    duplicates: int
    seconds: float


def merge(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None = None) -> Merged:
    """The tables of an evaluation from its block files, spread over one or several ``folders``
    (shards' folders, or one shared): the rows of a single-process run of the same plan, whatever
    the order of the folders, the number of shards or which shard was rerun, so ``results.csv``,
    ``.md`` and ``.tex`` are byte-identical to that run's. ``results.json`` has the same rows; its
    provenance says how the blocks were computed (the shards, the merge), its ``seconds`` are the
    merge's.

    ``out`` (default: the one folder given) receives ``plan.json``, every block file it lacks (so it
    is a complete evaluation folder: a single-process run there reuses every block) and the tables.

    Raises:
        InputError: a folder without ``plan.json``; folders of different plans (which parts differ);
            a block file that is not a whole block of the plan; the same block with different contents
            in two folders (both named); blocks missing (named, with the shard that computes each);
            several folders and no ``out``.
    """
    started = time.perf_counter()
    dirs = _merge_sources(folders, out)
    plan = _common_plan(dirs)
    cells = [cell_from_dict(c) for c in plan["cells"]]
    bounds = block_bounds(int(plan["dataset"]["images"]), int(plan["block_size"]))
    items = [(c, b) for c in range(len(cells)) for b in range(len(bounds))]
    found, duplicates = _gather_blocks(dirs, cells, bounds, {d["defence"] for d in plan["defences"]})
    origins = _origins(dirs, plan_digest(plan))
    missing = [item for item in items if item not in found]
    if missing:
        raise InputError(_missing_message(missing, cells, bounds, origins, dirs))
    record = _merged_record(origins, dirs)  # (raises when no record says who computed the blocks)
    target = Path(out) if out is not None else dirs[0]
    _claim_folder(target, plan)
    copied = 0
    for c, b in items:
        path = _block_path(target, c, b)
        if not path.exists():
            atomic_write(path, found[(c, b)][0].read_text(encoding="utf-8"))
            copied += 1
    rows = plan_rows(plan, [[found[(c, b)][1] for b in range(len(bounds))] for c in range(len(cells))])
    seconds = time.perf_counter() - started
    blocks = {"merged": len(items), "copied": copied, "identical_duplicates": duplicates,
              "computed_by": record.get("extra", {}).get("computed_by", [])}
    files = _write_table_files(target, rows, record, seconds, blocks)
    return Merged(rows, record, files, target, dirs, len(items), copied, duplicates, seconds)


def cell_from_dict(entry: Mapping[str, Any]) -> Cell:
    """A :class:`Cell` from its ``plan.json`` entry (:meth:`Cell.to_dict`)."""
    return Cell(entry["attack"], dict(entry["params"]), entry["eps"], entry["target"],
                mode=entry.get("mode", "white-box"), source=entry.get("source"))


def plan_rows(plan: Mapping[str, Any], blocks: Sequence[Sequence[dict]]) -> list[dict]:
    """The table rows (:func:`summary_rows`) from a plan record as ``plan.json`` keeps it and the
    block contents: what a single-process run and :func:`merge` both call, so they agree."""
    plan = json.loads(json.dumps(plan))
    cells = [cell_from_dict(c) for c in plan["cells"]]
    specs = tuple((d["defence"], d["params"]) for d in plan["defences"])
    return summary_rows(cells, specs, blocks, variants={d["defence"]: d["variant"] for d in plan["defences"]})


def _merge_sources(folders: Sequence[str | os.PathLike], out: str | os.PathLike | None) -> list[Path]:
    """The folders to merge, resolved, without repeats, sorted (the order given never matters); an
    ``out`` folder that already holds a plan is one of them (its blocks are checked too)."""
    if isinstance(folders, (str, os.PathLike)) or not folders:
        raise InputError("merge takes a list of one or more evaluation folders")
    dirs = {Path(f).resolve() for f in folders}
    if out is None and len(dirs) > 1:
        raise InputError(f"merging {len(dirs)} folders: give the folder the tables go to (--out)")
    if out is not None and (Path(out) / "plan.json").exists():
        dirs.add(Path(out).resolve())
    for folder in dirs:
        if not (folder / "plan.json").is_file():
            raise InputError(f"{folder} is not an evaluation folder: it has no plan.json (a shard writes it before its first block)")
    return sorted(dirs, key=str)


def _common_plan(dirs: Sequence[Path]) -> dict[str, Any]:
    """The plan every folder holds; :class:`InputError` naming what differs when two differ."""
    plans = []
    for folder in dirs:
        try:
            plans.append(json.loads((folder / "plan.json").read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise InputError(f"{folder / 'plan.json'} cannot be read as a plan: {error}") from None
    first = plans[0]
    for folder, plan in zip(dirs[1:], plans[1:]):
        if plan_digest(plan) != plan_digest(first):
            parts = [_plan_difference(key, first.get(key), plan.get(key)) for key in sorted(set(first) | set(plan)) if first.get(key) != plan.get(key)]
            raise InputError(
                f"{dirs[0]} and {folder} hold blocks of different evaluations (plan sha256 {plan_digest(first)[:12]} vs "
                f"{plan_digest(plan)[:12]}): {'; '.join(parts)}. Merge only the folders of one evaluation"
            )
    return first


def _plan_difference(key: str, a: Any, b: Any) -> str:
    """One difference between two plans, in words."""
    if key == "model":
        return f"the model differs ({(a or {}).get('name')} {str((a or {}).get('content_hash'))[:12]} vs {(b or {}).get('name')} {str((b or {}).get('content_hash'))[:12]})"
    if key == "dataset":
        def text(d: Any) -> str:
            return f"{(d or {}).get('spec')}, {(d or {}).get('images')} images, sha256 {str((d or {}).get('sha256'))[:12]}"
        return f"the data set differs ({text(a)} vs {text(b)})"
    if key == "cells":
        def cells(entries: Any) -> str:
            return ", ".join(cell_from_dict(c).label for c in entries or [])
        return f"the attacks, ε grid or target differ ({cells(a)} vs {cells(b)})"
    if key == "defences":
        return f"the defences differ ({', '.join(d['defence'] for d in a or [])} vs {', '.join(d['defence'] for d in b or [])})"
    words = {"seed": "the seed", "block_size": "the block size", "surrogate": "the surrogate", "format": "the file format"}
    return f"{words.get(key, key)} differs ({json.dumps(a, default=str)[:80]} vs {json.dumps(b, default=str)[:80]})"


def _gather_blocks(dirs: Sequence[Path], cells: Sequence[Cell], bounds: Sequence[tuple[int, int]],
                   names: set[str]) -> tuple[dict[tuple[int, int], tuple[Path, dict]], int]:
    """Every block file of the folders, checked whole and of the plan: ``{(cell, block): (path, content)}``
    and the number of identical duplicates. Raises on a file that is not a whole block of the plan
    and on duplicates whose contents differ (the ``seconds`` a block took may differ)."""
    found: dict[tuple[int, int], tuple[Path, dict]] = {}
    conflicts: list[str] = []
    duplicates = 0
    for folder in dirs:
        for path in sorted((folder / "blocks").glob("cell-*/block-*.json")):
            item = _block_item(path, len(cells), len(bounds))
            row = _read_block(path, *bounds[item[1]])
            if row is None or not _whole(row, bounds[item[1]], cells[item[0]], names):
                raise InputError(
                    f"{path} is not a whole block of this plan (unreadable, truncated, or of another format or block size): "
                    "delete it and rerun the shard that computes it (it resumes)"
                )
            if item in found:
                other = found[item]
                differs = sorted(k for k in set(row) | set(other[1]) if k != "seconds" and row.get(k) != other[1].get(k))
                if differs:
                    conflicts.append(f"{other[0]} and {path} (they differ in {', '.join(differs)})")
                else:
                    duplicates += 1
                continue
            found[item] = (path, row)
    if conflicts:
        raise InputError(
            f"{len(conflicts)} block(s) were computed twice with different results: {'; '.join(conflicts[:5])}"
            + (f"; and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
            + ". A table would depend on which one is read (another device, library version or code?): delete the wrong copies"
        )
    return found, duplicates


def _block_item(path: Path, n_cells: int, n_blocks: int) -> tuple[int, int]:
    """``blocks/cell-CCC/block-BBBBB.json`` → ``(CCC, BBBBB)``, within the plan."""
    try:
        item = int(path.parent.name[len("cell-"):]), int(path.stem[len("block-"):])
    except ValueError:
        raise InputError(f"{path}: not a block file name (blocks/cell-CCC/block-BBBBB.json)") from None
    if not (0 <= item[0] < n_cells and 0 <= item[1] < n_blocks):
        raise InputError(f"{path} is outside this plan ({n_cells} attack configuration(s) × {n_blocks} block(s)): not a block of this evaluation")
    return item


def _whole(row: dict[str, Any], bounds: tuple[int, int], cell: Cell, names: set[str]) -> bool:
    """A block's content has every per-image list (per defence of the plan too), each with one entry per image."""
    n = bounds[1] - bounds[0]
    keys = ("labels", "excluded", "clean_pred") + (("adaptive",) if cell.mode == "adaptive" else ("adv_pred", "success", "restored", "restored_clean"))
    if any(k not in row for k in keys) or any(isinstance(row[k], dict) and set(row[k]) != names for k in keys):
        return False
    lists = [row[k] for k in keys if isinstance(row[k], list)]
    for k in keys:
        if isinstance(row[k], dict):
            for value in row[k].values():
                lists += list(value.values()) if isinstance(value, dict) else [value]
    return all(isinstance(v, list) and len(v) == n for v in lists)


def _origins(dirs: Sequence[Path], digest: str) -> list[dict[str, Any]]:
    """Who computed the blocks: every shard record of the folders; for a folder without one, a
    finished run's ``results.json`` (a single process, torchrun, a merge), each with its provenance record."""
    origins: list[dict[str, Any]] = []
    for folder in dirs:
        records = sorted((folder / SHARD_RECORDS).glob("shard-*-of-*.json"))
        if not records:
            origins += _run_origin(folder)
        for path in records:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise InputError(f"{path} cannot be read as a shard record: {error}") from None
            if doc.get("plan_sha256") != digest:
                raise InputError(f"{path} is the record of a shard of another plan (sha256 {str(doc.get('plan_sha256'))[:12]} vs {digest[:12]})")
            origins.append({"folder": str(folder), "shard": f"{doc['shard']}/{doc['shards']}", "shards": doc["shards"],
                            "index": doc["shard"], "computed": doc["computed"], "reused": doc["reused"], "provenance": doc["provenance"]})
    return origins


def _run_origin(folder: Path) -> list[dict[str, Any]]:
    """A finished run's origin from its ``results.json`` (none when it has no readable one)."""
    try:
        doc = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        record = doc["provenance"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    blocks = doc.get("blocks") or {}
    return [{"folder": str(folder), "shard": None, "shards": 1, "index": 0, "world_size": (record.get("extra") or {}).get("world_size"),
             "computed": blocks.get("computed"), "reused": blocks.get("reused"), "provenance": record}]


def _missing_message(missing: Sequence[tuple[int, int]], cells: Sequence[Cell], bounds: Sequence[tuple[int, int]],
                     origins: Sequence[dict[str, Any]], dirs: Sequence[Path]) -> str:
    """Which blocks are missing and which shard computes each (with the shard counts the folders' records use)."""
    counts = sorted({int(o["shards"]) for o in origins if o.get("shard")})
    listed = []
    for c, b in missing[:8]:
        k = c * len(bounds) + b
        who = ", ".join(f"shard {k % n}/{n}" for n in counts) or f"item {k}: shard {k} mod N of N"
        listed.append(f"blocks/cell-{c:03d}/block-{b:05d}.json ({cells[c].label}, images {bounds[b][0]}–{bounds[b][1] - 1}; {who})")
    more = f"; and {len(missing) - 8} more" if len(missing) > 8 else ""
    if counts:
        shards = sorted({f"{(c * len(bounds) + b) % n}/{n}" for c, b in missing for n in counts})
        todo = f"run (or rerun: it resumes) --shard {' and '.join(shards)}"
    else:
        todo = f"no shard record in these folders: block k = cell × {len(bounds)} + block is shard k mod N's"
    folders = ", ".join(str(d) for d in dirs)
    return f"{len(missing)} of {len(cells) * len(bounds)} block(s) are missing from {folders}: {'; '.join(listed)}{more}. To complete: {todo}"


def _merged_record(origins: Sequence[dict[str, Any]], dirs: Sequence[Path]) -> dict[str, Any]:
    """The provenance of merged tables: the record of the lowest shard (or of the finished run), with
    ``extra.computed_by`` (each shard: folder, device, time, counts) and ``extra.merge`` instead of
    ``world_size`` (a shard is one process; the shards may have run anywhere)."""
    if not origins:
        raise InputError(
            f"no provenance record in {', '.join(str(d) for d in dirs)}: every block is there but no shard finished "
            "(shards/shard-I-of-N.json) and no run wrote results.json; rerun any shard (it reuses its blocks) and merge again"
        )
    ordered = sorted(origins, key=lambda o: (o["shards"], o["index"], o["folder"], json.dumps(o["provenance"], sort_keys=True, default=str)))
    record = json.loads(json.dumps(ordered[0]["provenance"], default=str))
    extra = record.setdefault("extra", {})
    for key in ("shard", "world_size", "computed_by", "merge"):
        extra.pop(key, None)
    extra["computed_by"] = [
        {"folder": o["folder"], "shard": o["shard"], "world_size": o.get("world_size", 1), "computed": o["computed"], "reused": o["reused"],
         "created": o["provenance"].get("created"), "device": o["provenance"].get("device"), "versions": o["provenance"].get("versions")}
        for o in ordered
    ]
    extra["merge"] = {"folders": [str(d) for d in dirs], "shards": sorted({o["shards"] for o in origins if o["shard"]}),
                      "created": provenance.now_utc(), "argv": list(sys.argv)}
    return record


# -- defences held to the field's standard (issue 23): adaptive and transfer cells, intervals, ------
# -- masking checks. Kept apart from the pipeline above: the blocks and the plan are unchanged. -----

#: An ε (pixel units) from which an attack should fool nearly every image, defended or not: the
#: large-ε masking check runs at the grid's largest ε when it is at least this (MNIST's usual 0.3).
LARGE_EPS = 0.3
#: Above this accuracy after the defence at ε ≥ LARGE_EPS, the large-ε check fires.
LARGE_EPS_ACCURACY = 0.10
_RATES = ("clean_accuracy", "attack_success", "robust_accuracy", "dsr", "accuracy_adversarial", "accuracy_clean")


def every_defence(specs: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """``all`` in a defence list stands for every registered defence (plugins' too), in registry order."""
    from neuronviz.methods.defences import list_defences

    out: list[tuple[str, dict]] = []
    for name, params in specs:
        if name == "all":
            out += [(d.name, {}) for d in list_defences() if d.name not in {n for n, _ in out}]
        else:
            out.append((name, params))
    return out


def load_surrogate(model: PixelModel, surrogate: PixelModel | str | None) -> PixelModel | None:
    """The surrogate of a transfer evaluation: a PixelModel, or any model spec ``load_model``
    takes (a registered name, a checkpoint, ``timm:...``, an ONNX file...), on the victim's
    device; checked to take the victim's images and classes."""
    from neuronviz.workflows.batch import check_surrogate

    if surrogate is None:
        return None
    if isinstance(surrogate, str):
        from neuronviz.core.models import load_model

        surrogate = load_model(surrogate, device=str(model.device))
    check_surrogate(model, surrogate)
    return surrogate


def extend_plan(cells: Sequence[Cell], adaptive: bool, surrogate: PixelModel | None) -> list[Cell]:
    """The white-box cells, then one transfer cell per cell (crafted on ``surrogate``), then one
    adaptive cell per cell (each attack through each defence). AutoAttack's row gets neither (it
    calls the model on shrinking subsets, which the oracle defences cannot follow); adaptive cells
    are untargeted only."""
    out = list(cells)
    plain = [c for c in cells if c.attack != "autoattack"]
    if surrogate is not None:
        out += [dataclasses.replace(c, mode="transfer", source=surrogate.name) for c in plain]
    if adaptive:
        if any(c.target is not None for c in plain):
            raise InputError("the adaptive rows are untargeted: drop --target or --adaptive")
        out += [dataclasses.replace(c, mode="adaptive") for c in plain]
    return out


def _attacker_record(cells: Sequence[Cell], defences: Sequence[tuple[str, dict]], surrogate: PixelModel | None) -> dict[str, Any]:
    """What provenance records about who crafted the images: the surrogate (name, hash,
    architecture) of the transfer rows, and each defence's adaptive attack."""
    from neuronviz.methods.defences.adaptive import method

    out: dict[str, Any] = {}
    if surrogate is not None:
        out["surrogate"] = provenance.model_record(surrogate)
    if any(c.mode == "adaptive" for c in cells):
        out["adaptive"] = {
            d: {"method": method(get_defence(d)), "eot_samples": get_defence(d).eot_samples if get_defence(d).randomised else None,
                "rule": "per image, the image the defence handles worse of the attack through it and the plain attack"}
            for d, _ in defences
        }
    return out


def run_adaptive_block(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    cell: Cell,
    defences: Sequence[tuple[str, dict]],
    seed: int,
    start: int,
) -> dict[str, Any]:
    """One block of an adaptive cell: per unit of :data:`BLOCK` images (seed
    ``block_seed(seed, unit)``, as the white-box cell), the plain attack, then for every defence
    the attack through it (:func:`neuronviz.methods.defences.adaptive.adaptive_attack`, BPDA / EoT as the
    entry declares) and, per image, the one of the two the defence handles worse. The block keeps
    per defence the undefended prediction, success and the defence's prediction on that image."""
    from neuronviz.methods.attacks import run_attack
    from neuronviz.methods.defences.adaptive import adaptive_attack
    from neuronviz.workflows.batch import block_seed

    started = time.perf_counter()
    n = int(images.shape[0])
    row: dict[str, Any] = {
        "format": FORMAT, "start": start, "stop": start + n, "labels": labels.tolist(), "excluded": [False] * n,
        "clean_pred": [], "adaptive": {d: {"adv_pred": [], "success": [], "restored": [], "through": []} for d, _ in defences},
    }
    for unit_start in range(0, n, BLOCK):
        xb = images[unit_start : unit_start + BLOCK].to(model.device)
        unit_seed = block_seed(seed, (start + unit_start) // BLOCK)
        report = run_attack(model, xb, cell.attack, cell.params, seed=unit_seed)
        benign = report.clean_pred.to(model.device)
        row["clean_pred"] += report.clean_pred.tolist()
        for d, params in defences:
            defense = get_defence(d)
            if d == "none":
                chosen, through = report.adversarial, torch.ones(xb.shape[0], dtype=torch.bool)
            else:
                found = adaptive_attack(model, xb, cell.attack, cell.params, d, params, plain=report.adversarial, seed=unit_seed)
                chosen, through = found.adversarial, found.through
            chosen = chosen.to(model.device)
            adv_pred = model.predict(chosen)[0]
            after = defense.restore_for(model, chosen, benign=benign, clean=xb, params=params).prediction
            part = row["adaptive"][d]
            part["adv_pred"] += adv_pred.tolist()
            part["success"] += (adv_pred != report.clean_pred.cpu()).tolist()
            part["restored"] += after.tolist()
            part["through"] += through.tolist()
    row["seconds"] = time.perf_counter() - started
    return row


def _rate_columns(name: str, hits: torch.Tensor, over: torch.Tensor, why: str) -> dict[str, Any]:
    """``name`` (the share, NaN when n = 0), ``name_n``, ``name_low``, ``name_high``."""
    from neuronviz.methods.stats import rate

    value = rate(int((hits & over).sum()), int(over.sum()), empty_reason=why)
    nan = float("nan")
    return {
        name: value.share if value.share is not None else nan,
        f"{name}_n": value.n,
        f"{name}_low": value.low if value.low is not None else nan,
        f"{name}_high": value.high if value.high is not None else nan,
    }


def _row(cell: Cell, defence: str, labels, clean, adv, success, excluded, restored, restored_clean, method: str = "",
         variant: Mapping[str, Any] | None = None) -> dict:
    """One table row from per-image tensors (the definitions of :func:`summary_rows`)."""
    defense = get_defence(defence)
    attacked = ~excluded
    fooled = success.bool() & attacked
    everyone = torch.ones_like(attacked)
    row: dict[str, Any] = {
        "attack": cell.name, "eps": cell.eps, "target": "none" if cell.target is None else str(cell.target),
        "params": json.dumps(cell.params, sort_keys=True), "defence": (variant or {}).get("label", defence_label(defence)),
        "variant": (variant or {}).get("variant", ""), "deployable": defense.deployable,
        "images": int(labels.numel()), "excluded": int(excluded.sum()),
        "mode": cell.mode, "method": method, "attack_id": cell.attack, "fooled": int(fooled.sum()),
        "dsr_adaptive": None, "accuracy_adversarial_adaptive": None, "masking": "",
    }
    row |= _rate_columns("clean_accuracy", clean == labels, everyone, "no images")
    row |= _rate_columns("attack_success", success.bool(), attacked, "no image was attacked")
    row |= _rate_columns("robust_accuracy", (clean == labels) & (adv == labels), everyone, "no images")
    row |= _rate_columns("dsr", restored == clean, fooled, "the attack fooled no image: nothing to restore")
    row |= _rate_columns("accuracy_adversarial", restored == labels, everyone, "no images")
    if restored_clean is not None:
        row |= _rate_columns("accuracy_clean", restored_clean == labels, everyone, "no images")
    else:  # filled from the white-box row by _pair_adaptive
        row |= {"accuracy_clean": float("nan"), "accuracy_clean_n": 0, "accuracy_clean_low": float("nan"), "accuracy_clean_high": float("nan")}
    return row


def _adaptive_rows(cell: Cell, defences: Sequence[tuple[str, dict]], parts: Sequence[dict],
                   variants: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    from neuronviz.methods.defences.adaptive import method

    labels = torch.tensor([v for p in parts for v in p["labels"]], dtype=torch.long)
    clean = torch.tensor([v for p in parts for v in p["clean_pred"]], dtype=torch.long)
    excluded = torch.zeros_like(labels, dtype=torch.bool)
    rows = []
    for d, _ in defences:
        def cat(key: str, dtype: torch.dtype, d: str = d) -> torch.Tensor:
            return torch.tensor([v for p in parts for v in p["adaptive"][d][key]], dtype=dtype)

        rows.append(_row(cell, d, labels, clean, cat("adv_pred", torch.long), cat("success", torch.bool), excluded,
                         cat("restored", torch.long), None, method=method(get_defence(d)), variant=variants.get(d, {})))
    return rows


def _key(row: dict) -> tuple:
    return (row["attack_id"], row["params"], row["target"], row["defence"])


def _pair_adaptive(rows: list[dict]) -> None:
    """Put each adaptive row's DSR and accuracy beside its white-box row's, and the white-box
    row's clean accuracy after the defence (the same clean images) into the adaptive row."""
    white = {_key(r): r for r in rows if r["mode"] == "white-box"}
    for row in rows:
        if row["mode"] != "adaptive" or _key(row) not in white:
            continue
        plain = white[_key(row)]
        for name in ("dsr", "accuracy_adversarial"):
            for suffix in ("", "_n", "_low", "_high"):
                plain[f"{name}_adaptive{suffix}"] = row[f"{name}{suffix}"]
        for suffix in ("", "_n", "_low", "_high"):
            row[f"accuracy_clean{suffix}"] = plain[f"accuracy_clean{suffix}"]


def _steps(row: dict) -> tuple[int, int] | None:
    params = json.loads(row["params"])
    if "steps" not in params:
        return None
    return int(params["steps"]), int(params.get("n_restarts", params.get("restarts", 1)))


def _where(row: dict) -> str:
    eps = "" if row["eps"] is None else f" at ε={row['eps']:.4g}"
    return f"{row['attack']}{eps} against {row['defence']}"


def _see(row: dict, rows: Sequence[dict]) -> str:
    base = get_attack(row["attack_id"]).run_name(json.loads(row["params"]))
    if any(r["mode"] == "adaptive" for r in rows):
        return f"the adaptive row '{base} · adaptive' × {row['defence']}"
    return "no adaptive row in this table: rerun with --adaptive"


def masking_checks(rows: Sequence[dict]) -> list[dict[str, Any]]:
    """The masked-gradient checks of Carlini et al. 2019 (§7) and Athalye et al. 2018 over the
    rows, on the accuracy after the defence on the attacked images (lower: a stronger attack):

    - ``iterative<fgsm``: an iterative L∞ attack leaves a higher accuracy than FGSM at the same ε
      (white-box rows: transferred iterative attacks are known to overfit their surrogate);
    - ``large-eps``: at the grid's largest ε (≥ :data:`LARGE_EPS`) the accuracy after the defence
      stays above :data:`LARGE_EPS_ACCURACY` (an unbounded attack should reach ~0%);
    - ``transfer>white-box``: the transfer attack leaves a lower accuracy than the white-box one;
    - ``more-steps-weaker``: more steps or restarts of the same attack leave a higher accuracy.

    Each flag: ``check``, ``rows`` (indices it concerns; the first is the flagged row),
    ``message`` (the numbers with n and 95% intervals), ``suggests``, ``see`` (the adaptive row).
    The checks that could not run (no FGSM row, no large ε, one step count, no transfer row) are
    listed with ``check`` ``"not run: ..."`` and no ``rows``."""
    flags: list[dict[str, Any]] = []
    index = {id(r): i for i, r in enumerate(rows)}

    def flag(check: str, row: dict, other: dict | None, message: str, suggests: str) -> None:
        flags.append({"check": check, "rows": [index[id(row)]] + ([index[id(other)]] if other is not None else []),
                      "message": message, "suggests": suggests, "see": _see(row, rows)})

    iterative_ran, steps_ran = _same_place_checks(rows, flag)
    transfer_ran = _transfer_check(rows, flag)
    ran = {"iterative<fgsm": iterative_ran, "large-eps": _large_eps_check(rows, flag),
           "transfer>white-box": transfer_ran, "more-steps-weaker": steps_ran}
    for check, done in ran.items():
        if not done:
            why = {
                "iterative<fgsm": "no FGSM row beside an iterative L∞ attack at the same ε",
                "large-eps": f"the largest ε is below {LARGE_EPS:g}",
                "transfer>white-box": "no transfer row (--surrogate)",
                "more-steps-weaker": "each attack has one step count",
            }[check]
            flags.append({"check": f"not run: {check}", "rows": [], "message": why, "suggests": "", "see": ""})
    return flags


_Flag = Callable[[str, dict, "dict | None", str, str], None]


def _accuracy_text(row: dict) -> str:
    """The accuracy after the defence on the attacked images, as a rate with n and its 95% interval."""
    from neuronviz.methods.stats import rate

    n = int(row["accuracy_adversarial_n"])
    return rate(round(row["accuracy_adversarial"] * n), n).text() if n else "not defined"


def _same_place_checks(rows: Sequence[dict], flag: _Flag) -> tuple[bool, bool]:
    """Run ``iterative<fgsm`` and ``more-steps-weaker`` over the rows that share a mode, ε, target
    and defence; whether each check had rows to compare."""
    acc = _accuracy_text
    by_place: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["mode"] != "adaptive" and row["eps"] is not None:
            by_place.setdefault((row["mode"], row["eps"], row["target"], row["defence"]), []).append(row)
    iterative_ran = steps_ran = False
    for (mode, _, _, _), group in by_place.items():
        fgsm = [r for r in group if r["attack_id"] == "fgsm"]
        for row in group:
            info = get_attack(row["attack_id"])
            if mode == "white-box" and fgsm and row["attack_id"] != "fgsm" and info.norm == "Linf" and _steps(row) is not None:
                iterative_ran = True
                if row["accuracy_adversarial"] > fgsm[0]["accuracy_adversarial"]:
                    flag("iterative<fgsm", row, fgsm[0],
                         f"{_where(row)}: accuracy after the defence {acc(row)}; FGSM leaves {acc(fgsm[0])}",
                         "an iterative attack should be at least as strong as its one-step version: its gradient is "
                         "masked or obfuscated by the defence, or it is under-configured (steps × step size < ε)")
        if mode != "white-box":
            continue
        by_attack: dict[str, list[dict]] = {}
        for row in group:
            if _steps(row) is not None:
                by_attack.setdefault(row["attack_id"], []).append(row)
        for same in by_attack.values():
            ordered = sorted(same, key=lambda r: _steps(r) or (0, 0))
            for fewer, more in zip(ordered, ordered[1:]):
                if _steps(fewer) == _steps(more):
                    continue
                steps_ran = True
                if more["accuracy_adversarial"] > fewer["accuracy_adversarial"]:
                    flag("more-steps-weaker", more, fewer,
                         f"{_where(more)}: {acc(more)} after the defence; with fewer steps/restarts ({fewer['attack']}) {acc(fewer)}",
                         "more iterations or restarts should never help the defence: randomness or masked gradients")
    return iterative_ran, steps_ran


def _transfer_check(rows: Sequence[dict], flag: _Flag) -> bool:
    """Run ``transfer>white-box`` on each transfer row with a white-box twin; whether any had one."""
    acc = _accuracy_text
    ran = False
    for row in rows:
        if row["mode"] != "transfer":
            continue
        twin = next((r for r in rows if r["mode"] == "white-box" and _key(r) == _key(row) and r["eps"] == row["eps"]), None)
        if twin is None:
            continue
        ran = True
        if row["accuracy_adversarial"] < twin["accuracy_adversarial"]:
            flag("transfer>white-box", row, twin,
                 f"{_where(row)}: {acc(row)} after the defence; the white-box attack leaves {acc(twin)}",
                 "an attack that does not see the model beats one that does: the white-box gradient is masked")
    return ran


def _large_eps_check(rows: Sequence[dict], flag: _Flag) -> bool:
    """Run ``large-eps`` on each configuration's largest ε; whether any reached :data:`LARGE_EPS`."""
    acc = _accuracy_text
    ran = False
    largest: dict[tuple, dict] = {}
    for row in rows:
        if row["eps"] is None or row["mode"] == "transfer":
            continue
        others = {k: v for k, v in json.loads(row["params"]).items() if k != "eps"}
        key = (row["mode"], row["attack_id"], json.dumps(others, sort_keys=True), row["target"], row["defence"])
        if key not in largest or row["eps"] > largest[key]["eps"]:
            largest[key] = row
    for row in largest.values():
        if row["eps"] >= LARGE_EPS:
            ran = True
            if row["accuracy_adversarial"] > LARGE_EPS_ACCURACY:
                flag("large-eps", row, None,
                     f"{_where(row)}: {acc(row)} accuracy remains after the defence",
                     f"at ε ≥ {LARGE_EPS:g} an attack should fool nearly every image; a defence that keeps more than "
                     f"{100 * LARGE_EPS_ACCURACY:.0f}% suggests masked gradients (or an attack with too few steps)")
    return ran
