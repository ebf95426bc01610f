"""Baseline input-transformation defences: what a defence paper is compared against.

Carlini et al. 2019 ("On Evaluating Adversarial Robustness", §5) ask that a new defence be shown
beside simple baselines; these four are the field's usual ones, each a registry entry with its
paper, parameters and notes, through the field's libraries (no hand-written codec or filter):

- ``jpeg``: JPEG re-compression at a quality (PIL's libjpeg encoder and decoder; Dziugaite et
  al. 2016, Guo et al. 2018);
- ``bit-depth``: colour-bit-depth reduction to ``bits`` bits per channel (Xu, Evans, Qi,
  Feature Squeezing, NDSS 2018);
- ``median``: median smoothing over a k×k window (``scipy.ndimage.median_filter``; the "local
  smoothing" squeezer of the same paper);
- ``random-resize-pad``: a random down-resize and a random zero pad back to the input size,
  seeded (torchvision transforms; Xie et al., Mitigating Adversarial Effects Through
  Randomization, ICLR 2018, adapted to a fixed-size classifier).

All are label-free (deployable). JPEG, bit depth and the median have no useful gradient: the
adaptive attacker differentiates them as the identity (BPDA, Athalye et al. 2018). Resize-and-pad
is differentiable but random: the adaptive attacker averages over its draws (EoT).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neuronviz.infra.schema import Param
from neuronviz.methods.defences import nip, pssr  # noqa: F401  (registered first: the registry lists NIP and PSSR, then the baselines)
from neuronviz.methods.defences.base import Defence, Restored, register_defence


def _changed(restored: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per image, the share of pixel values the defence changed by more than half a grey level."""
    return ((restored - x).abs() > 0.5 / 255).flatten(1).float().mean(1)


class JPEG(Defence):
    name = "jpeg"
    label = "JPEG re-compression"
    short_label = "JPEG"
    summary = "label-free input transformation — deployable baseline"
    paper = (
        "Dziugaite, Ghahramani, Roy, A study of the effect of JPG compression on adversarial images, arXiv:1608.00853 (2016); "
        "Guo, Rana, Cissé, van der Maaten, Countering Adversarial Images using Input Transformations, ICLR 2018"
    )
    description = (
        "Each image is quantised to 8 bits, encoded as JPEG at the given quality and decoded (libjpeg through "
        "PIL). Lower quality removes more high-frequency detail, adversarial or not. Not differentiable: "
        "an attacker who knows it uses BPDA (the identity in the backward pass), which Athalye et al. 2018 showed "
        "breaks it."
    )
    reconstruction = "None: the JPEG codec as published (libjpeg through PIL)."
    params = (Param("quality", "int", 75, "JPEG quality (lower: stronger compression)", 1, 100),)
    trace_keys = ("changed",)

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        import io

        from PIL import Image

        pixels = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        decoded = []
        for image in pixels:
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="JPEG", quality=int(params["quality"]))
            buffer.seek(0)
            array = np.asarray(Image.open(buffer), dtype=np.float32) / 255.0
            decoded.append(torch.from_numpy(array.reshape(image.shape).copy()).permute(2, 0, 1))
        restored = torch.stack(decoded).to(x.device, x.dtype)
        return Restored(restored, trace={"changed": _changed(restored, x)[None]},
                        notes=(f"JPEG at quality {params['quality']} (PIL, libjpeg).",))


class BitDepth(Defence):
    name = "bit-depth"
    label = "Bit-depth reduction (feature squeezing)"
    short_label = "Bit depth"
    summary = "label-free quantisation — deployable baseline"
    paper = "Xu, Evans, Qi, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks, NDSS 2018"
    description = (
        "Each pixel value is rounded to one of 2^bits levels: round(x·(2^bits − 1)) / (2^bits − 1). The paper used "
        "1 bit on MNIST and 5 bits on CIFAR-10 (default here: 1 for one-channel models, 5 otherwise). A perturbation "
        "smaller than half a level vanishes; a larger one survives. Not differentiable (BPDA for an adaptive attacker)."
    )
    reconstruction = "None: the paper's rounding to 2^bits levels."
    params = (Param("bits", "int", 5, "bits per channel kept", 1, 8, default_gray=1),)
    trace_keys = ("changed",)

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        levels = float(2 ** int(params["bits"]) - 1)
        restored = torch.round(x * levels) / levels
        return Restored(restored, trace={"changed": _changed(restored, x)[None]},
                        notes=(f"{params['bits']}-bit pixels ({int(levels) + 1} levels per channel).",))


