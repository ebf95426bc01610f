"""Labelled evaluation sets: the images the dashboard measures a model on (batch, fragility,
sensitivity) and the ``evaluate`` command's data.

The built-in set: :func:`evaluation_set` picks, for any :class:`~neuronviz.core.models.PixelModel`, a
set of images whose true classes are known, so that accuracies (clean, under attack, with a filter
dropped) mean something:

- a **digits model** (one input channel, the ten digit classes ``"0"`` … ``"9"``, a square
  input): the first ``n`` images of the digits test split (:func:`neuronviz.data.datasets.digits`,
  360 images, never seen in training), at the model's input size;
- **any other model**: the sample images of :func:`neuronviz.data.images.list_samples` whose class
  the model has (for an ImageNet model, the photographs with a known ImageNet class), at most
  ``n`` of them. There are few: every page says how many images it used.

The user's labelled data (:class:`EvaluationSet` class methods; readers in :mod:`neuronviz.data.datasets`):

- :meth:`EvaluationSet.from_folder`: an image folder, one subfolder per class (torchvision's
  ``ImageFolder`` layout);
- :meth:`EvaluationSet.from_torchvision`: MNIST or CIFAR-10 in their standard files under a local
  root (``torchvision.datasets.MNIST/CIFAR10(root, download=False)``);
- :meth:`EvaluationSet.from_zip`: a zip of class folders (an upload), validated before anything is
  decompressed (sizes, counts, names: see :func:`neuronviz.data.datasets.read_zip`);
- :meth:`EvaluationSet.from_uploads`: images with the class the user gives each.

Every image goes through :func:`neuronviz.data.images.load_image`, the validator and preparation of
the dashboard's uploads: refused when it is not a readable image within the caps, then brought to
the model's channels and input size by the model's :class:`~neuronviz.core.models.ImagePolicy`. The
data's class names are matched to the model's by name (:func:`match_classes`: case-insensitive,
``_`` read as a space; MNIST's ``"0 - zero"`` matches ``"0"`` or ``"zero"``; the digit words match
the digits), and a name no model class has is a :class:`~neuronviz.infra.errors.ClassMismatchError`
listing what disagrees. Folder and zip images are ordered class by class in turn
(:func:`neuronviz.data.datasets.interleave`), so the first N images a page uses cover every class.
Local paths (folders, roots, zip files) are refused on a shared server; uploads are not. The
prepared tensor is bounded (:data:`MAX_SET_BYTES`) before any image is decoded.

The result says what it holds in words (:attr:`EvaluationSet.description`), for the page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import torch

from neuronviz.core.models.pixel import PixelModel
from neuronviz.data.datasets import DIGITS_CLASSES, LabelledFiles, digits, image_folder, read_zip, torchvision_dataset
from neuronviz.data.images import ImageSource, list_samples, load_image, load_sample, read_header
from neuronviz.infra import budget, settings
from neuronviz.infra.errors import ClassMismatchError, DataError, ImageError, InputError

#: Images a page uses by default (the first 200 digits test images: the fragility benchmark's set).
DEFAULT_IMAGES = 200

#: Largest prepared evaluation set (float32 pixels at the model's input size), checked before any
#: image is decoded: 1 GiB here, 256 MiB on a shared server (10,000 CIFAR images at 224×224 would
#: be 6 GB: use ``limit``).
MAX_SET_BYTES = 2**30
SHARED_MAX_SET_BYTES = 256 * 2**20

#: Most pixels (width × height, summed over the images, read from their headers) a set from files
#: may decode: checked before any image is decoded, and each image checks the time budget before it
#: is decoded (issue 24.18: 30 PNGs of 6000×6000 are 1.08 G pixels, about 30 s of decoding).
#: 2 G pixels here, 250 M on a shared server.
MAX_SET_PIXELS = 2_000_000_000
SHARED_MAX_SET_PIXELS = 250_000_000

#: Where a set's images came from (:attr:`EvaluationSet.source`).
SOURCES = ("digits-test", "samples", "folder", "mnist", "cifar10", "zip", "uploads")


@dataclass(frozen=True)
class EvaluationSet:
    """``images (N, C, H, W)`` pixels in [0, 1] for the model, ``labels (N,)`` their true classes.

    ``source``: one of :data:`SOURCES`; ``available``: how many images the source holds in all
    (``N ≤ available``); ``description``: one line for the page, e.g. "the first 200 of the 360
    digits test images"; ``ids``: one per image (a sample id, a file's path in its folder or zip,
    ``"mnist-test-17"``); ``origin``: the folder, root or file the set was read from ("" when none).
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    available: int
    description: str
    ids: tuple[str, ...] = ()  # one per image: the sample id ("digit-test-7", "photo-chelsea")
    origin: str = ""

    @property
    def size(self) -> int:
        return int(self.labels.shape[0])

    def to_dict(self) -> dict:
        return {
            "images": self.size,
            "source": self.source,
            "available": self.available,
            "description": self.description,
            "labels": self.labels.tolist(),
            **({"origin": self.origin} if self.origin else {}),
        }

    def head(self, n: int) -> EvaluationSet:
        """The first ``n`` images (all of them when there are fewer), described as such."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive integer, got {n!r}")
        if n >= self.size:
            return self
        return replace(
            self,
            images=self.images[:n].clone(),
            labels=self.labels[:n].clone(),
            ids=self.ids[:n],
            description=f"the first {n} of {self.description}",
        )

    # -- the user's labelled data ---------------------------------------------------------------

    @classmethod
    def from_folder(cls, root: str | os.PathLike, model: PixelModel, *, limit: int | None = None) -> EvaluationSet:
        """An image folder with one subfolder per class (``root/cat/001.png``), at most ``limit``
        images (class by class in turn). Raises :class:`DataError` (folder, images, classes)."""
        _check_model(model)
        files = image_folder(root)
        return _from_files(files, model, "folder", f"image folder {Path(root).name}", str(Path(root)), limit)

    @classmethod
    def from_zip(
        cls,
        source: str | os.PathLike | bytes | BinaryIO,
        model: PixelModel,
        *,
        name: str | None = None,
        limit: int | None = None,
    ) -> EvaluationSet:
        """A zip of class folders (a path, its bytes or an uploaded file), validated as
        :func:`neuronviz.data.datasets.read_zip` says, every image through the image validator."""
        _check_model(model)
        label = name or (Path(source).name if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)) or "the zip"
        files = read_zip(source, label=label)
        origin = str(source) if isinstance(source, (str, os.PathLike)) else ""
        return _from_files(files, model, "zip", f"zip {label}", origin, limit)

    @classmethod
    def from_torchvision(
        cls, name: str, root: str | os.PathLike, model: PixelModel, *, split: str = "test", limit: int | None = None
    ) -> EvaluationSet:
        """``name`` ``"mnist"`` or ``"cifar10"`` from its standard files under ``root``
        (``download=False``; see :func:`neuronviz.data.datasets.torchvision_dataset`), the first
        ``limit`` images of the split in the data set's own order."""
        _check_model(model)
        _check_limit(limit)
        data = torchvision_dataset(name, root, split)
        mapping = match_classes(data.classes, model)
        count = len(data.labels) if limit is None else min(limit, len(data.labels))
        _check_bytes(count, model, f"{name} ({split})")
        label = "MNIST" if name == "mnist" else "CIFAR-10"
        images = []
        for i in range(count):
            budget.check()  # per image (24.18)
            images.append(load_image(data.images[i], model))
        x = torch.cat(images) if images else torch.empty(0, model.channels, *model.input_size)
        y = torch.tensor([mapping[int(c)] for c in data.labels[:count]], dtype=torch.long)
        which = f"the first {count} of the {len(data.labels):,}" if count < len(data.labels) else f"all {count:,}"
        return cls(
            images=x,
            labels=y,
            source=name,
            available=count,
            description=f"{which} {label} {split} images from {Path(data.root).name}{_coverage(mapping, y, model)}",
            ids=tuple(f"{name}-{split}-{i}" for i in range(count)),
            origin=data.root,
        )

    @classmethod
    def from_uploads(cls, uploads: Sequence[tuple[ImageSource, str | int]], model: PixelModel) -> EvaluationSet:
        """Images with their true classes given by the user: ``(image, class)`` pairs, the class a
        model class name (matched as :func:`match_classes` does) or index. Every image goes through
        the image validator; a refusal names the image."""
        _check_model(model)
        if not uploads:
            raise DataError("no image was given: upload images and give each one its class")
        most, _ = _dataset_caps()
        if len(uploads) > most:
            raise DataError(f"{len(uploads):,} images were given; up to {most:,} are read here")
        _check_bytes(len(uploads), model, "the uploads")
        images, labels, ids = [], [], []
        names = [c for _, c in uploads if not isinstance(c, int)]
        mapping = dict(zip(names, match_classes(names, model))) if names else {}
        labels_of = [
            str(getattr(source, "name", None) or (Path(source).name if isinstance(source, (str, os.PathLike)) else f"image {number + 1}"))
            for number, (source, _) in enumerate(uploads)
        ]
        check_headers([(label, source) for label, (source, _) in zip(labels_of, uploads)], "the uploads")
        for label, (source, given) in zip(labels_of, uploads):
            if isinstance(given, bool) or (isinstance(given, int) and not 0 <= given < model.num_classes):
                raise DataError(f"{label}: class index {given!r} is not one of {model.name}'s {model.num_classes} classes")
            budget.check()  # per image (24.18)
            images.append(_load(source, model, str(label)))
            labels.append(given if isinstance(given, int) else mapping[given])
            ids.append(str(label))
        y = torch.tensor(labels, dtype=torch.long)
        return cls(
            images=torch.cat(images),
            labels=y,
            source="uploads",
            available=len(uploads),
            description=f"{_plural(len(uploads), 'uploaded image')} with the classes given{_coverage(None, y, model)}",
            ids=tuple(ids),
        )


