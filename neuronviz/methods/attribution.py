"""Input attributions: saliency, Integrated Gradients and Grad-CAM, as a registry of methods.

The same views for the clean and the adversarial image show *where* in the input the evidence
for a class sits, next to the neuron-level views of :mod:`neuronviz.methods.influence`. Each method is
one :class:`AttributionMethod` entry carrying its facts (name, label, unit, paper, summary) and
its layer rule (:meth:`AttributionMethod.layer_for`); :func:`input_attribution` and the pages
call every method the same way (:func:`list_attributions`, :func:`register_attribution`).

- ``saliency``: ``|∂z_c/∂x|`` (Simonyan et al., arXiv:1312.6034), Captum ``Saliency(abs=True)``,
  summed over colour channels.
- ``integrated_gradients``: Captum ``IntegratedGradients`` from a black image (Sundararajan et al.,
  arXiv:1703.01365), ``n_steps`` Riemann steps, summed over colour channels (signed).
- ``grad_cam`` (Selvaraju et al., arXiv:1610.02391), ReLU applied, upsampled bilinearly to the
  input size. Its layer rule: a CNN's last feature layer (:func:`neuronviz.methods.influence.default_layer`),
  through Captum ``LayerGradCam``; a vision transformer's last block's first token layer (timm:
  ``blocks[-1].norm1``, pytorch-grad-cam's choice: after the last block only the class token
  reaches the head, so later layers give the patch tokens no gradient). On a token layer the
  patch tokens are put back on the patch grid (the class, distillation and register tokens
  dropped, :func:`neuronviz.core.layers.token_grid`) and Grad-CAM is taken there, as
  pytorch-grad-cam's ``reshape_transform`` does for ViTs; Captum's ``LayerGradCam`` would average
  the gradient over the tokens instead of the grid, so this one case is written here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuronviz.core.layers import default_layer, described_layers, layer_info, token_grid, transformer_blocks
from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import probe, without_inplace
from neuronviz.infra.errors import InputError
from neuronviz.infra.registry import Registry


@dataclass(frozen=True)
class AttributionMap:
    """Per-pixel attribution ``values (N, H, W)`` toward ``target (N,)``, and its settings.

    ``raw``: the map at the layer's own resolution before upsampling (Grad-CAM: ``(N, h, w)``,
    the feature map or the patch grid); None for pixel methods."""

    method: str
    target: torch.Tensor
    values: torch.Tensor
    layer: str | None = None
    n_steps: int | None = None
    raw: torch.Tensor | None = None


class AttributionMethod:
    """An input attribution method: subclass, set the facts, implement :meth:`attribute`, and
    :func:`register_attribution` an instance.

    ``name`` (the ``method=`` value), ``label`` (the dashboard's word), ``unit`` (what the values
    measure, for colour bars), ``paper`` (citation), ``summary`` (what is computed, one phrase; may
    contain ``{n_steps}``), ``uses_steps`` (whether ``n_steps`` matters).
    """

    name: str = ""
    label: str = ""
    unit: str = ""
    paper: str = ""
    summary: str = ""
    uses_steps: bool = False

    def layer_for(self, model: PixelModel) -> str | None:
        """The layer this method reads by default on ``model`` (None: it reads no layer)."""
        return None

    def caption(self, model: PixelModel, n_steps: int = 32) -> str:
        """``"<summary> at <layer> (<paper>)"``: the sentence shown under the maps."""
        layer = self.layer_for(model)
        where = f" at {layer}" if layer else ""
        return f"{self.summary.format(n_steps=n_steps)}{where} ({self.paper})"

    def attribute(
        self, model: PixelModel, x: torch.Tensor, target: torch.Tensor, layer: str | None, n_steps: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover - abstract
        """``(values (N, H, W), raw or None)`` toward ``target`` (resolved); the model's lock is held."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<attribution {self.name!r}>"


_ATTRIBUTIONS: Registry[AttributionMethod] = Registry("attribution method", AttributionMethod)


def register_attribution(method: AttributionMethod) -> AttributionMethod:
    """Add an attribution method (an :class:`AttributionMethod` instance); its name becomes a
    valid ``method=`` of :func:`input_attribution` and the pages list it. Returns it."""
    return _ATTRIBUTIONS.register(method)


def get_attribution(name: str) -> AttributionMethod:
    """The registered attribution method ``name`` (an :class:`InputError` listing the names if unknown)."""
    return _ATTRIBUTIONS.get(name)


def unregister_attribution(name: str) -> None:
    """Remove a registered attribution method (a test's, or a plugin's being reloaded); a missing name is no error."""
    _ATTRIBUTIONS.unregister(name)


def list_attributions() -> list[AttributionMethod]:
    """Every registered attribution method, built-ins first."""
    return _ATTRIBUTIONS.entries()


