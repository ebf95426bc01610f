"""NIP: neuron-level inverse perturbation (Chen et al., arXiv:2112.13060; IEEE TDSC 2024).

Certain (from the authors' Keras code, ``Reverse_VGG_CIFAR.py``): neuron influence is
activation × gradient of the predicted logit at a late layer; the front set is the top-k neurons
by influence and the tail the t lowest; the defence adds to the input the RMS-normalised
gradient of ``L(x) = Σ_front a_j(x) − Σ_tail a_j(x)``:
``x ← clip(x + s · g / (sqrt(mean(g²)) + 1e-5), 0, 1)``.

Three modes, each a registry entry (METHODS.md §1):

- ``nip-oracle`` — as in the authors' code: the sets and the gradient come from the *benign*
  image and its prediction, and the sign of the step is flipped when ``+s·g`` does not bring the
  benign prediction back. It uses the benign image: for analysis only, not a defence.
- ``nip-guided`` — everything is computed at the incoming image, toward a class the user names
  (the dashboard names the benign prediction): ``steps`` steps of the RMS-normalised gradient,
  the sets re-ranked at every step; images already predicted as that class stop moving. It
  needs the class: not deployable either.
- ``nip-reactive`` — label-free, deployable (a reconstruction: the paper does not specify one).
  The naive version (strengthen the image's own, adversarial prediction) cannot work: it makes
  the attack stronger. Instead, for each of the ``candidates`` most probable classes, run the
  guided procedure toward that class, then score the restored image by how well its neuron
  influence profile at the layer matches that class's profile on benign training images (cosine
  similarity of the per-channel influence); keep the best-scoring candidate. A benign image is
  kept only if its own class wins. The profiles come from the user's labelled images for that
  model (:func:`use_profile_data`; the evaluate command's data set), else, for the embedded
  digits models only, from their own training split (``digits(split="train")``); any other
  model has none and the defence is unavailable, with the reason. The source is the result's
  variant ("profiles from your data: ..."), named in every table, figure and provenance.

Defaults are chosen for the 28×28 digits models (guided and reactive: front/tail 20% of the
channels of the last feature layer, 20 steps of 0.03 in [0, 1] pixel units; oracle: one step of
0.1 with 20% sets), picked on the first 120 digits test images of digits-cnn. The authors used
k = 1 or 5 front and t = 5 tail units and one step of 0.001 on 32 px CIFAR images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from neuronviz.core.layers import layer_info
from neuronviz.core.models.pixel import PixelModel
from neuronviz.core.probe import probe
from neuronviz.infra import cache
from neuronviz.infra.errors import InputError
from neuronviz.infra.schema import Param
from neuronviz.methods.defences.base import Defense, Restored, Variant, register_defense
from neuronviz.methods.influence import DEFAULT_GROUP_FRACTION, default_layer, influence_product, neuron_sums, partition


class _LayerParam(Param):
    """The layer parameter: a layer name of the model ("" = the last feature layer); the UI offers
    the model's probe layers, the defence checks the name against the model."""

    def validate(self, value, owner):
        if not isinstance(value, str):
            raise InputError(f"{owner}: parameter 'layer' must be a layer name, got {value!r}")
        return value


_COMMON = (
    _LayerParam("layer", "layer", "", "layer whose neurons are ranked (empty: the last feature layer)"),
    Param("front", "float", DEFAULT_GROUP_FRACTION, "front set: fraction of the layer's neurons (at least one)", 0.001, 0.5),
    Param("tail", "float", DEFAULT_GROUP_FRACTION, "tail set: fraction of the layer's neurons (at least one)", 0.001, 0.5),
    Param("tail_rule", "choice", "bottom", "tail = the lowest influence, or the ranks after the front", choices=("bottom", "next")),
    Param("step", "float", 0.03, "step size s (each step moves pixels by s in RMS)", 0.0001, 0.5, "pixel units [0, 1]", pixel_scale=True),
)


