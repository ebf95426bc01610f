"""Train the embedded digits vision transformer: ``python -m neuronviz train digits-vit``.

The network is timm's ``VisionTransformer`` with :data:`neuronviz.core.models.builtin.DIGITS_VIT_CONFIG`
(4 blocks, width 64, 4 heads, 4×4 patches on 28×28 digits). The data, split, seed, augmentation,
card fields and card attacks are those of the digits CNNs (:mod:`neuronviz.training.digits`:
the same ``build_model`` normalisation from the training split, the same random affine
augmentation, the same ``write_model_and_card``), so the cards compare.

What differs is the optimisation a transformer trained from scratch on 1,437 images needs: a
longer schedule (120 epochs), AdamW with weight decay 0.05 applied to the weight matrices only
(timm's ``param_groups_weight_decay``: no decay on biases, norms, the class token and the
position embedding, as in DeiT), a one-cycle schedule with 10% linear warm-up and cosine
annealing, gradient-norm clipping at 1, label smoothing 0.1 and stochastic depth 0.1 (in the
architecture's config).
The loop is written here (not shared with the CNNs' ``train``) because of those differences.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from neuronviz.core.models.builtin import DIGITS_VIT_CONFIG
from neuronviz.data.datasets import digits
from neuronviz.training.digits import augment, build_model, start_run, write_model_and_card

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViTRecipe:
    """The fixed recipe of ``digits-vit`` (``--seed`` and ``--epochs`` override its fields)."""

    name: str = "digits-vit"
    architecture: str = "digits-vit"
    description: str = "Small vision transformer (timm ViT, 4 blocks, 4×4 patches) on 28×28 digits"
    epochs: int = 120
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 0


VIT_RECIPE = ViTRecipe()


def train_vit(out_dir: Path | None = None, seed: int | None = None, epochs: int | None = None) -> dict:
    """Train ``digits-vit`` by :data:`VIT_RECIPE`, write weights and card to ``out_dir``
    (default ``assets/models``), return the card."""
    from timm.optim import param_groups_weight_decay

    recipe, out_dir, generator = start_run(VIT_RECIPE, seed, epochs, out_dir)
    x_train, y_train = digits("train")
    model = build_model(recipe.name, recipe.architecture, recipe.description, x_train)
    model.requires_grad_(True)
    no_decay = set(model.net.no_weight_decay())  # type: ignore[operator]  # timm: pos_embed, cls_token, ...
    groups = param_groups_weight_decay(model.net, weight_decay=recipe.weight_decay, no_weight_decay_list=no_decay)
    optimizer = torch.optim.AdamW(groups, lr=recipe.lr)
    steps_per_epoch = math.ceil(len(x_train) / recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=recipe.lr,
        total_steps=recipe.epochs * steps_per_epoch,
        pct_start=recipe.warmup_fraction,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e3,
    )
    started = time.perf_counter()
    history = []
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total_loss = 0.0
        for i in range(0, len(x_train), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            xb, yb = augment(x_train[idx], generator), y_train[idx]
            loss = F.cross_entropy(model(xb), yb, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(idx)
        history.append(round(total_loss / len(x_train), 4))
        log.info("%s epoch %d/%d loss %.4f", recipe.name, epoch + 1, recipe.epochs, history[-1])
    train_seconds = time.perf_counter() - started
    model.eval()
    model.requires_grad_(False)

    command = f"python -m neuronviz train {recipe.name}" + (f" --seed {recipe.seed}" if seed is not None else "")
    training = {
        **asdict(recipe),
        "adversarial": False,  # standard training (the cards' "Training" fact)
        "optimizer": "AdamW (no decay on biases, norms, cls token, position embedding) + OneCycleLR (cosine)",
        "timm_config": dict(DIGITS_VIT_CONFIG),
        "threads": torch.get_num_threads(),
        "loss_per_epoch": history,
    }
    return write_model_and_card(
        model, out_dir, recipe.description, training, recipe.seed, command, train_seconds, len(x_train)
    )
