"""The matched control of an attack: a random perturbation of the same norm and size, per image.

Neurons chosen on the clean image (front, tail) drift toward the middle under *any* change, so an
attack's effect on them means something only beside the same measure under a perturbation that is
as large but carries no information about the model. For each image ``i`` with attack
perturbation ``δ_i = x'_i − x_i``:

- ``"Linf"``: random signs × ``‖δ_i‖∞`` on every element;
- ``"L2"``: a Gaussian direction scaled to ``‖δ_i‖₂``;
- ``"L0"``: as many random pixel positions as the attack changed (``l0`` of
  :class:`~neuronviz.methods.attacks.AttackReport`: positions where any channel changed), each set to a
  uniform random colour.

The result is clipped to [0, 1] like every attack's; the clipped control's own norm is what
:func:`control_norms` reports. Each image draws from its own generator seeded by ``(seed, i)``,
so an image's control does not depend on which other images share its batch.
"""

from __future__ import annotations

from typing import Literal

import torch

Norm = Literal["Linf", "L2", "L0"]
NORMS: tuple[str, ...] = ("Linf", "L2", "L0")
#: Changes below this (in [0, 1] pixel units) are not counted as a changed pixel for L0.
L0_TOLERANCE = 1e-6


def control_norm_for(attack: str | None) -> Norm:
    """The norm a control for ``attack`` matches: the attack's budget norm, else the norm it
    minimises (C&W, DeepFool: L2), else L0 for pixel attacks, else L∞."""
    if attack is None:
        return "Linf"
    from neuronviz.methods.attacks import get_attack

    info = get_attack(attack)
    for norm in (info.norm, getattr(info, "minimised_norm", None)):
        if norm in NORMS:
            return norm  # type: ignore[return-value]
    return "L0" if attack in {"jsma", "onepixel", "pixle", "sparsefool"} else "Linf"


def _generator(seed: int, index: int) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63 - 1))
    return generator


def matched_control(clean: torch.Tensor, adversarial: torch.Tensor, norm: str = "Linf", seed: int = 0) -> torch.Tensor:
    """A random perturbation of ``clean`` matching, image by image, the size of
    ``adversarial − clean`` in ``norm`` ("Linf", "L2" or "L0"). Shape ``(N, C, H, W)`` in [0, 1],
    on the inputs' device; seeded per image."""
    if clean.shape != adversarial.shape or clean.dim() != 4:
        raise ValueError(f"clean and adversarial images must both be (N, C, H, W), got {tuple(clean.shape)} "
                         f"and {tuple(adversarial.shape)}")
    if norm not in NORMS:
        raise ValueError(f"unknown control norm {norm!r}; use one of {', '.join(NORMS)}")
    x = clean.detach().float().cpu()
    delta = adversarial.detach().float().cpu() - x
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        g = _generator(seed, i)
        d = delta[i]
        if norm == "Linf":
            size = d.abs().max()
            signs = torch.randint(0, 2, d.shape, generator=g).float() * 2 - 1
            noise = signs * size
        elif norm == "L2":
            size = d.norm(p=2)
            direction = torch.randn(d.shape, generator=g)
            noise = direction / direction.norm(p=2).clamp_min(1e-12) * size
        else:
            changed = (d.abs() > L0_TOLERANCE).any(dim=0)
            count = int(changed.sum())
            noise = torch.zeros_like(d)
            if count:
                positions = torch.randperm(d.shape[1] * d.shape[2], generator=g)[:count]
                colours = torch.rand((d.shape[0], count), generator=g)
                flat = x[i].reshape(d.shape[0], -1).clone()
                flat[:, positions] = colours
                noise = flat.reshape(d.shape) - x[i]
        out[i] = (x[i] + noise).clamp(0.0, 1.0)
    return out.to(device=clean.device, dtype=clean.dtype)


def control_norms(clean: torch.Tensor, perturbed: torch.Tensor) -> dict[str, torch.Tensor]:
    """L0 (changed pixel positions), L2 and L∞ of ``perturbed − clean`` per image, as
    :class:`~neuronviz.methods.attacks.AttackReport` counts them."""
    delta = (perturbed.detach().float() - clean.detach().float()).cpu()
    flat = delta.reshape(delta.shape[0], -1)
    return {
        "l0": (delta.abs() > L0_TOLERANCE).any(dim=1).reshape(delta.shape[0], -1).sum(dim=1),
        "l2": flat.norm(p=2, dim=1),
        "linf": flat.abs().max(dim=1).values,
    }
