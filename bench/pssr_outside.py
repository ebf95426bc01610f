"""PSSR for a model trained outside this project: the trained regenerator against the inpainting fallback.

    OMP_NUM_THREADS=1 python -m bench.pssr_outside [--epochs-cnn 8] [--pssr-epochs 6] [--work DIR]

1. Builds and trains a small CNN that is not one of the embedded models (3 convolutions with batch
   norm, ReLUs as function calls, one max-pool module used twice) on the digits training split at
   28×28, and saves its state dict under ``--work`` (the factory :func:`build` reads it back).
2. Runs ``neuronviz train pssr bench.pssr_outside:build --data digits:split=all`` through the CLI
   (``NEURONVIZ_PSSR_DIR`` = ``--work``/pssr): a seeded 80/20 split, the regenerator trained on the
   80%, the held-out 20% measured: accuracy clean / FGSM / PGD-20 at ε 0.1 after the regenerator
   and after the fallback on the same images and masks, DSR of both, each with n and a 95% Wilson
   interval. Prints them, the wall time, and the target check (DSR +30 points at FGSM and PGD,
   clean accuracy within 3 points of the model's own).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ENV = "NEURONVIZ_BENCH_OUTSIDE_WEIGHTS"


class OutsideNet(nn.Module):
    """3 convolutions with batch norm, functional ReLUs, one pooling module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.conv3, self.bn3 = nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


MEAN, STD = (0.2,), (0.3,)
CLASSES = tuple(str(i) for i in range(10))


def train_cnn(epochs: int, seed: int = 1) -> nn.Module:
    from neuronviz.data.datasets import digits

    torch.manual_seed(seed)
    x, y = digits("train")
    net = OutsideNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = F.cross_entropy(net((x[idx] - MEAN[0]) / STD[0]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval()


def build():
    """The factory the CLI loads (``bench.pssr_outside:build``): the saved outside CNN as a PixelModel."""
    from neuronviz.core.models import wrap_model

    net = OutsideNet()
    net.load_state_dict(torch.load(os.environ[ENV], weights_only=True))
    return wrap_model(net.eval(), MEAN, STD, (28, 28), CLASSES, name="outside-cnn", architecture="outside-cnn")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs-cnn", type=int, default=8)
    parser.add_argument("--pssr-epochs", type=int, default=None)
    parser.add_argument("--data", default="digits:split=all")
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pssr-outside-"))
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "outside-cnn.pt"
    started = time.perf_counter()
    torch.save(train_cnn(args.epochs_cnn).state_dict(), weights)
    print(f"outside CNN trained in {time.perf_counter() - started:.0f} s -> {weights}", file=sys.stderr)
    os.environ[ENV] = str(weights)
    os.environ["NEURONVIZ_PSSR_DIR"] = str(work / "pssr")
    from neuronviz.cli import main as cli

    started = time.perf_counter()
    argv = ["train", "pssr", "bench.pssr_outside:build", "--data", args.data]
    if args.pssr_epochs:
        argv += ["--epochs", str(args.pssr_epochs)]
    code = cli(argv)
    wall = time.perf_counter() - started
    if code:
        return code
    card = json.loads(next((work / "pssr").glob("*.json")).read_text())
    held = card["held_out"]
    print(f"wall time of `train pssr` (incl. loading, pool, held-out check): {wall:.0f} s; "
          f"torch threads {torch.get_num_threads()}")
    ok = True
    for key in ("fgsm", "pgd20"):
        gain = 100 * (held[key]["dsr_regenerator"]["share"] - held[key]["dsr_fallback"]["share"])
        ok &= gain >= 30
        print(f"{key}: DSR regenerator − fallback = {gain:+.1f} points (target ≥ +30)")
    own = held["clean"]["accuracy_undefended"]["share"]
    after = held["clean"]["accuracy_regenerator"]["share"]
    ok &= after >= own - 0.03
    print(f"clean accuracy: model {100 * own:.1f}%, after PSSR {100 * after:.1f}% (target: within 3 points)")
    print(json.dumps({"held_out": held, "train_seconds": card["train_seconds"], "seconds": card["seconds"], "wall_seconds": round(wall, 1),
                      "target_met": bool(ok)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
