"""The user's labelled data as an evaluation set: image folders, MNIST and CIFAR-10 standard files,
zips of class folders (validated), labelled uploads, class names matched to the model's."""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuronviz.core.models import wrap_model
from neuronviz.data.datasets import digits, interleave
from neuronviz.data.images import load_image
from neuronviz.data.labelled import EvaluationSet, match_classes, normalise_class_name
from neuronviz.infra.errors import ClassMismatchError, DataError, SharedServerError
from neuronviz.workflows import evaluate


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _digit_pngs(count: int) -> list[tuple[int, bytes]]:
    """The first ``count`` digits test images as 8-bit PNGs, with their labels."""
    x, y = digits("test")
    return [(int(y[i]), _png((x[i, 0].numpy() * 255).round().astype(np.uint8))) for i in range(count)]


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> tuple[Path, list[tuple[str, int]]]:
    root = tmp_path_factory.mktemp("digits-folder")
    written = []
    for i, (label, data) in enumerate(_digit_pngs(40)):
        folder = root / str(label)
        folder.mkdir(exist_ok=True)
        (folder / f"{i:03d}.png").write_bytes(data)
        written.append((f"{label}/{i:03d}.png", label))
    (root / "3" / "notes.txt").write_text("not an image: ignored")
    return root, written


@pytest.fixture(scope="module")
def cifar_model():
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    return wrap_model(net, [0.5] * 3, [0.25] * 3, (32, 32), names, name="tiny-cifar")


# -- image folders ------------------------------------------------------------------------------------


def test_image_folder_is_read_validated_and_labelled(digit_folder, digits_cnn):
    root, written = digit_folder
    found = EvaluationSet.from_folder(root, digits_cnn)
    assert found.source == "folder" and found.size == 40 and found.available == 40
    expected = interleave([(name, label, None) for name, label in sorted(written)])
    assert found.ids == tuple(name for name, _, _ in expected)
    assert found.labels.tolist() == [label for _, label, _ in expected]
    # every image is what the app's validator makes of that file
    first = found.ids[0]
    assert torch.equal(found.images[0:1], load_image(root / first, digits_cnn))
    assert "all 40 images of image folder" in found.description and "1 other file ignored" in found.description
    # interleaved: the first images are one of each class
    assert len(set(found.labels[:10].tolist())) == 10
    # the model classifies them as it classifies the digits themselves (the PNGs hold the same pixels)
    with torch.no_grad():
        accuracy = float((digits_cnn(found.images).argmax(1) == found.labels).float().mean())
    assert accuracy >= 0.9
    head = found.head(12)
    assert head.size == 12 and head.description.startswith("the first 12 of")
    limited = EvaluationSet.from_folder(root, digits_cnn, limit=15)
    assert limited.size == 15 and "the first 15 of the 40" in limited.description


def test_image_folder_refusals(tmp_path, digits_cnn):
    with pytest.raises(DataError, match="is not a folder"):
        EvaluationSet.from_folder(tmp_path / "missing", digits_cnn)
    with pytest.raises(DataError, match="no class folder"):
        EvaluationSet.from_folder(tmp_path, digits_cnn)
    (tmp_path / "7").mkdir()
    with pytest.raises(DataError, match="no image"):
        EvaluationSet.from_folder(tmp_path, digits_cnn)
    (tmp_path / "7" / "broken.png").write_bytes(b"this is not a PNG")
    with pytest.raises(DataError, match="7/broken.png"):
        EvaluationSet.from_folder(tmp_path, digits_cnn)


def test_local_paths_are_refused_on_a_shared_server(digit_folder, digits_cnn, monkeypatch):
    monkeypatch.setenv("NEURONVIZ_SHARED_SERVER", "1")
    with pytest.raises(SharedServerError, match="shared server"):
        EvaluationSet.from_folder(digit_folder[0], digits_cnn)
    with pytest.raises(SharedServerError):
        EvaluationSet.from_torchvision("cifar10", digit_folder[0], digits_cnn)


# -- class names ------------------------------------------------------------------------------------------


