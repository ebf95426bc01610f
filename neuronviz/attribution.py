"""Input attributions through Captum: saliency, Integrated Gradients and Grad-CAM.

The same views for the clean and the adversarial image show *where* in the input the evidence
for a class sits, next to the neuron-level views of :mod:`neuronviz.influence`.

- ``saliency``: ``|∂z_c/∂x|`` (Simonyan et al., arXiv:1312.6034), Captum ``Saliency(abs=True)``,
  summed over colour channels.
- ``integrated_gradients``: Captum ``IntegratedGradients`` from a black image (Sundararajan et al.,
  arXiv:1703.01365), ``n_steps`` Riemann steps, summed over colour channels (signed).
- ``grad_cam``: Captum ``LayerGradCam`` at a convolutional layer (default: the model's last
  feature layer, :func:`neuronviz.influence.default_layer`), ReLU applied, upsampled bilinearly to
  the input size (Selvaraju et al., arXiv:1610.02391).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuronviz.errors import InputError
from neuronviz.influence import default_layer
from neuronviz.models.pixel import PixelModel
from neuronviz.probe import without_inplace

ATTRIBUTION_METHODS = ("saliency", "integrated_gradients", "grad_cam")


@dataclass(frozen=True)
class AttributionMap:
    """Per-pixel attribution ``values (N, H, W)`` toward ``target (N,)``, and its settings."""

    method: str
    target: torch.Tensor
    values: torch.Tensor
    layer: str | None = None
    n_steps: int | None = None


def input_attribution(
    model: PixelModel,
    x: torch.Tensor,
    method: str = "saliency",
    target: int | torch.Tensor | None = None,
    layer: str | None = None,
    n_steps: int = 32,
) -> AttributionMap:
    """Attribution of the ``target`` logit (default: the prediction) to the input pixels."""
    if method not in ATTRIBUTION_METHODS:
        raise InputError(f"method must be one of {ATTRIBUTION_METHODS}, got {method!r}")
    if not isinstance(n_steps, int) or not 1 <= n_steps <= 512:
        raise InputError(f"n_steps must be an integer in [1, 512], got {n_steps!r}")
    x = model.check_pixels(x)
    target_tensor = None if target is None else model.check_classes(target, x.shape[0]).to(model.device)
    with model.lock:
        if target_tensor is None:
            with torch.no_grad():
                target_tensor = model(x).argmax(1)
        if method == "saliency":
            from captum.attr import Saliency

            values = Saliency(model).attribute(x, target=target_tensor, abs=True).sum(1)
            used_layer, steps = None, None
        elif method == "integrated_gradients":
            from captum.attr import IntegratedGradients

            values = IntegratedGradients(model).attribute(
                x, baselines=torch.zeros_like(x), target=target_tensor, n_steps=n_steps
            ).sum(1)
            used_layer, steps = None, n_steps
        else:
            from captum.attr import LayerAttribution, LayerGradCam

            used_layer, steps = layer or default_layer(model), None
            subject = without_inplace(model)
            module = subject.layer(used_layer)
            cam = LayerGradCam(subject, module).attribute(x, target=target_tensor, relu_attributions=True)
            if cam.dim() != 4:
                raise InputError(f"Grad-CAM needs a convolutional layer with a (C, H, W) output; {used_layer!r} is not one")
            values = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
    return AttributionMap(method=method, target=target_tensor.cpu(), values=values.detach().cpu(), layer=used_layer, n_steps=steps)
