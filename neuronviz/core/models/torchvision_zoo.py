"""The torchvision ImageNet zoo, through torchvision's weights API, with no hidden download.

Weights are looked up in the torch hub cache (``$TORCH_HOME/hub/checkpoints/<file name of the
URL>``, torchvision's own location). They are fetched only by :func:`download_weights`, which the
dashboard calls on an explicit click. A weights file the user already has can be passed as
``load_model(name, weights=path)``. Preprocessing (resize, crop size, mean/std) and the class
names come from the weights' own metadata (``Weights.transforms()``, ``Weights.meta``), but the
normalisation runs inside the ``PixelModel`` (the project works in [0, 1] pixel space).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from neuronviz.infra import settings
from neuronviz.infra.errors import DownloadError, ModelNotFoundError, SharedServerError, WeightsNotAvailableError

#: The zoo offered in the UI: name → one-line description.
ZOO: dict[str, str] = {
    "resnet18": "ResNet-18 (11.7 M parameters), ImageNet-1k",
    "resnet50": "ResNet-50 (25.6 M), ImageNet-1k",
    "vgg16": "VGG-16 (138 M), ImageNet-1k",
    "vgg19": "VGG-19 (144 M), ImageNet-1k, as in the NIP paper",
    "mobilenet_v2": "MobileNet-V2 (3.5 M), ImageNet-1k",
    "densenet121": "DenseNet-121 (8.0 M), ImageNet-1k",
    "efficientnet_b0": "EfficientNet-B0 (5.3 M), ImageNet-1k",
}


@dataclass(frozen=True)
class ZooSpec:
    name: str
    weights_name: str
    url: str
    file_name: str
    crop_size: int
    resize_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    categories: tuple[str, ...]


def _check_name(name: str) -> None:
    if name not in ZOO:
        raise ModelNotFoundError(f"{name!r} is not in the torchvision zoo offered here; choose from {sorted(ZOO)}")


@cache
def zoo_spec(name: str) -> ZooSpec:
    """Everything about a zoo model's default weights, read from torchvision (no network)."""
    from torchvision import models

    _check_name(name)
    weights = models.get_model_weights(name).DEFAULT
    transform = weights.transforms()
    return ZooSpec(
        name=name,
        weights_name=str(weights),
        url=weights.url,
        file_name=Path(urlparse(weights.url).path).name,
        crop_size=int(transform.crop_size[0]),
        resize_size=int(transform.resize_size[0]),
        mean=tuple(float(v) for v in transform.mean),
        std=tuple(float(v) for v in transform.std),
        categories=tuple(weights.meta["categories"]),
    )


def cache_dir() -> Path:
    """Where torchvision keeps downloaded weights (follows ``$TORCH_HOME`` at call time)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(name: str) -> Path:
    return cache_dir() / zoo_spec(name).file_name


def weights_cached(name: str) -> bool:
    return cached_weights_path(name).is_file()


def build_network(name: str) -> nn.Module:
    """The architecture with random initialisation (no weights are read or fetched)."""
    from torchvision import models

    _check_name(name)
    return models.get_model(name, weights=None)


def require_cached_weights(name: str) -> Path:
    path = cached_weights_path(name)
    if not path.is_file():
        spec = zoo_spec(name)
        raise WeightsNotAvailableError(
            f"pretrained weights for {name} ({spec.weights_name}) are not in the local cache "
            f"({path}). Download them once with neuronviz.core.models.download_weights({name!r}) "
            "(the dashboard's 'Download weights' button), pass a weights file you already have "
            "with weights=<path>, or use weights=None for random initialisation."
            if not settings.shared_server()
            else f"pretrained weights for {name} are not in this shared server's cache and are not "
            "downloaded here; use random initialisation, or ask the server's operator to add them."
        )
    return path


def download_weights(name: str, progress: bool = False) -> Path:
    """Fetch a zoo model's default weights into the torch hub cache (an explicit user action).

    Checks the SHA-256 prefix torchvision encodes in the file name. Returns the cached path;
    raises :class:`DownloadError` (no partial file is left) when it fails, and
    :class:`SharedServerError` on a shared server (``NEURONVIZ_SHARED_SERVER=1``), where only
    weights the operator has put in the cache are used.
    """
    spec = zoo_spec(name)
    path = cached_weights_path(name)
    if path.is_file():
        return path
    if settings.shared_server():
        raise SharedServerError(
            f"this is a shared server ({settings.SHARED_SERVER_ENV}=1): weights are not downloaded here. "
            f"The pretrained weights of {name} are not in the server's cache; ask its operator to add them "
            "(python -m neuronviz download " + name + "), or use random initialisation.",
            ui_hint="Use random initialisation, or ask the server's operator to add these weights.",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    match = re.search(r"-([a-f0-9]{6,})\.", spec.file_name)
    try:
        torch.hub.download_url_to_file(spec.url, str(path), hash_prefix=match.group(1) if match else None, progress=progress)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a hash mismatch a RuntimeError
        path.unlink(missing_ok=True)
        raise DownloadError(f"could not download the weights of {name} from {spec.url}: {error}") from None
    return path


# torchvision's DenseNet checkpoints use old key names ("norm.1.weight"); torchvision remaps them
# on load with this pattern (torchvision/models/densenet.py, _load_state_dict).
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def key_remap(name: str):
    """A function fixing legacy key names in a zoo checkpoint, or None when none is needed."""
    if name.startswith("densenet"):
        return lambda key: _DENSENET_OLD_KEY.sub(r"\1\2", key)
    return None
