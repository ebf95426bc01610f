"""The attack catalogue over torchattacks 3.5.1: schemas, validation, one batched call, reports.

Every attack is torchattacks' own implementation: this module only describes them (a parameter
schema the UI and CLI build controls from), validates what a request asks for, runs the attack
under the model's lock with a seed, and reports what happened. Nothing here re-implements an
attack.

Units: all ε and step sizes are in [0, 1] pixel units (the models normalise inside). An L∞ ε of
``8/255`` is ``0.0314``; :func:`format_eps` shows both. Default ε depends on the kind of model:
single-channel digit models use the MNIST convention (ε = 0.1 for L∞), colour models the
ImageNet/CIFAR one (ε = 8/255).

Trajectory: while an attack runs, every forward pass of the whole batch through the model is
recorded (logits, detached). For the gradient-iteration family (BIM, PGD, MI-/NI-/DI-/TI-FGSM,
R-FGSM, TPGD, C&W) that is exactly one pass per step, so the trace is the per-step loss and
predicted class; for the others it is per forward pass and says so (``trace.unit``).
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuronviz import budget
from neuronviz.errors import InputError
from neuronviz.limits import MAX_BATCH, MAX_WORK, check_batch
from neuronviz.models.pixel import PixelModel, require_pixel_model
from neuronviz.schema import Param, parse_eps, resolve

log = logging.getLogger(__name__)

__all__ = ["MAX_BATCH", "MAX_WORK", "parse_eps"]  # re-exported (ruff F401 removed them once)

# MAX_BATCH (images per request) and MAX_WORK (model evaluations per request) live in
# neuronviz.limits, shared with the defences and influence; they are re-exported here.
#: The most trace entries kept (forward passes recorded during one attack).
MAX_TRACE = 5_000


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackInfo:
    """A registered attack: what it is, its parameters, and how it is built from torchattacks."""

    name: str
    label: str
    family: str  # "gradient", "optimisation", "decision", "score", "none"
    norm: str | None  # "Linf", "L2", "L0" or None (no fixed budget)
    params: tuple[Param, ...]
    targeted: bool
    paper: str
    description: str
    build: Callable[[nn.Module, dict, int], Any] = field(repr=False, compare=False)
    #: model evaluations per image at most (the attack runs every step): the unit of MAX_WORK.
    #: ``p`` holds the resolved parameters and ``"_classes"``, the model's number of classes.
    cost: Callable[[dict], float] = field(repr=False, compare=False, default=lambda p: 1.0)
    #: evaluations per image at least, for attacks that stop early on an image they fooled
    #: (AutoAttack's later stages, DeepFool, SparseFool, Square, FAB, JSMA); None: as ``cost``.
    cost_low: Callable[[dict], float] | None = field(repr=False, compare=False, default=None)
    per_step_trace: bool = False
    budget_param: str | None = None  # the parameter that bounds the perturbation's norm
    #: When the attack draws random numbers (checked against the torchattacks 3.5.1 source, and by
    #: tests/test_rng_isolation.py): "none" (never: no lock at all), "start" (only before its first
    #: gradient pass: the process-wide generators are borrowed until then), "steps" (throughout:
    #: borrowed between model evaluations). Unknown attacks should say "steps", the safe choice.
    randomness: str = "steps"
    #: A boolean parameter that, when false, turns all randomness off (PGD's ``random_start``).
    random_switch: str | None = None

    def draws(self, params: Mapping[str, Any]) -> str:
        """``"none"``, ``"start"`` or ``"steps"``: when this attack draws random numbers with these parameters."""
        if self.random_switch is not None and not params.get(self.random_switch, True):
            return "none"
        return self.randomness

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise InputError(f"{self.name} has no parameter {name!r}; it has {[p.name for p in self.params]}")

    def defaults(self, model: PixelModel | None = None) -> dict[str, Any]:
        return {p.name: p.default_for(model) for p in self.params}


def _eps(default_gray: float = 0.1, high: float = 1.0, help_text: str = "L∞ budget: the most any pixel may change") -> Param:
    return Param("eps", "float", 8 / 255, help_text, 0.0, high, "pixel units [0, 1]", pixel_scale=True, default_gray=default_gray)


def _alpha(default: float = 2 / 255, gray: float = 0.01) -> Param:
    return Param("alpha", "float", default, "step size per iteration", 0.0, 1.0, "pixel units [0, 1]", pixel_scale=True, default_gray=gray)


def _steps(default: int = 10, high: int = 1000, help_text: str = "number of iterations") -> Param:
    return Param("steps", "int", default, help_text, 1, high, "iterations", default_gray=None)


_DECAY = Param("decay", "float", 1.0, "momentum decay factor μ", 0.0, 10.0)
_RANDOM_START = Param("random_start", "bool", True, "start from a uniformly random point in the ε-ball")
_RESIZE = Param("resize_rate", "float", 0.9, "input diversity: resize factor", 0.5, 1.0)
_DIVERSITY = Param("diversity_prob", "float", 0.5, "input diversity: probability to transform", 0.0, 1.0)
_RESTARTS = Param("n_restarts", "int", 1, "random restarts", 1, 10, "restarts")
_NORM_CHOICE = Param("norm", "choice", "Linf", "the norm of the budget", choices=("Linf", "L2"))


def _ta():
    import torchattacks

    return torchattacks


def _steps_cost(p: dict) -> float:
    return 2.0 * p["steps"]


ATTACKS: dict[str, AttackInfo] = {}


def register_attack(info: AttackInfo) -> AttackInfo:
    """Add an attack to the catalogue (the UI and CLI pick it up from here)."""
    if info.name in ATTACKS:
        raise InputError(f"attack {info.name!r} is already registered")
    ATTACKS[info.name] = info
    return info


def _register_all() -> None:
    gradient_iter = dict(family="gradient", norm="Linf", targeted=True, per_step_trace=True, budget_param="eps")
    register_attack(AttackInfo(
        "none", "None (clean image)", "none", None, (), False, "—",
        "No attack: the image is passed through unchanged (torchattacks VANILA).",
        build=lambda m, p, k: _ta().VANILA(m), cost=lambda p: 1.0, randomness="none"))
    register_attack(AttackInfo(
        "fgsm", "FGSM", "gradient", "Linf", (_eps(),), True,
        "Goodfellow et al., Explaining and Harnessing Adversarial Examples, arXiv:1412.6572",
        "One signed-gradient step of size ε.",
        build=lambda m, p, k: _ta().FGSM(m, eps=p["eps"]), cost=lambda p: 2.0, budget_param="eps", randomness="none"))
    register_attack(AttackInfo(
        "bim", "BIM / I-FGSM", params=(_eps(), _alpha(), _steps()),
        paper="Kurakin et al., Adversarial examples in the physical world, arXiv:1607.02533",
        description="Iterated FGSM steps of size α, clipped to the ε-ball.",
        build=lambda m, p, k: _ta().BIM(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"]), cost=_steps_cost,
        **gradient_iter, randomness="none"))
    register_attack(AttackInfo(
        "pgd", "PGD (L∞)", params=(_eps(), _alpha(), _steps(), _RANDOM_START),
        paper="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, arXiv:1706.06083",
        description="Projected gradient descent in the L∞ ball, from a random start.",
        build=lambda m, p, k: _ta().PGD(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], random_start=p["random_start"]),
        cost=_steps_cost, **gradient_iter, randomness="start", random_switch="random_start"))
    register_attack(AttackInfo(
        "pgdl2", "PGD (L2)", "gradient", "L2",
        (Param("eps", "float", 1.0, "L2 budget: the most the perturbation's Euclidean norm may be", 0.0, 100.0, "L2 norm in pixel units", default_gray=2.0),
         Param("alpha", "float", 0.2, "step size (L2) per iteration", 0.0, 20.0, "L2 norm in pixel units", default_gray=0.2),
         _steps(), _RANDOM_START), True,
        "Madry et al., arXiv:1706.06083 (L2 variant)", "Projected gradient descent in the L2 ball.",
        build=lambda m, p, k: _ta().PGDL2(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], random_start=p["random_start"]),
        cost=_steps_cost, per_step_trace=True, budget_param="eps", randomness="start", random_switch="random_start"))
    register_attack(AttackInfo(
        "mifgsm", "MI-FGSM", params=(_eps(), _alpha(), _steps(), _DECAY),
        paper="Dong et al., Boosting Adversarial Attacks with Momentum, arXiv:1710.06081",
        description="I-FGSM with a momentum term on the normalised gradient.",
        build=lambda m, p, k: _ta().MIFGSM(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], decay=p["decay"]),
        cost=_steps_cost, **gradient_iter, randomness="none"))
    register_attack(AttackInfo(
        "difgsm", "DI-FGSM", params=(_eps(), _alpha(), _steps(), Param("decay", "float", 0.0, "momentum decay (0 = DI-FGSM, 1 = M-DI²-FGSM)", 0.0, 10.0), _RESIZE, _DIVERSITY),
        paper="Xie et al., Improving Transferability of Adversarial Examples with Input Diversity, arXiv:1803.06978",
        description="I-FGSM on randomly resized and padded inputs (input diversity).",
        build=lambda m, p, k: _ta().DIFGSM(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], decay=p["decay"], resize_rate=p["resize_rate"], diversity_prob=p["diversity_prob"]),
        cost=_steps_cost, **gradient_iter, randomness="steps"))
    register_attack(AttackInfo(
        "tifgsm", "TI-FGSM", params=(_eps(), _alpha(), _steps(), Param("decay", "float", 0.0, "momentum decay", 0.0, 10.0),
                                     Param("len_kernel", "int", 15, "translation-invariance kernel size (odd)", 1, 31, "pixels", default_gray=5),
                                     Param("nsig", "float", 3.0, "Gaussian kernel: radius in standard deviations", 0.5, 10.0), _RESIZE, _DIVERSITY),
        paper="Dong et al., Evading Defenses to Transferable Adversarial Examples by Translation-Invariant Attacks, arXiv:1904.02884",
        description="I-FGSM with the gradient smoothed by a Gaussian kernel (translation invariance).",
        build=_build_tifgsm,
        cost=_steps_cost, **gradient_iter, randomness="steps"))
    register_attack(AttackInfo(
        "nifgsm", "NI-FGSM", params=(_eps(), _alpha(), _steps(), _DECAY),
        paper="Lin et al., Nesterov Accelerated Gradient and Scale Invariance for Adversarial Attacks, arXiv:1908.06281",
        description="MI-FGSM with a Nesterov look-ahead.",
        build=lambda m, p, k: _ta().NIFGSM(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], decay=p["decay"]),
        cost=_steps_cost, **gradient_iter, randomness="none"))
    register_attack(AttackInfo(
        "rfgsm", "R-FGSM", params=(_eps(), _alpha(), _steps()),
        paper="Tramèr et al., Ensemble Adversarial Training, arXiv:1705.07204",
        description="A random step of size α, then iterated gradient steps.",
        build=lambda m, p, k: _ta().RFGSM(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"]),
        cost=_steps_cost, **gradient_iter, randomness="start"))
    register_attack(AttackInfo(
        "eotpgd", "EOT-PGD", "gradient", "Linf",
        (_eps(), _alpha(), _steps(), Param("eot_iter", "int", 2, "gradient samples averaged per step (expectation over transformation)", 1, 50), _RANDOM_START),
        True, "Athalye et al., Synthesizing Robust Adversarial Examples, arXiv:1707.07397; Zimmermann, arXiv:1907.00895",
        "PGD with the gradient averaged over several passes (for randomised models or defences).",
        build=lambda m, p, k: _ta().EOTPGD(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], eot_iter=p["eot_iter"], random_start=p["random_start"]),
        cost=lambda p: 2.0 * p["steps"] * p["eot_iter"], budget_param="eps", randomness="start", random_switch="random_start"))
    register_attack(AttackInfo(
        "tpgd", "TPGD", "gradient", "Linf", (_eps(), _alpha(), _steps()), False,
        "Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy (TRADES), arXiv:1901.08573",
        "PGD on the KL divergence to the clean prediction (needs no label; untargeted only).",
        build=lambda m, p, k: _ta().TPGD(m, eps=p["eps"], alpha=p["alpha"], steps=p["steps"]),
        cost=lambda p: 2.0 * p["steps"] + 1, per_step_trace=True, budget_param="eps", randomness="start"))
    register_attack(AttackInfo(
        "cw", "C&W (L2)", "optimisation", None,
        (Param("c", "float", 1.0, "weight of the misclassification term", 1e-4, 1e4),
         Param("kappa", "float", 0.0, "confidence margin κ", 0.0, 100.0),
         _steps(50, 10000, "Adam iterations"),
         Param("lr", "float", 0.01, "Adam learning rate", 1e-5, 1.0)), True,
        "Carlini & Wagner, Towards Evaluating the Robustness of Neural Networks, arXiv:1608.04644",
        "Minimises the L2 distortion plus c × a margin loss with Adam (no fixed budget).",
        build=lambda m, p, k: _ta().CW(m, c=p["c"], kappa=p["kappa"], steps=p["steps"], lr=p["lr"]),
        cost=_steps_cost, per_step_trace=True, randomness="none"))
    register_attack(AttackInfo(
        "deepfool", "DeepFool", "optimisation", None,
        (_steps(50, 1000, "maximum iterations"), Param("overshoot", "float", 0.02, "overshoot past the decision boundary", 0.0, 1.0)), False,
        "Moosavi-Dezfooli et al., DeepFool, arXiv:1511.04599",
        "Steps to the nearest linearised decision boundary (untargeted only; one Jacobian per class per step).",
        build=lambda m, p, k: _ta().DeepFool(m, steps=p["steps"], overshoot=p["overshoot"]),
        cost=lambda p: 2.0 * p["steps"] * p.get("_classes", 10), cost_low=lambda p: 2.0 * p.get("_classes", 10) + 1, randomness="none"))
    register_attack(AttackInfo(
        "sparsefool", "SparseFool", "optimisation", "L0",
        (_steps(10, 200, "maximum iterations"), Param("lam", "float", 3.0, "sparsity control λ", 0.1, 100.0),
         Param("overshoot", "float", 0.02, "overshoot past the boundary", 0.0, 1.0)), False,
        "Modas et al., SparseFool, arXiv:1811.02248", "Few-pixel perturbations found through DeepFool's boundary (untargeted only).",
        build=lambda m, p, k: _ta().SparseFool(m, steps=p["steps"], lam=p["lam"], overshoot=p["overshoot"]),
        cost=lambda p: 2.0 * p["steps"] * 50 * p.get("_classes", 10), cost_low=lambda p: 2.0 * p.get("_classes", 10) * 2, randomness="none"))
    register_attack(AttackInfo(
        "jsma", "JSMA", "optimisation", "L0",
        (Param("theta", "float", 1.0, "change applied to each chosen pixel", 0.01, 1.0, "pixel units [0, 1]"),
         Param("gamma", "float", 0.1, "the most pixels that may change, as a fraction", 0.001, 1.0, "fraction of pixels")), True,
        "Papernot et al., The Limitations of Deep Learning in Adversarial Settings, arXiv:1511.07528",
        "Saliency-map pixel changes toward a target class. JSMA is a targeted method: untargeted runs aim at class (label + 1) mod K. One image at a time (its Jacobian is per image).",
        build=lambda m, p, k: _ta().JSMA(m, theta=p["theta"], gamma=p["gamma"]),
        cost=lambda p: 2.0 * 10 * 100 * p["gamma"] * p.get("_classes", 10), randomness="none"))
    register_attack(AttackInfo(
        "onepixel", "One-Pixel", "score", "L0",
        (Param("pixels", "int", 1, "pixels changed", 1, 100, "pixels"), _steps(10, 1000, "differential-evolution generations"),
         Param("popsize", "int", 10, "population size multiplier", 1, 100)), True,
        "Su et al., One Pixel Attack for Fooling Deep Neural Networks, arXiv:1710.08864",
        "Differential evolution over the position and colour of a few pixels (scores only, no gradient).",
        build=lambda m, p, k: _ta().OnePixel(m, pixels=p["pixels"], steps=p["steps"], popsize=p["popsize"]),
        cost=lambda p: (p["steps"] + 1) * p["popsize"] * p["pixels"] * 5, randomness="steps"))
    register_attack(AttackInfo(
        "pixle", "Pixle", "score", "L0",
        (Param("restarts", "int", 20, "random restarts", 1, 200), Param("max_iterations", "int", 10, "iterations per restart", 1, 200),
         Param("pixel_mapping", "choice", "random", "how source pixels are chosen", choices=("random", "similarity", "similarity_random", "distance", "distance_random"))), True,
        "Pomponi et al., Pixle: a fast and effective black-box attack based on rearranging pixels, arXiv:2202.02236",
        "Moves patches of pixels inside the image (scores only).",
        build=lambda m, p, k: _ta().Pixle(m, restarts=p["restarts"], max_iterations=p["max_iterations"], pixel_mapping=p["pixel_mapping"]),
        cost=lambda p: p["restarts"] * p["max_iterations"] * 2, randomness="steps"))
    register_attack(AttackInfo(
        "square", "Square", "score", "Linf",
        (_NORM_CHOICE, _eps(help_text="budget in the chosen norm"), Param("n_queries", "int", 5000, "query budget", 1, 100_000, "queries", default_gray=1000),
         _RESTARTS, Param("p_init", "float", 0.8, "initial fraction of pixels in a square", 0.01, 1.0)), True,
        "Andriushchenko et al., Square Attack, arXiv:1912.00049",
        "Random square updates accepted when the margin drops (scores only, no gradient).",
        build=lambda m, p, k: _ta().Square(m, norm=p["norm"], eps=p["eps"], n_queries=p["n_queries"], n_restarts=p["n_restarts"], p_init=p["p_init"], seed=k),
        cost=lambda p: p["n_queries"] * p["n_restarts"], cost_low=lambda p: 2.0, budget_param="eps", randomness="steps"))
    register_attack(AttackInfo(
        "apgd", "APGD", "gradient", "Linf",
        (_NORM_CHOICE, _eps(help_text="budget in the chosen norm"), _steps(), _RESTARTS,
         Param("loss", "choice", "ce", "loss: cross-entropy or difference of logits ratio", choices=("ce", "dlr"))), False,
        "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, arXiv:2003.01690",
        "Auto-PGD: step size adapted from the progress of the loss (untargeted in torchattacks).",
        build=lambda m, p, k: _ta().APGD(m, norm=p["norm"], eps=p["eps"], steps=p["steps"], n_restarts=p["n_restarts"], loss=p["loss"], seed=k),
        cost=lambda p: 2.0 * p["steps"] * p["n_restarts"], budget_param="eps", randomness="steps"))
    register_attack(AttackInfo(
        "fab", "FAB", "optimisation", "Linf",
        (_NORM_CHOICE, _eps(help_text="budget in the chosen norm"), _steps(), _RESTARTS), True,
        "Croce & Hein, Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack, arXiv:1907.02044",
        "Fast adaptive boundary: minimal perturbations via linearised boundaries.",
        build=lambda m, p, k: _ta().FAB(m, norm=p["norm"], eps=p["eps"], steps=p["steps"], n_restarts=p["n_restarts"], seed=k, n_classes=m_classes(m)),
        cost=lambda p: 2.0 * p["steps"] * p["n_restarts"] * p.get("_classes", 10), budget_param="eps", randomness="steps"))
    register_attack(AttackInfo(
        "autoattack", "AutoAttack", "ensemble", "Linf",
        (_NORM_CHOICE, _eps(help_text="budget in the chosen norm"), Param("version", "choice", "standard", "attack ensemble", choices=("standard", "plus", "rand"))), False,
        "Croce & Hein, arXiv:2003.01690", "APGD-CE, APGD-T, FAB-T and Square in sequence (untargeted; slow: use few images).",
        build=lambda m, p, k: _ta().AutoAttack(m, norm=p["norm"], eps=p["eps"], version=p["version"], n_classes=m_classes(m), seed=k),
        cost=lambda p: sum(_autoattack_stages(p)), cost_low=lambda p: _autoattack_stages(p)[0] + len(_autoattack_stages(p)) - 1,
        budget_param="eps", randomness="steps"))


def _autoattack_stages(p: dict) -> list[float]:
    """Model evaluations per image of each stage of torchattacks 3.5.1's AutoAttack, in order, for
    ``p["_classes"]`` classes (default 10). A stage runs only on the images every earlier stage
    failed to fool (torchattacks' MultiAttack), plus one forward pass to check them. APGD: 10
    steps of one forward and one backward pass, plus the start; APGD-T and FAB-T: one such run per
    target class (K - 1); FAB: about 3 passes per step; Square: 5,000 queries of one forward."""
    k = int(p.get("_classes", 10))
    apgd, fab = 2.0 * 11 + 1, 3.0 * 11
    stages = {
        "standard": [apgd, apgd * (k - 1), fab * (k - 1), 5001.0],
        "plus": [5 * apgd, 5 * apgd, 5 * fab, 5001.0, apgd * (k - 1), fab * (k - 1)],
        "rand": [20 * apgd, 20 * apgd],
    }[p.get("version", "standard")]
    return [stage + 1.0 for stage in stages]  # + MultiAttack's check of the stage's output


class _MeanOfChannels(nn.Module):
    """Lets a 1-channel model take a 3-channel image whose channels are copies of one another."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.mean(dim=1, keepdim=True))


class _OnGrayAsRGB:
    """Runs a torchattacks attack that assumes 3 channels on a 1-channel model.

    torchattacks' TI-FGSM smooths the gradient with ``groups=3``. The image is repeated into 3
    identical channels and the model sees their mean: every channel then gets the same gradient
    and the same kernel, so the channels stay identical and channel 0 is exactly TI-FGSM on the
    1-channel image (no random start is involved).
    """

    def __init__(self, make: Callable[[nn.Module], Any], model: nn.Module) -> None:
        self.attack = make(_MeanOfChannels(model))

    def set_mode_targeted_by_label(self, quiet: bool = False) -> None:
        self.attack.set_mode_targeted_by_label(quiet=quiet)

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.attack(x.repeat(1, 3, 1, 1), labels)[:, :1]


def _build_tifgsm(model: nn.Module, p: dict, seed: int):
    def make(target: nn.Module):
        return _ta().TIFGSM(
            target, eps=p["eps"], alpha=p["alpha"], steps=p["steps"], decay=p["decay"], len_kernel=p["len_kernel"],
            nsig=p["nsig"], resize_rate=p["resize_rate"], diversity_prob=p["diversity_prob"],
        )

    return _OnGrayAsRGB(make, model) if m_channels(model) == 1 else make(model)


def m_channels(module: nn.Module) -> int:
    model = module.model if isinstance(module, _TraceRecorder) else module
    return int(model.channels)


def m_classes(module: nn.Module) -> int:
    """Number of classes of the (possibly wrapped) model torchattacks is given."""
    model = module.model if isinstance(module, _TraceRecorder) else module
    return int(model.num_classes)


def list_attacks() -> list[AttackInfo]:
    """Every registered attack, in catalogue order (none first)."""
    return list(ATTACKS.values())


def get_attack(name: str) -> AttackInfo:
    key = name.lower().replace("-", "").replace("_", "").replace(" ", "") if isinstance(name, str) else name
    aliases = {"ifgsm": "bim", "pgdlinf": "pgd", "cwl2": "cw", "vanila": "none", "identity": "none"}
    key = aliases.get(key, key)
    if key not in ATTACKS:
        raise InputError(f"unknown attack {name!r}; registered: {list(ATTACKS)}")
    return ATTACKS[key]


def over_255(value: float) -> str:
    """``value`` in 1/255 units, two decimals at most, trailing zeros dropped: ``"8"`` for 8/255,
    ``"38.25"`` for 0.15. A float32 norm measured at a budget (0.15000001) reads the same as the
    budget: the value is rounded to two decimals of 1/255 first."""
    over = round(float(value) * 255, 2)
    return f"{over:.2f}".rstrip("0").rstrip(".")


def format_eps(value: float, pixel_scale: bool = True) -> str:
    """``0.0314`` → ``"0.0314 (8.01/255)"``, ``0.15`` → ``"0.15 (38.25/255)"``: the one way a pixel
    budget or a measured pixel norm is written (CLI, banner, norms, sliders, figures). Budgets
    without a pixel scale (C&W's ``c``) print as ``0.15``; non-finite values as they are."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if not pixel_scale:
        return f"{value:.4g}"
    return f"{value:.4g} ({over_255(value)}/255)"


def resolve_params(info: AttackInfo, params: Mapping[str, Any] | None, model: PixelModel | None = None) -> dict[str, Any]:
    """The attack's defaults for this model, overridden by ``params``, each validated."""
    resolved = resolve(info.params, params, model, info.name)
    if info.name == "tifgsm" and resolved["len_kernel"] % 2 == 0:
        raise InputError("tifgsm: parameter 'len_kernel' must be odd (the kernel is centred)")
    return resolved


def estimate_work(info: AttackInfo, params: Mapping[str, Any], batch: int, classes: int = 10) -> float:
    """Estimated model evaluations (image × pass) of one request at most, the unit of
    :data:`MAX_WORK`, for a model with ``classes`` classes (AutoAttack's targeted stages run once
    per other class)."""
    return float(info.cost({**dict(params), "_classes": int(classes)})) * batch


def estimate_range(info: AttackInfo, params: Mapping[str, Any], batch: int, classes: int = 10) -> tuple[float, float]:
    """``(low, high)`` model evaluations of one request: ``high`` as :func:`estimate_work` (every
    step runs), ``low`` when the attack fools every image as early as it can stop (equal to
    ``high`` for attacks that always run all their steps). AutoAttack's real cost lies between:
    on an undefended model most images fall to its first stage (near ``low``); on a robust one
    they reach its 5,000-query Square stage (near ``high``). Multiply by seconds per evaluation
    (:func:`seconds_per_evaluation`) for seconds."""
    p = {**dict(params), "_classes": int(classes)}
    high = float(info.cost(p)) * batch
    low = float(info.cost_low(p)) * batch if info.cost_low is not None else high
    return min(low, high), high


def seconds_per_evaluation(model: PixelModel, batch: int = 16) -> float:
    """Seconds one model evaluation (one image through one forward or backward pass) takes on this
    model, measured now: one timed forward and backward pass of ``batch`` images (after one
    untimed warm-up pass). Takes the model's lock."""
    model = require_pixel_model(model, "seconds_per_evaluation")
    x = torch.rand(int(batch), model.channels, *model.input_size, device=model.device)
    with model.lock, torch.enable_grad():
        for timed in (False, True):
            z = x.clone().requires_grad_(True)
            started = time.perf_counter()
            model(z).sum().backward()
            if model.device.type == "cuda":
                torch.cuda.synchronize(model.device)
            elapsed = time.perf_counter() - started
    return elapsed / (2 * int(batch))


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackTrace:
    """Loss and predicted class over the attack's forward passes: ``(T, N)`` each.

    ``unit`` is ``"step"`` when each entry is one iteration of the attack, ``"forward pass"``
    otherwise. ``loss`` is the cross-entropy to the true/clean label (untargeted) or to the target
    (targeted) at that pass: it rises during an untargeted attack and falls during a targeted one.
    """

    loss: torch.Tensor
    predicted: torch.Tensor
    unit: str
    truncated: bool = False

    def to_dict(self) -> dict:
        return {"unit": self.unit, "loss": self.loss.tolist(), "predicted": self.predicted.tolist(), "truncated": self.truncated}


class AttackedImages:
    """For results with ``success`` and ``attacked`` (bool, per image) fields: ``attacked`` defaults
    to every image, and :attr:`excluded` counts the images left alone because their clean
    prediction already was the target (:class:`AttackReport`, :class:`neuronviz.batch.BatchResult`)."""

    success: torch.Tensor
    attacked: torch.Tensor | None

    def __post_init__(self) -> None:
        if self.attacked is None:
            object.__setattr__(self, "attacked", torch.ones_like(self.success, dtype=torch.bool))

    @property
    def excluded(self) -> int:
        """Images not attacked because their clean prediction already was the target."""
        return int((~self.attacked).sum())  # type: ignore[operator]


@dataclass(frozen=True)
class AttackReport(AttackedImages):
    """What one :func:`run_attack` did, as detached CPU tensors.

    Shapes: ``adversarial (N, C, H, W)``; ``labels``, ``clean_pred``, ``adv_pred``, ``success``,
    ``l0``, ``l2``, ``linf`` ``(N,)``; ``clean_probs``, ``adv_probs`` ``(N, K)``; ``target (N,)`` or None.
    ``l0`` counts pixel positions where any channel changed by more than 1e-6 (so a one-pixel
    attack has l0 = 1); ``l2`` and ``linf`` are over all elements, in [0, 1] pixel units.

    ``attacked (N,)``: False for an image a targeted request left alone because its clean
    prediction already was the target (its ``adversarial`` is the clean image, ``success``
    False); such images are excluded from :attr:`success_rate` and counted in :attr:`excluded`.
    Untargeted requests attack every image. ``evaluations``: image × pass count the attack made
    (a forward pass with a graph counts twice: its backward follows), what :func:`estimate_work`
    estimates.
    """

    attack: str
    params: dict
    targeted: bool
    target: torch.Tensor | None
    labels: torch.Tensor
    adversarial: torch.Tensor
    clean_pred: torch.Tensor
    clean_probs: torch.Tensor
    adv_pred: torch.Tensor
    adv_probs: torch.Tensor
    success: torch.Tensor
    l0: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    seconds: float
    device: str
    seed: int | None
    trace: AttackTrace | None
    attacked: torch.Tensor | None = None
    evaluations: int = 0

    @property
    def success_rate(self) -> float:
        """Share of the attacked images the attack fooled (NaN when none was attacked)."""
        hits = self.success[self.attacked]
        return float(hits.float().mean()) if hits.numel() else float("nan")

    def to_frame(self):
        """One row per image: labels, predictions, confidence, success and norms."""
        import pandas as pd

        rows = {
            "label": self.labels.tolist(),
            "clean_pred": self.clean_pred.tolist(),
            "clean_conf": self.clean_probs.max(1).values.tolist(),
            "adv_pred": self.adv_pred.tolist(),
            "adv_conf": self.adv_probs.max(1).values.tolist(),
            "success": self.success.tolist(),
            "attacked": self.attacked.tolist(),
            "l0": self.l0.tolist(),
            "l2": self.l2.tolist(),
            "linf": self.linf.tolist(),
        }
        if self.target is not None:
            rows["target"] = self.target.tolist()
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        """Everything but the pixels, as plain Python values (for JSON export)."""
        return {
            "attack": self.attack,
            "params": dict(self.params),
            "targeted": self.targeted,
            "seed": self.seed,
            "device": self.device,
            "seconds": self.seconds,
            "success_rate": self.success_rate,
            "excluded_already_target": self.excluded,
            "evaluations": self.evaluations,
            "images": self.to_frame().to_dict(orient="records"),
            "trace": self.trace.to_dict() if self.trace is not None else None,
        }


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


class _TraceRecorder(nn.Module):
    """Passes through to the model and keeps the logits of every full-batch forward pass."""

    def __init__(self, model: PixelModel, batch: int, limit: int = MAX_TRACE, rng: _RequestRandomness | None = None) -> None:
        super().__init__()
        self.model = model
        self.batch = batch
        self.limit = limit
        self.logits: list[torch.Tensor] = []
        self.truncated = False
        self.rng = rng
        self.images_forward = 0  # images through a forward pass
        self.images_backward = 0  # images through a forward pass that builds a graph (a backward follows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images_forward += int(x.shape[0])
        if torch.is_grad_enabled() and x.requires_grad:
            self.images_backward += int(x.shape[0])
        if self.rng is not None and self.rng.before_forward(x):
            try:
                out = self.model(x)
            finally:
                self.rng.after_forward()
        else:
            out = self.model(x)
        if x.shape[0] == self.batch:
            if len(self.logits) < self.limit:
                self.logits.append(out.detach().float().cpu())
            else:
                self.truncated = True
        return out


#: torch's, NumPy's and ``random``'s default generators are one per process, shared by every
#: thread (every dashboard session). A seeded request that draws random numbers swaps its own
#: generator state into them while it draws, holding this lock, and swaps it out again before
#: the lock is released (:class:`_RequestRandomness`). It is held only while the attack's own
#: code runs between model evaluations, never during a model evaluation, and never for attacks
#: that draw nothing. Always taken after a model's lock, never before one.
_RNG_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int | None):
    """Seed torch (CPU and CUDA), NumPy and ``random`` inside the block; restore them after.

    For code that draws from the global generators throughout a block: holds :data:`_RNG_LOCK`
    for the whole block, so concurrent seeded blocks run one after the other (a process-wide
    generator cannot be shared otherwise). :func:`run_attack` does not use it: it holds the lock
    only while an attack draws (see :class:`_RequestRandomness`)."""
    if seed is None:
        yield
        return
    with _RNG_LOCK:
        with _seeded(seed):
            yield


