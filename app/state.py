"""Cached loaders and the session's current choice of model and image.

Caching
    Models are shared by every session through ``st.cache_resource``, keyed by plain strings:
    (spec, weights, device) for a model a source names, (source, SHA-256 of the bytes, file name,
    the source's options, device) for an uploaded file. Images and predictions go through ``st.cache_data`` with
    explicit full-content keys only (``model.content_hash``, the SHA-256 of an upload, a SHA-1 of
    the image tensor); the model, tensors and bytes are passed as ``_``-prefixed arguments, which
    Streamlit does not hash (it would hash a large array from a sample only).

Uploads
    A request names an upload by its file name and SHA-256 only; the bytes are kept once, by
    digest, in the process-wide store of :mod:`app.store` (bounded by bytes, least recently used
    first), never in ``st.session_state``. Loaders fetch them only on a cache miss; bytes that
    were let go give :class:`UploadExpiredError` ("upload it again").

Last good choice
    A request that fails (a corrupt upload, a checkpoint for another architecture, weights that
    are not cached, a model whose predictions are not finite) never replaces what is shown: the
    last request that loaded **and predicted finite numbers** is kept in ``st.session_state`` and
    used again, and the failure is returned as a message for the page.

Nothing here computes anything: it calls ``neuronviz`` and remembers the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import streamlit as st
import torch

import neuronviz.infra.cache
from app import store
from neuronviz.core.models import PixelModel, create_model, get_source, resolve_device, source_for
from neuronviz.data.images import ImageInfo, Sample, list_samples, load_image_with_info, load_sample
from neuronviz.infra.digest import tensor_digest
from neuronviz.infra.errors import InputError, NeuronvizError

DEFAULT_MODEL = "digits-cnn"

# st.session_state keys owned by this module.
GOOD_MODEL = "state.good_model_request"
GOOD_IMAGE = "state.good_image_request"
SELECTION = "state.selection"


class UploadedFileLike(Protocol):
    name: str

    def getvalue(self) -> bytes: ...


# -- requests: what the user asked for (hashable, small) ----------------------------------------


class UploadExpiredError(NeuronvizError):
    """The bytes of an upload are no longer held by the server (the upload store is bounded)."""


@dataclass(frozen=True)
class Upload:
    """A file the user uploaded: its name, the SHA-256 of its bytes (the cache key) and its size.

    The bytes themselves live once, by digest, in the process-wide bounded store
    (:func:`app.store.uploads`), not in the session: :attr:`data` fetches them."""

    name: str
    digest: str
    size: int = 0

    @classmethod
    def from_file(cls, uploaded: UploadedFileLike) -> Upload:
        data = uploaded.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        name = Path(uploaded.name).name
        try:
            store.uploads().put(digest, data, len(data))
        except store.TooLarge as error:
            raise InputError(f"the file {name} is too large for this server: {error}") from None
        return cls(name=name, digest=digest, size=len(data))

    @property
    def data(self) -> bytes:
        """The file's bytes. Raises UploadExpiredError when the store has let them go."""
        data = store.uploads().get(self.digest)
        if data is None:
            raise UploadExpiredError(
                f"the server no longer holds the file {self.name} (it keeps the most recent uploads, "
                f"{store.UPLOAD_STORE_BYTES // store.MiB} MiB in all): upload it again"
            )
        return data


@dataclass(frozen=True)
class ModelRequest:
    """A model a source names (``name`` is its spec, ``weights`` "default" or None), or a file
    uploaded to an upload source (``source``, with that source's ``options`` as (name, value)
    pairs; a blank value means "from the file")."""

    name: str = DEFAULT_MODEL
    weights: str | None = "default"
    device: str = "cpu"
    upload: Upload | None = None
    source: str = ""  # for an upload: the name of the source that reads it
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        if self.upload is not None:
            given = ", ".join(value for _, value in self.options if value)
            return f"{self.upload.name} (uploaded, {given or 'settings from the file'})"
        if self.weights is None:
            return f"{self.name} (random initialisation)"
        return self.name

    @property
    def architecture(self) -> str | None:
        """The ``architecture`` option of an uploaded checkpoint (None when not given)."""
        return dict(self.options).get("architecture") or None


@dataclass(frozen=True)
class ImageRequest:
    """A sample image by id, or an uploaded image."""

    sample_id: str | None = None
    upload: Upload | None = None
    label: str = ""
    true_class: int | None = None  # of an upload, when the user gave it (samples know their own)

    @classmethod
    def for_sample(cls, sample: Sample) -> ImageRequest:
        return cls(sample_id=sample.id, label=sample.label)

    @classmethod
    def for_upload(cls, upload: Upload, true_class: int | None = None) -> ImageRequest:
        return cls(upload=upload, label=f"{upload.name} (uploaded)", true_class=true_class)

    def same_image(self, other: ImageRequest | None) -> bool:
        """Whether ``other`` names the same pixels (the true class of an upload aside)."""
        if other is None:
            return False
        if self.upload is not None or other.upload is not None:
            return self.upload is not None and other.upload is not None and self.upload.digest == other.upload.digest
        return self.sample_id == other.sample_id


