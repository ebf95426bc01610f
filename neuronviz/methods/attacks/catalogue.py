"""The built-in attacks: torchattacks 3.5.1's own implementations, one registry entry each.

Each entry is registered where it is defined, with every fact about its attack (see
:class:`~neuronviz.methods.attacks.registry.AttackInfo`). Parameter names are torchattacks' constructor
keywords (checked by tests/test_extend_attack.py), so the class is called as
``cls(model, **params)``; torchattacks' defaults stand for every keyword a schema leaves out.
``supported_mode`` is torchattacks' own (also checked). Nothing here re-implements an attack.

Units: ε and step sizes are in [0, 1] pixel units (the models normalise inside). Default ε
depends on the kind of model: single-channel digit models use the MNIST convention (ε = 0.1 for
L∞, ``default_gray``), colour models the ImageNet/CIFAR one (ε = 8/255).

Costs are model evaluations per image (one image through one forward or one backward pass),
``cost(params, classes)``: the unit of :data:`neuronviz.infra.limits.MAX_WORK`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from neuronviz.infra.errors import InputError
from neuronviz.infra.schema import Param
from neuronviz.methods.attacks.registry import AttackInfo, register_attack

BOTH = ("default", "targeted")  # torchattacks' supported_mode of attacks with a targeted mode
LINF_HELP = "L∞ budget: the most any pixel may change"


# -- shared parameters (each name is the torchattacks keyword) -------------------------------------


def eps_param(default_gray: float = 0.1, high: float = 1.0, help_text: str = LINF_HELP) -> Param:
    """ε in pixel units: 8/255 for colour models, ``default_gray`` for digit models."""
    return Param("eps", "float", 8 / 255, help_text, 0.0, high, "pixel units [0, 1]", pixel_scale=True, default_gray=default_gray)


def alpha_param(default: float = 2 / 255, gray: float = 0.01) -> Param:
    """The step size α in pixel units."""
    return Param("alpha", "float", default, "step size per iteration", 0.0, 1.0, "pixel units [0, 1]", pixel_scale=True, default_gray=gray)


def steps_param(default: int = 10, high: int = 1000, help_text: str = "number of iterations") -> Param:
    """The number of iterations."""
    return Param("steps", "int", default, help_text, 1, high, "iterations", default_gray=None)


DECAY = Param("decay", "float", 1.0, "momentum decay factor μ", 0.0, 10.0)
RANDOM_START = Param("random_start", "bool", True, "start from a uniformly random point in the ε-ball")
RESIZE = Param("resize_rate", "float", 0.9, "input diversity: resize factor", 0.5, 1.0)
DIVERSITY = Param("diversity_prob", "float", 0.5, "input diversity: probability to transform", 0.0, 1.0)
RESTARTS = Param("n_restarts", "int", 1, "random restarts", 1, 10, "restarts")
NORM_CHOICE = Param("norm", "choice", "Linf", "the norm of the budget", choices=("Linf", "L2"))
NORM_EPS = eps_param(help_text="budget in the chosen norm")


# -- costs -----------------------------------------------------------------------------------------


def two_per_step(params: Mapping[str, Any], classes: int) -> float:
    """One forward and one backward pass per step."""
    return 2.0 * params["steps"]


def once(params: Mapping[str, Any], classes: int) -> float:
    return 1.0


# -- none ------------------------------------------------------------------------------------------

register_attack(AttackInfo(
    name="none", label="None (clean image)", short_label="none", family="none", norm=None, params=(), paper="—",
    description="No attack: the image is passed through unchanged (torchattacks VANILA).",
    cls="VANILA", cost=once, trace_unit=None, randomness="none",
))

# -- gradient iterations ---------------------------------------------------------------------------

register_attack(AttackInfo(
    name="fgsm", label="FGSM", short_label="FGSM", family="gradient", norm="Linf", params=(eps_param(),),
    paper="Goodfellow et al., Explaining and Harnessing Adversarial Examples, arXiv:1412.6572",
    description="One signed-gradient step of size ε.",
    cls="FGSM", supported_mode=BOTH, budget_param="eps", cost=lambda p, k: 2.0, randomness="none",
))

register_attack(AttackInfo(
    name="bim", label="BIM / I-FGSM", short_label="BIM", family="gradient", norm="Linf",
    params=(eps_param(), alpha_param(), steps_param()),
    paper="Kurakin et al., Adversarial examples in the physical world, arXiv:1607.02533",
    description="Iterated FGSM steps of size α, clipped to the ε-ball.",
    cls="BIM", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step", randomness="none",
))

register_attack(AttackInfo(
    name="pgd", label="PGD (L∞)", short_label="PGD", family="gradient", norm="Linf",
    params=(eps_param(), alpha_param(), steps_param(), RANDOM_START),
    paper="Madry et al., Towards Deep Learning Models Resistant to Adversarial Attacks, arXiv:1706.06083",
    description="Projected gradient descent in the L∞ ball, from a random start.",
    cls="PGD", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step",
    randomness="start", random_switch="random_start",
))

register_attack(AttackInfo(
    name="pgdl2", label="PGD (L2)", short_label="PGD-L2", family="gradient", norm="L2",
    params=(
        Param("eps", "float", 1.0, "L2 budget: the most the perturbation's Euclidean norm may be", 0.0, 100.0, "L2 norm in pixel units", default_gray=2.0),
        Param("alpha", "float", 0.2, "step size (L2) per iteration", 0.0, 20.0, "L2 norm in pixel units", default_gray=0.2),
        steps_param(),
        RANDOM_START,
    ),
    paper="Madry et al., arXiv:1706.06083 (L2 variant)",
    description="Projected gradient descent in the L2 ball.",
    cls="PGDL2", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step",
    randomness="start", random_switch="random_start",
))

register_attack(AttackInfo(
    name="mifgsm", label="MI-FGSM", short_label="MI-FGSM", family="gradient", norm="Linf",
    params=(eps_param(), alpha_param(), steps_param(), DECAY),
    paper="Dong et al., Boosting Adversarial Attacks with Momentum, arXiv:1710.06081",
    description="I-FGSM with a momentum term on the normalised gradient.",
    cls="MIFGSM", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step", randomness="none",
))

register_attack(AttackInfo(
    name="difgsm", label="DI-FGSM", short_label="DI-FGSM", family="gradient", norm="Linf",
    params=(
        eps_param(), alpha_param(), steps_param(),
        Param("decay", "float", 0.0, "momentum decay (0 = DI-FGSM, 1 = M-DI²-FGSM)", 0.0, 10.0),
        RESIZE, DIVERSITY,
    ),
    paper="Xie et al., Improving Transferability of Adversarial Examples with Input Diversity, arXiv:1803.06978",
    description="I-FGSM on randomly resized and padded inputs (input diversity).",
    cls="DIFGSM", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step", randomness="steps",
))


def odd_kernel(params: Mapping[str, Any]) -> None:
    """TI-FGSM's Gaussian kernel is centred on a pixel: its size must be odd."""
    if params["len_kernel"] % 2 == 0:
        raise InputError("tifgsm: parameter 'len_kernel' must be odd (the kernel is centred)")