@contextmanager
def _seeded(seed: int):
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class _RequestRandomness:
    """One seeded request's own state of torch's (CPU and the model's CUDA device), NumPy's and
    ``random``'s generators, lent to the process-wide generators only while the request draws.

    torchattacks draws from the global generators (``torch.rand``, ``uniform_``, ``np.random``),
    which torch has one of per process. Instead of holding a global lock for a whole attack, the
    request's state is swapped in (under :data:`_RNG_LOCK`) when the attack's own code runs and
    swapped out while the model evaluates (:meth:`paused`, called by the trace recorder around
    every forward pass), so other requests' attacks, and every attack that draws nothing, run
    meanwhile. The sequence of numbers the attack draws is exactly the sequence of a
    single-threaded run seeded with ``seed`` (the model draws none: it is in eval mode).

    ``mode="start"`` (the attack draws only before its first gradient pass, e.g. PGD's random
    start): the state is given back for good at the first forward pass whose input requires a
    gradient, and the rest of the attack holds no lock. ``mode="steps"``: borrowed again after
    every forward pass. The lock is not held during forward passes; it is held during the rest of
    the attack's step (its backward pass and update), which is why attacks that draw nothing take
    no lock at all.
    """

    def __init__(self, seed: int, device: torch.device, mode: str) -> None:
        self.mode = mode
        self.cuda = device.type == "cuda" and torch.cuda.is_available()
        self.cuda_index = (device.index if device.index is not None else torch.cuda.current_device()) if self.cuda else None
        self.finished = False
        self.inside = False
        self._saved = None
        with _RNG_LOCK:
            outer = self._get()
            torch.random.default_generator.manual_seed(seed)
            if self.cuda:
                with torch.cuda.device(self.cuda_index):
                    torch.cuda.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            self.state = self._get()
            self._set(outer)

    def _get(self):
        cuda = torch.cuda.get_rng_state(self.cuda_index) if self.cuda else None
        return torch.get_rng_state(), cuda, np.random.get_state(), random.getstate()

    def _set(self, state) -> None:
        cpu, cuda, np_state, py_state = state
        torch.set_rng_state(cpu)
        if self.cuda:
            torch.cuda.set_rng_state(cuda, self.cuda_index)
        np.random.set_state(np_state)
        random.setstate(py_state)

    def _enter(self) -> None:
        _RNG_LOCK.acquire()
        self._saved = self._get()
        self._set(self.state)
        self.inside = True

    def _leave(self) -> None:
        self.state = self._get()
        self._set(self._saved)
        self.inside = False
        _RNG_LOCK.release()

    @contextmanager
    def active(self):
        """The whole attack runs inside; the generators are the request's whenever its code runs."""
        self._enter()
        try:
            yield
        finally:
            if self.inside:
                self._leave()

    def before_forward(self, x: torch.Tensor) -> bool:
        """Called by the recorder before a forward pass: give the generators back (for good at the
        first gradient pass of a ``"start"`` attack). Returns whether to borrow them again after."""
        if not self.inside:
            return False
        if self.mode == "start" and x.requires_grad:
            self.finished = True
            self._leave()
            return False
        self._leave()
        return True

    def after_forward(self) -> None:
        self._enter()


