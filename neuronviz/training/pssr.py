"""Train PSSR's regenerator: for an embedded model (``python -m neuronviz train pssr-<model>``, into
the package's assets) or for any model on the user's labelled images (``python -m neuronviz train
pssr MODEL --data SPEC``, :func:`train_for_data`, into :func:`neuronviz.methods.defences.pssr.user_cache_dir`
keyed by the model's and the data's content hashes, where PSSR finds it for that model).

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

Any model (:data:`QUICK`, a recipe sized for minutes on two CPU cores): the data set is split,
seeded, into a training part and a held-out part (20%); the pool is the clean image, FGSM at ε and
PGD-10 at ε/2 and ε (ε = 0.1 by default, pixel units), made against the classifier; 3 epochs,
the same loss. The held-out part reports accuracy after surgery + regeneration (clean, FGSM ε,
PGD-20 ε) beside the inpainting fallback's on the same images, in the card.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from neuronviz.core.models import EMBEDDED, load_model
from neuronviz.core.probe import probe
from neuronviz.data.datasets import digits
from neuronviz.infra import budget
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences.pssr import Regenerator, cached_path, regenerator_path, salient_mask
from neuronviz.methods.influence import probe_layers

log = logging.getLogger(__name__)

POOL = (("none", 0.0), ("fgsm", 0.1), ("pgd", 0.05), ("pgd", 0.1), ("pgd", 0.15))
HYPER: dict[str, Any] = {"epochs": 10, "batch_size": 128, "lr": 3e-3, "lambda_feature": 1.0, "lambda_rdrop": 1.0, "lambda_ce": 0.5,
         "alpha": 2.0, "noise": 0.03, "width": 16, "seed": 0}


def _pool(model, x, y, pool=POOL):
    inputs, targets, labels = [], [], []
    for attack, eps in pool:
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


def _fit(model, inputs, targets, labels, hyper: dict, progress=None, what: str = "pssr") -> tuple[Regenerator, list, str]:
    """Train a regenerator on (input, benign, label) triples; returns (net, loss per epoch, feature layer).

    ``progress(done, total, message)`` is called after every batch (``done`` in batches)."""

    torch.manual_seed(hyper["seed"])
    generator = torch.Generator().manual_seed(hyper["seed"])
    masks = []
    for i in range(0, len(inputs), 512):
        with model.lock:
            masks.append(salient_mask(model, inputs[i : i + 512].to(model.device), hyper["alpha"])[1].cpu())
    masks_t = torch.cat(masks)
    layers = probe_layers(model)
    feature_layer = layers[-2].name if len(layers) >= 2 else layers[-1].name
    with torch.no_grad():
        target_features = torch.cat([_features(model, targets[i : i + 512].to(model.device), feature_layer)[1].cpu()
                                     for i in range(0, len(targets), 512)])
    net = Regenerator(channels=model.channels, width=hyper["width"]).to(model.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=hyper["lr"])
    per_epoch = (len(inputs) + hyper["batch_size"] - 1) // hyper["batch_size"]
    steps = hyper["epochs"] * per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hyper["lr"], total_steps=steps)
    history = []
    was_training = model.training
    if was_training:
        model.eval()  # batch norm statistics must not move
    try:
        for epoch in range(hyper["epochs"]):
            order = torch.randperm(len(inputs), generator=generator)
            total = 0.0
            for i in range(0, len(inputs), hyper["batch_size"]):
                budget.check()
                idx = order[i : i + hyper["batch_size"]]
                mask, benign = masks_t[idx].to(model.device), targets[idx].to(model.device)
                surgery = inputs[idx].to(model.device) * (1 - mask)
                noise = (torch.randn(2, *surgery.shape, generator=generator) * hyper["noise"]).to(model.device)
                out1 = net(((surgery + noise[0] * (1 - mask)).clamp(0, 1)), mask)
                out2 = net(((surgery + noise[1] * (1 - mask)).clamp(0, 1)), mask)
                with model.lock:  # the classifier is shared: no other thread's hooks during these passes
                    logits1, feats1 = _features(model, out1, feature_layer)
                    logits2, _ = _features(model, out2, feature_layer)
                    loss = (
                        F.l1_loss(out1, benign)
                        + hyper["lambda_feature"] * F.mse_loss(feats1, target_features[idx].to(model.device))
                        + hyper["lambda_rdrop"] * _sym_kl(logits1, logits2)
                        + hyper["lambda_ce"] * F.cross_entropy(logits1, labels[idx].to(model.device))
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    model.zero_grad(set_to_none=True)  # the frozen classifier keeps no gradients
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
                if progress is not None:
                    progress(epoch * per_epoch + i // hyper["batch_size"] + 1, steps, f"epoch {epoch + 1}/{hyper['epochs']}")
            history.append(round(total / len(inputs), 4))
            log.info("%s epoch %d/%d loss %.4f", what, epoch + 1, hyper["epochs"], history[-1])
    finally:
        model.train(was_training)
    net.eval().requires_grad_(False)
    return net, history, feature_layer


def train_regenerator(model_name: str, out_dir: Path | None = None, epochs: int | None = None) -> dict:
    """Train, evaluate and save ``pssr-<model_name>`` (weights + card) for an embedded model; returns the card."""
    if model_name not in EMBEDDED:
        raise InputError(
            f"pssr-<model> trains the embedded models' regenerators {list(EMBEDDED)}, not {model_name!r}; "
            "for any other model: neuronviz train pssr MODEL --data SPEC"
        )
    hyper = dict(HYPER, epochs=epochs or HYPER["epochs"])
    model = load_model(model_name, device="cpu")
    x, y = digits("train")
    started = time.perf_counter()
    inputs, targets, labels = _pool(model, x, y)
    log.info("pssr-%s: %d training pairs", model_name, len(inputs))
    net, history, feature_layer = _fit(model, inputs, targets, labels, hyper, what=f"pssr-{model_name}")
    seconds = time.perf_counter() - started
    out_path = Path(out_dir) / f"pssr-{model_name}.safetensors" if out_dir else regenerator_path(model_name)
    card = _card(model, net, hyper, history, feature_layer, seconds, out_path, POOL, len(inputs))
    card.update(
        name=f"pssr-{model_name}",
        classifier=model_name,
        command=f"python -m neuronviz train pssr-{model_name}" + (f" --epochs {epochs}" if epochs else ""),
    )
    card["data"].update(images="digits(split='train'), 1,437 images")
    card["metrics"] = _restored_accuracy(model, net)
    _write(out_path, net, card)
    return card


def _card(model, net, hyper, history, feature_layer, seconds, out_path: Path, pool, pairs: int) -> dict:
    return {
        "description": "PSSR semantic regenerator (reconstruction): conditional U-Net G(surgery image, salient mask)",
        "classifier_content_hash": model.content_hash,
        "width": hyper["width"],
        "parameters": sum(p.numel() for p in net.parameters()),
        "data": {
            "pool": [{"attack": a, "eps": e} for a, e in pool],
            "pairs": pairs,
            "mask": f"S = sum_c |d p_c / d x|, salient = S >= {hyper['alpha']} * mean(S)",
        },
        "loss": "L1(G, x) + lambda_f * MSE(phi(G), phi(x)) + lambda_r * symKL(f(G(x_s+n1)), f(G(x_s+n2))) + lambda_c * CE(f(G), y)",
        "feature_layer": feature_layer,
        "training": {**hyper, "optimizer": "Adam + OneCycleLR", "loss_per_epoch": history},
        "seed": hyper["seed"],
        "train_seconds": round(seconds, 1),
        "weights_file": out_path.name,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    }


def _write(out_path: Path, net: Regenerator, card: dict) -> None:
    """Weights, then the card (with the weights' SHA-256), each through a temporary file and a rename:
    a reader sees no card until both are whole."""
    from safetensors.torch import save

    out_path.parent.mkdir(parents=True, exist_ok=True)
    data = save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    card["weights_sha256"] = hashlib.sha256(data).hexdigest()
    card["weights_file"] = out_path.name
    for path, content in ((out_path, data), (out_path.with_suffix(".json"), (json.dumps(card, indent=2) + "\n").encode())):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(content)
        os.replace(tmp, path)


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


# -- any model, the user's data -----------------------------------------------------------------------

#: The recipe for any model: sized for minutes on two CPU cores with a few thousand 28×28 images.
QUICK: dict[str, Any] = dict(HYPER, epochs=3)
#: Share of the data kept out of training; its restored accuracy goes in the card.
HELD_OUT = 0.2
#: Most training images used (the first of a seeded shuffle); the pool is 4× as many pairs.
MAX_TRAIN_IMAGES = 4000
#: Largest training pool (float32 pixels of inputs and targets), checked before any attack runs.
MAX_POOL_BYTES = 1 << 30


def quick_pool(eps: float) -> tuple[tuple[str, float], ...]:
    """The attacks the pool is made of, at budget ``eps``: clean, FGSM ε, PGD-10 ε/2 and ε."""
    return (("none", 0.0), ("fgsm", eps), ("pgd", eps / 2), ("pgd", eps))


def split_indices(n: int, held_out: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into (training, held-out) indices, held-out ≥ 1."""
    if n < 10:
        raise InputError(f"training a regenerator needs at least 10 labelled images, got {n}")
    if not 0.0 < held_out < 1.0:
        raise InputError(f"the held-out share must be in (0, 1), got {held_out!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = max(1, round(n * held_out))
    return order[k:], order[:k]


@dataclass(frozen=True)
class Plan:
    """What a training run will do, known before it starts: the sizes, the cache file, an estimate."""

    train_images: int
    held_out_images: int
    pairs: int
    epochs: int
    estimate_s: float
    path: Path

    def describe(self) -> str:
        return (
            f"{self.train_images} training images ({self.pairs} pairs with the attacked versions), "
            f"{self.held_out_images} held out, {self.epochs} epochs; estimated {_duration(self.estimate_s)} here"
        )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


#: Measured step times by (model content, device, input size, batch, width): the estimate is made on
#: every rerun of the Defences page, the measurement once.
_STEP_TIMES: dict[tuple, float] = {}


def _step_seconds(model, channels: int, size: tuple[int, int], batch: int, width: int) -> float:
    """Seconds of one training step at this batch size, measured once per model and size."""
    key = (model.content_hash, str(model.device), channels, tuple(size), batch, width)
    if key not in _STEP_TIMES:
        if len(_STEP_TIMES) > 64:
            _STEP_TIMES.clear()
        _STEP_TIMES[key] = _measure_step(model, channels, size, batch, width)
    return _STEP_TIMES[key]


def _measure_step(model, channels: int, size: tuple[int, int], batch: int, width: int) -> float:
    """Seconds of one training step at this batch size, measured (two steps, the second timed)."""
    net = Regenerator(channels=channels, width=width).to(model.device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(batch, channels, *size, generator=torch.Generator().manual_seed(0)).to(model.device)
    mask = (x[:, :1] > 0.9).float()
    layers = probe_layers(model)
    layer = layers[-2].name if len(layers) >= 2 else layers[-1].name
    elapsed = 0.0
    for _ in range(2):
        started = time.perf_counter()
        with model.lock:
            out1, out2 = net(x, mask), net(x, mask)
            logits1, feats = _features(model, out1, layer)
            logits2, _ = _features(model, out2, layer)
            loss = F.l1_loss(out1, x) + feats.pow(2).mean() + _sym_kl(logits1, logits2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            model.zero_grad(set_to_none=True)
        optimizer.step()
        elapsed = time.perf_counter() - started
    return elapsed


def plan(model, data, *, epochs: int | None = None, held_out: float = HELD_OUT, max_images: int = MAX_TRAIN_IMAGES,
         seed: int = 0) -> Plan:
    """Check sizes and estimate the time of :func:`train_for_data` before any work (raises InputError)."""
    hyper = dict(QUICK, epochs=QUICK["epochs"] if epochs is None else epochs, seed=seed)
    if isinstance(hyper["epochs"], bool) or not isinstance(hyper["epochs"], int) or not 1 <= hyper["epochs"] <= 100:
        raise InputError(f"epochs must be an integer in [1, 100], got {hyper['epochs']!r}")
    train_idx, held_idx = split_indices(data.size, held_out, seed)
    n_train = min(len(train_idx), max_images)
    pairs = n_train * 4
    per_image = model.channels * model.input_size[0] * model.input_size[1] * 4
    if 2 * pairs * per_image > MAX_POOL_BYTES:
        raise InputError(
            f"{n_train} training images at {model.channels}×{model.input_size[0]}×{model.input_size[1]} need "
            f"{2 * pairs * per_image / 2**30:.1f} GiB for the pool (cap {MAX_POOL_BYTES / 2**30:.0f} GiB): use fewer images"
        )
    batch = hyper["batch_size"]
    probe_batch = 8  # timed on 8 images and scaled: the cost of a step grows with the batch
    step = _step_seconds(model, model.channels, model.input_size, probe_batch, hyper["width"]) * batch / probe_batch
    steps = hyper["epochs"] * -(-pairs // batch)
    # the pool (FGSM + 10 + 10 PGD steps per image) and the held-out check (FGSM + PGD-20, twice restored)
    # cost about as much as 0.4 training steps per training batch of images, measured on digits
    attacks = (n_train + len(held_idx)) / batch * step * 0.4
    return Plan(n_train, len(held_idx), pairs, hyper["epochs"], steps * step + attacks,
                cached_path(model.content_hash, data.digest))


def train_for_data(
    model,
    data,
    *,
    epochs: int | None = None,
    eps: float = 0.1,
    held_out: float = HELD_OUT,
    max_images: int = MAX_TRAIN_IMAGES,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    command: str = "",
) -> dict:
    """Train a regenerator for ``model`` on ``data`` (a :class:`neuronviz.workflows.evaluate.Dataset`), measure
    it on the held-out part, and save it under :func:`~neuronviz.methods.defences.pssr.cached_path` (the
    model's and the data's content hashes), where PSSR finds it for this model. Returns the card.

    ``progress(fraction, message)`` is called as the work goes (0 → 1). Runs under the caller's
    :mod:`neuronviz.infra.budget` (a cancel flag or a deadline stops it at the next batch; nothing is
    written then). Raises :class:`InputError` for sizes out of bounds, before any work.
    """
    if not 0.0 < eps <= 1.0:
        raise InputError(f"eps must be in (0, 1] (pixel units), got {eps!r}")
    the_plan = plan(model, data, epochs=epochs, held_out=held_out, max_images=max_images, seed=seed)
    hyper = dict(QUICK, epochs=the_plan.epochs, seed=seed)
    budget.check()
    report = progress or (lambda fraction, message: None)
    started, cpu_started = time.perf_counter(), time.process_time()
    x = model.check_pixels(data.images, "images").cpu()
    y = model.check_classes(data.labels, x.shape[0], "labels").cpu()
    train_idx, held_idx = split_indices(data.size, held_out, seed)
    train_idx = train_idx[: the_plan.train_images]
    pool = quick_pool(eps)
    report(0.0, "making the adversarial pairs")
    inputs, targets, labels = _pool(model, x[train_idx], y[train_idx], pool)
    phases = {"pool": time.perf_counter() - started}
    report(0.15, "training")
    net, history, feature_layer = _fit(
        model, inputs, targets, labels, hyper,
        progress=lambda done, total, message: report(0.15 + 0.75 * done / total, message),
        what=f"pssr for {model.name}",
    )
    phases["training"] = time.perf_counter() - started - phases["pool"]
    report(0.9, "measuring on the held-out images")
    held = _held_out(model, net, x[held_idx], y[held_idx], eps, hyper["alpha"])
    seconds = time.perf_counter() - started
    phases["held_out"] = seconds - phases["pool"] - phases["training"]
    out_path = the_plan.path
    card = _card(model, net, hyper, history, feature_layer, seconds, out_path, pool, len(inputs))
    card.update(
        name=f"pssr-{model.content_hash[:12]}",
        classifier=model.name,
        command=command or f"neuronviz train pssr {model.name} --data {data.spec}",
        held_out=held,
        seconds={**{k: round(v, 1) for k, v in phases.items()}, "estimate": round(the_plan.estimate_s, 1),
                 "cpu": round(time.process_time() - cpu_started, 1), "torch_threads": torch.get_num_threads()},
    )
    card["data"].update(
        spec=data.spec, description=data.description, sha256=data.digest, images=data.size,
        train_images=len(train_idx), held_out_images=len(held_idx), split_seed=seed, held_out_share=held_out,
    )
    _write(out_path, net, card)
    report(1.0, "done")
    return card


def _held_out(model, net: Regenerator, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float) -> dict:
    """Accuracy on the held-out images, clean and under FGSM / PGD-20 at ``eps``: undefended, after
    PSSR with this regenerator, and after PSSR's inpainting fallback (the same mask); with the DSR
    of both (among the images the attack fooled, the share whose clean prediction comes back),
    each a Wilson rate (n, 95% interval)."""
    from neuronviz.methods.defences.pssr import inpaint
    from neuronviz.methods.stats import rate

    out: dict[str, Any] = {"images": int(len(y)), "eps": eps}
    for key, attack, params in (("clean", "none", {}), ("fgsm", "fgsm", {"eps": eps}),
                                ("pgd20", "pgd", {"eps": eps, "alpha": eps / 10, "steps": 20})):
        preds: dict[str, list[torch.Tensor]] = {"clean_pred": [], "attacked": [], "regenerator": [], "fallback": []}
        for i in range(0, len(x), 256):
            xb, yb = x[i : i + 256], y[i : i + 256]
            adv = run_attack(model, xb, attack, params, labels=yb, seed=0).adversarial.to(model.device)
            with model.lock, torch.no_grad():
                preds["clean_pred"].append(model(xb.to(model.device)).argmax(1).cpu())
                preds["attacked"].append(model(adv).argmax(1).cpu())
            with model.lock:
                mask = salient_mask(model, adv, alpha)[1]
                with torch.no_grad():
                    surgery = adv * (1 - mask)
                    preds["regenerator"].append(model(net.to(model.device)(surgery, mask)).argmax(1).cpu())
                    preds["fallback"].append(model(inpaint(surgery, mask)).argmax(1).cpu())
        p = {k: torch.cat(v) for k, v in preds.items()}
        fooled = p["attacked"] != p["clean_pred"]
        row: dict[str, Any] = {
            "accuracy_undefended": rate(int((p["attacked"] == y).sum()), len(y)).to_dict(),
            "accuracy_regenerator": rate(int((p["regenerator"] == y).sum()), len(y)).to_dict(),
            "accuracy_fallback": rate(int((p["fallback"] == y).sum()), len(y)).to_dict(),
        }
        if key != "clean":
            n_fooled = int(fooled.sum())
            row["dsr_regenerator"] = rate(int((p["regenerator"] == p["clean_pred"])[fooled].sum()), n_fooled).to_dict()
            row["dsr_fallback"] = rate(int((p["fallback"] == p["clean_pred"])[fooled].sum()), n_fooled).to_dict()
        out[key] = row
    return out


def format_held_out(held: dict) -> list[str]:
    """The held-out numbers as lines: accuracy after the regenerator and after the fallback, and DSR."""
    def pct(entry: dict) -> str:
        return f"{100 * entry['share']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]" if entry.get("share") is not None else "not defined"

    lines = [f"held-out images: {held['images']} (ε = {held['eps']:g}); accuracy [95% Wilson interval]:"]
    for key, title in (("clean", "clean"), ("fgsm", "FGSM"), ("pgd20", "PGD-20")):
        row = held[key]
        line = (f"  {title:7s} undefended {pct(row['accuracy_undefended'])} · PSSR (regenerator) {pct(row['accuracy_regenerator'])}"
                f" · PSSR (inpainting fallback) {pct(row['accuracy_fallback'])}")
        if "dsr_regenerator" in row:
            n = row["dsr_regenerator"].get("n", 0)
            line += f" · DSR over {n} fooled: regenerator {pct(row['dsr_regenerator'])}, fallback {pct(row['dsr_fallback'])}"
        lines.append(line)
    return lines


def train_command(model_spec: str | None, data_spec: str | None, *, limit: int | None = None, eps: float = 0.1,
                  epochs: int | None = None, seed: int | None = None, device: str | None = None) -> int:
    """``neuronviz train pssr MODEL --data SPEC``: train, print the plan, the held-out numbers and the file."""
    import sys

    from neuronviz.core.models import load_model
    from neuronviz.workflows.evaluate import load_dataset

    if not model_spec or not data_spec:
        raise InputError("train pssr needs a model and its labelled images: neuronviz train pssr MODEL --data SPEC")
    model = load_model(model_spec, device=device)
    data = load_dataset(data_spec, model, limit=limit)
    the_plan = plan(model, data, epochs=epochs, seed=seed or 0)
    print(f"training PSSR's regenerator for {model.name} on {data.description}: {the_plan.describe()}", file=sys.stderr)


    with budget.limit(float("inf"), what="training the regenerator"):
        card = train_for_data(model, data, epochs=epochs, eps=eps, seed=seed or 0,
                              command=f"neuronviz train pssr {model_spec} --data {data_spec}"
                              + (f" --limit {limit}" if limit else "") + (f" --epochs {epochs}" if epochs else ""))
    print("\n".join(format_held_out(card["held_out"])))
    print(f"trained in {card['train_seconds']:.0f} s; regenerator {card['weights_sha256'][:12]} written to "
          f"{the_plan.path} (PSSR uses it for this model from now on)")
    return 0