register_attack(AttackInfo(
    name="tifgsm", label="TI-FGSM", short_label="TI-FGSM", family="gradient", norm="Linf",
    params=(
        eps_param(), alpha_param(), steps_param(),
        Param("decay", "float", 0.0, "momentum decay", 0.0, 10.0),
        Param("len_kernel", "int", 15, "translation-invariance kernel size (odd)", 1, 31, "pixels", default_gray=5),
        Param("nsig", "float", 3.0, "Gaussian kernel: radius in standard deviations", 0.5, 10.0),
        RESIZE, DIVERSITY,
    ),
    paper="Dong et al., Evading Defenses to Transferable Adversarial Examples by Translation-Invariant Attacks, arXiv:1904.02884",
    description="I-FGSM with the gradient smoothed by a Gaussian kernel (translation invariance).",
    # torchattacks smooths the gradient with a groups=3 convolution: digits run through 3 copies
    cls="TIFGSM", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step", randomness="steps",
    needs_rgb=True, check=odd_kernel,
))

register_attack(AttackInfo(
    name="nifgsm", label="NI-FGSM", short_label="NI-FGSM", family="gradient", norm="Linf",
    params=(eps_param(), alpha_param(), steps_param(), DECAY),
    paper="Lin et al., Nesterov Accelerated Gradient and Scale Invariance for Adversarial Attacks, arXiv:1908.06281",
    description="MI-FGSM with a Nesterov look-ahead.",
    cls="NIFGSM", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step", randomness="none",
))

