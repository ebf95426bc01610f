"""Load, validate and prepare images for a :class:`~neuronviz.core.models.PixelModel`; sample images.

:func:`load_image` turns a file, upload, PIL image or array into the pixel tensor a model takes:
``(1, C, H, W)`` float32 in [0, 1] with ``C = model.channels`` and ``(H, W) = model.input_size``.
:func:`load_image_with_info` returns the same tensor and an :class:`ImageInfo` that lists every
step applied, for the app to show. Every refusal is an :class:`~neuronviz.infra.errors.ImageError`
(a ``ValueError``) with a message a user can act on; no Pillow exception escapes raw.

Sources
    A path (``str`` or ``os.PathLike``); ``bytes``/``bytearray``/``memoryview``; a binary
    file-like object (Streamlit's ``UploadedFile``, ``io.BytesIO``; read from its start when it
    is seekable, and its position is restored); a ``PIL.Image.Image`` (its current frame is
    used, the object is not modified); a numpy array ``(H, W)`` or ``(H, W, C)`` with ``C`` in
    1..4 (gray, gray+alpha, RGB, RGBA); a ``torch.Tensor`` ``(H, W)``, ``(C, H, W)`` or
    ``(1, C, H, W)`` (channels first, ``C`` in 1..4). Array and tensor values: ``bool``;
    ``uint8`` (÷255); ``uint16`` (÷65535); other integer types with values in 0..255 (÷255);
    floating point, finite and within [0, 1].

Limits (checked before any pixel is decoded: only the file header is read)
    :data:`MAX_FILE_BYTES` (50 MB) for encoded data, :data:`MAX_PIXELS` (40 million pixels,
    e.g. 8000×5000) for width × height. Pillow's own decompression-bomb warning and error are
    turned into the same :class:`ImageError`. Only the formats in :data:`ALLOWED_FORMATS` are
    opened (PNG, JPEG, GIF, BMP, TIFF, WebP, ...); EPS, PDF and other formats whose decoders run
    external programs or are rarely meant as photographs are refused as "not an image".

Frames and orientation
    Animated or multi-page files (GIF, APNG, WebP, TIFF): the first frame. The EXIF orientation
    tag is applied (``PIL.ImageOps.exif_transpose``), so the image is what a viewer shows; an
    unreadable EXIF block is ignored (noted in the info), it does not refuse the image.

Modes (how pixel values become [0, 1])
    ``"1"``, ``"L"``, ``"RGB"``: ÷255. ``"P"`` (palette): to ``"RGBA"`` when it has a
    transparent colour, else ``"RGB"``. ``"CMYK"``, ``"YCbCr"``, ``"RGBX"``, ``"HSV"``,
    premultiplied ``"La"``/``"RGBa"``: Pillow's ``convert`` to RGB(A) (CMYK uses Pillow's plain
    formula, no ICC profile). 16-bit ``"I;16*"``: ÷65535 (full 16-bit range, never clipped at
    255). ``"I"`` (32-bit int): ÷65535 when all values lie in 0..65535 (16-bit data, the usual
    case), otherwise rescaled linearly from [min, max] to [0, 1]. ``"F"`` (float): kept when
    within [0, 1], otherwise rescaled from [min, max]; NaN or infinity is refused.

Transparency (alpha)
    Composited (``c·a + background·(1 − a)``) onto white for photo models. For models whose
    policy has ``invert_light_background`` (the digits models), onto the colour that contrasts
    with the visible content: white when the opaque pixels are dark on average (alpha-weighted
    luma < 0.5), else black. So dark ink on a transparent canvas becomes dark-on-white (then
    inverted, below) and light ink becomes light-on-black: the strokes stay visible either way.
    A fully opaque alpha channel is simply dropped.

Channels
    1-channel models: ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` (what
    ``PIL.Image.convert("L")`` computes, here in float so 16-bit precision is kept).
    3-channel models: gray is repeated into R, G and B.

Geometry (``model.image_policy``, see :class:`~neuronviz.core.models.ImagePolicy`)
    ``"crop"``: resize so the shorter side is ``resize_size`` (or, with timm's ``crop_pct``,
    ``floor(input side / crop_pct)``), then centre-crop to the input size: torchvision's ImageNet
    evaluation recipe (``Resize(256)`` + ``CenterCrop(224)`` for ResNet-18) and timm's
    (``Resize(248, bicubic)`` + ``CenterCrop(224)`` for vit_tiny_patch16_224), with the same
    rounding. ``"pad"``: pad to the input's aspect ratio (a square for the digits) with the
    background colour, estimated as the per-channel median of the image's border pixels, then
    resize to the input size: the whole object stays visible, nothing is cut. Every resize uses
    the policy's ``interpolation`` (bilinear or bicubic, antialiased, or nearest) through
    ``torchvision.transforms.v2.functional.resize``, the crop ``center_crop``. The resize target
    is computed here from the size *before* the box reduction below (so a reduced image ends at
    exactly the size the full image would), which is why it is not a ``v2.Resize([s])``.
    Images at least 4× larger than needed are first shrunk by an integer factor with Pillow's
    box-averaging ``reduce`` (as Pillow's own ``reducing_gap`` does), which keeps memory in
    proportion to the output; the result differs from a direct resize by about 1/255.

Digits models (``invert_light_background=True``)
    They were trained on light ink on a dark background. If the border median is light
    (luma > 0.5) the image is inverted, so a black-on-white drawing becomes white-on-black.
    Finally the contrast is stretched linearly so the darkest pixel is 0 and the brightest 1
    (left alone when the image is flat).

Samples
    :func:`list_samples` offers, for 1-channel models, the first ``n_per_class`` images of each
    class of the digits test split (``neuronviz.data.datasets``), and for 3-channel models the
    photographs in ``assets/samples/photos/`` (public domain / CC0, from scikit-image; see
    ``assets/samples/LICENSES.md``). :func:`load_sample` loads one by id.

Longer than 500 lines on purpose: every way an image reaches a model (file, upload, PIL image,
array, sample) goes through the one validator and the one geometry (resize, crop, pad,
interpolation, ``crop_pct``) kept here, so that no path can skip a check.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import threading
import warnings
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeAlias

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from neuronviz.core.models.pixel import ImagePolicy, PixelModel
from neuronviz.infra.errors import ImageError, InputError

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "ImageHeader",
    "ImageInfo",
    "ImageSource",
    "Sample",
    "list_samples",
    "load_image",
    "load_image_with_info",
    "load_sample",
    "read_header",
    "sample_digits",
]

#: Largest accepted image, in pixels (width × height), checked from the header before decoding.
#: 40 million covers every phone and most camera photos (8000×5000) while bounding the memory a
#: single upload can take (one float32 RGB copy of 40 M pixels is 480 MB).
MAX_PIXELS: int = 40_000_000

#: Largest accepted encoded image (file, upload or bytes): 50 MB.
MAX_FILE_BYTES: int = 50_000_000

#: Pillow format ids that are opened. Others (EPS runs Ghostscript; PDF, PSD, FITS, ...) are
#: refused as "not an image". MPO (multi-picture JPEG from some cameras) comes with "JPEG".
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO", "AVIF", "QOI")

#: Exceptions Pillow's parsers and decoders raise on malformed data (Pillow's own fuzzing
#: harness accepts exactly these as "handled"); each is turned into an ImageError.
_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    zlib.error,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
)

_LUMA = (0.299, 0.587, 0.114)
_ORIENTATION_TAG = 0x0112
_IMAGENET_TABBY = "tabby"

# warnings.catch_warnings changes process-wide state; serialise our own uses of it (Streamlit
# runs sessions in threads). Only Image.open (header parsing) runs under it.
_OPEN_LOCK = threading.Lock()

ImageSource: TypeAlias = (
    str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray | torch.Tensor
)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`load_image_with_info` found and did, in order (for the app and exports).

    ``steps`` are stable codes (``"first-frame"``, ``"exif-rotated"``, ``"exif-unreadable"``, ``"mode-converted"``,
    ``"scaled-16bit"``, ``"rescaled-range"``, ``"alpha-composited"``, ``"to-gray"``,
    ``"to-rgb"``, ``"inverted"``, ``"reduced"``, ``"padded"``, ``"resized"``, ``"cropped"``,
    ``"contrast-stretched"``); ``notes`` holds one human-readable sentence per step, same order.
    """

    source: str  # "path", "bytes", "file", "pil", "array" or "tensor"
    name: str | None  # file name when known
    format: str | None  # Pillow's format id ("PNG", "JPEG", ...); None for arrays and tensors
    mode: str  # Pillow mode of the decoded frame, or e.g. "array uint8 (480, 640, 3)"
    width: int  # as displayed, i.e. after EXIF orientation
    height: int
    animated: bool  # the file holds more than one frame (the first one was used)
    steps: tuple[str, ...]
    notes: tuple[str, ...]
    output_shape: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SampleKind = Literal["digit", "photo"]


