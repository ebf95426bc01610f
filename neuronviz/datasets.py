"""Data that works offline: scikit-learn's handwritten digits as pixel tensors.

``load_digits`` ships 1,797 real 8×8 digits (UCI ML hand-written digits, 43 writers) with the
scikit-learn package, so the embedded models can be trained and tested with no download.

The split is fixed and documented: a stratified 80/20 split with ``random_state=0``
(``sklearn.model_selection.train_test_split``): 1,437 train and 360 test images, every class in
the same proportion in both. Pixels (0..16 in the source) are divided by 16, then upsampled from
8×8 to ``size``×``size`` (default 28) with bilinear interpolation (``align_corners=False``) and
clamped to [0, 1]. Ink is light on a dark background, as in MNIST.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from neuronviz.errors import InputError

DIGITS_SIZE = 28
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
DIGITS_CLASSES = tuple(str(i) for i in range(10))
SPLITS = ("train", "test", "all")


@lru_cache(maxsize=1)
def _digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    labels = data.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    return {
        "train": (images[train_idx], labels[train_idx]),
        "test": (images[test_idx], labels[test_idx]),
        "all": (images, labels),
    }


def upsample(images_8x8: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 8, 8) or (N, 1, 8, 8) in [0, 1] → (N, 1, size, size) in [0, 1], bilinear."""
    x = images_8x8 if images_8x8.dim() == 4 else images_8x8.unsqueeze(1)
    if size == x.shape[-1]:
        return x.clone()
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


def digits(split: str = "test", size: int = DIGITS_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as ``(x, y)``: ``x`` float32 ``(N, 1, size, size)`` in [0, 1], ``y`` int64 ``(N,)``.

    ``split`` is ``"train"`` (1,437 images), ``"test"`` (360) or ``"all"`` (1,797), see the module
    docstring for the exact split. Returns fresh tensors each call (callers may modify them).
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(size, int) or not 8 <= size <= 512:
        raise InputError(f"size must be an integer in [8, 512], got {size!r}")
    images, labels = _digits_split()[split]
    x = upsample(torch.from_numpy(images.copy()), size)
    return x, torch.from_numpy(labels.copy())


def digits_by_class(split: str = "test", size: int = DIGITS_SIZE) -> dict[int, torch.Tensor]:
    """Indices into ``digits(split)`` grouped by label: ``{label: LongTensor of indices}``."""
    _, y = digits(split, size=8)
    return {int(c): torch.nonzero(y == c).flatten() for c in torch.unique(y)}
