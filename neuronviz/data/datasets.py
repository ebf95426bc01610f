"""Data that works offline: scikit-learn's handwritten digits as pixel tensors.

``load_digits`` ships 1,797 real 8×8 digits (UCI ML hand-written digits, 43 writers) with the
scikit-learn package, so the embedded models can be trained and tested with no download.

The split is fixed and documented: a stratified 80/20 split with ``random_state=0``
(``sklearn.model_selection.train_test_split``): 1,437 train and 360 test images, every class in
the same proportion in both. Pixels (0..16 in the source) are divided by 16, then upsampled from
8×8 to ``size``×``size`` (default 28) with bilinear interpolation (``align_corners=False``) and
clamped to [0, 1]. Ink is light on a dark background, as in MNIST.

The user's labelled data is found here too, before any pixel is decoded (:mod:`neuronviz.data.labelled`
prepares it for a model): :func:`image_folder` (torchvision's ``ImageFolder`` listing),
:func:`read_zip` (a zip of class folders, checked entry by entry before decompressing),
:func:`torchvision_dataset` (MNIST and CIFAR-10 in their standard files, ``download=False``). Every
cap (:func:`dataset_limits`, the upload and decompression caps of :mod:`neuronviz.infra.settings`) is
lower on a shared server, where local paths are refused.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from neuronviz.core.models.builtin import DIGITS_CLASSES, DIGITS_SIZE  # noqa: F401 (DIGITS_CLASSES: the data set's classes, read from here)
from neuronviz.infra.archives import Inflated, ZipMember, check_directory
from neuronviz.infra.errors import DataError, InputError, SharedServerError
from neuronviz.infra.limits import MAX_FILE_BYTES

if TYPE_CHECKING:
    import zipfile

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
SPLITS = ("train", "test", "all")


#: The split above, kept as data (uint8 pixels 0..16, labels, train/test indices; 40 KB) so that the
#: dashboard's start-up does not import scikit-learn (2 s). Written by :func:`write_digits_split`;
#: ``tests/test_startup.py`` checks it against scikit-learn.
DIGITS_SPLIT_FILE = Path(__file__).with_name("digits_split.npz")


def split_from_sklearn() -> dict[str, np.ndarray]:
    """The digits and the split's indices, computed by scikit-learn (imports it)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    labels = data.target.astype(np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        index, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels
    )
    return {"pixels": data.images, "labels": labels, "train": train_idx, "test": test_idx}


def write_digits_split(path: Path = DIGITS_SPLIT_FILE) -> None:
    """Regenerate :data:`DIGITS_SPLIT_FILE` from scikit-learn."""
    split = split_from_sklearn()
    np.savez_compressed(
        path,
        pixels=split["pixels"].astype(np.uint8),
        labels=split["labels"].astype(np.uint8),
        train=split["train"].astype(np.int16),
        test=split["test"].astype(np.int16),
    )


@lru_cache(maxsize=1)
def _digits_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(DIGITS_SPLIT_FILE) as stored:
        images = stored["pixels"].astype(np.float32) / 16.0
        labels = stored["labels"].astype(np.int64)
        train_idx, test_idx = stored["train"].astype(np.int64), stored["test"].astype(np.int64)
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


# -- the user's labelled data: image folders, zips of class folders, MNIST and CIFAR-10 ----------------
#
# These readers find labelled images and check every cap that can be checked before a pixel is
# decoded; they know nothing of a model. :mod:`neuronviz.data.labelled` prepares the images for a model
# (every one through :func:`neuronviz.data.images.load_image`, the validator the dashboard's uploads go
# through) and matches the class names to the model's.

#: File name endings taken as images in folders and zips: torchvision's ``IMG_EXTENSIONS`` plus
#: GIF (which :mod:`neuronviz.data.images` opens too). Other files are ignored (and counted).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")

#: Most images one labelled data set may hold (MNIST's training split has 60,000); on a shared server.
MAX_DATASET_IMAGES = 60_000
SHARED_MAX_DATASET_IMAGES = 5_000
#: Most entries (files and folders) a zip of class folders may list in its central directory.
MAX_ZIP_ENTRIES = 70_000
SHARED_MAX_ZIP_ENTRIES = 10_000
#: Largest MNIST idx file read (the training images are 47 MB).
MAX_IDX_FILE_BYTES = 100 * 2**20

#: What a zip may hold besides images and still be accepted (the operating systems' own files).
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})