@dataclass(frozen=True)
class Sample:
    """A sample image the app offers. ``true_class`` indexes the model's classes, or is None."""

    id: str  # e.g. "digit-test-17", "photo-chelsea"
    label: str  # human readable, e.g. "digit 3 (#17)"
    true_class: int | None
    kind: SampleKind
    credit: str = ""  # author and licence, for photographs


class _Steps:
    """Collects (code, note) pairs while an image is prepared."""

    def __init__(self) -> None:
        self.codes: list[str] = []
        self.notes: list[str] = []

    def add(self, code: str, note: str) -> None:
        self.codes.append(code)
        self.notes.append(note)


@dataclass
class _Decoded:
    """An image after decoding: float32 colour (H, W, 1|3) in [0, 1] and optional alpha (H, W)."""

    color: np.ndarray
    alpha: np.ndarray | None
    source: str
    name: str | None
    format: str | None
    mode: str
    animated: bool
    width: int  # before any reduction (after EXIF orientation)
    height: int


# ---------------------------------------------------------------------------------------------
# Public API


def load_image(source: ImageSource, model: PixelModel) -> torch.Tensor:
    """The image as ``model`` takes it: ``(1, C, H, W)`` float32 in [0, 1], on the CPU.

    ``C = model.channels`` and ``(H, W) = model.input_size``. Decoding, mode, transparency,
    channel and geometry policies are those of the module docstring (geometry follows
    ``model.image_policy``). Raises :class:`ImageError` for anything that is not a readable
    image within :data:`MAX_FILE_BYTES` / :data:`MAX_PIXELS`, :class:`InputError` for a source of
    an unsupported type.
    """
    return load_image_with_info(source, model)[0]


