"""Labelled evaluation sets: the images the dashboard measures a model on (fragility, sensitivity).

:func:`evaluation_set` picks, for any :class:`~neuronviz.models.PixelModel`, a set of images whose
true classes are known, so that accuracies (clean, under attack, with a filter dropped) mean
something:

- a **digits model** (one input channel, the ten digit classes ``"0"`` … ``"9"``, a square
  input): the first ``n`` images of the digits test split (:func:`neuronviz.datasets.digits`,
  360 images, never seen in training), at the model's input size;
- **any other model**: the sample images of :func:`neuronviz.images.list_samples` whose class
  the model has (for an ImageNet model, the photographs with a known ImageNet class), at most
  ``n`` of them. There are few: every page says how many images it used.

The result says what it holds in words (:attr:`EvaluationSet.description`), for the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuronviz.datasets import DIGITS_CLASSES, digits
from neuronviz.errors import InputError
from neuronviz.images import list_samples, load_sample
from neuronviz.models.pixel import PixelModel

#: Images a page uses by default (the first 200 digits test images: the fragility benchmark's set).
DEFAULT_IMAGES = 200


@dataclass(frozen=True)
class EvaluationSet:
    """``images (N, C, H, W)`` pixels in [0, 1] for the model, ``labels (N,)`` their true classes.

    ``source``: ``"digits-test"`` or ``"samples"``; ``available``: how many images the source
    holds in all (``N ≤ available``); ``description``: one line for the page, e.g. "the first 200
    of the 360 digits test images".
    """

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    available: int
    description: str
    ids: tuple[str, ...] = ()  # one per image: the sample id ("digit-test-7", "photo-chelsea")

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
        }


def is_digits_model(model: PixelModel) -> bool:
    """True for a model that reads one-channel square images into the ten digit classes."""
    height, width = model.input_size
    return model.channels == 1 and height == width and tuple(model.class_names) == DIGITS_CLASSES


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
            description=f"{which} digits test images (never seen in training)",
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