def is_digits_model(model: PixelModel) -> bool:
    """True for a model that reads one-channel square images into the ten digit classes."""
    height, width = model.input_size
    return model.channels == 1 and height == width and tuple(model.class_names) == DIGITS_CLASSES


def trained_on_digits_split(model: PixelModel) -> bool:
    """True when the model's card says it was trained on this project's digits train split (the
    embedded digits models), so the test split is known to be unseen; any other digits-shaped
    model may have seen these images, and nothing is claimed for it."""
    data = (getattr(model.meta, "card", None) or {}).get("data") or {}
    return "load_digits" in str(data.get("dataset", "")) and "datasets.digits" in str(data.get("split", ""))  # the card says neuronviz.data.datasets.digits(split)


def available_images(model: PixelModel) -> int:
    """How many labelled images :func:`evaluation_set` can offer for ``model``."""
    _check_model(model)
    if is_digits_model(model):
        return int(digits("test", size=model.input_size[0])[1].shape[0])
    return sum(1 for sample in list_samples(model) if sample.true_class is not None)


def evaluation_set(model: PixelModel, n: int = DEFAULT_IMAGES) -> EvaluationSet:
    """At most ``n`` labelled images for ``model`` (see the module docstring for which).

    Raises:
        InputError: ``n`` is not a positive integer, or no image with a known class exists for
            this model (e.g. a model whose classes none of the samples has).
    """
    _check_model(model)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}")
    if is_digits_model(model):
        x, y = digits("test", size=model.input_size[0])
        count = min(n, int(y.shape[0]))
        which = f"the first {count} of the {y.shape[0]}" if count < y.shape[0] else f"all {count}"
        return EvaluationSet(
            images=x[:count].clone(),
            labels=y[:count].clone(),
            source="digits-test",
            available=int(y.shape[0]),
            description=f"{which} digits test images" + (" (never seen in training)" if trained_on_digits_split(model) else ""),
            ids=tuple(f"digit-test-{i}" for i in range(count)),
        )
    labelled = [sample for sample in list_samples(model) if sample.true_class is not None]
    if not labelled:
        raise InputError(
            f"no sample image has a class that {model.name} knows, so accuracy cannot be measured "
            "on this model; choose a digits model or an ImageNet model"
        )
    chosen = labelled[:n]
    images = torch.cat([load_sample(sample.id, model).cpu() for sample in chosen])
    labels = torch.tensor([int(sample.true_class) for sample in chosen], dtype=torch.long)  # type: ignore[arg-type]
    kind = "photographs" if all(s.kind == "photo" for s in chosen) else "images"
    noun = kind if len(chosen) != 1 else kind[:-1]
    return EvaluationSet(
        images=images,
        labels=labels,
        source="samples",
        available=len(labelled),
        description=f"{len(chosen)} sample {noun} with a known class ({', '.join(s.label for s in chosen)})",
        ids=tuple(sample.id for sample in chosen),
    )


