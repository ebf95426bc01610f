"""PSSR: remove then restore (Fu, Zhou, Ma, Zhang, arXiv:2402.00304, 2024) — a reconstruction.

Certain (abstract): adversarial pixels are treated as local lesions; *pixel surgery* removes the
salient part of the attack and keeps the trivial part as invariance information; *semantic
regeneration* by a conditional alignment extrapolator restores the content with pixel and
semantic consistency; a self-augmentation regulariser with *adversarial R-drop* balances
robustness and accuracy. No code or weights are public; what follows is this project's
reconstruction (METHODS.md §4), with its defaults:

- score ``S = |∂p_c(x')/∂x'|`` summed over colour channels (``p`` softmax, ``c`` the predicted class);
- salient mask ``M_s = [S ≥ α · mean(S)]`` per image (``alpha``, default 2), trivial ``M_t = 1 − M_s``;
- surgery ``x_s = M_t ⊙ x'`` (salient pixels removed);
- regeneration ``G(x_s, M_s)``: a small conditional encoder–decoder trained per embedded model
  (``python -m neuronviz train pssr-<model>``) on (adversarial, benign) pairs with
  ``L1(G, x) + λ_f ‖φ(G) − φ(x)‖² + λ_r · symKL(f(G(x_s)), f(G(aug(x_s))))`` (φ the classifier's
  penultimate features, the R-drop term between two differently augmented passes). G outputs the
  whole image: the trivial pixels pass through it too;
- for a model without a trained regenerator, the removed pixels are filled by a non-learned
  inpainting (repeated 3×3 averaging from the kept neighbours): the *fallback*, named in the
  result's notes and in the UI.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from neuronviz import cache
from neuronviz.defenses.base import Defense, Restored, register_defense
from neuronviz.errors import CheckpointError
from neuronviz.models.pixel import PixelModel
from neuronviz.schema import Param


class Regenerator(nn.Module):
    """A small conditional U-Net: (surgery image, salient mask) → regenerated image in [0, 1]."""

    def __init__(self, channels: int = 1, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

        self.enc1 = block(channels + 1, width)
        self.enc2 = block(width, width * 2)
        self.mid = block(width * 2, width * 2)
        self.dec2 = block(width * 4, width)
        self.dec1 = block(width * 2, width)
        self.out = nn.Conv2d(width, channels, 1)
        self.channels = channels

    def forward(self, surgery: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(torch.cat([surgery, mask], 1))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, size=e2.shape[-2:], mode="nearest"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="nearest"), e1], 1))
        # a residual on the surgery image: G learns the correction, not the whole picture
        return (surgery + self.out(d1)).clamp(0.0, 1.0)


def salient_mask(model: PixelModel, x: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel surgery's score and mask: ``S = Σ_channels |∂p_c/∂x|`` and ``M_s = [S ≥ α·mean(S)]``.

    Returns ``(score (N, 1, H, W), mask (N, 1, H, W) float)``; the caller holds the lock.
    """
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        probs = model(xg).softmax(1)
        chosen = probs.gather(1, probs.argmax(1, keepdim=True)).sum()
        (grad,) = torch.autograd.grad(chosen, xg)
    score = grad.abs().sum(1, keepdim=True)
    mean = score.flatten(1).mean(1).view(-1, 1, 1, 1)
    return score, (score >= alpha * mean).float()


def inpaint(surgery: torch.Tensor, mask: torch.Tensor, iterations: int = 30) -> torch.Tensor:
    """Fill the masked pixels from their kept neighbours by repeated 3×3 averaging (no learning)."""
    known = 1.0 - mask
    filled = surgery.clone()
    kernel = torch.ones(1, 1, 3, 3, device=surgery.device)
    channels = surgery.shape[1]
    for _ in range(iterations):
        total = F.conv2d(filled * known, kernel.expand(channels, 1, 3, 3), padding=1, groups=channels)
        count = F.conv2d(known, kernel, padding=1)
        estimate = total / count.clamp_min(1e-6)
        newly = (count > 0).float() * mask * (1 - known)
        filled = filled * (1 - newly) + estimate * newly
        known = (known + newly).clamp(0, 1)
    return filled


#: Loaded regenerators by (classifier content, device): about 0.5 MiB each.
_REGENERATORS = cache.new_cache("pssr.regenerators", max_entries=8, max_bytes=256 * 2**20)


def regenerator_path(model_name: str) -> Path:
    from neuronviz.models.registry import assets_dir

    return assets_dir() / "models" / f"pssr-{model_name}.safetensors"