register_attack(AttackInfo(
    name="rfgsm", label="R-FGSM", short_label="R-FGSM", family="gradient", norm="Linf",
    params=(eps_param(), alpha_param(), steps_param()),
    paper="Tramèr et al., Ensemble Adversarial Training, arXiv:1705.07204",
    description="A random step of size α, then iterated gradient steps.",
    cls="RFGSM", supported_mode=BOTH, budget_param="eps", cost=two_per_step, trace_unit="step", randomness="start",
))

register_attack(AttackInfo(
    name="eotpgd", label="EOT-PGD", short_label="EOT-PGD", family="gradient", norm="Linf",
    params=(
        eps_param(), alpha_param(), steps_param(),
        Param("eot_iter", "int", 2, "gradient samples averaged per step (expectation over transformation)", 1, 50),
        RANDOM_START,
    ),
    paper="Athalye et al., Synthesizing Robust Adversarial Examples, arXiv:1707.07397; Zimmermann, arXiv:1907.00895",
    description="PGD with the gradient averaged over several passes (for randomised models or defences).",
    cls="EOTPGD", supported_mode=BOTH, budget_param="eps", cost=lambda p, k: 2.0 * p["steps"] * p["eot_iter"],
    randomness="start", random_switch="random_start",
))

register_attack(AttackInfo(
    name="tpgd", label="TPGD", short_label="TPGD", family="gradient", norm="Linf",
    params=(eps_param(), alpha_param(), steps_param()),
    paper="Zhang et al., Theoretically Principled Trade-off between Robustness and Accuracy (TRADES), arXiv:1901.08573",
    description="PGD on the KL divergence to the clean prediction (needs no label; untargeted only).",
    cls="TPGD", budget_param="eps", cost=lambda p, k: 2.0 * p["steps"] + 1, trace_unit="step", randomness="start",
))

# -- optimisation ----------------------------------------------------------------------------------

register_attack(AttackInfo(
    name="cw", label="C&W (L2)", short_label="C&W", family="optimisation", norm=None, minimised_norm="L2",
    params=(
        Param("c", "float", 1.0, "weight of the misclassification term", 1e-4, 1e4),
        Param("kappa", "float", 0.0, "confidence margin κ", 0.0, 100.0),
        steps_param(50, 10000, "Adam iterations"),
        Param("lr", "float", 0.01, "Adam learning rate", 1e-5, 1.0),
    ),
    paper="Carlini & Wagner, Towards Evaluating the Robustness of Neural Networks, arXiv:1608.04644",
    description="Minimises the L2 distortion plus c × a margin loss with Adam (no fixed budget).",
    cls="CW", supported_mode=BOTH, cost=two_per_step, trace_unit="step", randomness="none",
))

register_attack(AttackInfo(
    name="deepfool", label="DeepFool", short_label="DeepFool", family="optimisation", norm=None, minimised_norm="L2",
    params=(
        steps_param(50, 1000, "maximum iterations"),
        Param("overshoot", "float", 0.02, "overshoot past the decision boundary", 0.0, 1.0),
    ),
    paper="Moosavi-Dezfooli et al., DeepFool, arXiv:1511.04599",
    description="Steps to the nearest linearised decision boundary (untargeted only; one Jacobian per class per step).",
    cls="DeepFool", cost=lambda p, k: 2.0 * p["steps"] * k, cost_low=lambda p, k: 2.0 * k + 1, randomness="none",
))