@dataclass(frozen=True)
class Selection:
    """What every page works on: the loaded model and image, and how they were chosen."""

    model: PixelModel
    model_request: ModelRequest
    image: torch.Tensor  # (1, C, H, W) in [0, 1], CPU
    image_request: ImageRequest
    image_info: ImageInfo | None  # how an uploaded image was prepared; None for samples
    true_class: int | None


@dataclass(frozen=True)
class Prediction:
    probabilities: torch.Tensor  # (K,)
    predicted: int

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.predicted])


# -- facts for the pickers ------------------------------------------------------------------------


def available_devices() -> list[str]:
    """CPU always; CUDA only when a GPU is usable here."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def default_device() -> str:
    return resolve_device(None).type


def samples_for(model: PixelModel) -> list[Sample]:
    return list_samples(model)


def true_class_of(request: ImageRequest, model: PixelModel) -> int | None:
    """The image's class index in this model's classes: a sample's own, the one the user gave an
    upload; None when unknown (or not one of this model's classes)."""
    if request.upload is not None:
        known = request.true_class
        return known if isinstance(known, int) and 0 <= known < model.num_classes else None
    if request.sample_id is None:
        return None
    for sample in samples_for(model):
        if sample.id == request.sample_id:
            return sample.true_class
    return None


def fetch_weights(spec: str) -> str | None:
    """Fetch the default weights of the model ``spec`` names, through its source (an explicit
    user action). Returns an error message or None."""
    try:
        source_for(spec).fetch_weights(spec)
    except NeuronvizError as error:  # DownloadError: no network, DNS, TLS, HTTP status, hash mismatch
        return f"{str(error)[0].upper()}{str(error)[1:]}. Check the internet connection, or use random initialisation."
    return None


# -- cached loaders -------------------------------------------------------------------------------


@st.cache_resource(max_entries=6, show_spinner="Loading the model…")
def _registry_model(name: str, weights: str | None, device: str) -> PixelModel:
    return create_model(name, device=device, weights=weights)


@st.cache_resource(max_entries=3, show_spinner="Loading your upload…")
def _uploaded_model(
    source: str, digest: str, file_name: str, options: tuple[tuple[str, str], ...], device: str, _upload: Upload
) -> PixelModel:
    # Sources read uploads from a path: write the bytes under the user's file name (the model's
    # name is the file's stem), in a private folder removed right after loading.
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(file_name).name).lstrip(".") or "upload"
    with tempfile.TemporaryDirectory(prefix="neuronviz-upload-") as folder:
        path = Path(folder) / safe_name
        path.write_bytes(_upload.data)
        model = get_source(source).load_upload(path, {k: v for k, v in options if v})
    model = model.to(resolve_device(device))
    model.meta = dataclasses.replace(model.meta, source=f"uploaded file {file_name} (sha256 {digest[:12]}…)")
    return model


@st.cache_data(max_entries=256, show_spinner=False)
def _sample_pixels(sample_id: str, model_hash: str, _model: PixelModel) -> torch.Tensor:
    return load_sample(sample_id, _model)


@st.cache_data(max_entries=32, show_spinner=False)
def _upload_pixels(digest: str, file_name: str, model_hash: str, _model: PixelModel, _upload: Upload):
    source = io.BytesIO(_upload.data)
    source.name = file_name  # the library names the file in its messages
    return load_image_with_info(source, _model)


@st.cache_data(max_entries=512, show_spinner=False)
def _probabilities(model_hash: str, image_digest: str, _model: PixelModel, _x: torch.Tensor) -> torch.Tensor:
    _, probs = _model.predict(_x)
    return probs[0]


def load_requested_model(request: ModelRequest) -> PixelModel:
    """The model a request names (cached). Raises the library's NeuronvizError on failure."""
    if request.upload is None:
        return _registry_model(request.name, request.weights, request.device)
    upload = request.upload
    return _uploaded_model(request.source, upload.digest, upload.name, request.options, request.device, _upload=upload)


def load_requested_image(request: ImageRequest, model: PixelModel) -> tuple[torch.Tensor, ImageInfo | None]:
    """The image a request names, prepared for ``model`` (cached). Raises NeuronvizError."""
    if request.upload is not None:
        upload = request.upload
        return _upload_pixels(upload.digest, upload.name, model.content_hash, model, _upload=upload)
    if request.sample_id is None:
        raise ValueError("an ImageRequest needs a sample_id or an upload")
    return _sample_pixels(request.sample_id, model.content_hash, model), None


def predict(model: PixelModel, x: torch.Tensor) -> Prediction:
    """Class probabilities of one image, cached by the model's and the image's content digests."""
    probs = _probabilities(model.content_hash, tensor_digest(x), model, x)
    return Prediction(probabilities=probs, predicted=int(probs.argmax()))


def clear_caches() -> None:
    """Forget every cached model, image and prediction (tests; after weights change on disk)."""
    for cached in (_registry_model, _uploaded_model, _sample_pixels, _upload_pixels, _probabilities, _probe_is_finite):
        cached.clear()
    neuronviz.infra.cache.clear()  # the library's own caches (probe layers, NIP profiles, PSSR regenerators, ...)


