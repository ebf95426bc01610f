"""Train PSSR's regenerator for an embedded model: ``python -m neuronviz train pssr-<model>``.

A reconstruction (see :mod:`neuronviz.methods.defences.pssr`). Data: the digits training split and, for
every image, adversarial versions made against the classifier itself: FGSM at ε = 0.1 and
PGD-10 at ε ∈ {0.05, 0.1, 0.15}, plus the clean image (so clean inputs pass through). For each pair the
surgery mask is computed at the input (α = 2). The regenerator G is trained with

    L1(G, x) + λ_f ‖φ(G) − φ(x)‖² + λ_r · symKL(f(G(x_s ⊕ n₁)), f(G(x_s ⊕ n₂))) + λ_c · CE(f(G), y)

φ = the classifier's penultimate features (semantic alignment), the R-drop term between two
passes with different noise on the kept pixels (σ = 0.03), and a cross-entropy toward the
benign label (an addition of this reconstruction: the abstract speaks of semantic consistency;
this is its most direct form). λ_f = 1, λ_r = 1, λ_c = 0.5, Adam 3e-3 (one-cycle), 10 epochs,
batch 128, U-Net width 16, seed 0. The classifier is frozen.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from neuronviz.core.models import EMBEDDED, load_model
from neuronviz.core.probe import probe
from neuronviz.data.datasets import digits
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences.pssr import Regenerator, regenerator_path, salient_mask
from neuronviz.methods.influence import probe_layers

log = logging.getLogger(__name__)

POOL = (("none", 0.0), ("fgsm", 0.1), ("pgd", 0.05), ("pgd", 0.1), ("pgd", 0.15))
HYPER: dict[str, Any] = {"epochs": 10, "batch_size": 128, "lr": 3e-3, "lambda_feature": 1.0, "lambda_rdrop": 1.0, "lambda_ce": 0.5,
         "alpha": 2.0, "noise": 0.03, "width": 16, "seed": 0}


def _pool(model, x, y):
    inputs, targets, labels = [], [], []
    for attack, eps in POOL:
        params = {} if attack == "none" else {"eps": eps}
        if attack == "pgd":
            params.update(steps=10, alpha=eps / 4)
        adv = torch.cat([run_attack(model, x[i : i + 512], attack, params, labels=y[i : i + 512], seed=0).adversarial for i in range(0, len(x), 512)])
        inputs.append(adv)
        targets.append(x)
        labels.append(y)
    return torch.cat(inputs), torch.cat(targets), torch.cat(labels)


def _features(model, x, layer):
    with probe(model, [layer]) as rec:
        logits = rec.forward(x)
        return logits, rec.activation(layer).flatten(1)


def _sym_kl(logits_a, logits_b):
    log_a, log_b = logits_a.log_softmax(1), logits_b.log_softmax(1)
    return 0.5 * (F.kl_div(log_a, log_b, log_target=True, reduction="batchmean") + F.kl_div(log_b, log_a, log_target=True, reduction="batchmean"))


def train_regenerator(model_name: str, out_dir: Path | None = None, epochs: int | None = None) -> dict:
    """Train, evaluate and save ``pssr-<model_name>`` (weights + card); returns the card."""
    if model_name not in EMBEDDED:
        raise InputError(f"PSSR regenerators are trained for the embedded models {list(EMBEDDED)}, not {model_name!r}")
    hyper = dict(HYPER, epochs=epochs or HYPER["epochs"])
    torch.manual_seed(hyper["seed"])
    generator = torch.Generator().manual_seed(hyper["seed"])
    model = load_model(model_name, device="cpu")
    x, y = digits("train")
    started = time.perf_counter()
    inputs, targets, labels = _pool(model, x, y)
    masks = torch.cat([salient_mask(model, inputs[i : i + 512], hyper["alpha"])[1] for i in range(0, len(inputs), 512)])
    log.info("pssr-%s: %d training pairs with masks", model_name, len(inputs))
    feature_layer = probe_layers(model)[-2].name
    with torch.no_grad():
        _, target_features = _features(model, targets, feature_layer)
    net = Regenerator(channels=model.channels, width=hyper["width"])
    optimizer = torch.optim.Adam(net.parameters(), lr=hyper["lr"])
    steps = hyper["epochs"] * ((len(inputs) + hyper["batch_size"] - 1) // hyper["batch_size"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hyper["lr"], total_steps=steps)
    history = []
    for epoch in range(hyper["epochs"]):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for i in range(0, len(inputs), hyper["batch_size"]):
            idx = order[i : i + hyper["batch_size"]]
            mask, benign = masks[idx], targets[idx]
            surgery = inputs[idx] * (1 - mask)
            noise = torch.randn(2, *surgery.shape, generator=generator) * hyper["noise"]
            out1 = net(((surgery + noise[0] * (1 - mask)).clamp(0, 1)), mask)
            out2 = net(((surgery + noise[1] * (1 - mask)).clamp(0, 1)), mask)
            logits1, feats1 = _features(model, out1, feature_layer)
            logits2, _ = _features(model, out2, feature_layer)
            loss = (
                F.l1_loss(out1, benign)
                + hyper["lambda_feature"] * F.mse_loss(feats1, target_features[idx])
                + hyper["lambda_rdrop"] * _sym_kl(logits1, logits2)
                + hyper["lambda_ce"] * F.cross_entropy(logits1, labels[idx])
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(idx)
        history.append(round(total / len(inputs), 4))
        log.info("pssr-%s epoch %d/%d loss %.4f", model_name, epoch + 1, hyper["epochs"], history[-1])
    seconds = time.perf_counter() - started
    out_path = Path(out_dir) / f"pssr-{model_name}.safetensors" if out_dir else regenerator_path(model_name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out_path))
    card = {
        "name": f"pssr-{model_name}",
        "description": "PSSR semantic regenerator (reconstruction): conditional U-Net G(surgery image, salient mask)",
        "classifier": model_name,
        "classifier_content_hash": model.content_hash,
        "width": hyper["width"],
        "parameters": sum(p.numel() for p in net.parameters()),
        "data": {
            "images": "digits(split='train'), 1,437 images",
            "pool": [{"attack": a, "eps": e} for a, e in POOL],
            "pairs": len(inputs),
            "mask": f"S = sum_c |d p_c / d x|, salient = S >= {hyper['alpha']} * mean(S)",
        },
        "loss": "L1(G, x) + lambda_f * MSE(phi(G), phi(x)) + lambda_r * symKL(f(G(x_s+n1)), f(G(x_s+n2))) + lambda_c * CE(f(G), y)",
        "feature_layer": feature_layer,
        "training": {**hyper, "optimizer": "Adam + OneCycleLR", "loss_per_epoch": history},
        "seed": hyper["seed"],
        "command": f"python -m neuronviz train pssr-{model_name}" + (f" --epochs {epochs}" if epochs else ""),
        "train_seconds": round(seconds, 1),
        "weights_file": out_path.name,
        "weights_sha256": hashlib.sha256(out_path.read_bytes()).hexdigest(),
        "torch_version": torch.__version__,
        "created": _dt.date.today().isoformat(),
    }
    card["metrics"] = _restored_accuracy(model, net)
    out_path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _restored_accuracy(model, net: Regenerator) -> dict:
    """Accuracy after surgery + this regenerator on digits(split="test"): clean, FGSM, PGD-20 (ε=0.1)."""
    x, y = digits("test")
    metrics: dict[str, float] = {"test_images": len(x)}
    for label, attack, params in (("clean", "none", {}), ("fgsm_0.1", "fgsm", {"eps": 0.1}),
                                  ("pgd20_0.1", "pgd", {"eps": 0.1, "alpha": 0.01, "steps": 20})):
        adv = run_attack(model, x, attack, params, labels=y, seed=0).adversarial
        with model.lock:
            mask = salient_mask(model, adv, HYPER["alpha"])[1]
            with torch.no_grad():
                pred = model(net(adv * (1 - mask), mask)).argmax(1)
        metrics[label] = round(float((pred == y).float().mean()), 4)
    return metrics