def load_image_with_info(source: ImageSource, model: PixelModel) -> tuple[torch.Tensor, ImageInfo]:
    """:func:`load_image` plus an :class:`ImageInfo` listing the original size, mode and steps."""
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")
    steps = _Steps()
    decoded = _decode(source, model, steps)
    x = _prepare(decoded, model, steps)
    info = ImageInfo(
        source=decoded.source,
        name=decoded.name,
        format=decoded.format,
        mode=decoded.mode,
        width=decoded.width,
        height=decoded.height,
        animated=decoded.animated,
        steps=tuple(steps.codes),
        notes=tuple(steps.notes),
        output_shape=tuple(x.shape),  # type: ignore[arg-type]
    )
    return x, info


def sample_digits(n_per_class: int = 5, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n_per_class`` digits of each class of ``split``: ``(x (10·n, 1, 28, 28), y)``.

    Ordered by class, then by index in ``neuronviz.data.datasets.digits(split)``. A class with fewer
    images than ``n_per_class`` contributes all it has.
    """
    from neuronviz.data.datasets import digits

    indices = _digit_indices(n_per_class, split)
    x, y = digits(split)
    index = torch.tensor([i for _, i in indices], dtype=torch.long)
    return x[index], y[index]


def list_samples(model: PixelModel, n_per_class: int = 5) -> list[Sample]:
    """The sample images offered for ``model``.

    1-channel models: the first ``n_per_class`` test digits of each class (ids
    ``"digit-test-<index>"``, index into ``neuronviz.data.datasets.digits("test")``). 3-channel models:
    the photographs in ``assets/samples/photos/`` that are present (ids ``"photo-<name>"``).
    ``true_class`` is the index of the sample's class in ``model.class_names`` when the model has
    that class (digit ``"3"``; ImageNet ``"tabby"`` for the cat photo), else None.
    """
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")
    if model.channels == 1:
        return [
            Sample(
                id=f"digit-test-{index}",
                label=f"digit {label} (#{index})",
                true_class=_class_index(model, str(label)),
                kind="digit",
            )
            for label, index in _digit_indices(n_per_class, "test")
        ]
    folder = _photos_dir()
    return [
        Sample(
            id=photo.id,
            label=photo.label,
            true_class=_class_index(model, photo.class_name) if photo.class_name else None,
            kind="photo",
            credit=photo.credit,
        )
        for photo in _PHOTOS
        if (folder / photo.file).is_file()
    ]


def load_sample(sample_id: str, model: PixelModel) -> torch.Tensor:
    """A sample image as ``model`` takes it: ``(1, C, H, W)`` float32 in [0, 1].

    ``"digit-<split>-<index>"`` (split ``train``/``test``/``all``): for a 1-channel 28×28 model the
    data set's own tensor, unchanged; for any other model the 28×28 digit through
    :func:`load_image`. ``"photo-<name>"``: the photograph through :func:`load_image`. Raises
    :class:`InputError` for an unknown id.
    """
    if not isinstance(sample_id, str):
        raise InputError(f"sample_id must be a string, got {type(sample_id).__name__}")
    if not isinstance(model, PixelModel):
        raise InputError(f"model must be a PixelModel, got {type(model).__name__}")
    match = re.fullmatch(r"digit-(train|test|all)-(\d+)", sample_id)
    if match:
        from neuronviz.data.datasets import digits

        split, index = match.group(1), int(match.group(2))
        x, _ = digits(split)
        if index >= len(x):
            raise InputError(f"no sample {sample_id!r}: the digits {split} split has {len(x)} images")
        image = x[index : index + 1]
        if model.channels == 1 and model.input_size == tuple(image.shape[-2:]):
            return image.clone()
        return load_image(image[0, 0].numpy(), model)
    for photo in _PHOTOS:
        if photo.id == sample_id:
            return load_image(_photos_dir() / photo.file, model)
    known = ", ".join(p.id for p in _PHOTOS)
    raise InputError(f"unknown sample {sample_id!r}; ids are 'digit-test-<index>' or one of: {known}")


# ---------------------------------------------------------------------------------------------
# Samples


@dataclass(frozen=True)
class _Photo:
    id: str
    file: str
    label: str
    class_name: str | None  # ImageNet class name when unambiguous
    credit: str


_PHOTOS: tuple[_Photo, ...] = (
    _Photo(
        "photo-chelsea",
        "chelsea.jpg",
        "Chelsea the cat (photo)",
        _IMAGENET_TABBY,
        "Stefan van der Walt, CC0 (scikit-image)",
    ),
    _Photo("photo-coffee", "coffee.jpg", "Coffee cup (photo)", None, "Rachel Michetti, CC0 (scikit-image)"),
    _Photo(
        "photo-astronaut",
        "astronaut.jpg",
        "Astronaut Eileen Collins (photo)",
        None,
        "NASA, public domain (scikit-image)",
    ),
    _Photo("photo-rocket", "rocket.jpg", "Falcon 9 launch (photo)", None, "SpaceX, public domain (scikit-image)"),
    _Photo(
        "photo-hubble",
        "hubble_deep_field.jpg",
        "Hubble eXtreme Deep Field (photo)",
        None,
        "NASA, public domain (scikit-image)",
    ),
)


def _photos_dir() -> Path:
    from neuronviz.core.models.standard_sources import assets_dir

    return assets_dir() / "samples" / "photos"


def _class_index(model: PixelModel, name: str) -> int | None:
    try:
        return model.class_names.index(name)
    except ValueError:
        return None


def _digit_indices(n_per_class: int, split: str) -> list[tuple[int, int]]:
    """``[(label, index), ...]``: the first ``n_per_class`` indices of each class, by class."""
    from neuronviz.data.datasets import digits_by_class

    if isinstance(n_per_class, bool) or not isinstance(n_per_class, int) or n_per_class < 1:
        raise InputError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    groups = digits_by_class(split)
    return [(label, int(i)) for label in sorted(groups) for i in groups[label][:n_per_class].tolist()]


# ---------------------------------------------------------------------------------------------
# Reading sources


def _decode(source: Any, model: PixelModel, steps: _Steps) -> _Decoded:
    if isinstance(source, Image.Image):
        return _from_pil(source, "pil", None, model, steps, first_frame=False)
    if isinstance(source, np.ndarray):
        return _from_array(source, "array", steps)
    if isinstance(source, torch.Tensor):
        return _from_array(_tensor_to_hwc(source), "tensor", steps)
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = memoryview(source).nbytes
        _check_file_bytes(size, "the image data")
        return _from_bytes(bytes(source), "bytes", None, model, steps)
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        return _from_bytes(_read_path(path), "path", path.name, model, steps)
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        name = Path(name).name if isinstance(name, str) and name else None
        return _from_bytes(_read_file_like(source, name), "file", name, model, steps)
    raise InputError(
        "an image source must be a path, bytes, a binary file-like object, a PIL image, a numpy "
        f"array or a torch tensor; got {type(source).__name__}"
    )


def _check_file_bytes(size: int, label: str) -> None:
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"{label} is {size / 1e6:.1f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB "
            "(neuronviz.data.images.MAX_FILE_BYTES)"
        )


def _read_path(path: Path) -> bytes:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path}") from None
    except OSError as error:
        raise ImageError(f"cannot read image file {path}: {error.strerror or error}") from None
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    _check_file_bytes(size, str(path))
    try:
        return path.read_bytes()
    except OSError as error:
        raise ImageError(f"cannot read image file {path}: {error.strerror or error}") from None


def _read_file_like(stream: Any, name: str | None) -> bytes:
    label = name or "the uploaded file"
    position = None
    try:
        if getattr(stream, "seekable", lambda: False)():
            position = stream.tell()
            stream.seek(0)
        data = stream.read(MAX_FILE_BYTES + 1)
        if position is not None:
            stream.seek(position)
    except OSError as error:
        raise ImageError(f"cannot read {label}: {error}") from None
    if isinstance(data, str):
        raise InputError(f"{label} was opened in text mode; open it in binary mode ('rb')")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"reading {label} returned {type(data).__name__}, not bytes")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(
            f"{label} is larger than {MAX_FILE_BYTES / 1e6:.0f} MB, the limit (neuronviz.data.images.MAX_FILE_BYTES)"
        )
    return bytes(data)


def _too_many_pixels(width: int, height: int, label: str) -> ImageError:
    return ImageError(
        f"{label} is {width}×{height} = {width * height:,} pixels; the limit is {MAX_PIXELS:,} pixels "
        "(neuronviz.data.images.MAX_PIXELS). Downscale it first."
    )


def _from_bytes(data: bytes, source: str, name: str | None, model: PixelModel, steps: _Steps) -> _Decoded:
    label = name or "the image"
    if not data:
        raise ImageError(f"{label} is empty (0 bytes)")
    with _OPEN_LOCK, warnings.catch_warnings():
        # Pillow warns between 89 M and 179 M pixels and raises above; both mean "too large".
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_allowed_formats())
        except UnidentifiedImageError:
            raise ImageError(
                f"{label} is not an image that can be read (first bytes {data[:12]!r}); accepted formats: "
                f"{', '.join(_allowed_formats())}"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            count = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
            raise ImageError(
                f"{label} has {count}; the limit is {MAX_PIXELS:,} pixels (neuronviz.data.images.MAX_PIXELS)"
            ) from None
        except _PIL_ERRORS as error:
            raise ImageError(f"{label} is corrupt: its header cannot be read ({_describe(error)})") from None
    with image:
        return _from_pil(image, source, name, model, steps, first_frame=True)


def _allowed_formats() -> list[str]:
    Image.init()
    return [f for f in ALLOWED_FORMATS if f in Image.OPEN]


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _from_pil(
    image: Image.Image, source: str, name: str | None, model: PixelModel, steps: _Steps, first_frame: bool
) -> _Decoded:
    label = name or "the image"
    fmt = image.format
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{label} has zero size ({width}×{height} pixels)")
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(width, height, label)
    animated = False
    try:
        if first_frame:
            animated = bool(getattr(image, "is_animated", False))
            if animated:
                image.seek(0)
        image.load()
    except _PIL_ERRORS as error:
        raise ImageError(
            f"{label} is truncated or corrupt: its pixels cannot be decoded ({_describe(error)})"
        ) from None
    if animated:
        steps.add("first-frame", f"{label} has several frames; the first one is used")

    image = _apply_orientation(image, steps)
    mode = image.mode
    width, height = image.size
    image = _normalise_mode(image, label, steps)
    image = _reduce_if_large(image, model, steps)
    color, alpha = _pil_to_arrays(image, label, steps)
    return _Decoded(color, alpha, source, name, fmt, mode, animated, width, height)


def _apply_orientation(image: Image.Image, steps: _Steps) -> Image.Image:
    try:
        orientation = image.getexif().get(_ORIENTATION_TAG)
    except _PIL_ERRORS:
        steps.add("exif-unreadable", "the EXIF block cannot be read; its orientation is ignored")
        return image
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image
    try:
        rotated = ImageOps.exif_transpose(image)
    except _PIL_ERRORS:
        steps.add("exif-unreadable", "the EXIF orientation cannot be applied; it is ignored")
        return image
    if rotated is None:  # only returned for in_place=True
        return image
    steps.add("exif-rotated", f"rotated/flipped as its EXIF orientation tag ({orientation}) says")
    return rotated


def _normalise_mode(image: Image.Image, label: str, steps: _Steps) -> Image.Image:
    """Bring any Pillow mode to one of L, LA, RGB, RGBA, I;16*, I, F."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "I", "F") or mode.startswith("I;16"):
        return image
    if mode in ("P", "PA"):
        target = "RGBA" if mode == "PA" or "transparency" in image.info else "RGB"
    elif mode == "1":
        target = "L"
    elif mode == "La":
        target = "LA"
    else:
        target = "RGBA" if "A" in image.getbands() or "a" in image.getbands() else "RGB"
    try:
        converted = image.convert(target)
    except _PIL_ERRORS as error:
        raise ImageError(
            f"{label} has pixel mode {mode!r}, which cannot be converted to {target} ({_describe(error)})"
        ) from None
    steps.add("mode-converted", f"pixel mode {mode} converted to {target}")
    return converted


def _geometry_scale(model: PixelModel, width: int, height: int) -> float:
    """The factor by which the geometry step will scale an image of this size (< 1: shrink)."""
    out_h, out_w = model.input_size
    policy = model.image_policy
    if policy.mode == "crop":
        short = policy.resize_target((out_h, out_w))
        return max(short / min(width, height), out_h / height, out_w / width)
    # pad: the side that is relatively longer than the input's ends up at the input size
    return min(out_h / height, out_w / width)


def _reduce_if_large(image: Image.Image, model: PixelModel, steps: _Steps) -> Image.Image:
    width, height = image.size
    scale = _geometry_scale(model, width, height)
    factor = int(1 / (2 * scale)) if scale > 0 else 1  # keep at least twice the needed size
    if factor < 2 or image.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
        return image
    try:
        reduced = image.reduce(factor)
    except _PIL_ERRORS:
        return image
    steps.add(
        "reduced",
        f"shrunk {width}×{height} → {reduced.size[0]}×{reduced.size[1]} by box averaging (factor {factor}) "
        "before the final resize",
    )
    return reduced


def _pil_to_arrays(image: Image.Image, label: str, steps: _Steps) -> tuple[np.ndarray, np.ndarray | None]:
    mode = image.mode
    if mode.startswith("I;16"):
        steps.add("scaled-16bit", "16-bit values divided by 65535")
        return (np.asarray(image).astype(np.float32) / 65535.0)[..., None], None
    if mode == "I":
        values = np.asarray(image).astype(np.float64)
        low, high = float(values.min()), float(values.max())
        if low >= 0 and high <= 65535:
            steps.add("scaled-16bit", "32-bit integer values within 0..65535 divided by 65535 (16-bit data)")
            return (values / 65535.0).astype(np.float32)[..., None], None
        steps.add("rescaled-range", f"integer values in [{low:g}, {high:g}] rescaled linearly to [0, 1]")
        return _rescale(values)[..., None], None
    if mode == "F":
        values = np.asarray(image).astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{label} contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            return values.astype(np.float32)[..., None], None
        steps.add("rescaled-range", f"float values in [{low:g}, {high:g}] rescaled linearly to [0, 1]")
        return _rescale(values)[..., None], None
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    pixels = array.astype(np.float32) / 255.0
    if mode in ("LA", "RGBA"):
        return pixels[..., :-1], pixels[..., -1]
    return pixels, None


def _rescale(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high - low <= 0:
        return np.clip(values, 0.0, 1.0).astype(np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    t = tensor.detach().cpu()
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ImageError(f"a tensor image must be one image (1, C, H, W), got a batch of shape {tuple(t.shape)}")
        t = t[0]
    if t.dim() == 3:
        if t.shape[0] not in (1, 2, 3, 4):
            raise ImageError(f"a tensor image must be channels-first (C, H, W) with C in 1..4, got {tuple(t.shape)}")
        t = t.permute(1, 2, 0)
    elif t.dim() != 2:
        raise ImageError(f"a tensor image must be (H, W), (C, H, W) or (1, C, H, W), got {tuple(t.shape)}")
    if t.is_complex():
        raise ImageError("a tensor image cannot be complex")
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # numpy has no bfloat16
    return t.contiguous().numpy()


def _from_array(array: np.ndarray, source: str, steps: _Steps) -> _Decoded:
    shape = tuple(array.shape)
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        hint = (
            "; it looks channels-first: transpose it to (H, W, C)" if array.ndim == 3 and shape[0] in (1, 3, 4) else ""
        )
        raise ImageError(f"an image array must be (H, W) or (H, W, C) with C in 1..4, got shape {shape}{hint}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"the image has zero size ({width}×{height} pixels)")
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(width, height, "the image")
    pixels = _array_values(array)
    mode = f"{source} {array.dtype} {shape}"
    if pixels.shape[2] in (2, 4):
        return _Decoded(pixels[..., :-1], pixels[..., -1], source, None, None, mode, False, width, height)
    return _Decoded(pixels, None, source, None, None, mode, False, width, height)


def _array_values(array: np.ndarray) -> np.ndarray:
    dtype = array.dtype
    if dtype == np.bool_:
        return array.astype(np.float32)
    if dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(dtype, np.integer):
        smallest, largest = int(array.min()), int(array.max())
        if smallest < 0 or largest > 255:
            raise ImageError(
                f"an integer image array of type {dtype} must hold values in 0..255 (use uint16 for 16-bit "
                f"data), got [{smallest}, {largest}]"
            )
        return array.astype(np.float32) / 255.0
    if np.issubdtype(dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageError("the image array contains NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageError(f"a float image array must hold values in [0, 1], got [{low:.4g}, {high:.4g}]")
        return values
    raise ImageError(f"unsupported image array type {dtype}; use uint8, uint16, bool or float in [0, 1]")


# ---------------------------------------------------------------------------------------------
# From decoded pixels to the model's input


def _luma(color: np.ndarray) -> np.ndarray:
    """(..., 1|3) → (...): ITU-R BT.601 luma for RGB, the value itself for gray."""
    if color.shape[-1] == 1:
        return color[..., 0]
    r, g, b = _LUMA
    return r * color[..., 0] + g * color[..., 1] + b * color[..., 2]


def _composite(color: np.ndarray, alpha: np.ndarray, policy: ImagePolicy, steps: _Steps) -> np.ndarray:
    if policy.invert_light_background:
        weight = float(alpha.sum())
        content = float((_luma(color) * alpha).sum() / weight) if weight > 0 else 0.0
        background, name = (1.0, "white") if content < 0.5 else (0.0, "black")
        why = "to contrast with the dark content" if background == 1.0 else "to contrast with the light content"
    else:
        background, name, why = 1.0, "white", "(photo models)"
    a = alpha[..., None]
    steps.add("alpha-composited", f"transparency composited onto {name} {why}")
    return color * a + background * (1.0 - a)


def _border_median(x: torch.Tensor) -> torch.Tensor:
    """Per-channel median of the border pixels of ``x`` (1, C, H, W) → (C,)."""
    image = x[0]
    border = torch.cat([image[:, 0, :], image[:, -1, :], image[:, 1:-1, 0], image[:, 1:-1, -1]], dim=1)
    return torch.from_numpy(np.median(border.numpy(), axis=1).astype(np.float32))


_INTERPOLATION_WORDS = {"bilinear": "bilinear, antialiased", "bicubic": "bicubic, antialiased", "nearest": "nearest"}


def _resize(x: torch.Tensor, size: tuple[int, int], steps: _Steps, interpolation: str = "bilinear") -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    mode = InterpolationMode(interpolation)
    word = _INTERPOLATION_WORDS.get(interpolation, interpolation)
    steps.add("resized", f"resized {x.shape[-1]}×{x.shape[-2]} → {size[1]}×{size[0]} ({word})")
    return TF.resize(x, list(size), interpolation=mode, antialias=mode != InterpolationMode.NEAREST)


def _crop_geometry(
    x: torch.Tensor, original: tuple[int, int], policy: ImagePolicy, size: tuple[int, int], steps: _Steps
) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    out_h, out_w = size
    short_target = policy.resize_target(size)
    # torchvision.transforms.functional.resize(img, [s]): shorter side s, longer int(s·long/short)
    h, w = original  # the geometry is computed on the size before any box reduction
    if h <= w:
        new_h, new_w = short_target, int(short_target * w / h)
    else:
        new_h, new_w = int(short_target * h / w), short_target
    # never smaller than the crop (a policy with resize_size < input size)
    scale = max(out_h / new_h, out_w / new_w, 1.0)
    if scale > 1.0:
        new_h, new_w = max(out_h, math.ceil(new_h * scale)), max(out_w, math.ceil(new_w * scale))
    x = _resize(x, (new_h, new_w), steps, policy.interpolation)
    if (new_h, new_w) != (out_h, out_w):
        x = TF.center_crop(x, [out_h, out_w])
        steps.add("cropped", f"centre-cropped {new_w}×{new_h} → {out_w}×{out_h}")
    return x


def _pad_geometry(
    x: torch.Tensor, background: torch.Tensor, size: tuple[int, int], steps: _Steps, interpolation: str = "bilinear"
) -> torch.Tensor:
    out_h, out_w = size
    _, channels, h, w = x.shape
    if h * out_w > w * out_h:  # relatively taller than the target: pad left and right
        new_h, new_w = h, max(w, math.ceil(h * out_w / out_h))
    else:
        new_h, new_w = max(h, math.ceil(w * out_h / out_w)), w
    if (new_h, new_w) != (h, w):
        canvas = background.view(1, channels, 1, 1).expand(1, channels, new_h, new_w).clone()
        top, left = (new_h - h) // 2, (new_w - w) // 2
        canvas[..., top : top + h, left : left + w] = x
        x = canvas
        values = ", ".join(f"{v:.3f}" for v in background.tolist())
        steps.add("padded", f"padded {w}×{h} → {new_w}×{new_h} with the background colour ({values})")
    return _resize(x, size, steps, interpolation)


def _prepare(decoded: _Decoded, model: PixelModel, steps: _Steps) -> torch.Tensor:
    policy = model.image_policy
    color, alpha = decoded.color, decoded.alpha
    if alpha is not None and float(alpha.min()) < 1.0:
        color = _composite(color, alpha, policy, steps)
    if model.channels == 1 and color.shape[2] == 3:
        color = _luma(color)[..., None]
        steps.add("to-gray", "converted to gray (ITU-R BT.601 luma: 0.299 R + 0.587 G + 0.114 B)")
    elif model.channels == 3 and color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
        steps.add("to-rgb", "gray repeated into R, G and B")
    x = torch.from_numpy(np.ascontiguousarray(color, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()

    background = _border_median(x)
    if policy.invert_light_background and float(_luma(background.numpy())) > 0.5:
        x = 1.0 - x
        background = 1.0 - background
        steps.add("inverted", "inverted: the border is light, and the model expects light ink on a dark background")

    if policy.mode == "crop":
        x = _crop_geometry(x, (decoded.height, decoded.width), policy, model.input_size, steps)
    elif policy.mode == "pad":
        x = _pad_geometry(x, background, model.input_size, steps, policy.interpolation)
    else:
        raise InputError(f"{model.name} has an unknown image policy mode {policy.mode!r} (expected 'crop' or 'pad')")

    if policy.invert_light_background:
        low, high = float(x.min()), float(x.max())
        if high - low > 1e-6 and (low > 0.0 or high < 1.0):
            x = (x - low) / (high - low)
            steps.add("contrast-stretched", f"contrast stretched from [{low:.3f}, {high:.3f}] to [0, 1]")
    x = x.clamp(0.0, 1.0).to(torch.float32).contiguous()
    if not bool(torch.isfinite(x).all()):  # cannot happen for validated inputs; guard the contract
        raise ImageError("the prepared image contains non-finite values")
    return x


# ---------------------------------------------------------------------------------------------
# Headers before pixels (issue 24.17, 24.18): what an image will cost, from its first bytes

#: How much of an encoded image is read to find its header before the rest is read or
#: decompressed: 64 KiB, then 1 MiB (a JPEG's size marker follows its EXIF and ICC segments).
HEADER_PREFIXES: tuple[int, ...] = (64 * 1024, 1024 * 1024)
#: An encoded image may hold at most this many times the bytes of its raw pixels, plus
#: :data:`HEADER_SLACK_BYTES` of metadata; more is padding (or a bomb). Formats that can hold many
#: frames or sizes (GIF, TIFF, WebP, ICO, AVIF) are not held to it.
MAX_ENCODED_RATIO: int = 4
HEADER_SLACK_BYTES: int = 1024 * 1024
_MULTI_FRAME_FORMATS = frozenset({"GIF", "TIFF", "WEBP", "ICO", "AVIF"})


@dataclass(frozen=True)
class ImageHeader:
    """An image's format, size and mode, read from its first bytes only; ``size`` its encoded bytes."""

    format: str
    width: int
    height: int
    mode: str
    size: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(source: Any, name: str | None = None) -> ImageHeader | None:
    """The header of an encoded image (a path, bytes, a binary stream with ``getvalue``, or a
    :class:`neuronviz.infra.archives.ZipMember`), reading at most :data:`HEADER_PREFIXES` bytes of it.

    Refuses, with an :class:`ImageError`, before the rest is read or decompressed: an empty file,
    more than :data:`MAX_FILE_BYTES`, something that is not an image of :data:`ALLOWED_FORMATS`
    (e.g. a zero-filled ``.png``), more than :data:`MAX_PIXELS`, and more encoded bytes than
    :data:`MAX_ENCODED_RATIO` × its raw pixels + :data:`HEADER_SLACK_BYTES`. None for sources
    that are already decoded (PIL images, arrays, tensors) or streams it cannot peek at."""
    label = name or getattr(source, "name", None) or "the image"
    found = _sized_prefix(source)
    if found is None:
        return None
    size, prefix = found
    if size == 0:
        raise ImageError(f"{label} is empty (0 bytes)")
    _check_file_bytes(size, str(label))
    header = None
    for limit in HEADER_PREFIXES:
        data = prefix(limit)
        header = _parse_header(data, str(label))
        if header is not None or len(data) >= size:
            break
    if header is None and size > HEADER_PREFIXES[-1] and _has_image_signature(data):
        # e.g. a TIFF whose directory follows its pixels (libtiff's default): the whole file, within MAX_FILE_BYTES
        header = _parse_header(prefix(size), str(label))
    if header is None:
        first = prefix(12)
        raise ImageError(
            f"{label} is not an image that can be read (first bytes {first!r}; no header in its first "
            f"{min(size, HEADER_PREFIXES[-1]):,} bytes); accepted formats: {', '.join(_allowed_formats())}"
        )
    fmt, width, height, mode = header
    if width <= 0 or height <= 0:
        raise ImageError(f"{label} has zero size ({width}×{height} pixels)")
    if width * height > MAX_PIXELS:
        raise _too_many_pixels(width, height, str(label))
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):
        bands = 4
    raw = width * height * bands * (2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1)
    most = MAX_ENCODED_RATIO * raw + HEADER_SLACK_BYTES
    if fmt not in _MULTI_FRAME_FORMATS and size > most:
        raise ImageError(
            f"{label} holds {size:,} bytes for a {width}×{height} {fmt} image, whose pixels take {raw:,} bytes "
            f"(at most {most:,} are accepted): padding or a bomb, refused before the rest was read"
        )
    return ImageHeader(fmt, width, height, mode, size)


def _sized_prefix(source: Any):
    """``(encoded size, prefix(n))`` for the sources :func:`read_header` can peek at, else None."""
    if hasattr(source, "head") and hasattr(source, "size"):  # a zip member: decompress only n bytes
        return int(source.size), source.head
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source)
        return data.nbytes, lambda n: bytes(data[:n])
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        try:
            size = path.stat().st_size
        except OSError as error:
            raise ImageError(f"cannot read image file {path.name}: {error.strerror or error}") from None

        def head(n: int) -> bytes:
            try:
                with path.open("rb") as handle:
                    return handle.read(n)
            except OSError as error:
                raise ImageError(f"cannot read image file {path.name}: {error.strerror or error}") from None

        return size, head
    if hasattr(source, "getbuffer"):  # io.BytesIO (an upload)
        buffer = source.getbuffer()
        return buffer.nbytes, lambda n: bytes(buffer[:n])
    return None


def _has_image_signature(data: bytes) -> bool:
    """Whether an allowed format's own signature test (Pillow's ``accept``) recognises ``data``'s
    first bytes: a file that starts as an image, whose header is further in."""
    Image.init()
    for fmt in _allowed_formats():
        accept = Image.OPEN.get(fmt, (None, None))[1]
        try:
            if accept is not None and accept(data[:64]):
                return True
        except _PIL_ERRORS:
            continue
    return False


def _parse_header(data: bytes, label: str) -> tuple[str, int, int, str] | None:
    """Pillow's header parse of ``data`` (no pixel is decoded): (format, width, height, mode), or
    None when no allowed format recognises it (perhaps only because ``data`` is too short)."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=_allowed_formats()) as image:
                return str(image.format), int(image.size[0]), int(image.size[1]), str(image.mode)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            count = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
            raise ImageError(f"{label} has {count}; the limit is {MAX_PIXELS:,} pixels (neuronviz.data.images.MAX_PIXELS)") from None
        except UnidentifiedImageError:
            return None
        except _PIL_ERRORS:
            return None