# -- the last good choice -------------------------------------------------------------------------


class NonFiniteModelError(NeuronvizError):
    """A model whose prediction on a probe image is not finite (NaN or infinity)."""


@st.cache_data(max_entries=64, show_spinner=False)
def _probe_is_finite(model_hash: str, device: str, _model: PixelModel) -> bool:
    """Whether the model's outputs on a mid-grey image and on its first sample are all finite."""
    probes = [torch.full((1, _model.channels, *_model.input_size), 0.5)]
    samples = samples_for(_model)
    if samples:
        probes.append(load_sample(samples[0].id, _model))
    for x in probes:
        logits, probs = _model.predict(x)
        if not (torch.isfinite(logits).all() and torch.isfinite(probs).all()):
            return False
    return True


def check_finite(model: PixelModel) -> None:
    """Raise NonFiniteModelError when the model predicts NaN or infinity (e.g. a checkpoint whose
    normalisation std is NaN or zero): such a model must never become the session's last good one."""
    if not _probe_is_finite(model.content_hash, str(model.device), model):
        raise NonFiniteModelError(
            "its predictions are not finite numbers (NaN or infinity): its weights or its stored "
            "normalisation (mean, std) are broken. Check the checkpoint's mean and std, or choose another model"
        )


def load_checked_model(request: ModelRequest) -> PixelModel:
    """:func:`load_requested_model`, then :func:`check_finite`. Raises NeuronvizError.

    An uploaded checkpoint is data from the user: any failure while reading it (also a bug of a
    reader that raises a raw TypeError) is that file's error, reported as such."""
    try:
        model = load_requested_model(request)
    except NeuronvizError:
        raise
    except Exception as error:  # noqa: BLE001 - only for uploads: see the docstring
        if request.upload is None:
            raise
        raise CheckpointReadError(f"reading it failed ({type(error).__name__}: {error})") from error
    check_finite(model)
    return model


class CheckpointReadError(NeuronvizError):
    """An uploaded checkpoint that the loader could not read (an unexpected error inside it)."""


def error_text(error: BaseException) -> str:
    """A library error as the sidebar shows it: its message, then its hint for the dashboard
    (``error.ui_hint``, set by the checkpoint loader) when it has one."""
    text = str(error).rstrip()
    hint = getattr(error, "ui_hint", None)
    if isinstance(hint, str) and hint.strip():
        text = f"{text.rstrip('.')}. {hint.strip()}"
    return text


def resolve_model(request: ModelRequest | None) -> tuple[PixelModel | None, ModelRequest | None, list[str]]:
    """Load ``request``; when it fails (or is None), keep the last model that loaded.

    A model becomes the session's last good one only once it has loaded **and** predicted finite
    numbers (:func:`check_finite`). Returns (model, the request it came from, error messages).
    The model is None only when nothing has ever loaded in this session.
    """
    errors: list[str] = []
    if request is not None:
        try:
            model = load_checked_model(request)
        except NeuronvizError as error:
            errors.append(f"Could not load the model {request.label}: {error_text(error)}")
        else:
            st.session_state[GOOD_MODEL] = request
            return model, request, errors
    previous: ModelRequest | None = st.session_state.get(GOOD_MODEL)
    if previous is not None and previous != request:
        try:
            model = load_checked_model(previous)
        except NeuronvizError as error:
            errors.append(f"Could not reload the previous model {previous.label}: {error_text(error)}")
        else:
            if errors:
                errors[-1] = _still_showing(errors[-1], previous.label)
            return model, previous, errors
    return None, None, errors


def resolve_image(
    request: ImageRequest | None, model: PixelModel
) -> tuple[torch.Tensor | None, ImageRequest | None, ImageInfo | None, list[str]]:
    """Load ``request`` for ``model``; when it fails (or is None), keep the last image that loaded.

    When the last image does not load for this model either, the model's first sample is used.
    Returns (image, the request it came from, upload info, error messages).
    """
    errors: list[str] = []
    candidates: list[ImageRequest] = []
    if request is not None:
        candidates.append(request)
    previous: ImageRequest | None = st.session_state.get(GOOD_IMAGE)
    if previous is not None and not previous.same_image(request):
        candidates.append(previous)
    samples = samples_for(model)
    if samples:
        candidates.append(ImageRequest.for_sample(samples[0]))
    for candidate in candidates:
        try:
            image, info = load_requested_image(candidate, model)
        except NeuronvizError as error:
            errors.append(f"Could not load the image {candidate.label}: {error_text(error)}")
            continue
        if candidate is not request and errors:
            errors[-1] = _still_showing(errors[-1], candidate.label)
        st.session_state[GOOD_IMAGE] = candidate
        return image, candidate, info, errors
    return None, None, None, errors


def _still_showing(message: str, label: str) -> str:
    return f"{message.rstrip()}{'' if message.rstrip().endswith('.') else '.'} Still showing {label}."


def set_selection(selection: Selection | None) -> None:
    st.session_state[SELECTION] = selection


def selection() -> Selection | None:
    """The current selection, set by the sidebar in this run (None when no model could load)."""
    return st.session_state.get(SELECTION)