def resolve_target(target: Any, info: AttackInfo, model: PixelModel, clean_probs: torch.Tensor, n: int) -> torch.Tensor | None:
    """The ``(n,)`` target classes :func:`run_attack` uses for ``target`` (None: untargeted);
    ``"least-likely"`` from ``clean_probs (n, K)``. Raises InputError as run_attack does."""
    if target is None:
        return None
    if not info.targeted:
        raise InputError(f"{info.label} has no targeted mode; run it untargeted (target=None)")
    if isinstance(target, str):
        if target.replace("-", "_").replace(" ", "_").lower() not in ("least_likely", "ll"):
            raise InputError(f"target must be a class index, a tensor of them, or 'least-likely'; got {target!r}")
        return clean_probs.argmin(dim=1)
    return model.check_classes(target, n, "target")


def run_attack(
    model: PixelModel,
    x: torch.Tensor,
    name: str,
    params: Mapping[str, Any] | None = None,
    labels: torch.Tensor | None = None,
    target: int | str | torch.Tensor | None = None,
    seed: int | None = 0,
) -> AttackReport:
    """Attack a batch of pixel images with a registered torchattacks attack.

    Args:
        model: a :class:`PixelModel`; the attack runs on its device, holding its lock.
        x: ``(N, C, H, W)`` pixels in [0, 1]; attacked in one batched call.
        name: a registered attack (:func:`list_attacks`), e.g. ``"pgd"``.
        params: overrides of the attack's defaults (see its schema); ε may be ``"8/255"``.
        labels: the classes to move away from; default: the model's clean prediction.
        target: ``None`` (untargeted), a class index, one per image, or ``"least-likely"``.
            Images whose clean prediction already is their target are not attacked (returned
            unchanged, ``attacked`` False) and are left out of the success rate.
        seed: seeds the attack's own random numbers (torch, NumPy, ``random``), reproducibly
            even while other threads attack; ``None`` draws from the global generators as they are.

    Returns:
        An :class:`AttackReport` of detached CPU tensors.

    Raises:
        InputError: unknown attack or parameter, out-of-range value, targeted mode where the
            attack has none, a target or label outside the model's classes, pixels outside [0, 1]
            or of a size the model does not take, a model that is not a PixelModel, or a request
            larger than :data:`MAX_BATCH` images or :data:`MAX_WORK` evaluations.
        TimeLimitError, CancelledError: the budget (:mod:`neuronviz.budget`; by default
            :func:`neuronviz.settings.time_budget_s`) ran out, or the cancel flag was set.
    """
    model = require_pixel_model(model, "run_attack")
    info = get_attack(name)
    check_batch(x, "run_attack")
    x = model.check_pixels(x)
    resolved = resolve_params(info, params, model)
    work = estimate_work(info, resolved, x.shape[0], model.num_classes)
    if work > MAX_WORK:
        raise InputError(
            f"{info.label} on {x.shape[0]} image(s) with these parameters needs about {work:,.0f} model "
            f"evaluations; one request may ask for at most {MAX_WORK:,}. Use fewer images, steps or queries."
        )
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise InputError(f"seed must be a non-negative integer or None, got {seed!r}")
    n = x.shape[0]
    with budget.default(f"{info.label} on {n} image(s)"), model.lock:
        was_training = model.training
        started = time.perf_counter()
        with torch.no_grad():
            clean_logits = model(x)
        clean_probs = clean_logits.softmax(1).cpu()
        clean_pred = clean_probs.argmax(1)
        label_tensor = clean_pred.clone() if labels is None else model.check_classes(labels, n, "labels")
        target_tensor = resolve_target(target, info, model, clean_probs, n)
        if info.name == "jsma" and target_tensor is None:  # JSMA is targeted by nature (see its description)
            attack_target = (label_tensor + 1) % model.num_classes
        else:
            attack_target = target_tensor
        # targeted: an image already predicted as its target is not attacked (nothing to do)
        attacked = torch.ones(n, dtype=torch.bool) if target_tensor is None else clean_pred != target_tensor
        index = attacked.nonzero().flatten()
        adversarial = x.detach().clone()
        recorder = None
        if index.numel():
            xa = x[index.to(x.device)] if index.numel() < n else x
            mode = info.draws(resolved) if seed is not None else "none"
            rng = _RequestRandomness(int(seed), model.device, mode) if mode != "none" else None
            recorder = _TraceRecorder(model, xa.shape[0], rng=rng)
            try:
                with (rng.active() if rng is not None else nullcontext()), torch.enable_grad():
                    attack = info.build(recorder, resolved, int(seed or 0))
                    if attack_target is not None:
                        attack.set_mode_targeted_by_label(quiet=True)
                        out = attack(xa, attack_target[index].to(model.device))
                    else:
                        out = attack(xa, label_tensor[index].to(model.device))
            finally:
                model.train(was_training)
            adversarial[index.to(x.device)] = out.detach().clamp(0.0, 1.0)
        with torch.no_grad():
            adv_probs = model(adversarial).softmax(1).cpu()
        seconds = time.perf_counter() - started

    adv_pred = adv_probs.argmax(1)
    success = adv_pred == target_tensor if target_tensor is not None else adv_pred != label_tensor
    success = success & attacked
    delta = (adversarial - x).detach().cpu()
    reference = target_tensor if target_tensor is not None else label_tensor
    return AttackReport(
        attack=info.name,
        params=resolved,
        targeted=target_tensor is not None,
        target=target_tensor,
        labels=label_tensor,
        adversarial=adversarial.cpu(),
        clean_pred=clean_pred,
        clean_probs=clean_probs,
        adv_pred=adv_pred,
        adv_probs=adv_probs,
        success=success,
        l0=(delta.abs() > 1e-6).any(dim=1).flatten(1).sum(1),
        l2=delta.flatten(1).norm(dim=1),
        linf=delta.flatten(1).abs().max(dim=1).values,
        seconds=seconds,
        device=str(model.device),
        seed=seed,
        trace=_trace(recorder, info, reference, index, clean_logits.detach().float().cpu()) if recorder is not None else None,
        attacked=attacked,
        evaluations=(recorder.images_forward + recorder.images_backward) if recorder is not None else 0,
    )


def _trace(
    recorder: _TraceRecorder, info: AttackInfo, reference: torch.Tensor, index: torch.Tensor, clean_logits: torch.Tensor
) -> AttackTrace | None:
    """The trace over all N images; an image that was not attacked keeps its clean logits."""
    if info.name == "none" or not recorder.logits:
        return None
    attacked_logits = torch.stack(recorder.logits)  # (T, n_attacked, K)
    steps, _, k = attacked_logits.shape
    n = clean_logits.shape[0]
    logits = clean_logits[None].expand(steps, n, k).clone()
    logits[:, index] = attacked_logits
    loss = F.cross_entropy(logits.reshape(-1, k), reference.repeat(steps), reduction="none").reshape(steps, n)
    return AttackTrace(
        loss=loss,
        predicted=logits.argmax(2),
        unit="step" if info.per_step_trace else "forward pass",
        truncated=recorder.truncated,
    )


_register_all()