def test_class_names_are_matched_by_name(digits_cnn, cifar_model):
    assert normalise_class_name("  Golden_Retriever ") == "golden retriever"
    assert match_classes(["3", "0 - zero", "NINE", "seven"], digits_cnn) == (3, 0, 9, 7)
    assert match_classes(["Cat", "TRUCK", "air_plane".replace("_", "")], cifar_model) == (3, 9, 0)
    with pytest.raises(ClassMismatchError) as caught:
        match_classes(["cat", "zebra", "Dog", "unicorn"], cifar_model)
    assert caught.value.unmatched == ("zebra", "unicorn")
    message = str(caught.value)
    assert "2 of the data's 4 classes have no class of that name in tiny-cifar: 'zebra', 'unicorn'" in message
    assert "'airplane', 'automobile'" in message


def test_a_folder_whose_classes_disagree_is_refused(tmp_path, cifar_model):
    for name in ("cat", "spaceship"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ClassMismatchError, match="'spaceship'"):
        EvaluationSet.from_folder(tmp_path, cifar_model)


# -- MNIST and CIFAR-10 standard files ----------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    """An idx file (MNIST's format): magic 0x08 (ubyte) + dimension count, big-endian sizes, data."""
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def test_mnist_raw_files_are_read_with_download_false(tmp_path, digits_cnn):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x, y = digits("test")
    images = (x[:30, 0].numpy() * 255).round().astype(np.uint8)
    labels = y[:30].numpy().astype(np.uint8)
    for prefix in ("t10k", "train"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(images))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels))
    found = EvaluationSet.from_torchvision("mnist", tmp_path, digits_cnn, limit=25)
    assert found.source == "mnist" and found.size == 25
    assert found.labels.tolist() == labels[:25].tolist()  # MNIST's "0 - zero" names map to "0".."9"
    assert torch.equal(found.images[3:4], load_image(images[3], digits_cnn))
    assert found.description.startswith("the first 25 of the 30 MNIST test images")
    spec = evaluate.load_dataset(f"mnist:{tmp_path},limit=20", digits_cnn)
    assert spec.size == 20 and torch.equal(spec.labels, found.labels[:20])
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="MNIST could not be read"):
        EvaluationSet.from_torchvision("mnist", tmp_path, digits_cnn)


def test_a_cifar10_batch_is_read_with_download_false(tmp_path, cifar_model, monkeypatch):
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    data = rng.integers(0, 256, (12, 3 * 32 * 32), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, 12)]
    files = {f"data_batch_{i}": {"data": data[:2], "labels": labels[:2]} for i in range(1, 6)}
    files["test_batch"] = {"data": data, "labels": labels}
    files["batches.meta"] = {"label_names": names}
    digests = {}
    for name, content in files.items():
        (folder / name).write_bytes(pickle.dumps(content))
        digests[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()
    # torchvision checks the published MD5s before unpickling: point them at these test files
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", digests[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", digests["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": digests["batches.meta"]})
    found = EvaluationSet.from_torchvision("cifar10", tmp_path, cifar_model)
    assert found.size == 12 and found.labels.tolist() == labels
    hwc = data[5].reshape(3, 32, 32).transpose(1, 2, 0)
    assert torch.allclose(found.images[5], torch.from_numpy(hwc).permute(2, 0, 1).float() / 255)
    # a batch that is not the published file is refused before it is unpickled
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data[:1], "labels": labels[:1]}))
    with pytest.raises(DataError, match="CIFAR-10 could not be read"):
        EvaluationSet.from_torchvision("cifar10", tmp_path, cifar_model)


def test_the_prepared_set_is_bounded_before_decoding(tmp_path, cifar_model, monkeypatch):
    from neuronviz.data import labelled as evalset

    monkeypatch.setattr(evalset, "MAX_SET_BYTES", 3 * 32 * 32 * 4 * 5)
    (tmp_path / "cat").mkdir()
    for i in range(6):
        (tmp_path / "cat" / f"{i}.png").write_bytes(b"never decoded")
    with pytest.raises(DataError, match=r"Use at most 5 images \(limit=5\)"):
        EvaluationSet.from_folder(tmp_path, cifar_model)