def nip_step_direction(
    model: PixelModel,
    x: torch.Tensor,
    target: torch.Tensor,
    layer: str,
    front: float,
    tail: float,
    tail_rule: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NIP's ascent direction at ``x`` for classes ``target``: (RMS-normalised ∇ₓL, L, logits).

    Influence toward ``target`` ranks the channels of ``layer`` (one forward and two backward
    passes through :func:`neuronviz.core.probe.probe`); ``L = Σ_front a − Σ_tail a`` with channel
    activations summed over space.
    """
    x = x.detach().requires_grad_(True)
    info = layer_info(model, layer)  # where the layer's neurons are (channels, a ViT's hidden units or heads)
    with probe(model, [layer]) as rec, torch.enable_grad():
        logits = rec.forward(x)
        activation = rec.activation(layer)
        (grad_a,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), activation, retain_graph=True)
        influence = influence_product(activation.detach(), grad_a, "channel", info)
        groups = partition(influence.cpu(), front, tail, tail_rule)
        channels = neuron_sums(activation, "channel", info)
        front_idx, tail_idx = groups.front.to(x.device), groups.tail.to(x.device)
        objective = channels.gather(1, front_idx).sum(1) - channels.gather(1, tail_idx).sum(1)
        (grad_x,) = torch.autograd.grad(objective.sum(), x)
    rms = grad_x.pow(2).flatten(1).mean(1).sqrt().view(-1, 1, 1, 1)
    return grad_x / (rms + 1e-5), objective.detach(), logits.detach()


def _layer(model: PixelModel, name: str) -> str:
    if not name:
        return default_layer(model)
    model.layer(name)  # raises with close names when unknown
    return name


def _guided(model, x, target, params, steps: int):
    """``steps`` NIP steps toward ``target``; images predicted as their target stop moving."""
    layer = _layer(model, params["layer"])
    current = x.clone()
    objectives, predicted = [], []
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for _ in range(steps + 1):
        direction, objective, logits = nip_step_direction(
            model, current, target, layer, params["front"], params["tail"], params["tail_rule"]
        )
        objectives.append(objective)
        predicted.append(logits.argmax(1))
        active &= logits.argmax(1) != target
        if len(objectives) > steps or not bool(active.any()):
            break
        step = params["step"] * direction * active.view(-1, 1, 1, 1)
        current = (current + step).clamp(0.0, 1.0)
    return current, {"objective": torch.stack(objectives), "predicted": torch.stack(predicted)}


class NIPGuided(Defense):
    name = "nip-guided"
    label = "NIP (guided)"
    short_label = "NIP (guided)"
    summary = "needs the benign class — analysis tool"
    trace_keys = ("objective", "predicted")
    params = (*_COMMON, Param("steps", "int", 20, "number of steps", 1, 200, "steps"))
    description = (
        "NIP computed at the incoming image toward a class you name (the benign prediction): steps of the "
        "RMS-normalised gradient of Σfront − Σtail activations. Needs the class, so it is an analysis tool."
    )
    paper = "Chen et al., NIP: Neuron-level Inverse Perturbation Against Adversarial Attacks, arXiv:2112.13060"
    reconstruction = "Multi-step, re-ranked at every step, stops at the named class; step size for 28×28 digits."
    needs_target = True

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        restored, trace = _guided(model, x, target, params, params["steps"])
        return Restored(restored, trace, notes=("Uses the class you name (here: the benign prediction); not deployable.",))


class NIPOracle(Defense):
    name = "nip-oracle"
    label = "NIP (oracle, as in the authors' code)"
    short_label = "NIP (oracle)"
    summary = "authors' procedure — uses the benign image"
    trace_keys = ("sign", "benign_objective")
    params = (
        *_COMMON[:4],
        Param("step", "float", 0.1, "step size s of the single benign-direction step", 0.0001, 0.5, "pixel units [0, 1]", pixel_scale=True),
        Param("steps", "int", 1, "steps of the same benign direction (the authors: 1, or 5 in a variant)", 1, 50, "steps"),
    )
    description = (
        "The authors' procedure: front/tail sets and the gradient from the benign image and its prediction; "
        "the step's sign is flipped when +s·g does not restore the benign prediction. Uses the benign image."
    )
    paper = NIPGuided.paper
    reconstruction = "None in the procedure; the step size is set for 28×28 digits."
    needs_reference = True

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        layer = _layer(model, params["layer"])
        with torch.no_grad():
            benign = model(reference).argmax(1)
        direction, objective, _ = nip_step_direction(
            model, reference, benign, layer, params["front"], params["tail"], params["tail_rule"]
        )
        move = params["step"] * params["steps"] * direction
        plus, minus = (x + move).clamp(0, 1), (x - move).clamp(0, 1)
        with torch.no_grad():
            plus_ok = model(plus).argmax(1) == benign
        choose_plus = plus_ok.view(-1, 1, 1, 1)
        restored = torch.where(choose_plus, plus, minus)
        sign = torch.where(plus_ok, 1.0, -1.0)
        return Restored(
            restored,
            trace={"sign": sign[None], "benign_objective": objective[None]},
            notes=("Uses the benign image and its prediction (the authors' oracle); analysis only.",),
        )


#: Class profiles by (model content, layer): a few KiB each.
_PROFILES = cache.new_cache("nip.class_profiles", max_entries=32)


def class_profiles(model: PixelModel, images: torch.Tensor, labels: torch.Tensor, layer: str, batch_size: int = 256) -> torch.Tensor:
    """Mean per-channel influence toward each class on benign images of that class: ``(K, channels)``.

    Influence is computed toward the true label; rows of classes without images are NaN.
    """
    from neuronviz.methods.influence import neuron_influence

    labels = model.check_classes(labels, images.shape[0], "labels")
    rows = []
    for i in range(0, len(images), batch_size):
        rows.append(neuron_influence(model, images[i : i + batch_size], layers=layer, target=labels[i : i + batch_size])[layer].values)
    values = torch.cat(rows)
    profiles = torch.full((model.num_classes, values.shape[1]), float("nan"))
    for k in range(model.num_classes):
        if bool((labels == k).any()):
            profiles[k] = values[labels == k].mean(0)
    return profiles


@dataclass(frozen=True)
class ProfileData:
    """Labelled benign images the class profiles of one model are built from, and what they are."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str  # in words, for labels and provenance ("image folder pets, 400 images")
    sha256: str


#: The user's labelled images for class profiles, by model content hash (process-wide, bounded).
_PROFILE_DATA = cache.new_cache("nip.profile_data", max_entries=16, max_bytes=512 * 2**20,
                                size=lambda d: d.images.element_size() * d.images.numel())

DIGITS_SOURCE = "digits training split (the embedded model's own training data)"


def use_profile_data(model: PixelModel, images: torch.Tensor, labels: torch.Tensor, source: str) -> ProfileData:
    """Build reactive NIP's class profiles for ``model`` from these labelled benign images (the
    user's evaluation set) from now on; ``source`` names them in every output. Raises InputError
    for images or labels the model does not take, or fewer than two classes."""
    import hashlib

    from neuronviz.infra.digest import tensor_digest

    images = model.check_pixels(images, "profile images").detach().cpu()
    labels = model.check_classes(labels, images.shape[0], "profile labels").cpu()
    if int(torch.unique(labels).numel()) < 2:
        raise InputError("class profiles need labelled images of at least two classes")
    sha256 = hashlib.sha256(f"{tensor_digest(images)}:{tensor_digest(labels)}".encode()).hexdigest()
    data = ProfileData(images, labels, str(source), sha256)
    _PROFILE_DATA.put(model.content_hash, data)
    return data


def clear_profile_data(model: PixelModel) -> None:
    """Forget the user's profile images for ``model`` (back to the digits split or unavailable)."""
    _PROFILE_DATA.pop(model.content_hash)


def profile_data_from_dataset(model: PixelModel, data) -> ProfileData | None:
    """The evaluate command's data set as profile data, unless the model is an embedded digits model
    evaluated on the digits (then its own training split stays the source). Returns what it set."""
    if _embedded_digits(model) and str(data.spec).startswith("digits"):
        return None
    return use_profile_data(model, data.images, data.labels, f"{data.spec} ({data.size} images, the evaluated images)")


def _embedded_digits(model: PixelModel) -> bool:
    """An embedded digits model with its own weights (the digits training split is its training data)."""
    from neuronviz.core.models.standard_sources import EMBEDDED
    from neuronviz.data.labelled import is_digits_model

    return model.name in EMBEDDED and bool(model.meta.card) and is_digits_model(model)


def profile_source(model: PixelModel) -> tuple[str, dict] | None:
    """Where reactive NIP's class profiles for ``model`` come from: ``(words, provenance)``, or None."""
    data = _PROFILE_DATA.get(model.content_hash)
    if data is not None:
        classes = int(torch.unique(data.labels).numel())
        return "profiles from your data", {
            "source": data.source, "sha256": data.sha256, "images": int(data.labels.numel()),
            "classes": classes, "of_classes": model.num_classes,
        }
    if _embedded_digits(model):
        return "profiles from the digits training split", {"source": DIGITS_SOURCE, "split": "train", "images": 1437}
    return None


def profiles_key(model: PixelModel) -> str | None:
    """What the profiles of ``model`` would be built from now (a cache key part; None: unavailable)."""
    found = profile_source(model)
    return None if found is None else str(found[1].get("sha256", found[1]["source"]))


def _no_profiles(model: PixelModel) -> str | None:
    """Why no class profiles can be built for ``model`` (None: they can)."""
    if profile_source(model) is not None:
        return None
    return (
        "Reactive NIP needs class influence profiles from labelled benign images of this model's classes. "
        "Give your labelled evaluation images (Defences page: \"Your evaluation images\"; "
        "`neuronviz evaluate MODEL --data SPEC`; library: neuronviz.methods.defences.nip.use_profile_data). "
        "The digits training split is used only for the embedded digits models, whose training data it is."
    )


def _profiles_for(model: PixelModel, layer: str) -> torch.Tensor:
    """Class profiles from the user's data for this model, else (embedded digits models) the digits
    training split; cached by model, layer and data."""
    reason = _no_profiles(model)
    if reason is not None:
        raise InputError(reason)
    data = _PROFILE_DATA.get(model.content_hash)

    def make() -> torch.Tensor:
        if data is not None:
            return class_profiles(model, data.images.to(model.device), data.labels, layer)
        from neuronviz.data.datasets import digits

        images, labels = digits("train", size=model.input_size[0])
        return class_profiles(model, images.to(model.device), labels, layer)

    return _PROFILES.get_or_make((model.content_hash, layer, data.sha256 if data is not None else "digits-train"), make)


class NIPReactive(Defense):
    name = "nip-reactive"
    label = "NIP (reactive, label-free)"
    short_label = "NIP (reactive)"
    summary = "label-free reconstruction; weak, see docs/defences.md numbers"
    trace_keys = ("candidates", "scores", "chosen")
    params = (
        *_COMMON,
        Param("steps", "int", 20, "steps toward each candidate class", 1, 200, "steps"),
        Param("candidates", "int", 3, "how many of the most probable classes are tried", 1, 20, "classes"),
    )
    description = (
        "Label-free NIP: for each of the most probable classes, restore toward it with guided NIP, then keep "
        "the class whose restored neuron-influence profile best matches its profile on benign training images."
    )
    paper = NIPGuided.paper
    reconstruction = (
        "The paper's reactive defence is not specified. Candidate classes + benign class profiles (cosine "
        "similarity of per-channel influence at the layer) are this project's reconstruction."
    )

    def unavailable(self, model: PixelModel) -> str | None:
        return _no_profiles(model)

    def variant_for(self, model, params=None) -> Variant:
        found = profile_source(model)
        if found is None:
            return Variant("no class profiles", {"profiles": "none"})
        return Variant(found[0], {"profiles": found[1]})

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        layer = _layer(model, params["layer"])
        variant = self.variant_for(model, params)
        profiles = _profiles_for(model, layer).to(x.device)
        k = min(params["candidates"], model.num_classes)
        with torch.no_grad():
            candidates = model(x).topk(k, dim=1).indices  # (N, k)
        restored_all, scores = [], []
        from neuronviz.methods.influence import neuron_influence

        for j in range(k):
            cls = candidates[:, j]
            restored, _ = _guided(model, x, cls, params, params["steps"])
            influence = neuron_influence(model, restored, layers=layer, target=cls)[layer].values.to(x.device)
            # a class without profile images cannot be scored: it never wins
            scores.append(F.cosine_similarity(influence, profiles[cls], dim=1).nan_to_num(float("-inf")))
            restored_all.append(restored)
        scores_t = torch.stack(scores, 1)  # (N, k)
        best = scores_t.argmax(1)
        stacked = torch.stack(restored_all, 1)  # (N, k, C, H, W)
        chosen = stacked[torch.arange(x.shape[0], device=x.device), best]
        return Restored(
            chosen,
            trace={"candidates": candidates.T, "scores": scores_t.T, "chosen": best[None]},
            notes=(
                "Label-free reconstruction: candidate classes scored against benign class influence profiles "
                f"({variant.name}).",
            ),
            variant=variant,
        )


register_defense(NIPGuided())
register_defense(NIPOracle())
register_defense(NIPReactive())
