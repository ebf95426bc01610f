"""Provenance records: what produced a result, so a table or figure can be traced and redone.

:func:`record` returns a plain JSON-able dict: the model (name, architecture, source, content
hash), the data set (name, description, size and content digest, file list when it has one), the
attacks and defences with their full resolved parameters, the seeds, the versions of Python,
torch, torchvision, torchattacks, captum and neuronviz, the device and the time (UTC). The
``evaluate`` command stores one with its tables; figure exports can reuse it.

Nothing here reaches the network or imports Streamlit.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

import torch

#: The packages whose versions every record carries.
PACKAGES = ("torch", "torchvision", "torchattacks", "captum", "numpy", "neuronviz")


def versions(packages: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None`` when it is not installed); neuronviz's own
    version comes from the imported package (it may run from a checkout without being installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        if name == "neuronviz":
            import neuronviz

            out[name] = neuronviz.__version__
        elif name == "torch":
            out[name] = torch.__version__
        else:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                out[name] = None
    return out


def device_record(device: str | torch.device) -> dict[str, Any]:
    """The device in words: type, index, and for CUDA the GPU's name and the CUDA version."""
    dev = torch.device(device)
    info: dict[str, Any] = {"device": str(dev), "type": dev.type}
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        info.update(name=torch.cuda.get_device_name(index), cuda=torch.version.cuda)
    else:
        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    return info


def model_record(model) -> dict[str, Any]:
    """Name, architecture, source, input, classes and content hash of a :class:`PixelModel`."""
    return {
        "name": model.name,
        "architecture": model.meta.architecture,
        "source": model.meta.source,
        "content_hash": model.content_hash,
        "input": [model.channels, *model.input_size],
        "classes": model.num_classes,
    }


def tensor_set_digest(images: torch.Tensor, labels: torch.Tensor, ids: Sequence[str] = ()) -> str:
    """SHA-256 of every byte of the images and labels and of the image ids, in order."""
    from neuronviz.infra.digest import tensor_digest

    h = hashlib.sha256()
    h.update(tensor_digest(images).encode())
    h.update(tensor_digest(labels).encode())
    for item in ids:
        h.update(str(item).encode())
        h.update(b"\0")
    return h.hexdigest()


def now_utc() -> str:
    """The current time, ISO 8601 in UTC, to the second."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def record(
    model,
    dataset: Mapping[str, Any] | None = None,
    attacks: Sequence[Mapping[str, Any]] = (),
    defences: Sequence[Mapping[str, Any]] = (),
    seeds: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One provenance record (plain JSON-able values).

    Args:
        model: the :class:`PixelModel` the result was computed with.
        dataset: what the data set is (e.g. ``Dataset.describe()`` of :mod:`neuronviz.workflows.evaluate`):
            name, description, images, digest, files.
        attacks, defences: one mapping per attack/defence with its name and full parameters.
        seeds: every seed that was used, by role.
        device: where it ran (default: the model's device).
        extra: anything else the producer wants kept (the command line, the world size...).
    """
    out: dict[str, Any] = {
        "created": now_utc(),
        "model": model_record(model),
        "dataset": dict(dataset) if dataset is not None else None,
        "attacks": [dict(a) for a in attacks],
        "defences": [dict(d) for d in defences],
        "seeds": dict(seeds or {}),
        "versions": versions(),
        "device": device_record(device if device is not None else model.device),
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "argv": list(sys.argv),
    }
    if extra:
        out["extra"] = dict(extra)
    return out