@dataclass(frozen=True)
class LabelledFiles:
    """Labelled images found but not yet decoded.

    ``items``: one ``(id, class index, data)`` per image, where ``id`` is the image's path inside
    the folder or zip (``"cat/001.png"``), the class index points into ``classes`` and ``data`` is
    what :func:`neuronviz.data.images.load_image` reads (a path, or a zip member read on demand:
    :class:`neuronviz.infra.archives.ZipMember`).
    ``ignored``: files skipped because their names do not end in :data:`IMAGE_SUFFIXES`.
    """

    items: tuple[tuple[str, int, Any], ...]
    classes: tuple[str, ...]
    ignored: tuple[str, ...] = ()


def dataset_limits() -> tuple[int, int]:
    """``(most images in a data set, most zip entries)`` for the current mode (shared server or not)."""
    from neuronviz.infra import settings

    if settings.shared_server():
        return SHARED_MAX_DATASET_IMAGES, SHARED_MAX_ZIP_ENTRIES
    return MAX_DATASET_IMAGES, MAX_ZIP_ENTRIES


def is_image_name(name: str) -> bool:
    """True for a file name that ends in :data:`IMAGE_SUFFIXES` and is not hidden (``.x``)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def interleave(items: Sequence[tuple[str, int, Any]]) -> tuple[tuple[str, int, Any], ...]:
    """Class by class in turn (first image of each class, then the second...), so the first N images
    of a folder sorted by class cover every class. Within a class the given order is kept."""
    by_class: dict[int, list[tuple[str, int, Any]]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    queues = [by_class[c] for c in sorted(by_class)]
    out: list[tuple[str, int, Any]] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        out.extend(q[rank] for q in queues if rank < len(q))
    return tuple(out)


def refuse_on_shared_server(what: str, path: str | os.PathLike) -> None:
    """Local paths are not read on a shared server (as for models, see ``neuronviz.infra.settings``)."""
    from neuronviz.infra import settings

    if settings.shared_server() and not settings.is_upload_path(path):
        raise SharedServerError(
            f"this is a shared server ({settings.SHARED_SERVER_ENV}=1): {what} is not read from local paths such "
            f"as {Path(path).name}. Upload a zip of class folders, or upload images and give their classes.",
            ui_hint="Choose 'Zip of class folders' or 'Labelled uploads' as the evaluation images.",
        )


def image_folder(root: str | os.PathLike) -> LabelledFiles:
    """An image folder with one subfolder per class (torchvision's ``ImageFolder`` layout and
    listing: classes are the subfolders' names, sorted; images anywhere below them), in
    :func:`interleave` order. Only the listing happens here: no image is opened.

    Raises:
        DataError: no such folder, no class folder, no image, or more than the cap.
        SharedServerError: on a shared server.
    """
    from torchvision.datasets import ImageFolder

    path = Path(root).expanduser()
    refuse_on_shared_server("an image folder", path)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; give a folder with one subfolder of images per class")
    ignored: list[str] = []

    def keep(name: str) -> bool:
        if is_image_name(name):
            return True
        ignored.append(os.path.relpath(name, path))
        return False

    try:
        folder = ImageFolder(str(path), loader=lambda p: p, is_valid_file=keep, allow_empty=True)
    except FileNotFoundError as error:  # no class folder at all
        raise DataError(
            f"{path} holds no class folder: put the images of each class in a subfolder named after the class "
            f"(e.g. {path.name}/cat/001.png, {path.name}/dog/002.png). ({error})"
        ) from None
    if not folder.samples:
        raise DataError(
            f"{path} has class folders ({', '.join(folder.classes[:10])}) but no image in them "
            f"(images end in {', '.join(IMAGE_SUFFIXES)})"
        )
    _check_count(len(folder.samples), str(path))
    items = [(Path(os.path.relpath(file, path)).as_posix(), int(label), file) for file, label in folder.samples]
    return LabelledFiles(interleave(items), tuple(folder.classes), tuple(ignored))


def _check_count(count: int, label: str) -> None:
    most, _ = dataset_limits()
    if count > most:
        raise DataError(
            f"{label} holds {count:,} images; data sets of up to {most:,} images are read here. Use a subset "
            "(e.g. limit=N in the data spec, or fewer images per class)."
        )


# -- zips ------------------------------------------------------------------------------------------


def _member_path(name: str) -> tuple[str, ...]:
    """A zip member's path as parts, refusing absolute paths, drive letters and ``..``."""
    if "\x00" in name:
        raise DataError(f"the zip member {name!r} has a NUL character in its name: refused")
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise DataError(f"the zip member {name!r} has an absolute path: refused (zips of class folders hold relative paths)")
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"the zip member {name!r} points outside the archive ('..'): refused")
    return parts


