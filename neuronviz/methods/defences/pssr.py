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
- regeneration ``G(x_s, M_s)``: a small conditional encoder–decoder trained per model (the embedded
  ones: ``python -m neuronviz train pssr-<model>``, in the assets; any model:
  ``neuronviz train pssr MODEL --data SPEC``, in :func:`user_cache_dir` under the model's and the
  data's content hashes, found by :func:`find_regenerator`) on (adversarial, benign) pairs with
  ``L1(G, x) + λ_f ‖φ(G) − φ(x)‖² + λ_r · symKL(f(G(x_s)), f(G(aug(x_s))))`` (φ the classifier's
  penultimate features, the R-drop term between two differently augmented passes). G outputs the
  whole image: the trivial pixels pass through it too;
- for a model without a trained regenerator, the removed pixels are filled by a non-learned
  inpainting (repeated 3×3 averaging from the kept neighbours): the *fallback*. The restoration's
  variant is then "inpainting fallback" (label "PSSR (inpainting fallback)", provenance
  ``regenerator: none``), which every table, figure and export shows.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from neuronviz.core.models.pixel import PixelModel
from neuronviz.infra import cache
from neuronviz.infra.errors import CheckpointError
from neuronviz.infra.schema import Param
from neuronviz.methods.defences.base import Defence, Restored, Variant, register_defence


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


#: Loaded regenerators by (classifier content, device, weights file, its SHA-256): about 0.5 MiB each.
_REGENERATORS = cache.new_cache("pssr.regenerators", max_entries=8, max_bytes=256 * 2**20)

#: The environment variable naming the folder of regenerators trained by ``neuronviz train pssr``.
CACHE_ENV = "NEURONVIZ_PSSR_DIR"


def regenerator_path(model_name: str) -> Path:
    """The embedded model's regenerator in the package's assets (trained by ``train pssr-<model>``)."""
    from neuronviz.core.models.standard_sources import assets_dir

    return assets_dir() / "models" / f"pssr-{model_name}.safetensors"


def user_cache_dir() -> Path:
    """Where ``neuronviz train pssr MODEL --data SPEC`` keeps its regenerators: ``$NEURONVIZ_PSSR_DIR``,
    else ``$XDG_CACHE_HOME/neuronviz/pssr``, else ``~/.cache/neuronviz/pssr``."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "neuronviz" / "pssr"


def cached_path(model_hash: str, data_hash: str) -> Path:
    """The file of the regenerator trained for classifier ``model_hash`` on data ``data_hash``
    (the card is the same name with ``.json``)."""
    return user_cache_dir() / f"{model_hash[:16]}-{data_hash[:16]}.safetensors"


def _read_card(card_path: Path) -> dict | None:
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a half-written or foreign file is not a regenerator
    return card if isinstance(card, dict) else None


def find_regenerator(model: PixelModel) -> tuple[Path, dict] | None:
    """The regenerator file and card for *these classifier weights*, or None.

    The embedded model's own (assets) first; else the most recent one trained for this content
    hash in :func:`user_cache_dir` (one per data set it was trained on). A regenerator whose card
    names other classifier weights is never used."""
    embedded = regenerator_path(model.name)
    card = _read_card(embedded.with_suffix(".json")) if embedded.is_file() else None
    if card is not None and card.get("classifier_content_hash") == model.content_hash:
        return embedded, card
    folder = user_cache_dir()
    found: list[tuple[str, Path, dict]] = []
    if folder.is_dir():
        for card_path in folder.glob(f"{model.content_hash[:16]}-*.json"):
            card = _read_card(card_path)
            weights = card_path.with_suffix(".safetensors")
            if card is not None and card.get("classifier_content_hash") == model.content_hash and weights.is_file():
                found.append((str(card.get("created", "")), weights, card))
    if not found:
        return None
    _, weights, card = max(found, key=lambda item: (item[0], item[1].name))
    return weights, card


def load_regenerator(model: PixelModel) -> tuple[Regenerator, dict] | None:
    """The trained regenerator of this model, or None when there is none *for these weights*.

    A regenerator is trained against one classifier; its card stores that classifier's content
    hash, and a model with other weights (an uploaded checkpoint) gets the fallback. The file's
    SHA-256 must be the card's.
    """
    located = find_regenerator(model)
    if located is None:
        return None
    path, card = located

    def make() -> tuple[Regenerator, dict]:
        from safetensors.torch import load

        data = path.read_bytes()
        expected = card.get("weights_sha256")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(f"{path.name} does not match its card (SHA-256 differs): train it again")
        try:
            state = load(data)
        except Exception as error:  # noqa: BLE001 - safetensors raises several types
            raise CheckpointError(f"{path.name} is not a valid regenerator file: {error}") from None
        # built on the meta device and given the file's tensors: no random initialisation, so
        # loading it draws nothing from the global generators a seeded attack may be using
        with torch.device("meta"):
            net = Regenerator(channels=model.channels, width=int(card.get("width", 16)))
        net.load_state_dict(state, assign=True)
        net.eval().requires_grad_(False)
        return net.to(model.device), dict(card, weights_file=str(path))

    key = (model.content_hash, str(model.device), str(path), str(card.get("weights_sha256", "")))
    return _REGENERATORS.get_or_make(key, make)


FALLBACK = "inpainting fallback"


def regenerator_provenance(card: dict) -> dict:
    """What a provenance record says about a regenerator: its hash, where it came from, its data."""
    out: dict = {
        "sha256": card.get("weights_sha256"),
        "file": Path(str(card.get("weights_file", ""))).name or None,
        "source": card.get("command", ""),
        "classifier_content_hash": card.get("classifier_content_hash"),
    }
    data = card.get("data", {})
    if isinstance(data, dict) and data.get("sha256"):
        out["data"] = {k: data[k] for k in ("spec", "sha256", "images", "train_images", "held_out_images") if k in data}
    if "held_out" in card:
        out["held_out"] = card["held_out"]
    return out


def _variant(model: PixelModel, use_regenerator: bool, found: tuple[Regenerator, dict] | None) -> Variant:
    if found is not None:
        return Variant("", {"regenerator": regenerator_provenance(found[1])})
    why = "turned off (use_regenerator = false)" if not use_regenerator else "none trained for this model's weights"
    return Variant(FALLBACK, {"regenerator": "none", "regenerator_reason": why})


class PSSR(Defence):
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

    def variant_for(self, model, params=None) -> Variant:
        use = bool(self.resolve(params, model)["use_regenerator"])
        return _variant(model, use, load_regenerator(model) if use else None)

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        score, mask = salient_mask(model, x, params["alpha"])
        surgery = x * (1.0 - mask)
        found = load_regenerator(model) if params["use_regenerator"] else None
        extras = {"score": score[:, 0], "mask": mask[:, 0], "surgery": surgery}
        trace = {"salient_fraction": mask.flatten(1).mean(1)[None]}
        variant = _variant(model, params["use_regenerator"], found)
        if found is None:
            restored = inpaint(surgery, mask)
            note = (
                "Fallback (inpainting): no trained regenerator for this model's weights; removed pixels filled by "
                "non-learned inpainting (train one: `neuronviz train pssr MODEL --data SPEC`)."
                if params["use_regenerator"]
                else "Fallback (inpainting): the regenerator is turned off; removed pixels filled by non-learned inpainting."
            )
            return Restored(restored, trace, extras, notes=(note,), variant=variant)
        net, card = found
        with torch.no_grad():
            restored = net(surgery, mask)
        note = f"Regenerator trained for this model ({card.get('command', '')}; {str(card.get('weights_sha256', ''))[:12]})."
        return Restored(restored, trace, extras, notes=(note,), variant=variant)


register_defence(PSSR())


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
    from neuronviz.core.models.pixel import ModelMeta

    resolved = PSSR().resolve(params, model)
    wrapper = _PSSRThenClassifier(model, resolved["alpha"], resolved["use_regenerator"])
    meta = ModelMeta(name=f"pssr+{model.name}", architecture=f"pssr+{model.meta.architecture}", source="defended")
    defended = PixelModel(wrapper, [0.0] * model.channels, [1.0] * model.channels, model.input_size, model.class_names, meta, model.image_policy)
    return defended.to(model.device)


def companion_key(model: PixelModel) -> tuple[str | None, str | None]:
    """What this model's learned or borrowed defence parts are now: its PSSR regenerator's SHA-256
    and reactive NIP's profile data (None where there is none). A cache keyed on a model includes it,
    so a regenerator trained or profile images given later are not hidden by a stale result."""
    from neuronviz.methods.defences.nip import profiles_key

    located = find_regenerator(model)
    return (None if located is None else str(located[1].get("weights_sha256", located[0].name)), profiles_key(model))
