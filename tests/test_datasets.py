import numpy as np
import pytest
import torch

from neuronviz.data.datasets import DIGITS_CLASSES, digits, digits_by_class, upsample
from neuronviz.infra.errors import InputError


def test_split_sizes_shapes_and_range():
    x_train, y_train = digits("train")
    x_test, y_test = digits("test")
    assert x_train.shape == (1437, 1, 28, 28) and y_train.shape == (1437,)
    assert x_test.shape == (360, 1, 28, 28) and y_test.shape == (360,)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    for x in (x_train, x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert sorted(torch.unique(y_test).tolist()) == list(range(10)) == [int(c) for c in DIGITS_CLASSES]


def test_split_is_stratified_disjoint_and_complete():
    raw_train, y_train = digits("train", size=8)
    raw_test, y_test = digits("test", size=8)
    raw_all, y_all = digits("all", size=8)
    counts = torch.bincount(y_test, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class (174..183 per class)
    # train + test is exactly the whole set (as a multiset of images+labels)
    def rows(x, y):
        return sorted(tuple(np.round(r, 4)) for r in torch.cat([x.flatten(1), y[:, None].float()], 1).numpy())

    assert rows(torch.cat([raw_train, raw_test]), torch.cat([y_train, y_test])) == rows(raw_all, y_all)


def test_deterministic_and_fresh_tensors():
    a, ya = digits("test")
    b, yb = digits("test")
    assert torch.equal(a, b) and torch.equal(ya, yb)
    a.zero_()  # callers may modify what they get
    assert float(digits("test")[0].max()) == 1.0


def test_size_8_is_the_raw_data_divided_by_16():
    from sklearn.datasets import load_digits

    raw, _ = digits("all", size=8)
    assert torch.allclose(raw[:, 0], torch.from_numpy(load_digits().images / 16.0).float())


def test_upsample_preserves_mass_roughly():
    raw, _ = digits("test", size=8)
    big = upsample(raw, 32)
    assert big.shape == (360, 1, 32, 32)
    assert torch.allclose(big.mean(dim=(1, 2, 3)), raw.mean(dim=(1, 2, 3)), atol=0.03)


def test_by_class_indexes_match_labels():
    _, y = digits("test")
    groups = digits_by_class("test")
    assert sorted(groups) == list(range(10))
    for label, index in groups.items():
        assert (y[index] == label).all()
    assert sum(len(v) for v in groups.values()) == 360


@pytest.mark.parametrize("split,size", [("valid", 28), ("test", 4), ("test", 28.0)])
def test_bad_arguments(split, size):
    with pytest.raises(InputError):
        digits(split, size=size)