def read_zip(source: str | os.PathLike | bytes | BinaryIO, label: str | None = None) -> LabelledFiles:
    """A zip of class folders (``cat/001.png``, ``dog/002.png``; optionally all inside one top
    folder, as when a folder is zipped), read in memory: nothing is extracted to disk.

    Checked before any member is decompressed: the archive's size (the upload cap); its end
    record, the central directory's size and a walk of its entry headers against the entry cap
    (:func:`dataset_limits`, :func:`neuronviz.infra.archives.check_directory`) before ``zipfile`` parses
    it; every member's name (no absolute path, no ``..``, no link, no encryption), each image's
    declared size (:data:`neuronviz.data.images.MAX_FILE_BYTES`) and the declared total (the
    decompression cap of :mod:`neuronviz.infra.settings`). Nothing is decompressed here: each item's
    data is a :class:`neuronviz.infra.archives.ZipMember`, read when :mod:`neuronviz.data.labelled` loads it,
    header first (:func:`neuronviz.data.images.read_header`), against a running total of inflated
    bytes. Reading a member never yields more than its declared size, and ``zipfile`` checks its
    CRC, so a member that lies about its size is refused rather than inflated.

    Raises:
        DataError: any of the above, a file that is not a zip, or no image in class folders.
        SharedServerError: a path on a shared server (uploads come as bytes).
    """
    import zipfile

    from neuronviz.infra import settings

    caps = settings.limits()
    data, label = _zip_bytes(source, label, caps)
    _, most_entries = dataset_limits()
    check_directory(data, most_entries, label, DataError)  # end record, directory size and entry walk (24.16)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
        raise DataError(f"{label} is not a readable zip file ({error})") from None
    # the archive stays open: its members are read lazily (ZipMember), one at a time
    infos = archive.infolist()
    if len(infos) > most_entries:
        raise DataError(f"{label} lists {len(infos):,} entries; zips of up to {most_entries:,} entries are read here")
    chosen, ignored = _image_members(infos, label, caps)
    if not chosen:
        raise DataError(
            f"{label} holds no image (images end in {', '.join(IMAGE_SUFFIXES)}); give a zip of class folders, "
            "e.g. cat/001.png, dog/002.png"
        )
    _check_count(len(chosen), label)
    paths = _class_paths([parts for parts, _ in chosen], label)
    classes = tuple(sorted({p[0] for p in paths}))
    index = {name: i for i, name in enumerate(classes)}
    items = []
    order = sorted(range(len(paths)), key=lambda i: (paths[i][0], paths[i]))
    inflated = Inflated(caps.max_decompressed_bytes, label, DataError)
    for i in order:
        parts, info = paths[i], chosen[i][1]
        # nothing is decompressed here: the reader checks each member's header first (24.17)
        items.append(("/".join(parts), index[parts[0]], ZipMember(archive, info, inflated, name="/".join(parts))))
    return LabelledFiles(interleave(items), classes, tuple(ignored))


# -- MNIST and CIFAR-10 in their standard files -------------------------------------------------------

#: The torchvision data sets read from a local root (``download=False``), by spec name.
TORCHVISION_SETS = {"mnist": "MNIST", "cifar10": "CIFAR10"}


@dataclass(frozen=True)
class ArrayDataset:
    """A data set read from standard files: ``images`` uint8 ``(N, H, W)`` or ``(N, H, W, 3)``,
    ``labels`` ``(N,)``, the data set's own ``classes``, and where it came from."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    root: str


def _zip_bytes(source: str | os.PathLike | bytes | BinaryIO, label: str | None, caps: Any) -> tuple[bytes, str]:
    """The zip's bytes (refused above the upload cap) and the name it is called by in messages."""
    from neuronviz.infra import settings

    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        refuse_on_shared_server("a zip file", path)
        label = label or path.name
        if not path.is_file():
            raise DataError(f"{path} is not a file")
        size = path.stat().st_size
        if size > caps.max_upload_bytes:
            raise DataError(f"{label} is {settings.format_bytes(size)}; zips up to {settings.format_bytes(caps.max_upload_bytes)} are read")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(caps.max_upload_bytes + 1)
        if hasattr(source, "seek"):
            source.seek(0)
    else:
        raise InputError(f"a zip is given as a path, bytes or a binary file, got {type(source).__name__}")
    label = label or getattr(source, "name", None) or "the zip"
    if len(data) > caps.max_upload_bytes:
        raise DataError(f"{label} is larger than {settings.format_bytes(caps.max_upload_bytes)}, the largest zip read here")
    return data, label