class SaliencyMethod(AttributionMethod):
    name = "saliency"
    label = "Saliency"
    unit = "|∂logit/∂pixel|"
    paper = "Simonyan et al., arXiv:1312.6034"
    summary = "|∂ logit / ∂ pixel|"

    def attribute(self, model, x, target, layer, n_steps):
        from captum.attr import Saliency

        return Saliency(model).attribute(x, target=target, abs=True).sum(1), None


class IntegratedGradientsMethod(AttributionMethod):
    name = "integrated_gradients"
    label = "Integrated Gradients"
    unit = "logit units"
    paper = "Sundararajan et al., arXiv:1703.01365"
    summary = "Integrated Gradients from a black image, {n_steps} steps"
    uses_steps = True

    def attribute(self, model, x, target, layer, n_steps):
        from captum.attr import IntegratedGradients

        values = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=n_steps)
        return values.sum(1), None


class GradCAMMethod(AttributionMethod):
    name = "grad_cam"
    label = "Grad-CAM"
    unit = "arbitrary units"
    paper = "Selvaraju et al., arXiv:1610.02391"
    summary = "Grad-CAM"

    def layer_for(self, model: PixelModel) -> str | None:
        """A CNN's :func:`default_layer`; a transformer's last block's first token layer (norm1)."""
        blocks = transformer_blocks(model)
        if not blocks:
            return default_layer(model)
        last = blocks[-1]
        inside = [i for i in described_layers(model) if i.block == last and i.name != last and i.layout == "tokens"]
        return inside[0].name if inside else last

    def attribute(self, model, x, target, layer, n_steps):
        from captum.attr import LayerAttribution, LayerGradCam

        assert layer is not None
        info = layer_info(model, layer)
        subject = without_inplace(model)
        if info.layout == "channels_first":
            cam = LayerGradCam(subject, subject.layer(layer)).attribute(x, target=target, relu_attributions=True)
            if cam.dim() != 4:
                raise InputError(f"Grad-CAM needs a convolutional layer with a (C, H, W) output; {layer!r} is not one")
        else:
            cam = _grad_cam_on_grid(subject, x, target, info)
        values = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]
        return values, cam[:, 0].detach()


def _grad_cam_on_grid(model: PixelModel, x: torch.Tensor, target: torch.Tensor, info) -> torch.Tensor:
    """Grad-CAM ``(N, 1, h, w)`` of a token layer (patch tokens on their grid) or a channels-last map."""
    if info.layout not in ("tokens", "channels_last") or len(info.output_shape) not in (2, 3):
        raise InputError(f"Grad-CAM needs a feature map or a token layer; {info.name!r} ({info.kind}) is neither")
    with probe(model, [info.name]) as rec, torch.enable_grad():
        logits = rec.forward(x)
        grad = rec.gradients(logits.gather(1, target[:, None]).sum())[info.name]
        activation = rec.activation(info.name).detach()
    if info.layout == "tokens":
        activation, grad = token_grid(activation, info), token_grid(grad, info)
    else:
        activation, grad = activation.movedim(-1, 1), grad.movedim(-1, 1)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(1, keepdim=True))


for _method in (SaliencyMethod(), IntegratedGradientsMethod(), GradCAMMethod()):
    register_attribution(_method)

#: The built-in attribution methods (:func:`list_attributions` has the registered ones too).
ATTRIBUTION_METHODS = tuple(m.name for m in list_attributions())


def input_attribution(
    model: PixelModel,
    x: torch.Tensor,
    method: str = "saliency",
    target: int | torch.Tensor | None = None,
    layer: str | None = None,
    n_steps: int = 32,
) -> AttributionMap:
    """Attribution of the ``target`` logit (default: the prediction) to the input pixels.

    ``layer``: for a method that reads a layer (Grad-CAM), that layer; default its layer rule
    (:meth:`AttributionMethod.layer_for`). Ignored by the pixel methods."""
    entry = get_attribution(method)
    if not isinstance(n_steps, int) or not 1 <= n_steps <= 512:
        raise InputError(f"n_steps must be an integer in [1, 512], got {n_steps!r}")
    x = model.check_pixels(x)
    target_tensor = None if target is None else model.check_classes(target, x.shape[0]).to(model.device)
    default = entry.layer_for(model)
    used_layer = (layer or default) if default is not None else None
    if used_layer is not None:
        model.layer(used_layer)  # an unknown name: the error with close names
    with model.lock:
        if target_tensor is None:
            with torch.no_grad():
                target_tensor = model(x).argmax(1)
        values, raw = entry.attribute(model, x, target_tensor, used_layer, n_steps)
    return AttributionMap(
        method=method,
        target=target_tensor.cpu(),
        values=values.detach().cpu(),
        layer=used_layer,
        n_steps=n_steps if entry.uses_steps else None,
        raw=None if raw is None else raw.detach().cpu(),
    )
