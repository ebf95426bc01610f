"""Safe checkpoint reading: tensors only, never arbitrary code.

Accepted:

- ``.safetensors`` (a flat map of tensors plus string metadata; cannot carry code);
- ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` state dicts read with ``torch.load(weights_only=True)``,
  which refuses any pickled object that is not a tensor, a container or a primitive. A dict that
  wraps the state dict (``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``,
  as training scripts often save) is unwrapped; a ``module.`` prefix (DataParallel) is removed; a
  whole ``PixelModel.state_dict()`` (``net.*`` plus ``normalize.mean/std``) is recognised.
- TorchScript archives are refused: they run code when loaded. A user who trusts such a file
  loads it with ``torch.jit.load`` and wraps it with :func:`neuronviz.models.wrap_model`.

Every refusal raises :class:`CheckpointError` with a message that names the problem.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from neuronviz.errors import CheckpointError

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_MAX_LISTED = 6


@dataclass
class Checkpoint:
    """What a checkpoint file holds: a state dict of tensors and descriptive metadata."""

    state: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("architecture") or None

    def json_field(self, key: str):
        """A metadata value stored as JSON (mean, std, input_size, class_names), or None."""
        raw = self.metadata.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise CheckpointError(f"checkpoint metadata {key!r} is not valid JSON: {error}") from None


def is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript zip (it holds compiled code under ``<archive>/code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(part == "code" for name in archive.namelist() for part in name.split("/")[1:2])


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read tensors (and metadata) from a checkpoint file without running any code in it."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path.name} is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in STATE_DICT_SUFFIXES:
        if is_torchscript_archive(path):
            raise CheckpointError(
                f"{path.name} is a TorchScript archive: loading it runs code stored in the file. "
                "It is refused here; if you trust where it came from, load it yourself with "
                "torch.jit.load and wrap it with neuronviz.models.wrap_model. A state dict "
                "(.pt/.pth) or a .safetensors file is always safe."
            )
        return _read_torch_state(path)
    raise CheckpointError(
        f"{path.name}: unsupported checkpoint type {suffix or '(no extension)'}; "
        f"use .safetensors or a state dict saved as {', '.join(STATE_DICT_SUFFIXES)}"
    )


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a valid safetensors file: {error}") from None
    return Checkpoint(state=state, metadata=metadata, path=path)


def _read_torch_state(path: Path) -> Checkpoint:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(error))
        reason = match.group(1).strip() if match else type(error).__name__
        if "global" in reason.lower():  # a pickled callable or class: the file would run code
            raise CheckpointError(
                f"refused {path.name}: it contains pickled objects other than tensors, which could run "
                f"code when loaded ({reason.split('. ')[0]}). Save a state dict (model.state_dict()) "
                "or a .safetensors file instead."
            ) from None
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint (corrupt or not a pickle: {reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint: {error}") from None
    metadata: dict[str, str] = {}
    if isinstance(obj, Mapping):
        arch = obj.get("architecture")
        if isinstance(arch, str):
            metadata["architecture"] = arch
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    return Checkpoint(state=_as_state_dict(obj, path.name), metadata=metadata, path=path)


def _as_state_dict(obj: object, label: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, kept for clarity
        raise CheckpointError(f"{label} holds a whole pickled model; save model.state_dict() instead")
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{label} does not hold a state dict (a mapping of parameter names to tensors); "
            f"found {type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{label}: entries that are not tensors: {_listing(bad)}")
    return {str(k): v for k, v in obj.items()}


def normalise_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, list[float]]]:
    """Strip wrappers from keys: DataParallel's ``module.`` and a PixelModel's ``net.``.

    Returns the network's state dict and, for a whole PixelModel state, its ``mean``/``std``.
    """
    keys = list(state)
    extras: dict[str, list[float]] = {}
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module."):]: v for k, v in state.items()}
    if "normalize.mean" in state and "normalize.std" in state:
        extras = {
            "mean": state["normalize.mean"].flatten().tolist(),
            "std": state["normalize.std"].flatten().tolist(),
        }
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    return dict(state), extras


def apply_state(
    net: nn.Module,
    state: Mapping[str, torch.Tensor],
    label: str,
    remap: Callable[[str], str] | None = None,
) -> None:
    """Load ``state`` into ``net`` strictly, refusing with a precise message on any mismatch."""
    if remap is not None:
        state = {remap(k): v for k, v in state.items()}
    expected = net.state_dict()
    state = dict(state)
    for key in expected:
        # Checkpoints saved before PyTorch 0.4.1 (torchvision's published ImageNet files among
        # them) have no BatchNorm step counter; BatchNorm itself treats it as optional.
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} tensor(s) of the wrong shape: {_listing(wrong_shape)}")
    if problems:
        raise CheckpointError(f"{label} does not fit this architecture: " + "; ".join(problems))
    bad_dtype = [k for k, v in state.items() if v.is_floating_point() != expected[k].is_floating_point()]
    if bad_dtype:
        raise CheckpointError(f"{label}: tensors of the wrong kind (integer vs float): {_listing(bad_dtype)}")
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"{label}: tensors with NaN or infinite values: {_listing(nonfinite)}")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