register_attack(AttackInfo(
    name="sparsefool", label="SparseFool", short_label="SparseFool", family="optimisation", norm="L0",
    params=(
        steps_param(10, 200, "maximum iterations"),
        Param("lam", "float", 3.0, "sparsity control λ", 0.1, 100.0),
        Param("overshoot", "float", 0.02, "overshoot past the boundary", 0.0, 1.0),
    ),
    paper="Modas et al., SparseFool, arXiv:1811.02248",
    description="Few-pixel perturbations found through DeepFool's boundary (untargeted only).",
    cls="SparseFool", cost=lambda p, k: 2.0 * p["steps"] * 50 * k, cost_low=lambda p, k: 2.0 * k * 2, randomness="none",
))


def next_class(labels: Tensor, classes: int) -> Tensor:
    """JSMA's targets for an untargeted request: the class after the label, (label + 1) mod K."""
    return (labels + 1) % classes


register_attack(AttackInfo(
    name="jsma", label="JSMA", short_label="JSMA", family="optimisation", norm="L0",
    params=(
        Param("theta", "float", 1.0, "change applied to each chosen pixel", 0.01, 1.0, "pixel units [0, 1]"),
        Param("gamma", "float", 0.1, "the most pixels that may change, as a fraction", 0.001, 1.0, "fraction of pixels"),
    ),
    paper="Papernot et al., The Limitations of Deep Learning in Adversarial Settings, arXiv:1511.07528",
    description="Saliency-map pixel changes toward a target class. JSMA is a targeted method: untargeted runs aim at "
    "class (label + 1) mod K. One image at a time (its Jacobian is per image).",
    cls="JSMA", supported_mode=BOTH, cost=lambda p, k: 2.0 * 10 * 100 * p["gamma"] * k, randomness="none",
    untargeted_target=next_class,
))

# -- scores only -----------------------------------------------------------------------------------

register_attack(AttackInfo(
    name="onepixel", label="One-Pixel", short_label="One-Pixel", family="score", norm="L0",
    params=(
        Param("pixels", "int", 1, "pixels changed", 1, 100, "pixels"),
        steps_param(10, 1000, "differential-evolution generations"),
        Param("popsize", "int", 10, "population size multiplier", 1, 100),
    ),
    paper="Su et al., One Pixel Attack for Fooling Deep Neural Networks, arXiv:1710.08864",
    description="Differential evolution over the position and colour of a few pixels (scores only, no gradient).",
    cls="OnePixel", supported_mode=BOTH, cost=lambda p, k: (p["steps"] + 1) * p["popsize"] * p["pixels"] * 5, randomness="steps",
))

register_attack(AttackInfo(
    name="pixle", label="Pixle", short_label="Pixle", family="score", norm="L0",
    params=(
        Param("restarts", "int", 20, "random restarts", 1, 200),
        Param("max_iterations", "int", 10, "iterations per restart", 1, 200),
        Param("pixel_mapping", "choice", "random", "how source pixels are chosen",
              choices=("random", "similarity", "similarity_random", "distance", "distance_random")),
    ),
    paper="Pomponi et al., Pixle: a fast and effective black-box attack based on rearranging pixels, arXiv:2202.02236",
    description="Moves patches of pixels inside the image (scores only).",
    cls="Pixle", supported_mode=BOTH, cost=lambda p, k: p["restarts"] * p["max_iterations"] * 2, randomness="steps",
))