# -- zips ------------------------------------------------------------------------------------------------------


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_zip_of_class_folders_is_an_evaluation_set(digits_cnn):
    members = {f"my-digits/{label}/{i}.png": data for i, (label, data) in enumerate(_digit_pngs(20))}
    members["my-digits/README.txt"] = b"ignored"
    members["__MACOSX/my-digits/._0.png"] = b"junk"
    found = EvaluationSet.from_zip(_zip(members), digits_cnn, name="digits.zip")
    assert found.source == "zip" and found.size == 20
    assert all(name.split("/")[0] == str(label) for name, label in zip(found.ids, found.labels.tolist()))
    assert "zip digits.zip" in found.description and "1 other file ignored" in found.description


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ({"../escape/1.png": b"x"}, "outside the archive"),
        ({"/etc/7/1.png": b"x"}, "absolute path"),
        ({"C:\\7\\1.png": b"x"}, "absolute path"),
        ({"7/fake.png": b"plain text, not an image"}, "7/fake.png"),
        ({"1.png": b"x"}, "not inside a class folder"),
        ({"7/notes.txt": b"x"}, "holds no image"),
    ],
)
def test_zip_refusals(members, match, digits_cnn):
    with pytest.raises(DataError, match=match):
        EvaluationSet.from_zip(_zip(members), digits_cnn)


def test_zip_bombs_are_refused_from_the_declared_sizes(digits_cnn, monkeypatch):
    from neuronviz.infra import settings

    monkeypatch.setattr(settings, "MAX_DECOMPRESSED_BYTES", 4 * 2**20)
    bomb = _zip({f"7/{i}.png": bytes(3 * 2**20) for i in range(2)})  # 6 MiB of zeros in a few KB
    assert len(bomb) < 50_000
    with pytest.raises(DataError, match="zip bomb"):
        EvaluationSet.from_zip(bomb, digits_cnn)
    # a member whose header lies about its size is cut at the declared size and refused
    honest = _zip({"7/a.png": _digit_pngs(1)[0][1]}, zipfile.ZIP_STORED)
    liar = honest.replace(struct.pack("<I", len(_digit_pngs(1)[0][1])), struct.pack("<I", 10))
    with pytest.raises(DataError):
        EvaluationSet.from_zip(liar, digits_cnn)


def test_zips_with_too_many_entries_or_images_are_refused(digits_cnn, monkeypatch):
    from neuronviz.data import datasets

    monkeypatch.setattr(datasets, "MAX_ZIP_ENTRIES", 10)
    with pytest.raises(DataError, match="lists 11 entries"):
        EvaluationSet.from_zip(_zip({f"7/{i}.png": b"x" for i in range(11)}), digits_cnn)
    monkeypatch.setattr(datasets, "MAX_ZIP_ENTRIES", 100)
    monkeypatch.setattr(datasets, "MAX_DATASET_IMAGES", 5)
    with pytest.raises(DataError, match="holds 6 images"):
        EvaluationSet.from_zip(_zip({f"7/{i}.png": b"x" for i in range(6)}), digits_cnn)


# -- labelled uploads -----------------------------------------------------------------------------------------


def test_labelled_uploads(digits_cnn):
    (a_label, a), (b_label, b) = _digit_pngs(2)
    upload = io.BytesIO(b)
    upload.name = "mine.png"
    found = EvaluationSet.from_uploads([(a, str(a_label)), (upload, b_label)], digits_cnn)
    assert found.labels.tolist() == [a_label, b_label] and found.ids == ("image 1", "mine.png")
    assert "2 uploaded images with the classes given, covering" in found.description
    with pytest.raises(ClassMismatchError, match="'eleven'"):
        EvaluationSet.from_uploads([(a, "eleven")], digits_cnn)
    with pytest.raises(DataError, match="image 1"):
        EvaluationSet.from_uploads([(b"not an image", "3")], digits_cnn)
    with pytest.raises(DataError, match="no image was given"):
        EvaluationSet.from_uploads([], digits_cnn)


def test_folder_spec_in_the_evaluate_command(digit_folder, digits_cnn):
    root, _ = digit_folder
    data = evaluate.load_dataset(f"folder:{root},limit=10", digits_cnn)
    assert data.size == 10 and data.spec == f"folder:{root},limit=10"
    assert data.files[0] == str(root / data.ids[0])
    with pytest.raises(Exception, match="has no option 'split'"):
        evaluate.load_dataset(f"folder:{root},split=test", digits_cnn)