class MedianSmoothing(Defence):
    name = "median"
    label = "Median smoothing (feature squeezing)"
    short_label = "Median"
    summary = "label-free local smoothing — deployable baseline"
    paper = "Xu, Evans, Qi, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks, NDSS 2018"
    description = (
        "Each pixel becomes the median of its k×k window in its own channel (scipy.ndimage.median_filter, "
        "reflected at the border; an even k is centred as scipy does). The paper used 2×2 on MNIST and CIFAR-10. "
        "Not differentiable in a useful way (BPDA for an adaptive attacker)."
    )
    reconstruction = "None: scipy's median filter with the paper's window."
    params = (Param("size", "int", 2, "window side k", 2, 7, "pixels"),)
    trace_keys = ("changed",)

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        from scipy.ndimage import median_filter

        k = int(params["size"])
        array = x.detach().cpu().double().numpy()
        smoothed = median_filter(array, size=(1, 1, k, k), mode="reflect")
        restored = torch.from_numpy(np.ascontiguousarray(smoothed)).to(x.device, x.dtype)
        return Restored(restored, trace={"changed": _changed(restored, x)[None]},
                        notes=(f"Median of each {k}×{k} window (scipy.ndimage.median_filter).",))


class RandomResizePad(Defence):
    name = "random-resize-pad"
    label = "Random resize and pad (randomisation)"
    short_label = "Resize+pad"
    summary = "label-free, random — deployable baseline"
    paper = "Xie, Wang, Zhang, Ren, Yuille, Mitigating Adversarial Effects Through Randomization, ICLR 2018"
    description = (
        "Each image is resized (bilinear) to a random side s in [min_scale·H, H] and zero-padded at a random offset "
        "back to H×W (the paper resizes 299 → [299, 331) and pads to 331 for a network that takes any size; a "
        "fixed-size classifier needs the down-resize instead: 299/331 ≈ 0.9 is the default scale). Random draws "
        "come from a torch.Generator seeded with `seed`, so a result is reproducible. Differentiable, random: an "
        "attacker who knows it averages over draws (EoT), which Athalye et al. 2018 showed breaks it."
    )
    reconstruction = "Adapted: a random down-resize and pad back to the input size (the paper up-resizes for a network that takes any size)."
    params = (
        Param("min_scale", "float", 0.9, "smallest side as a share of the input side", 0.5, 1.0),
        Param("seed", "int", 0, "seed of the random draws", 0, 2**31 - 1),
    )
    gradient = "differentiable"
    randomised = True
    trace_keys = ("side",)

    def restore_pixels(self, model, x, params, target, reference) -> Restored:
        from torchvision.transforms.v2 import functional as TF

        n, _, height, width = x.shape
        generator = torch.Generator().manual_seed(int(params["seed"]))
        low = max(1, int(np.ceil(float(params["min_scale"]) * min(height, width))))
        sides = torch.randint(low, min(height, width) + 1, (n,), generator=generator)
        out, used = [], []
        for i in range(n):
            s = int(sides[i])
            top = int(torch.randint(0, height - s + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - s + 1, (1,), generator=generator))
            small = TF.resize(x[i : i + 1], [s, s], antialias=False)
            out.append(F.pad(small, (left, width - s - left, top, height - s - top)))
            used.append(s)
        restored = torch.cat(out)
        return Restored(restored, trace={"side": torch.tensor(used, dtype=torch.float32)[None]},
                        notes=(f"Random side in [{low}, {min(height, width)}] and offset, seed {params['seed']}.",))


for _entry in (JPEG(), BitDepth(), MedianSmoothing(), RandomResizePad()):
    register_defence(_entry)