def _check_model(model: PixelModel) -> None:
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")


# -- class names ------------------------------------------------------------------------------------

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NUMBERED = re.compile(r"^(\S+)\s+-\s+(.+)$")  # MNIST's "0 - zero"


def normalise_class_name(name: str) -> str:
    """How class names are compared: case-folded, ``_`` read as a space, spaces collapsed."""
    return " ".join(str(name).replace("_", " ").casefold().split())


def _keys(name: str) -> set[str]:
    """The names a class answers to: itself, both halves of ``"0 - zero"``, a digit's word."""
    text = normalise_class_name(name)
    keys = {text}
    numbered = _NUMBERED.match(text)
    if numbered:
        keys |= {numbered.group(1), numbered.group(2)}
    for key in list(keys):
        if key in _DIGIT_WORDS:
            keys.add(str(_DIGIT_WORDS.index(key)))
        elif key.isdigit() and len(key) == 1:
            keys.add(_DIGIT_WORDS[int(key)])
    return keys


def match_classes(data_classes: Sequence[str], model: PixelModel) -> tuple[int, ...]:
    """For each of the data's class names, the index of the model class of that name.

    An exact match (after :func:`normalise_class_name`) wins; otherwise the names' keys must meet
    in exactly one model class (``"0 - zero"``, ``"zero"`` and ``"0"`` are the same digit). Several
    data classes may land on one model class; the data need not have every model class.

    Raises:
        ClassMismatchError: some data class matches no model class (or several): the message lists
            them, and the model's classes.
    """
    exact: dict[str, list[int]] = {}
    by_key: dict[str, set[int]] = {}
    for index, name in enumerate(model.class_names):
        exact.setdefault(normalise_class_name(name), []).append(index)
        for key in _keys(name):
            by_key.setdefault(key, set()).add(index)
    found: list[int] = []
    unmatched: list[str] = []
    ambiguous: list[str] = []
    for name in data_classes:
        hits = exact.get(normalise_class_name(name))
        if hits is not None and len(hits) == 1:
            found.append(hits[0])
            continue
        candidates = set().union(*(by_key.get(key, set()) for key in _keys(name)))
        if len(candidates) == 1:
            found.append(next(iter(candidates)))
        else:
            (ambiguous if candidates else unmatched).append(str(name))
    if unmatched or ambiguous:
        shown = ", ".join(repr(c) for c in model.class_names[:20]) + (f", … ({model.num_classes:,} in all)" if model.num_classes > 20 else "")
        parts = []
        if unmatched:
            parts.append(
                f"{len(unmatched)} of the data's {len(data_classes)} classes {'has' if len(unmatched) == 1 else 'have'} no "
                f"class of that name in {model.name}: {', '.join(repr(c) for c in unmatched[:20])}"
            )
        if ambiguous:
            parts.append(f"{', '.join(repr(c) for c in ambiguous[:20])} match{'es' if len(ambiguous) == 1 else ''} several of its classes")
        raise ClassMismatchError(
            "The data's class names are matched to the model's by name (case-insensitive): "
            + "; ".join(parts)
            + f". {model.name}'s classes: {shown}. Rename the class folders (or give the uploads' classes) to match.",
            unmatched=tuple(unmatched + ambiguous),
            model_classes=tuple(model.class_names),
            ui_hint="Name each class folder after one of the model's classes.",
        )
    return tuple(found)


