"""Where each fact of a model came from: mean, std, input size, channels, class names.

A :class:`~neuronviz.core.models.PixelModel` needs five facts besides its network. Each is recorded
with its **origin**, so that nothing is assumed silently:

==================  =================================================================================
origin              meaning
==================  =================================================================================
``user``            given by whoever loaded the model: an option, a sidebar field, ``--mean``,
                    the arguments of ``wrap_model``
``metadata``        written next to the weights by their author: ONNX ``metadata_props``, a
                    ``.pt2``'s ``neuronviz.json``, a checkpoint's metadata, attributes a factory
                    sets on its module, timm's pretrained config
``file``            read from the network itself: the input shape fixed in an ONNX or ``.pt2``
                    file, the first convolution's ``in_channels``, the output layer's size
``architecture``    the registered architecture's own facts (the digits models, torchvision's and
                    timm's documented preprocessing)
``default``         nothing said it: a default was **assumed** (marked "assumed" wherever the
                    model is shown, exported or cited)
==================  =================================================================================

A one-channel model with no statistics gets MNIST's (mean 0.1307, std 0.3081: the usual grey
data set's training statistics), marked assumed; never statistics of three-channel images
(ImageNet's averaged to grey, 0.449/0.226, took a 1×28×28 network from 97.7% to 29.5%).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The facts every model has, in display order.
FACT_NAMES = ("mean", "std", "input_size", "channels", "class_names")
#: The origins a fact may have (see the module docstring).
ORIGINS = ("user", "metadata", "file", "architecture", "default")
#: Labels for display.
FACT_LABELS = {"mean": "Mean", "std": "Std", "input_size": "Input size", "channels": "Channels", "class_names": "Classes"}
#: The statistics a one-channel model gets when nothing gives them (assumed): MNIST's training
#: statistics, torchvision's usual ``Normalize((0.1307,), (0.3081,))`` for grey digits.
GREY_DEFAULT_MEAN = (0.1307,)
GREY_DEFAULT_STD = (0.3081,)
#: How the origin of that default reads.
GREY_DEFAULT_WORDS = "MNIST's training statistics (the usual grey data set; a grey model gets no RGB statistics)"


@dataclass(frozen=True)
class Fact:
    """One fact, its value and where it came from (``detail``: which key, field or file)."""

    name: str
    value: Any
    origin: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.name not in FACT_NAMES:
            raise ValueError(f"unknown model fact {self.name!r}; facts are {FACT_NAMES}")
        if self.origin not in ORIGINS:
            raise ValueError(f"unknown origin {self.origin!r} of {self.name}; origins are {ORIGINS}")

    @property
    def assumed(self) -> bool:
        return self.origin == "default"

    def value_text(self, max_classes: int = 4) -> str:
        value = self.value
        if self.name == "input_size":
            return f"{value[0]}×{value[1]}"
        if self.name == "class_names":
            names = list(value)
            shown = ", ".join(names[:max_classes]) + (f", … ({len(names):,} classes)" if len(names) > max_classes else "")
            return shown
        if isinstance(value, (tuple, list)):
            return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        return str(value)

    def origin_text(self) -> str:
        word = "assumed (default)" if self.assumed else self.origin
        return f"{word}: {self.detail}" if self.detail else word

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"value": value, "origin": self.origin, "detail": self.detail, "assumed": self.assumed}


@dataclass(frozen=True)
class ModelFacts:
    """The five facts of a model, each with its origin."""

    facts: tuple[Fact, ...]

    def __post_init__(self) -> None:
        names = [f.name for f in self.facts]
        if sorted(names) != sorted(FACT_NAMES):
            raise ValueError(f"ModelFacts needs each of {FACT_NAMES} once, got {names}")

    def __getitem__(self, name: str) -> Fact:
        for fact in self.facts:
            if fact.name == name:
                return fact
        raise KeyError(name)

    def __iter__(self):
        order = {name: i for i, name in enumerate(FACT_NAMES)}
        return iter(sorted(self.facts, key=lambda f: order[f.name]))

    @property
    def assumed(self) -> tuple[str, ...]:
        """Names of the facts that were assumed (origin ``default``), in display order."""
        return tuple(f.name for f in self if f.assumed)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: f.to_dict() for f in self}

    def assumed_note(self) -> str:
        """One sentence naming the assumed facts ("" when none): for banners, captions and tables."""
        names = self.assumed
        if not names:
            return ""
        parts = [f"{FACT_LABELS[n].lower()} {self[n].value_text()}" for n in names]
        return "assumed, not known: " + "; ".join(parts)

    def lines(self) -> list[str]:
        """``Mean  0.5  (metadata: neuronviz.mean)`` per fact, for ``neuronviz inspect``."""
        return [f"{FACT_LABELS[f.name]:11s} {f.value_text(max_classes=10):40s} ({f.origin_text()})" for f in self]


def build(
    *,
    mean: tuple[tuple[float, ...], str, str],
    std: tuple[tuple[float, ...], str, str],
    input_size: tuple[tuple[int, int], str, str],
    channels: tuple[int, str, str],
    class_names: tuple[tuple[str, ...], str, str],
) -> ModelFacts:
    """:class:`ModelFacts` from ``(value, origin, detail)`` per fact."""
    given = {"mean": mean, "std": std, "input_size": input_size, "channels": channels, "class_names": class_names}
    return ModelFacts(tuple(Fact(name, value[0], value[1], value[2]) for name, value in given.items()))


def uniform(
    mean: Iterable[float], std: Iterable[float], input_size: tuple[int, int], class_names: Iterable[str], origin: str, detail: str = ""
) -> ModelFacts:
    """Every fact from one origin (the channel count: the length of ``mean``)."""
    mean_t, std_t = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    return build(
        mean=(mean_t, origin, detail),
        std=(std_t, origin, detail),
        input_size=(tuple(input_size), origin, detail),  # type: ignore[arg-type]
        channels=(len(mean_t), origin, detail),
        class_names=(tuple(class_names), origin, detail),
    )


def from_dict(data: Mapping[str, Mapping[str, Any]]) -> ModelFacts:
    """The inverse of :meth:`ModelFacts.to_dict` (a provenance record's ``facts``)."""
    facts = []
    for name in FACT_NAMES:
        item = data[name]
        value = item["value"]
        if isinstance(value, list):
            value = tuple(value)
        facts.append(Fact(name, value, str(item["origin"]), str(item.get("detail", ""))))
    return ModelFacts(tuple(facts))
