"""The "evaluation images" choice of the Batch, First-layer filters and Sensitivity pages.

One function, :func:`evaluation_images`, draws where the labelled images come from and how many
are used, and returns them (:class:`EvaluationChoice`). The sources:

- the built-in set (:func:`neuronviz.data.labelled.evaluation_set`: the digits test split for a digits
  model, the sample images with a known class otherwise);
- an image folder, one subfolder per class, MNIST or CIFAR-10 in their standard files under a
  local root (typed paths; not offered on a shared server, where local paths are refused);
- a zip of class folders, uploaded here (validated by :func:`neuronviz.data.datasets.read_zip`);
- labelled uploads: images uploaded here, each given its true class.

The source, the path and the uploads are shared by the three pages (``evaluation.*`` keys in the
session): the user gives their data once. Uploaded files are kept in the process's bounded upload
store (:class:`app.state.Upload`), so a page visited later still has them. The count is each
page's own (its ``count_key``). Sets are read through :func:`app.runs.memo`, keyed by the
model and the data's content (a folder by its listing: names, sizes, modification times), and at
most :data:`APP_MAX_IMAGES` images are read into the dashboard.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app import components, state
from app import runs as analysis
from neuronviz.core.models import PixelModel
from neuronviz.data import labelled as evalset
from neuronviz.data.datasets import IMAGE_SUFFIXES, dataset_limits, is_image_name
from neuronviz.data.labelled import EvaluationSet
from neuronviz.infra import settings

BUILTIN, FOLDER, MNIST, CIFAR10, ZIP, UPLOADS = "builtin", "folder", "mnist", "cifar10", "zip", "uploads"
LOCAL_SOURCES = (FOLDER, MNIST, CIFAR10)
#: Most images read into the dashboard from the user's data (the pages use the first N of them).
APP_MAX_IMAGES = 2000
#: Most labelled uploads (each has its own class box; a larger set is a zip of class folders).
MAX_UPLOADS = 50

SOURCE_KEY = "evaluation.source"
PATH_KEY = "evaluation.path"  # the folder or the data set root typed by the user
SPLIT_KEY = "evaluation.split"  # MNIST / CIFAR-10: test or train
ZIP_KEY = "evaluation.zip"  # the zip uploader
UPLOADS_KEY = "evaluation.uploads"  # the images uploader
_KEPT_ZIP = "evaluation.zip_kept"  # plain state: the last zip (an app.state.Upload), across pages
_KEPT_UPLOADS = "evaluation.uploads_kept"  # plain state: the last uploads, tuple of app.state.Upload
UPLOAD_TYPES = sorted({suffix.lstrip(".") for suffix in IMAGE_SUFFIXES})


@dataclass(frozen=True)
class EvaluationChoice:
    """What :func:`evaluation_images` offers: ``available`` labelled images in the chosen source
    (0 when it has none or could not be read: the widget said why), ``images`` the first ``n`` of
    them (None when there are none), and ``source`` (one of the module's source names)."""

    source: str
    available: int
    n: int
    images: EvaluationSet | None


def source_label(source: str, model: PixelModel) -> str:
    """The choice's words for a source."""
    if source == BUILTIN:
        return "Digits test split" if evalset.is_digits_model(model) else "Sample images with a known class"
    return {
        FOLDER: "Image folder (class subfolders)",
        MNIST: "MNIST (local files)",
        CIFAR10: "CIFAR-10 (local files)",
        ZIP: "Zip of class folders (upload)",
        UPLOADS: "Labelled uploads",
    }[source]


def sources() -> list[str]:
    """The sources offered here: local paths only when this is not a shared server."""
    return [BUILTIN, ZIP, UPLOADS] if settings.shared_server() else [BUILTIN, FOLDER, MNIST, CIFAR10, ZIP, UPLOADS]


def evaluation_images(
    model: PixelModel,
    *,
    count_key: str,
    keep_key: str | None = None,
    purpose: str,
    default: int = evalset.DEFAULT_IMAGES,
    label: str = "Evaluation images",
    slider: bool = False,
    count_container: Any = None,
) -> EvaluationChoice:
    """Draw the source of the labelled images and their count; return the first N of them.

    ``count_key``: the count widget's key (the page's own); ``keep_key``: a plain-state key that
    keeps the wanted count across pages and models (widget state does not survive a page that is
    not drawn); ``purpose``: what the images are for, in the count's help ("the nodal dropout is
    measured on"); ``slider``: a slider in steps of 10 instead of a number box (Batch on the digits);
    ``count_container``: where the count is drawn (a column, a form), default here.
    """
    from app import choices

    components.persist(SOURCE_KEY, PATH_KEY, SPLIT_KEY)
    offered = sources()
    source = choices.choose(
        st.selectbox,
        f"{label}: source",
        offered,
        key=SOURCE_KEY,
        default=BUILTIN,
        format_func=lambda s: source_label(s, model),
        help="Where the labelled images come from. Your own data: an image folder with one subfolder per class, "
        "MNIST or CIFAR-10 in their standard files, a zip of class folders, or images you upload and label. "
        "Class names are matched to the model's by name.",
    )
    if source == BUILTIN:
        available = analysis.attempt(analysis.memo, evalset.available_images, model) or 0
        full = None
    else:
        full = _local(source, model) if source in LOCAL_SOURCES else _zip(model) if source == ZIP else _uploads(model)
        available = 0 if full is None else full.size
    if not available:
        return EvaluationChoice(source, 0, 0, None)
    n = _count(available, count_key, keep_key, purpose, default, label, slider, count_container)
    if full is None:  # the built-in set: the same cached call as every page's (and the comparison's)
        images = analysis.attempt(analysis.memo, evalset.evaluation_set, model, n)
    else:
        images = full.head(n)
    return EvaluationChoice(source, available, n, images)


def _count(
    available: int, key: str, keep_key: str | None, purpose: str, default: int, label: str, slider: bool, container: Any
) -> int:
    where = container if container is not None else st
    wanted = int(st.session_state.get(keep_key, default)) if keep_key else int(st.session_state.get(key, default))
    st.session_state[key] = max(1, min(wanted, available))
    help_text = f"How many of the {components.plural(available, 'labelled image')} {purpose} (the first N)."
    on_change: Callable[[], None] | None = None
    if keep_key is not None:
        keep: str = keep_key
        on_change = lambda: st.session_state.update({keep: int(st.session_state[key])})  # noqa: E731
    if slider and available >= 20:
        value = where.slider(label, min_value=min(10, available), max_value=available, step=10, key=key, help=help_text)
    else:
        value = where.number_input(
            label, min_value=1, max_value=available, step=10 if available > 20 else 1, key=key, help=help_text,
            **({"on_change": on_change} if on_change is not None else {}),
        )
    return int(value)


# -- the sources --------------------------------------------------------------------------------------


def _local(source: str, model: PixelModel) -> EvaluationSet | None:
    what = "the image folder (one subfolder per class)" if source == FOLDER else "the root folder of the data set"
    typed = st.text_input(
        "Folder" if source == FOLDER else "Data set root",
        key=PATH_KEY,
        placeholder="/data/my-images" if source == FOLDER else "/data (holding MNIST/raw or cifar-10-batches-py)",
        help=f"The path of {what} on the machine this dashboard runs on. Nothing is downloaded."
        + (" CIFAR-10's batches are pickles: give only a root you trust (torchvision checks their published MD5s)." if source == CIFAR10 else ""),
    )
    if not typed or not typed.strip():
        st.caption(f"Type the path of {what}.")
        return None
    path = Path(typed.strip()).expanduser()
    if source == FOLDER:
        return analysis.attempt(analysis.memo, read_folder, model, str(path), folder_fingerprint(path))
    split = st.segmented_control("Split", ["test", "train"], default="test", required=True, key=SPLIT_KEY) or "test"
    return analysis.attempt(analysis.memo, read_torchvision, model, source, str(path), split, folder_fingerprint(path))


def _zip(model: PixelModel) -> EvaluationSet | None:
    uploaded = st.file_uploader(
        "Zip of class folders",
        type=["zip"],
        key=ZIP_KEY,
        help="A zip holding one folder per class (cat/001.png, dog/002.png; optionally inside one top folder). "
        "Checked before anything is decompressed; every image is validated like an upload.",
    )
    if uploaded is not None:
        upload = analysis.attempt(state.Upload.from_file, uploaded)
        if upload is None:
            return None
        st.session_state[_KEPT_ZIP] = upload
    kept: state.Upload | None = st.session_state.get(_KEPT_ZIP)
    if kept is None:
        st.caption("Upload a zip of class folders.")
        return None
    if uploaded is None:
        st.caption(f"Using {kept.name}, uploaded earlier: upload another zip to replace it.")
    data = analysis.attempt(lambda: kept.data)
    if data is None:
        st.session_state.pop(_KEPT_ZIP, None)
        return None
    return analysis.attempt(analysis.memo, read_zip, model, np.frombuffer(data, dtype=np.uint8).copy(), kept.name)


def _uploads(model: PixelModel) -> EvaluationSet | None:
    files = st.file_uploader(
        "Images",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        key=UPLOADS_KEY,
        help=f"Up to {MAX_UPLOADS} images; give each its true class below. For more, upload a zip of class folders.",
    )
    if files:
        if len(files) > MAX_UPLOADS:
            st.error(f"{len(files)} images were uploaded; up to {MAX_UPLOADS} are labelled here. Upload a zip of class folders instead.")
            return None
        kept = [analysis.attempt(state.Upload.from_file, f) for f in files]
        if any(k is None for k in kept):
            return None
        st.session_state[_KEPT_UPLOADS] = tuple(kept)
    uploads: tuple[state.Upload, ...] = st.session_state.get(_KEPT_UPLOADS, ())
    if not uploads:
        st.caption("Upload images, then give each its true class.")
        return None
    if not files:
        st.caption(f"Using the {components.plural(len(uploads), 'image')} uploaded earlier: upload others to replace them.")
    labelled: list[tuple[state.Upload, int]] = []
    for upload in uploads:
        chosen = st.selectbox(
            f"True class of {upload.name}",
            range(model.num_classes),
            index=None,
            placeholder="choose its class",
            key=f"evaluation.class:{upload.digest[:16]}:{model.num_classes}",
            format_func=lambda c: f"{c} · {model.class_names[c]}",
        )
        if chosen is not None:
            labelled.append((upload, int(chosen)))
    missing = len(uploads) - len(labelled)
    if missing:
        st.caption(
            f"{components.plural(missing, 'image')} without a class {'is' if missing == 1 else 'are'} left out"
            + (": give each image its class." if not labelled else ".")
        )
    if not labelled:
        return None
    contents = []
    for upload, _ in labelled:
        data = analysis.attempt(lambda u=upload: u.data)
        if data is None:
            st.session_state.pop(_KEPT_UPLOADS, None)
            return None
        contents.append(np.frombuffer(data, dtype=np.uint8).copy())
    return analysis.attempt(
        analysis.memo, read_uploads, model, contents, [u.name for u, _ in labelled], [c for _, c in labelled]
    )


# -- cached readers (module-level: analysis.memo keys them by the model and the data's content) ---------


def folder_fingerprint(path: Path) -> list[list[Any]]:
    """The files under ``path`` that a reader may use, as ``[relative path, size, mtime_ns]``, so a
    changed folder is read again (at most the data-set cap plus one entry; [] when it is no folder)."""
    if not path.is_dir() or (settings.shared_server() and not settings.is_upload_path(path)):
        return []
    most, _ = dataset_limits()
    rows: list[list[Any]] = []
    for root, _, names in os.walk(path, followlinks=True):
        for name in sorted(names):
            if not (is_image_name(name) or "ubyte" in name or name.startswith(("data_batch", "test_batch", "batches.meta"))):
                continue
            try:
                info = os.stat(os.path.join(root, name))
            except OSError:
                continue
            rows.append([os.path.relpath(os.path.join(root, name), path), info.st_size, info.st_mtime_ns])
            if len(rows) > most:
                return sorted(rows)
    return sorted(rows)


def read_folder(model: PixelModel, path: str, fingerprint: list[list[Any]]) -> EvaluationSet:
    """:meth:`EvaluationSet.from_folder` (``fingerprint`` only keys the cache)."""
    return EvaluationSet.from_folder(path, model, limit=APP_MAX_IMAGES)


def read_torchvision(model: PixelModel, name: str, root: str, split: str, fingerprint: list[list[Any]]) -> EvaluationSet:
    """:meth:`EvaluationSet.from_torchvision` (``fingerprint`` only keys the cache)."""
    return EvaluationSet.from_torchvision(name, root, model, split=split, limit=APP_MAX_IMAGES)


def read_zip(model: PixelModel, data: np.ndarray, name: str) -> EvaluationSet:
    """:meth:`EvaluationSet.from_zip` of the zip's bytes."""
    return EvaluationSet.from_zip(data.tobytes(), model, name=name, limit=APP_MAX_IMAGES)


def read_uploads(model: PixelModel, contents: list[np.ndarray], names: list[str], classes: list[int]) -> EvaluationSet:
    """:meth:`EvaluationSet.from_uploads` of the uploads' bytes with their class indices."""
    import io

    sources = []
    for data, name in zip(contents, names):
        stream = io.BytesIO(data.tobytes())
        stream.name = name  # type: ignore[attr-defined]
        sources.append(stream)
    return EvaluationSet.from_uploads(list(zip(sources, classes)), model)