# -- preparing the images ---------------------------------------------------------------------------


def _dataset_caps() -> tuple[int, int]:
    from neuronviz.data.datasets import dataset_limits

    return dataset_limits()


def max_set_bytes() -> int:
    """:data:`MAX_SET_BYTES`, or :data:`SHARED_MAX_SET_BYTES` on a shared server."""
    return SHARED_MAX_SET_BYTES if settings.shared_server() else MAX_SET_BYTES


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"limit must be a positive integer or None, got {limit!r}")


def _check_bytes(count: int, model: PixelModel, label: str) -> None:
    height, width = model.input_size
    needed = count * model.channels * height * width * 4
    if needed > max_set_bytes():
        fits = max(1, max_set_bytes() // (model.channels * height * width * 4))
        raise DataError(
            f"{label}: {count:,} images at {model.name}'s input size ({model.channels}×{height}×{width}) take "
            f"{settings.format_bytes(needed)}; sets up to {settings.format_bytes(max_set_bytes())} are prepared here. "
            f"Use at most {fits:,} images (limit={fits})."
        )


def max_set_pixels() -> int:
    """:data:`MAX_SET_PIXELS`, or :data:`SHARED_MAX_SET_PIXELS` on a shared server."""
    return SHARED_MAX_SET_PIXELS if settings.shared_server() else MAX_SET_PIXELS


def check_headers(items: Sequence[tuple[str, Any]], what: str) -> int:
    """Read every image's header (its first bytes only: :func:`neuronviz.data.images.read_header`) and
    refuse the set before any image is decoded or any zip member decompressed beyond its header:
    a file that is not an image, too large, padded, or a set whose images add up to more than
    :func:`max_set_pixels` pixels. The time budget is checked before each. Returns the pixels."""
    total = 0
    for name, data in items:
        budget.check()
        try:
            header = read_header(data, name)
        except ImageError as error:
            raise DataError(f"{name}: {error}", ui_hint=error.ui_hint) from error
        if header is None:
            continue
        total += header.pixels
        if total > max_set_pixels():
            raise DataError(
                f"{what}: its images add up to more than {max_set_pixels():,} pixels (at {name}, "
                f"{header.width}×{header.height}); sets up to {max_set_pixels():,} pixels are decoded here. Use fewer or "
                "smaller images (limit=N). Nothing was decoded."
            )
    return total


def _load(source: Any, model: PixelModel, label: str) -> torch.Tensor:
    try:
        return load_image(source, model)
    except ImageError as error:
        raise DataError(f"{label}: {error}", ui_hint=error.ui_hint) from error


def _from_files(files: LabelledFiles, model: PixelModel, source: str, what: str, origin: str, limit: int | None) -> EvaluationSet:
    _check_limit(limit)
    mapping = match_classes(files.classes, model)
    chosen = files.items if limit is None else files.items[:limit]
    _check_bytes(len(chosen), model, what)
    check_headers([(name, data) for name, _, data in chosen], what)
    images = []
    for name, _, data in chosen:
        budget.check()  # per image, before it is read or decoded (24.18)
        images.append(_load(data, model, name))
    y = torch.tensor([mapping[c] for _, c, _ in chosen], dtype=torch.long)
    total = len(files.items)
    which = f"the first {len(chosen)} of the {total:,}" if len(chosen) < total else f"all {total:,}"
    ignored = f"; {_plural(len(files.ignored), 'other file')} ignored" if files.ignored else ""
    return EvaluationSet(
        images=torch.cat(images),
        labels=y,
        source=source,
        available=len(chosen),
        description=f"{which} images of {what} ({_plural(len(files.classes), 'class folder', 'class folders')}"
        f"{_coverage(mapping, y, model)}{ignored})",
        ids=tuple(name for name, _, _ in chosen),
        origin=origin,
    )


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _coverage(mapping: Sequence[int] | None, labels: torch.Tensor, model: PixelModel) -> str:
    """", covering 3 of the model's 10 classes" when the images do not hold every class."""
    present = len(set(labels.tolist()))
    if present == model.num_classes:
        return ""
    return f", covering {present} of {model.name}'s {model.num_classes:,} classes"


# -- the evaluate command's data specs ---------------------------------------------------------------

#: The data-set specs of the user's data (``neuronviz evaluate --data KIND:PATH[,limit=N]``) and
#: their help (registered in :mod:`neuronviz.workflows.evaluate`).
USER_DATASETS: dict[str, str] = {
    "folder": "an image folder, one subfolder per class: folder:PATH[,limit=N]",
    "zip": "a zip of class folders: zip:PATH[,limit=N]",
    "mnist": "MNIST's standard files under a local root: mnist:ROOT[,split=test|train][,limit=N]",
    "cifar10": "CIFAR-10's standard files under a local root (trusted roots only): cifar10:ROOT[,split=test|train][,limit=N]",
}


def user_evaluation_set(kind: str, model: PixelModel, options: Mapping[str, str]) -> EvaluationSet:
    """The set a ``KIND:PATH[,key=value]`` spec names (see :data:`USER_DATASETS`); ``options`` as
    :func:`neuronviz.workflows.evaluate.parse_spec` gives them (the path positional, under ``""``)."""
    if kind not in USER_DATASETS:
        raise InputError(f"unknown data kind {kind!r}; known: {sorted(USER_DATASETS)}")
    allowed = ("path", "limit") if kind in ("folder", "zip") else ("root", "split", "limit")
    values = dict(options)
    if "" in values:
        values[allowed[0]] = values.pop("")
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise InputError(f"data set {kind!r} has no option {unknown[0]!r}; it has {list(allowed)}")
    where = values.get(allowed[0], "")
    if not where:
        raise InputError(f"data set {kind!r} needs a {allowed[0]}: {USER_DATASETS[kind]}")
    limit = None
    if "limit" in values:
        try:
            limit = int(values["limit"])
        except ValueError:
            raise InputError(f"{kind}: limit must be a whole number, got {values['limit']!r}") from None
    if kind == "folder":
        return EvaluationSet.from_folder(where, model, limit=limit)
    if kind == "zip":
        return EvaluationSet.from_zip(where, model, limit=limit)
    return EvaluationSet.from_torchvision(kind, where, model, split=values.get("split", "test"), limit=limit)
