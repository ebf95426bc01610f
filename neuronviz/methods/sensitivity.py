"""Neuron sensitivity (the SNS metric) and the comparison of models by it.

Zhang, Liu, Liu et al., "Interpreting and Improving Adversarial Robustness of Deep Neural
Networks with Neuron Sensitivity", IEEE TIP 30:1291–1304, 2021 (arXiv:1909.06978). A neuron is
one channel ``m`` of layer ``l`` (one unit of a linear layer; of a vision transformer's token
layer one hidden unit over the tokens, of its attention one head, :mod:`neuronviz.core.layers`). Over pairs ``(x_i, x'_i)`` of a
clean image and its adversarial version:

    σ_{l,m} = (1/N) Σ_i ‖F_{l,m}(x_i) − F_{l,m}(x'_i)‖₁ / dim(F_{l,m})

This matches the authors' lab code (``DIG-Beihang/AISafety``, ``EvalBox/UserEvaluation/sns.py``),
which also reports the per-layer mean and the top 10% most sensitive channels per layer: both are
here (:class:`SensitivityMap`). The paper's claim, that adversarial training works by lowering
neuron sensitivity, is what :func:`compare_models` shows on the project's own models.

Every requested layer is recorded in ONE forward pass of the clean and the adversarial batch
together (:func:`neuronviz.core.probe.probe`, the project's one hook mechanism).

SNS fine-tuning (a reconstruction) lives in :mod:`neuronviz.training.sns`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neuronviz.core.layers import LayerInfo, layer_info, neuron_view
from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import probe
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import get_attack, run_attack
from neuronviz.methods.influence import probe_layers

#: Default share of each layer's neurons reported as its most sensitive (the authors' code: 10%).
TOP_FRACTION = 0.1


@dataclass(frozen=True)
class SensitivityMap:
    """Sensitivity of every neuron of one layer.

    ``per_pair (N, neurons)``: σ for each pair alone; ``values (neurons,)``: their mean over the
    ``N`` pairs (the paper's σ); ``top``: indices of the ``top_fraction`` most sensitive neurons
    (at least one), most sensitive first; ``shape``: the layer's output shape per image.
    ``scale (neurons,)``: the mean ``‖F_m(x)‖₁/dim`` over the clean images, so that
    ``relative_mean`` (σ over activation size, layer-wide) compares models whose activations
    have different magnitudes (not in the paper; shown next to σ, named as such).
    """

    layer: str
    values: torch.Tensor
    per_pair: torch.Tensor
    top: torch.Tensor
    top_fraction: float
    shape: tuple[int, ...]
    scale: torch.Tensor

    @property
    def neurons(self) -> int:
        return int(self.values.shape[0])

    @property
    def mean(self) -> float:
        """The layer's mean sensitivity over its neurons."""
        return float(self.values.mean())

    @property
    def relative_mean(self) -> float:
        """The layer's mean σ divided by its mean clean activation size (0 for a silent layer)."""
        size = float(self.scale.mean())
        return float(self.values.mean()) / size if size > 0 else 0.0

    @property
    def top_mean(self) -> float:
        """The mean sensitivity of the layer's top neurons."""
        return float(self.values[self.top].mean())

    def to_frame(self):
        import pandas as pd

        is_top = torch.zeros(self.neurons, dtype=torch.bool)
        is_top[self.top] = True
        return pd.DataFrame(
            {
                "layer": self.layer,
                "neuron": np.arange(self.neurons),
                "sensitivity": self.values.numpy(),
                "activation_size": self.scale.numpy(),
                "top": is_top.numpy(),
            }
        )

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "pairs": int(self.per_pair.shape[0]),
            "mean": self.mean,
            "relative_mean": self.relative_mean,
            "top_fraction": self.top_fraction,
            "top": self.top.tolist(),
            "values": self.values.tolist(),
        }


def top_count(neurons: int, fraction: float) -> int:
    """How many neurons the top ``fraction`` of a layer holds (rounded up, at least one)."""
    return max(1, min(neurons, math.ceil(fraction * neurons - 1e-9)))


