"""Batch evaluation: attacks × defences on a set of images, as a table.

Definitions (METHODS.md §1, §4):

- *attack success*: share of images whose prediction the attack changed (untargeted, from the
  benign prediction);
- *DSR* (defence success rate): among the successful adversarial images, the share whose
  prediction after the defence is the benign prediction again;
- *accuracy (adversarial)*: accuracy against the labels after the defence on the adversarial
  images (all of them, successful or not);
- *accuracy (clean)*: accuracy after the defence on the clean images: a defence must not break
  them.

Defences that need the benign prediction (``nip-guided``) get it as their target; the oracle
(``nip-oracle``) gets the clean images as its reference: their rows describe analysis tools,
not deployable defences, and the table says which is which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from neuronviz.attacks import get_attack, run_attack
from neuronviz.defenses import get_defense
from neuronviz.errors import InputError
from neuronviz.models.pixel import PixelModel

Spec = str | tuple[str, Mapping[str, Any]]


def _spec(item: Spec) -> tuple[str, dict]:
    if isinstance(item, str):
        return item, {}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], dict(item[1] or {})
    raise InputError(f"expected a name or (name, params), got {item!r}")


def _defend(model, x, name, params, benign, reference):
    defense = get_defense(name)
    return defense.restore(
        model,
        x,
        params,
        target=benign if defense.needs_target else None,
        reference=reference if defense.needs_reference else None,
    ).prediction


def defence_table(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[Spec],
    defences: Sequence[Spec],
    seed: int = 0,
    batch_size: int = 256,
    progress: Callable[[float, str], None] | None = None,
):
    """Evaluate every defence against every attack; a pandas DataFrame, one row per (attack, defence).

    Columns: attack, defence, deployable, images, attack_success, dsr, accuracy_adversarial,
    accuracy_clean. Work is batched (``batch_size`` images per attack and defence call).
    """
    import pandas as pd

    x = model.check_pixels(images, "images")
    y = model.check_classes(labels, x.shape[0], "labels")
    attack_specs = [_spec(a) for a in attacks]
    defence_specs = [_spec(d) for d in defences]
    for name, _ in attack_specs:
        get_attack(name)
    for name, _ in defence_specs:
        get_defense(name)
    if not attack_specs or not defence_specs:
        raise InputError("give at least one attack and one defence")
    batches = [slice(i, i + batch_size) for i in range(0, x.shape[0], batch_size)]
    total = len(batches) * (len(attack_specs) * (1 + len(defence_specs)) + len(defence_specs) + 1)
    done = 0

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done / total, message)

    benign = torch.cat([model.predict(x[b])[0] for b in batches])
    tick("clean predictions")
    clean_after = {}
    for name, params in defence_specs:
        clean_after[name] = torch.cat([_defend(model, x[b], name, params, benign[b].to(model.device), x[b]) for b in batches])
        tick(f"{name} on clean images")
    rows = []
    for attack, attack_params in attack_specs:
        adversarial = []
        for b in batches:
            adversarial.append(run_attack(model, x[b], attack, attack_params, labels=benign[b], seed=seed).adversarial)
            tick(f"{attack}")
        adv = torch.cat(adversarial).to(model.device)
        adv_pred = torch.cat([model.predict(adv[b])[0] for b in batches])
        success = adv_pred != benign
        for name, params in defence_specs:
            after = torch.cat([_defend(model, adv[b], name, params, benign[b].to(model.device), x[b]) for b in batches])
            tick(f"{name} against {attack}")
            defense = get_defense(name)
            rows.append(
                {
                    "attack": attack,
                    "defence": name,
                    "deployable": not (defense.needs_target or defense.needs_reference),
                    "images": int(x.shape[0]),
                    "attack_success": float(success.float().mean()),
                    "dsr": float((after[success] == benign[success]).float().mean()) if bool(success.any()) else float("nan"),
                    "accuracy_adversarial": float((after == y).float().mean()),
                    "accuracy_clean": float((clean_after[name] == y).float().mean()),
                }
            )
    return pd.DataFrame(rows)
