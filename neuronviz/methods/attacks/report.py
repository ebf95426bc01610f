"""What one attack request did: :class:`AttackReport` (per-image results and norms) and its
:class:`AttackTrace` (loss and prediction over the attack's forward passes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import pandas as pd


#: The one definition of an attack's success that every page, table and figure counts (Batch,
#: First-layer filters, ``evaluate``, :attr:`AttackReport.success_rate`), stated beside each number.
SUCCESS_DEFINITION = (
    "an attack succeeds on an image when the model's prediction on the adversarial image differs from its "
    "prediction on the clean image (untargeted; targeted: when it is the target), whatever the true label; "
    "images the model already misclassifies count too, so the rate is not 1 − adversarial accuracy"
)


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

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "loss": self.loss.tolist(), "predicted": self.predicted.tolist(), "truncated": self.truncated}


class AttackedImages:
    """For results with ``success`` and ``attacked`` (bool, per image) fields: ``attacked`` defaults
    to every image, and :attr:`excluded` counts the images left alone because their clean
    prediction already was the target (:class:`AttackReport`, :class:`neuronviz.workflows.batch.BatchResult`)."""

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

    def to_frame(self) -> pd.DataFrame:
        """One row per image: labels, predictions, confidence, success and norms."""
        import pandas as pd

        rows = {
            "label": self.labels.tolist(),
            "clean_pred": self.clean_pred.tolist(),
            "clean_conf": self.clean_probs.max(1).values.tolist(),
            "adv_pred": self.adv_pred.tolist(),
            "adv_conf": self.adv_probs.max(1).values.tolist(),
            "success": self.success.tolist(),
            "attacked": (self.attacked if self.attacked is not None else torch.ones_like(self.success)).tolist(),
            "l0": self.l0.tolist(),
            "l2": self.l2.tolist(),
            "linf": self.linf.tolist(),
        }
        if self.target is not None:
            rows["target"] = self.target.tolist()
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
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


