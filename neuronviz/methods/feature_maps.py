"""Feature maps of chosen channels of one layer, on a clean image and on its adversarial version.

What the Sensitivity page draws next to the most sensitive channels: the channel's output on
``x`` and on ``x'`` and their difference, so that "this channel is sensitive" can be seen. One
forward pass of the pair through :func:`neuronviz.core.probe.probe` (the project's one hook
mechanism: hooks removed afterwards, the model's lock held, the model unchanged).

A "channel" is a neuron of :mod:`neuronviz.core.layers`: of a vision transformer's token layer a
hidden unit, drawn over the patch grid (the class and register tokens dropped); of its attention a
head (its features summed); of a channels-last map (ConvNeXt's MLP) a feature over the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from neuronviz.core.layers import LayerInfo, layer_info, neuron_view, token_grid
from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import probe
from neuronviz.infra.errors import InputError


@dataclass(frozen=True)
class ChannelMaps:
    """Outputs of ``channels`` of ``layer``: ``clean`` and ``adversarial`` ``(k, *spatial)``.

    ``spatial`` is ``(H, W)`` for a convolutional layer and ``()`` for a linear one (then each
    channel is one number).
    """

    layer: str
    channels: tuple[int, ...]
    clean: torch.Tensor
    adversarial: torch.Tensor

    @property
    def difference(self) -> torch.Tensor:
        """``adversarial − clean``, same shape."""
        return self.adversarial - self.clean

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.clean.shape[1:])

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "channels": list(self.channels),
            "clean": self.clean.tolist(),
            "adversarial": self.adversarial.tolist(),
        }


def _one(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0) if isinstance(x, torch.Tensor) and x.dim() == 3 else x


def channel_maps(
    model: PixelModel, image: torch.Tensor, adversarial: torch.Tensor, layer: str, channels: Sequence[int]
) -> ChannelMaps:
    """The outputs of ``channels`` of ``layer`` on one image and its adversarial version.

    Args:
        model: a :class:`PixelModel` (not changed).
        image, adversarial: ``(1, C, H, W)`` (or ``(C, H, W)``) pixels in [0, 1], same shape.
        layer: a qualified layer name (e.g. ``"features.3"``); a layer called several times in
            one forward pass is refused by :func:`probe` with a message.
        channels: channel (or unit) indices of that layer, in the order wanted.
    """
    x = model.check_pixels(_one(image), "image")
    x_adv = model.check_pixels(_one(adversarial), "adversarial")
    if x.shape[0] != 1 or x.shape != x_adv.shape:
        raise InputError(f"one image and its adversarial version are needed, got {tuple(x.shape)} and {tuple(x_adv.shape)}")
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise InputError(f"channels must be a non-empty sequence of indices, got {channels!r}")
    chosen = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, int):
            raise InputError(f"channel indices must be integers, got {c!r}")
        chosen.append(int(c))
    model.layers([layer])  # an unknown name: a clear error with close names
    info = layer_info(model, layer)
    with probe(model, [layer]) as rec, torch.no_grad():
        rec.forward(torch.cat([x, x_adv]))
        output = _maps(rec.activation(layer).detach().cpu().float(), info)
    if output.dim() < 2:
        raise InputError(f"layer {layer!r} has no channels (output shape {tuple(output.shape[1:])})")
    count = output.shape[1]
    bad = [c for c in chosen if not 0 <= c < count]
    if bad:
        raise InputError(f"layer {layer!r} has {count} channels (0..{count - 1}); got {bad}")
    index = torch.tensor(chosen)
    return ChannelMaps(
        layer=layer,
        channels=tuple(chosen),
        clean=output[0, index].clone(),
        adversarial=output[1, index].clone(),
    )


def _maps(output: torch.Tensor, info: LayerInfo) -> torch.Tensor:
    """The layer's output with one map per neuron: ``(N, neurons, *spatial)``."""
    if info.layout == "heads":
        heads = neuron_view(output, info).sum(3)  # (N, H, T): each head's features summed
        if info.grid is None:
            return heads
        h, w = info.grid
        return heads[:, :, info.prefix_tokens :].reshape(output.shape[0], -1, h, w)
    if info.layout == "tokens" and info.grid is not None:
        return token_grid(output, info)
    return neuron_view(output, info)
