"""Batch evaluation: attacks × defences on a set of images, as a table.

Definitions (METHODS.md §1, §4):

- *attack success*: share of images whose prediction the attack changed (untargeted, from the
  benign prediction), or that it moved to the target (``target=``); with a target, an image whose
  benign prediction already is the target is not attacked and is excluded from the attack success
  and the DSR (column ``excluded`` counts them);
- *DSR* (defence success rate): among the successful adversarial images, the share whose
  prediction after the defence is the benign prediction again;
- *accuracy (adversarial)*: accuracy against the labels after the defence on the adversarial
  images (all of them, successful or not);
- *accuracy (clean)*: accuracy after the defence on the clean images: a defence must not break
  them.

Every defence is called the same way (:meth:`neuronviz.methods.defences.Defence.restore_for` with the
benign prediction and the clean images); the ones that use either (``nip-guided`` restores toward
the benign prediction, the oracle ``nip-oracle`` uses the clean images) are analysis tools, not
deployable defences, and the table says which is which (``deployable``: the entry's ``oracle``
flag).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from neuronviz.core.models.pixel import PixelModel
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import get_attack, run_attack
from neuronviz.methods.defences import get_defence
from neuronviz.methods.defences.pssr import defended_model

Spec = str | tuple[str, Mapping[str, Any]]


def split_spec(item: Spec) -> tuple[str, dict]:
    """A name or ``(name, params)`` → ``(name, params)``; raises :class:`InputError` otherwise."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[0], dict(item[1] or {})
    raise InputError(f"expected a name or (name, params), got {item!r}")


def _prediction(model: PixelModel, x: torch.Tensor, name: str, params: Mapping[str, Any], benign: torch.Tensor,
                clean: torch.Tensor) -> torch.Tensor:
    return get_defence(name).restore_for(model, x, benign=benign, clean=clean, params=params).prediction


def defence_table(
    model: PixelModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    attacks: Sequence[Spec],
    defences: Sequence[Spec],
    seed: int = 0,
    batch_size: int = 256,
    progress: Callable[[float, str], None] | None = None,
    adaptive: bool = False,
    target: int | str | None = None,
):
    """Evaluate every defence against every attack; a pandas DataFrame, one row per (attack, defence).

    Columns: attack, defence, deployable, adaptive, images, attack_success, dsr,
    accuracy_adversarial, accuracy_clean. Work is batched (``batch_size`` images per attack and
    defence call). With ``adaptive=True``, every attack is also run *through* PSSR (BPDA on its
    mask, see :func:`neuronviz.methods.defences.pssr.defended_model`) and PSSR is evaluated on those
    images: does it survive an attacker who knows it? ``attack_success`` of an adaptive row is
    measured on the undefended model. ``target``: a class index or ``"least-likely"`` for
    targeted attacks (every attack listed must have a targeted mode); ``excluded`` counts the
    images left alone because their benign prediction already was the target.
    """
    import pandas as pd

    x = model.check_pixels(images, "images")
    y = model.check_classes(labels, x.shape[0], "labels")
    attack_specs, defence_specs = _checked_specs(attacks, defences)
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
        clean_after[name] = torch.cat([_prediction(model, x[b], name, params, benign[b].to(model.device), x[b]) for b in batches])
        tick(f"{name} on clean images")
    rows = []
    pssr_params = dict(next((p for n, p in defence_specs if n == "pssr"), {}))
    through = defended_model(model, pssr_params) if adaptive else None
    rounds = [(attack, params, False) for attack, params in attack_specs]
    if adaptive:
        rounds += [(attack, params, True) for attack, params in attack_specs]
        total += len(batches) * len(attack_specs) * 2
    for attack, attack_params, knows_defence in rounds:
        target_model = through if knows_defence and through is not None else model
        adv, attacked_t, goal = _attack_batches(
            target_model, x, batches, attack, attack_params, benign, target, seed,
            tick, f"{attack}" + (" through pssr" if knows_defence else ""),
        )
        adv = adv.to(model.device)
        attacked_t = attacked_t.to(benign.device)
        adv_pred = torch.cat([model.predict(adv[b])[0] for b in batches])
        if target is None:
            success = adv_pred != benign
        else:  # judged on the undefended model, as the untargeted rows; left-alone images excluded
            success = (adv_pred == goal.to(adv_pred.device)) & attacked_t
        for name, params in defence_specs if not knows_defence else [("pssr", pssr_params)]:
            after = torch.cat([_prediction(model, adv[b], name, params, benign[b].to(model.device), x[b]) for b in batches])
            tick(f"{name} against {attack}")
            rows.append(_table_row(attack, name, knows_defence, y, benign, attacked_t, success, after, clean_after.get(name)))
    return pd.DataFrame(rows)

def _checked_specs(attacks: Sequence[Spec], defences: Sequence[Spec]) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """The ``(name, params)`` of every attack and defence; unknown names and an empty list refused."""
    attack_specs = [split_spec(a) for a in attacks]
    defence_specs = [split_spec(d) for d in defences]
    for name, _ in attack_specs:
        get_attack(name)
    for name, _ in defence_specs:
        get_defence(name)
    if not attack_specs or not defence_specs:
        raise InputError("give at least one attack and one defence")
    return attack_specs, defence_specs


def _attack_batches(
    target_model: PixelModel,
    x: torch.Tensor,
    batches: Sequence[slice],
    attack: str,
    attack_params: dict,
    benign: torch.Tensor,
    target: int | str | None,
    seed: int,
    tick: Callable[[str], None],
    message: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``attack`` on ``target_model`` batch by batch (``tick(message)`` after each); the adversarial images,
    which images were attacked, and each image's goal (its target, else its benign class)."""
    adversarial, attacked, goal = [], [], []
    for b in batches:
        report = run_attack(target_model, x[b], attack, attack_params, labels=benign[b], target=target, seed=seed)
        assert report.attacked is not None  # AttackReport fills it in __post_init__
        adversarial.append(report.adversarial)
        attacked.append(report.attacked)
        goal.append(report.target if report.target is not None else benign[b].cpu())
        tick(message)
    return torch.cat(adversarial), torch.cat(attacked), torch.cat(goal)


def _table_row(
    attack: str,
    name: str,
    knows_defence: bool,
    y: torch.Tensor,
    benign: torch.Tensor,
    attacked_t: torch.Tensor,
    success: torch.Tensor,
    after: torch.Tensor,
    clean_after: torch.Tensor | None,
) -> dict[str, Any]:
    """One (attack, defence) row of :func:`defence_table`."""
    defense = get_defence(name)
    return {
        "attack": attack + (" (adaptive, BPDA through pssr)" if knows_defence else ""),
        "defence": name,
        "deployable": defense.deployable,
        "adaptive": knows_defence,
        "images": int(y.shape[0]),
        "excluded": int((~attacked_t).sum()),
        "attack_success": float(success[attacked_t].float().mean()) if bool(attacked_t.any()) else float("nan"),
        "dsr": float((after[success] == benign[success]).float().mean()) if bool(success.any()) else float("nan"),
        "accuracy_adversarial": float((after == y).float().mean()),
        "accuracy_clean": float((clean_after == y).float().mean()) if clean_after is not None else float("nan"),
    }