register_attack(AttackInfo(
    name="square", label="Square", short_label="Square", family="score", norm="Linf",
    params=(
        NORM_CHOICE, NORM_EPS,
        Param("n_queries", "int", 5000, "query budget", 1, 100_000, "queries", default_gray=1000),
        RESTARTS,
        Param("p_init", "float", 0.8, "initial fraction of pixels in a square", 0.01, 1.0),
    ),
    paper="Andriushchenko et al., Square Attack, arXiv:1912.00049",
    description="Random square updates accepted when the margin drops (scores only, no gradient).",
    cls="Square", supported_mode=BOTH, context=("seed",), budget_param="eps",
    cost=lambda p, k: p["n_queries"] * p["n_restarts"], cost_low=lambda p, k: 2.0, randomness="steps",
))

# -- Croce & Hein ----------------------------------------------------------------------------------

register_attack(AttackInfo(
    name="apgd", label="APGD", short_label="APGD", family="gradient", norm="Linf",
    params=(
        NORM_CHOICE, NORM_EPS, steps_param(), RESTARTS,
        Param("loss", "choice", "ce", "loss: cross-entropy or difference of logits ratio", choices=("ce", "dlr")),
    ),
    paper="Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, arXiv:2003.01690",
    description="Auto-PGD: step size adapted from the progress of the loss (untargeted in torchattacks).",
    cls="APGD", context=("seed",), budget_param="eps", cost=lambda p, k: 2.0 * p["steps"] * p["n_restarts"], randomness="steps",
))

register_attack(AttackInfo(
    name="fab", label="FAB", short_label="FAB", family="optimisation", norm="Linf",
    params=(NORM_CHOICE, NORM_EPS, steps_param(), RESTARTS),
    paper="Croce & Hein, Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack, arXiv:1907.02044",
    description="Fast adaptive boundary: minimal perturbations via linearised boundaries.",
    cls="FAB", supported_mode=BOTH, context=("seed", "n_classes"), budget_param="eps",
    cost=lambda p, k: 2.0 * p["steps"] * p["n_restarts"] * k, randomness="steps",
))


def autoattack_stages(params: Mapping[str, Any], classes: int = 10) -> list[float]:
    """Model evaluations per image of each stage of torchattacks 3.5.1's AutoAttack, in order, for
    ``classes`` classes. A stage runs only on the images every earlier stage failed to fool
    (torchattacks' MultiAttack), plus one forward pass to check them. APGD: 10 steps of one
    forward and one backward pass, plus the start; APGD-T and FAB-T: one such run per target
    class (K - 1); FAB: about 3 passes per step; Square: 5,000 queries of one forward."""
    k = int(classes)
    apgd, fab = 2.0 * 11 + 1, 3.0 * 11
    stages = {
        "standard": [apgd, apgd * (k - 1), fab * (k - 1), 5001.0],
        "plus": [5 * apgd, 5 * apgd, 5 * fab, 5001.0, apgd * (k - 1), fab * (k - 1)],
        "rand": [20 * apgd, 20 * apgd],
    }[params.get("version", "standard")]
    return [stage + 1.0 for stage in stages]  # + MultiAttack's check of the stage's output


def autoattack_most(params: Mapping[str, Any], classes: int) -> float:
    """Every stage runs (a robust model: the images reach the Square stage)."""
    return sum(autoattack_stages(params, classes))


def autoattack_least(params: Mapping[str, Any], classes: int) -> float:
    """The first stage fools every image; each later stage only checks there is nothing left."""
    stages = autoattack_stages(params, classes)
    return stages[0] + len(stages) - 1


register_attack(AttackInfo(
    name="autoattack", label="AutoAttack", short_label="AutoAttack", family="ensemble", norm="Linf",
    params=(
        NORM_CHOICE, NORM_EPS,
        Param("version", "choice", "standard", "attack ensemble", choices=("standard", "plus", "rand")),
    ),
    paper="Croce & Hein, arXiv:2003.01690",
    description="APGD-CE, APGD-T, FAB-T and Square in sequence (untargeted; slow: use few images).",
    cls="AutoAttack", context=("n_classes", "seed"), budget_param="eps",
    cost=autoattack_most, cost_low=autoattack_least, randomness="steps",
    named=lambda p: f"AutoAttack ({p['version']})",
))