def _check_fraction(top_fraction: float) -> float:
    if isinstance(top_fraction, bool) or not isinstance(top_fraction, (int, float)) or not 0 < top_fraction <= 1:
        raise InputError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    return float(top_fraction)


def _layer_names(model: PixelModel, layers: str | Sequence[str] | None) -> list[str]:
    if layers is None:
        return [info.name for info in probe_layers(model)]
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise InputError("no layers given")
    model.layers(names)  # raises with close names when one is unknown
    return names


def channel_distance(clean: torch.Tensor, adversarial: torch.Tensor, layer: LayerInfo | None = None) -> torch.Tensor:
    """``‖F_m(x) − F_m(x')‖₁ / dim(F_m)`` per image and neuron: ``(N, C, ...) → (N, C)``.

    For a spatial layer the mean absolute difference over each channel's positions; for a
    linear layer the absolute difference of each unit; with ``layer`` (its
    :class:`~neuronviz.core.layers.LayerInfo`) a token layer's hidden unit over the tokens and a
    head over its tokens and features (None: channels first). Differentiable (SNS training uses it).
    """
    diff = neuron_view((clean - adversarial).abs(), layer)
    return diff.flatten(2).mean(2) if diff.dim() > 2 else diff.flatten(1)


def neuron_sensitivity(
    model: PixelModel,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    layers: str | Sequence[str] | None = None,
    top_fraction: float = TOP_FRACTION,
    batch_size: int = 128,
) -> dict[str, SensitivityMap]:
    """The SNS sensitivity σ of every neuron (channel) of ``layers`` over the pairs ``(x, x_adv)``.

    Args:
        model: a :class:`PixelModel` (not changed; its lock is held while it runs).
        x: ``(N, C, H, W)`` clean pixels in [0, 1]; one pair or a batch of pairs.
        x_adv: the adversarial versions, same shape.
        layers: qualified layer names; default: every layer of
            :func:`neuronviz.methods.influence.probe_layers`.
        top_fraction: share of each layer's neurons reported in ``top`` (default 0.1, at least 1).
        batch_size: pairs per forward pass (each pass runs ``2·batch_size`` images).

    Returns:
        ``{layer: SensitivityMap}`` in the order of ``layers``, detached CPU tensors.
    """
    x = model.check_pixels(x, "x")
    x_adv = model.check_pixels(x_adv, "x_adv")
    if x.shape != x_adv.shape:
        raise InputError(f"x and x_adv must have the same shape, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    top_fraction = _check_fraction(top_fraction)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    names = _layer_names(model, layers)
    infos = {name: layer_info(model, name) for name in names}
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    sizes: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    shapes: dict[str, tuple[int, ...]] = {}
    with probe(model, names) as rec, torch.no_grad():
        for start in range(0, len(x), batch_size):
            clean, adv = x[start : start + batch_size], x_adv[start : start + batch_size]
            rec.forward(torch.cat([clean, adv]))  # one pass records every layer for both images
            for name in names:
                activation = rec.activation(name)
                shapes[name] = tuple(activation.shape[1:])
                info = infos[name]
                parts[name].append(channel_distance(activation[: len(clean)], activation[len(clean) :], info).cpu())
                sizes[name].append(channel_distance(activation[: len(clean)], 0 * activation[: len(clean)], info).cpu())
    result = {}
    for name in names:
        per_pair = torch.cat(parts[name]).float()
        values = per_pair.mean(0)
        k = top_count(values.numel(), top_fraction)
        result[name] = SensitivityMap(
            layer=name,
            values=values,
            per_pair=per_pair,
            top=values.topk(k).indices,
            top_fraction=top_fraction,
            shape=shapes[name],
            scale=torch.cat(sizes[name]).float().mean(0),
        )
    return result


@dataclass(frozen=True)
class SensitivityComparison:
    """Per-layer sensitivity profiles of several models on the same images and attack.

    ``profiles[model][layer]`` is a :class:`SensitivityMap`; ``clean_accuracy`` and
    ``adv_accuracy`` (per model, against ``labels``) say how each model fared; each model is
    attacked white-box, with the same attack and parameters.
    """

    attack: str
    params: dict
    profiles: dict[str, dict[str, SensitivityMap]]
    clean_accuracy: dict[str, float]
    adv_accuracy: dict[str, float]
    images: int

    def to_frame(self):
        """Long format: one row per model and layer (mean and top-k mean sensitivity)."""
        import pandas as pd

        rows = []
        for model_name, profile in self.profiles.items():
            for index, (layer, smap) in enumerate(profile.items()):
                rows.append(
                    {
                        "model": model_name,
                        "layer": layer,
                        "layer_index": index,
                        "mean_sensitivity": smap.mean,
                        "relative_sensitivity": smap.relative_mean,
                        "top_mean_sensitivity": smap.top_mean,
                        "neurons": smap.neurons,
                    }
                )
        return pd.DataFrame(rows)

    def table(self, value: str = "mean_sensitivity"):
        """Layers × models table of ``value`` (a :meth:`to_frame` column: ``"mean_sensitivity"``,
        ``"relative_sensitivity"`` or ``"top_mean_sensitivity"``), layers in forward order."""
        frame = self.to_frame()
        if value not in frame.columns or value in ("model", "layer"):
            raise InputError(f"no column {value!r}; columns: {list(frame.columns)}")
        order = list(dict.fromkeys(frame["layer"]))
        return frame.pivot(index="layer", columns="model", values=value).reindex(order)[list(self.profiles)]

    def to_dict(self) -> dict:
        return {
            "attack": self.attack,
            "params": self.params,
            "images": self.images,
            "clean_accuracy": self.clean_accuracy,
            "adv_accuracy": self.adv_accuracy,
            "profiles": {
                model_name: {layer: smap.mean for layer, smap in profile.items()}
                for model_name, profile in self.profiles.items()
            },
        }


def compare_models(
    models: Mapping[str, PixelModel] | Sequence[PixelModel],
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int] | None = None,
    attack: str = "pgd",
    params: Mapping | None = None,
    layers: str | Sequence[str] | None = None,
    top_fraction: float = TOP_FRACTION,
    seed: int | None = 0,
) -> SensitivityComparison:
    """The sensitivity profile of each model on the same images under the same attack.

    Each model is attacked white-box (``run_attack(model, images, attack, params, labels)``),
    then :func:`neuron_sensitivity` is taken over the clean/adversarial pairs. ``layers``
    default to each model's own probe layers (models of one architecture share them).
    ``labels`` default to each model's clean prediction (then the clean accuracy is 1 by
    construction; give the true labels to compare accuracies).
    """
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        named = {}
        for model in models:
            if not isinstance(model, PixelModel):
                raise InputError(f"compare_models needs PixelModels, got {type(model).__name__}")
            if model.name in named:
                raise InputError(f"two models are named {model.name!r}; pass a mapping name → model")
            named[model.name] = model
    if not named:
        raise InputError("no models to compare")
    get_attack(attack)  # unknown attack: one clear error before any work
    params = dict(params or {})
    profiles, clean_accuracy, adv_accuracy = {}, {}, {}
    for name, model in named.items():
        if not isinstance(model, PixelModel):
            raise InputError(f"{name!r} is not a PixelModel")
        x = model.check_pixels(images, "images")
        report = run_attack(model, x, attack, params, labels=None if labels is None else torch.as_tensor(labels), seed=seed)
        profiles[name] = neuron_sensitivity(model, x, report.adversarial, layers=layers, top_fraction=top_fraction)
        clean_accuracy[name] = float((report.clean_pred == report.labels).float().mean())
        adv_accuracy[name] = float((report.adv_pred == report.labels).float().mean())
    return SensitivityComparison(
        attack=attack,
        params=params,
        profiles=profiles,
        clean_accuracy=clean_accuracy,
        adv_accuracy=adv_accuracy,
        images=int(images.shape[0]),
    )