def load_regenerator(model: PixelModel) -> tuple[Regenerator, dict] | None:
    """The trained regenerator of this model, or None when there is none *for these weights*.

    A regenerator is trained against one classifier; its card stores that classifier's content
    hash, and a model with other weights (an uploaded checkpoint) gets the fallback.
    """
    path = regenerator_path(model.name)
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    if card.get("classifier_content_hash") != model.content_hash:
        return None

    def make() -> tuple[Regenerator, dict]:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises several types
            raise CheckpointError(f"{path.name} is not a valid regenerator file: {error}") from None
        # built on the meta device and given the file's tensors: no random initialisation, so
        # loading it draws nothing from the global generators a seeded attack may be using
        with torch.device("meta"):
            net = Regenerator(channels=model.channels, width=int(card.get("width", 16)))
        net.load_state_dict(state, assign=True)
        net.eval().requires_grad_(False)
        return net.to(model.device), card

    return _REGENERATORS.get_or_make((model.content_hash, str(model.device)), make)


class PSSR(Defense):
    name = "pssr"
    label = "PSSR (pixel surgery + semantic regeneration)"
    short_label = "PSSR"
    summary = "pixel surgery + semantic regeneration — reconstruction"
    trace_keys = ("salient_fraction",)
    extras_keys = ("score", "mask", "surgery")
    params = (
        Param("alpha", "float", 2.0, "salient threshold: pixels with score ≥ α × mean score are removed", 0.1, 20.0),
        Param("use_regenerator", "bool", True, "use the trained regenerator when this model has one (else inpaint)"),
    )
    description = (
        "Removes the pixels the prediction is most sensitive to (salient mask), keeps the rest, and regenerates "
        "the image with a small network trained for this model; models without one get a non-learned inpainting."
    )
    paper = "Fu et al., Adversarial Purification via Pixel Surgery and Semantic Regeneration, arXiv:2402.00304"
    reconstruction = "Score, mask, regenerator architecture and losses are this project's reading of the abstract."

    adaptive_method = "BPDA on the mask"  # the attacker who knows it: defended_model below

    def adaptive_model(self, model, params):
        return defended_model(model, params)

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        score, mask = salient_mask(model, x, params["alpha"])
        surgery = x * (1.0 - mask)
        found = load_regenerator(model) if params["use_regenerator"] else None
        extras = {"score": score[:, 0], "mask": mask[:, 0], "surgery": surgery}
        trace = {"salient_fraction": mask.flatten(1).mean(1)[None]}
        if found is None:
            restored = inpaint(surgery, mask)
            note = "Fallback: no trained regenerator for this model; removed pixels filled by non-learned inpainting."
            return Restored(restored, trace, extras, notes=(note,))
        net, card = found
        with torch.no_grad():
            restored = net(surgery, mask)
        note = f"Regenerator trained for this model ({card.get('command', '')})."
        return Restored(restored, trace, extras, notes=(note,))


register_defense(PSSR())


class _PSSRThenClassifier(nn.Module):
    """PSSR followed by the classifier, differentiable for an adaptive attacker (BPDA).

    The salient mask is computed without gradient and treated as a constant in the backward
    pass (Athalye et al.'s BPDA for a non-differentiable step); the regenerator (or the
    inpainting) and the classifier are differentiated as they are.
    """

    def __init__(self, model: PixelModel, alpha: float, use_regenerator: bool) -> None:
        super().__init__()
        self.model = model
        self.alpha = alpha
        found = load_regenerator(model) if use_regenerator else None
        self.regenerator = found[0] if found is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.model.lock:
            _, mask = salient_mask(self.model, x.detach(), self.alpha)
            surgery = x * (1.0 - mask)
            restored = self.regenerator(surgery, mask) if self.regenerator is not None else inpaint(surgery, mask)
            return self.model(restored)


def defended_model(model: PixelModel, params: dict | None = None) -> PixelModel:
    """``PSSR → model`` as a PixelModel, for attacks that know the defence (BPDA on the mask)."""
    from neuronviz.models.pixel import ModelMeta

    resolved = PSSR().resolve(params, model)
    wrapper = _PSSRThenClassifier(model, resolved["alpha"], resolved["use_regenerator"])
    meta = ModelMeta(name=f"pssr+{model.name}", architecture=f"pssr+{model.meta.architecture}", source="defended")
    defended = PixelModel(wrapper, [0.0] * model.channels, [1.0] * model.channels, model.input_size, model.class_names, meta, model.image_policy)
    return defended.to(model.device)