def _image_members(infos: list[zipfile.ZipInfo], label: str, caps: Any) -> tuple[list[tuple[tuple[str, ...], zipfile.ZipInfo]], list[str]]:
    """The image members (path parts, info), each checked (no link, no encryption, declared sizes
    under the caps) before anything is decompressed; and the non-image files, ignored."""
    from neuronviz.infra import settings

    chosen: list[tuple[tuple[str, ...], zipfile.ZipInfo]] = []
    ignored: list[str] = []
    total = 0
    for info in infos:
        parts = _member_path(info.filename)
        if info.is_dir() or not parts:
            continue
        if parts[0] == "__MACOSX" or parts[-1].lower() in _JUNK_NAMES or parts[-1].startswith("._"):
            continue
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"the zip member {info.filename!r} is a symbolic link: refused")
        if not is_image_name(parts[-1]):
            ignored.append("/".join(parts))
            continue
        if info.flag_bits & 0x1:
            raise DataError(f"the zip member {info.filename!r} is encrypted: give an unencrypted zip")
        if info.file_size > MAX_FILE_BYTES:
            raise DataError(
                f"the zip member {info.filename!r} declares {settings.format_bytes(info.file_size)}; images up to "
                f"{settings.format_bytes(MAX_FILE_BYTES)} are read"
            )
        total += info.file_size
        if total > caps.max_decompressed_bytes:
            raise DataError(
                f"{label} declares more than {settings.format_bytes(caps.max_decompressed_bytes)} of images once "
                "decompressed (a zip bomb, or too large a data set): refused before decompressing anything"
            )
        chosen.append((parts, info))
    return chosen, ignored


def _class_paths(paths: list[tuple[str, ...]], label: str) -> list[tuple[str, ...]]:
    """The member paths without a top folder shared by all (as when a folder is zipped); every image
    must then sit in a class folder."""
    while all(len(p) >= 3 for p in paths) and len({p[0] for p in paths}) == 1:
        paths = [p[1:] for p in paths]  # one top folder around the class folders
    loose = [ "/".join(p) for p in paths if len(p) < 2]
    if loose:
        raise DataError(
            f"{label}: {len(loose)} image(s) are not inside a class folder ({', '.join(loose[:5])}); put each "
            "image in a folder named after its class (cat/001.png)"
        )
    return paths


def torchvision_dataset(name: str, root: str | os.PathLike, split: str = "test") -> ArrayDataset:
    """MNIST or CIFAR-10 from their standard files under ``root``, by torchvision with
    ``download=False`` (never a download): MNIST's idx files in ``root/MNIST/raw/``
    (``t10k-images-idx3-ubyte`` ...), CIFAR-10's python batches in ``root/cifar-10-batches-py/``.

    CIFAR-10's batches are pickles: torchvision first checks every file's MD5 against the published
    data set, then unpickles them, so only the genuine files load; still, they are read only from a
    trusted local root (refused on a shared server, never offered for uploads).

    Raises:
        DataError: files missing, corrupt or larger than the caps; an unknown name or split.
        SharedServerError: on a shared server.
    """
    import torchvision.datasets as tvd

    if name not in TORCHVISION_SETS:
        raise InputError(f"unknown standard data set {name!r}; known: {sorted(TORCHVISION_SETS)}")
    if split not in ("train", "test"):
        raise InputError(f"{name}: split must be 'train' or 'test', got {split!r}")
    path = Path(root).expanduser()
    label = "MNIST" if name == "mnist" else "CIFAR-10"
    refuse_on_shared_server(f"{label} (standard files from a local root)", path)
    if not path.is_dir():
        raise DataError(f"{path} is not a folder; give the root folder that holds {_expected_layout(name)}")
    cls = getattr(tvd, TORCHVISION_SETS[name])
    if name == "mnist":
        raw = path / "MNIST" / "raw"
        for file in raw.glob("*-ubyte"):
            if file.stat().st_size > MAX_IDX_FILE_BYTES:
                raise DataError(f"{file} is {file.stat().st_size:,} bytes, larger than any MNIST file: refused")
    try:
        found = cls(str(path), train=split == "train", download=False)
    except (RuntimeError, OSError, AssertionError, ValueError, TypeError, KeyError, EOFError) as error:
        raise DataError(f"{label} could not be read from {path}: {error}. Expected {_expected_layout(name)}.") from None
    images = found.data.numpy() if isinstance(found.data, torch.Tensor) else np.asarray(found.data)
    labels = np.asarray(found.targets.numpy() if isinstance(found.targets, torch.Tensor) else found.targets, dtype=np.int64)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(f"{label} in {path} does not have the standard layout (uint8 images, one label each)")
    _check_count(len(images), f"{label} ({split})")
    classes = tuple(str(c) for c in found.classes)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DataError(f"{label} in {path} has labels outside its {len(classes)} classes")
    return ArrayDataset(name, split, images, labels, classes, str(path))


def _expected_layout(name: str) -> str:
    if name == "mnist":
        return "MNIST/raw/t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (and train-*) as torchvision stores them"
    return "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta) as torchvision stores them"
