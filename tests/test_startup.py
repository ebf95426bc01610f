"""Start-up without the heavy imports (issue 25.4): the zoo list, the curated timm list and the
digits split come from data files, each checked here against the library that made it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from neuronviz.core.models import timm_curated, timm_source
from neuronviz.core.models import torchvision_zoo as zoo
from neuronviz.data import datasets

ROOT = Path(__file__).resolve().parents[1]


def test_zoo_metadata_is_torchvisions():
    for name in zoo.ZOO:
        assert zoo.zoo_spec(name) == zoo.spec_from_torchvision(name), name


def test_curated_timm_metadata_is_timms():
    for name in timm_source.CURATED:
        assert timm_curated.stored(name) == timm_curated.from_timm(name), name
    assert timm_curated.stored("vit_small_patch16_224") is None  # any other name: asked of timm


def test_digits_split_file_is_scikit_learns_split():
    made = datasets.split_from_sklearn()
    kept = datasets._digits_split()
    images = made["pixels"].astype(np.float32) / 16.0
    assert np.array_equal(kept["all"][0], images) and kept["all"][0].dtype == np.float32
    for part in ("train", "test"):
        assert np.array_equal(kept[part][0], images[made[part]])
        assert np.array_equal(kept[part][1], made["labels"][made[part]])
    assert (len(kept["train"][1]), len(kept["test"][1])) == (1437, 360)
    assert datasets.DIGITS_SPLIT_FILE.stat().st_size < 200_000


def test_model_list_and_digits_import_neither_torchvision_nor_sklearn():
    code = (
        "import sys\n"
        "from neuronviz.core.models.registry import list_sources\n"
        "names = [i.name for s in list_sources() for i in s.list_models()]\n"
        "from neuronviz.data.datasets import digits\n"
        "x, y = digits('test')\n"
        "assert 'resnet18' in names and 'timm:vit_tiny_patch16_224' in names and x.shape[0] == 360, names\n"
        "heavy = sorted(m for m in ('torchvision', 'sklearn', 'timm', 'torch._dynamo') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
