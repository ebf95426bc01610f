"""Safe checkpoint reading: tensors only, never arbitrary code, never a surprise allocation.

Accepted:

- ``.safetensors`` (a flat map of tensors plus string metadata; cannot carry code);
- ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` state dicts read with ``torch.load(weights_only=True)``,
  which refuses any pickled object that is not a tensor, a container or a primitive. A dict that
  wraps the state dict (``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``,
  as training scripts often save) is unwrapped, and its ``architecture``, ``class_names``,
  ``mean``, ``std`` and ``input_size`` entries are read as metadata; a ``module.`` prefix
  (DataParallel) is removed; a whole ``PixelModel.state_dict()`` (``net.*`` plus
  ``normalize.mean/std``) is recognised.
- TorchScript archives are refused: they run code when loaded. A user who trusts such a file
  loads it with ``torch.jit.load`` and wraps it with :func:`neuronviz.core.models.wrap_model`.

Reading happens in two steps so that a small hostile file cannot make the process allocate
gigabytes. :func:`inspect_checkpoint` reads only the file's *structure*: its size, a zip
archive's central directory (entry count, declared sizes), the pickle (bounded, and loaded with
tensors on the ``meta`` device, so no tensor data is read or allocated) or the safetensors
header (declared dtypes, shapes and offsets checked against the file's length). It returns a
:class:`Checkpoint` of meta tensors, against which the registry checks the architecture, the
parameter count and the metadata. Only then does :func:`load_tensors` read the data. The caps
are in :mod:`neuronviz.infra.settings`.

Every refusal raises :class:`CheckpointError` with a message that names the problem.

Longer than 500 lines on purpose: the safe reader of each format (safetensors header, zip
entries, a bounded unpickler that builds tensors on ``meta``) and its checks before allocation
belong together; splitting them would spread one security boundary over several files.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import pickletools
import re
import struct
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from neuronviz.infra import settings
from neuronviz.infra.archives import check_directory
from neuronviz.infra.errors import CheckpointError
from neuronviz.infra.settings import format_bytes

STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
#: Entries of a wrapping dict read as metadata (stored as JSON text, as in a safetensors header).
_METADATA_KEYS = ("class_names", "mean", "std", "input_size")
_MAX_LISTED = 6

#: safetensors dtype names → torch dtypes (the ones torch can hold).
_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        _SAFETENSORS_DTYPES[_name] = getattr(torch, _attr)


@dataclass
class Checkpoint:
    """What a checkpoint file holds: a state dict of tensors and descriptive metadata.

    After :func:`inspect_checkpoint` the tensors are on the ``meta`` device (shapes and dtypes
    only); after :func:`load_tensors` / :func:`read_checkpoint` they hold the data.
    """

    state: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    format: str = ""  # "safetensors", "torch-zip" or "torch-legacy"
    #: Bytes the tensors' storages declare (what reading the data allocates); set by inspection.
    declared_bytes: int | None = None

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("architecture") or None

    @property
    def is_meta(self) -> bool:
        return any(v.is_meta for v in self.state.values())

    @property
    def label(self) -> str:
        return self.path.name if self.path else "checkpoint"

    def json_field(self, key: str, max_chars: int | None = None):
        """A metadata value stored as JSON (mean, std, input_size, class_names), or None.

        ``max_chars``: refuse a longer value before parsing it.
        """
        raw = self.metadata.get(key)
        if raw is None:
            return None
        if max_chars is not None and len(raw) > max_chars:
            raise CheckpointError(
                f"{self.label}: its {key!r} metadata is {len(raw):,} characters long; it should be a short "
                f"JSON list (at most {max_chars:,} characters)."
            )
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"{self.label}: its {key!r} metadata is not valid JSON ({error.msg} at character {error.pos}). "
                f"Write it as JSON text, e.g. {key}='[0.5]'."
            ) from None


# -- entry points -----------------------------------------------------------------------------------


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read tensors (and metadata) from a checkpoint file without running any code in it.

    The file's structure is checked first (:func:`inspect_checkpoint`); nothing larger than the
    caps in :mod:`neuronviz.infra.settings` is allocated.
    """
    return load_tensors(inspect_checkpoint(path))


def inspect_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint's keys, shapes, dtypes and metadata, as meta tensors: no tensor data is read."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path.name} is empty (0 bytes)")
    caps = settings.limits()
    check_size(path.name, size, "checkpoints", caps)
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        checkpoint = _inspect_safetensors(path, size, caps)
    elif suffix in STATE_DICT_SUFFIXES:
        checkpoint = _inspect_torch(path, size, caps)
    else:
        raise CheckpointError(
            f"{path.name}: unsupported checkpoint type {suffix or '(no extension)'}; "
            f"use .safetensors or a state dict saved as {', '.join(STATE_DICT_SUFFIXES)}"
        )
    _check_declared_totals(checkpoint, caps)
    return checkpoint


def load_tensors(inspected: Checkpoint) -> Checkpoint:
    """Read the tensor data of a checkpoint :func:`inspect_checkpoint` has already checked."""
    if not inspected.is_meta:
        return inspected
    path = inspected.path
    if path is None:
        raise CheckpointError("a checkpoint without a file cannot be read")
    if inspected.format == "safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                state = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path.name} is not a valid safetensors file: {error}") from None
        loaded = Checkpoint(state=state, metadata=dict(inspected.metadata), path=path, format=inspected.format)
    else:
        obj = _torch_load(path, map_location="cpu")
        metadata, state = _unwrap(obj, path.name)
        loaded = Checkpoint(state=state, metadata=metadata, path=path, format=inspected.format)
    changed = [
        k for k, v in inspected.state.items()
        if k not in loaded.state or tuple(loaded.state[k].shape) != tuple(v.shape) or loaded.state[k].dtype != v.dtype
    ]
    if changed or len(loaded.state) != len(inspected.state):
        raise CheckpointError(f"{path.name} changed while it was being read ({_listing(changed) or 'keys differ'}); try again")
    return loaded


def is_torchscript_archive(path: Path) -> bool:
    """True for a TorchScript zip (it holds compiled code under ``<archive>/code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _is_torchscript(archive.namelist())


def _is_torchscript(names: list[str]) -> bool:
    return any(part == "code" for name in names for part in name.split("/")[1:2])


def check_size(label: str, size: int, what: str, caps: settings.Limits) -> None:
    """The one size gate of every model file (checkpoints, ONNX files, torch.export programs),
    before a byte of it is read: a :class:`CheckpointError` beyond the cap."""
    if size > caps.max_checkpoint_bytes:
        raise CheckpointError(
            f"{label} is {format_bytes(size)}; {what} up to {format_bytes(caps.max_checkpoint_bytes)} are read "
            f"here{_shared_note(caps)}. Nothing was read.",
            ui_hint="Use a smaller model.",
        )


def _shared_note(caps: settings.Limits) -> str:
    return " (a shared server's limit)" if caps.shared_server else ""


# -- safetensors ---------------------------------------------------------------------------------


def _inspect_safetensors(path: Path, size: int, caps: settings.Limits) -> Checkpoint:
    """Check a safetensors header against the file before reading a byte of tensor data."""
    label = path.name
    bad = f"{label} is not a valid safetensors file"
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{bad}: it is {size} bytes, shorter than the 8-byte header length")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > caps.max_header_bytes:
            raise CheckpointError(
                f"{bad}: its header declares {format_bytes(header_len)}; headers up to "
                f"{format_bytes(caps.max_header_bytes)} are read here"
            )
        if 8 + header_len > size:
            raise CheckpointError(f"{bad}: its header declares {format_bytes(header_len)} but the file has only {format_bytes(size)}")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{bad}: its header is not JSON ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{bad}: its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise CheckpointError(f"{bad}: its __metadata__ must map names to strings")
    if len(header) > caps.max_tensors:
        raise CheckpointError(f"{label} declares {len(header):,} tensors; up to {caps.max_tensors:,} are read here")
    data_len = size - 8 - header_len
    state: dict[str, torch.Tensor] = {}
    for key, entry in header.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise CheckpointError(f"{bad}: tensor {key!r} lacks a dtype, shape or data_offsets")
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
        if dtype is None:
            raise CheckpointError(f"{label}: tensor {key!r} has dtype {entry['dtype']!r}, which is not supported here")
        shape, offsets = entry["shape"], entry["data_offsets"]
        if not _int_list(shape) or not _int_list(offsets) or len(offsets) != 2:
            raise CheckpointError(f"{bad}: tensor {key!r} has a malformed shape {shape!r} or data_offsets {offsets!r}")
        numel = math.prod(shape)
        nbytes = numel * torch.empty((), dtype=dtype, device="meta").element_size()
        begin, end = offsets
        if end < begin or end - begin != nbytes:
            raise CheckpointError(
                f"{bad}: tensor {key!r} declares shape {tuple(shape)} ({format_bytes(nbytes)}) but data_offsets "
                f"{begin}–{end} ({format_bytes(max(end - begin, 0))})"
            )
        if end > data_len:
            raise CheckpointError(
                f"{bad}: tensor {key!r} ends at byte {end:,} of the data, but the file holds only "
                f"{data_len:,} bytes of data (truncated, or the header lies)"
            )
        if nbytes > caps.max_decompressed_bytes:
            raise CheckpointError(_too_much_data(label, nbytes, caps))
        state[key] = torch.empty(shape, dtype=dtype, device="meta")
    if not state:
        raise CheckpointError(f"{label} holds no tensors")
    return Checkpoint(state=state, metadata=dict(metadata), path=path, format="safetensors")


def _int_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def _too_much_data(label: str, nbytes: int, caps: settings.Limits) -> str:
    return (
        f"{label} declares {format_bytes(nbytes)} of tensor data; up to {format_bytes(caps.max_decompressed_bytes)} "
        f"is read here{_shared_note(caps)}. Nothing was allocated. Use a smaller model."
    )


# -- PyTorch files --------------------------------------------------------------------------------


def _inspect_torch(path: Path, size: int, caps: settings.Limits) -> Checkpoint:
    if zipfile.is_zipfile(path):
        pickle_bytes = _check_zip(path, caps)
        checkpoint_format = "torch-zip"
        obj = _torch_load(path, map_location="meta", pickle_bytes=pickle_bytes)
    else:
        # The legacy format (torch < 1.6, and torchvision's older published weights) or a bare
        # pickle: bound the pickled structure before torch unpickles it.
        with path.open("rb") as handle:
            pickle_bytes = _legacy_pickles(handle, caps, path.name)
        checkpoint_format = "torch-legacy"
        obj = _torch_load(path, map_location=None, pickle_bytes=pickle_bytes, fake=True)
    metadata, state = _unwrap(obj, path.name)
    declared = sum(_storage_bytes(v) for v in state.values())
    if checkpoint_format == "torch-legacy" and declared > size:
        raise CheckpointError(
            f"{path.name} declares {format_bytes(declared)} of tensor data but the file has only "
            f"{format_bytes(size)} (truncated, or its structure lies). Nothing was allocated."
        )
    state = {k: (v if v.is_meta else torch.empty(v.shape, dtype=v.dtype, device="meta")) for k, v in state.items()}
    return Checkpoint(state=state, metadata=metadata, path=path, format=checkpoint_format, declared_bytes=declared)


def _storage_bytes(tensor: torch.Tensor) -> int:
    """The bytes of a tensor's whole storage (a small view of a huge storage counts as huge)."""
    try:
        return max(int(tensor.untyped_storage().nbytes()), tensor.numel() * tensor.element_size())
    except (RuntimeError, NotImplementedError):
        return tensor.numel() * tensor.element_size()


def _check_zip(path: Path, caps: settings.Limits) -> bytes:
    """Check a zip archive's directory (entries, declared sizes) before anything is extracted.

    Returns the archive's pickle (``<name>/data.pkl``), read after its declared size passed.
    """
    label = path.name
    with path.open("rb") as handle:
        end_record = zipfile._EndRecData(handle)  # type: ignore[attr-defined]  # the end-of-directory record (stdlib, stable since 2.x)
    if not end_record:
        raise CheckpointError(f"{label} is not a readable PyTorch checkpoint: its zip directory is damaged")
    entries, directory_size = end_record[zipfile._ECD_ENTRIES_TOTAL], end_record[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    max_entries = caps.max_tensors + 16
    if entries > max_entries or directory_size > 512 * max_entries:
        raise CheckpointError(
            f"{label} is a zip archive with {entries:,} entries ({format_bytes(directory_size)} of directory); "
            f"a checkpoint here has at most {caps.max_tensors:,} tensors. Refused before extracting anything."
        )
    with path.open("rb") as handle:  # 24.16: the directory must list what its end record declares
        check_directory(handle, max_entries, label, CheckpointError)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{label} is not a readable PyTorch checkpoint: {error}") from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if _is_torchscript(names):
            raise CheckpointError(
                f"{label} is a TorchScript archive: loading it runs code stored in the file. "
                "It is refused here; if you trust where it came from, load it yourself with "
                "torch.jit.load and wrap it with neuronviz.core.models.wrap_model. A state dict "
                "(.pt/.pth) or a .safetensors file is always safe."
            )
        declared = sum(info.file_size for info in infos)
        if declared > caps.max_decompressed_bytes + caps.max_pickle_bytes:
            biggest = max(infos, key=lambda info: info.file_size)
            raise CheckpointError(
                f"{label} is a zip archive of {format_bytes(path.stat().st_size)} that declares "
                f"{format_bytes(declared)} once extracted (largest entry {biggest.filename}: "
                f"{format_bytes(biggest.file_size)}); up to {format_bytes(caps.max_decompressed_bytes)} is read "
                f"here{_shared_note(caps)}. Refused before extracting anything."
            )
        pickles = [info for info in infos if info.filename.endswith("/data.pkl") or info.filename == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{label} is a zip archive but not a PyTorch checkpoint (it has no data.pkl)")
        if pickles[0].file_size > caps.max_pickle_bytes:
            raise CheckpointError(
                f"{label}: its pickled structure (data.pkl) declares {format_bytes(pickles[0].file_size)}; up to "
                f"{format_bytes(caps.max_pickle_bytes)} is read here. A state dict's structure is a few KB."
            )
        try:
            data = archive.read(pickles[0])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
            raise CheckpointError(f"{label} is not a readable PyTorch checkpoint: {error}") from None
    _scan_pickles(io.BytesIO(data), caps, label, count=1)
    return data


class _CappedReader:
    """A file wrapper for pickletools that refuses to read past ``cap`` bytes in total."""

    def __init__(self, handle, cap: int) -> None:
        self.handle, self.left = handle, cap
        self.consumed = bytearray()

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self.left:
            raise _TooLarge
        data = self.handle.read(n)
        self.left -= len(data)
        self.consumed += data
        return data

    def readline(self) -> bytes:
        line = self.handle.readline(self.left + 1)
        if len(line) > self.left:
            raise _TooLarge
        self.left -= len(line)
        self.consumed += line
        return line


class _TooLarge(Exception):
    pass


def _legacy_pickles(handle, caps: settings.Limits, label: str) -> bytes:
    """The pickles at the head of a legacy torch file (at most five), bounded in size and length."""
    reader = _CappedReader(handle, caps.max_pickle_bytes)
    try:
        _scan_pickles(reader, caps, label, count=5)  # magic number, protocol, system info, object, keys
    except _TooLarge:
        raise CheckpointError(
            f"{label}: its pickled structure is larger than {format_bytes(caps.max_pickle_bytes)}, the most read "
            "here (a state dict's structure is a few KB). Refused before unpickling it."
        ) from None
    return bytes(reader.consumed)


def _scan_pickles(stream, caps: settings.Limits, label: str, count: int) -> None:
    """Walk up to ``count`` pickles' instructions without building anything; refuse too many.

    Each instruction can build one object when unpickled, so their number bounds the memory
    (and time) ``torch.load`` will spend on the structure.
    """
    instructions = 0
    for index in range(count):
        try:
            for _ in pickletools.genops(stream):
                instructions += 1
                if instructions > caps.max_pickle_opcodes:
                    raise CheckpointError(
                        f"{label}: its pickled structure has more than {caps.max_pickle_opcodes:,} instructions "
                        "(a state dict's has a few thousand); unpickling it could take gigabytes. Refused "
                        "before unpickling it."
                    )
        except CheckpointError:
            raise
        except ValueError:
            if index == 0:
                raise CheckpointError(f"{label} is not a readable PyTorch checkpoint (neither a zip archive nor a pickle)") from None
            return  # a bare pickle ends after the first; torch reports what it makes of the rest


def _torch_load(path: Path, map_location, pickle_bytes: bytes | None = None, fake: bool = False):
    """``torch.load(weights_only=True)`` with torch's refusals turned into CheckpointErrors."""
    try:
        if fake:  # legacy files: fake tensors on the meta device, the storages' data is not read
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                return torch.load(path, map_location=map_location, weights_only=True)
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_global(str(error), pickle_bytes if pickle_bytes is not None else _pickle_of(path))
        if unsafe:
            raise CheckpointError(
                f"refused {path.name}: loading it would run code. It contains "
                f"{'pickled calls' if ', ' in unsafe else 'a pickled call'} to {unsafe}, "
                "not only tensors, and a file like that could run code of its author's choosing; nothing "
                "in it was run. Save a state dict (model.state_dict()) or a .safetensors file instead."
            ) from None
        reason = _first_line(str(error)) or type(error).__name__
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint (corrupt or not a state dict: {reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, struct.error, TypeError, KeyError) as error:
        raise CheckpointError(f"{path.name} is not a readable PyTorch checkpoint: {_first_line(str(error)) or type(error).__name__}") from None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keep = [line for line in lines if not line.startswith(("Weights only load failed", "(1)", "(2)", "Check the documentation"))]
    return (keep or lines or [""])[0][:300]


def _pickle_of(path: Path) -> bytes:
    """The pickle bytes of a torch file, bounded (only used to name a refused global)."""
    caps = settings.limits()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
                return archive.read(info) if info.file_size <= caps.max_pickle_bytes else b""
        with path.open("rb") as handle:
            return _legacy_pickles(handle, caps, path.name)
    except (CheckpointError, StopIteration, zipfile.BadZipFile, OSError):
        return b""


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def pickle_globals(data: bytes) -> list[str]:
    """Every global (``module.name``) a pickle refers to, read from its opcodes without running it.

    ``GLOBAL``/``INST`` carry the name; ``STACK_GLOBAL`` takes the two strings pushed before it
    (directly or from the memo). Several pickles in a row (a legacy torch file) are all read.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        recent: list[object] = []
        memo: dict[int, object] = {}
        try:
            for opcode, arg, _ in pickletools.genops(stream):
                name = opcode.name
                if name in ("GLOBAL", "INST"):
                    module, _, qualname = str(arg).partition(" ")
                    found.append(_python3_name(module, qualname))
                    recent.append(None)
                elif name in _STRING_OPS:
                    recent.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(arg)] = recent[-1] if recent else None  # type: ignore[arg-type]
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(arg)))  # type: ignore[arg-type]
                elif name == "STACK_GLOBAL":
                    pushed_module, pushed_name = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
                    found.append(
                        _python3_name(pushed_module, pushed_name)
                        if isinstance(pushed_module, str) and isinstance(pushed_name, str)
                        else "an unnamed global"
                    )
                    recent.append(None)
                else:
                    recent.append(None)
                del recent[:-4]
        except ValueError:
            break
    return found


def _python3_name(module: str, qualname: str) -> str:
    """``module.qualname`` as Python 3 resolves it (protocol 0–2 pickles use Python 2 names)."""
    import _compat_pickle

    if (module, qualname) in _compat_pickle.NAME_MAPPING:
        module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{qualname}"


def _unsafe_global(message: str, data: bytes) -> str | None:
    """The globals a weights-only load refuses (up to three, in order): from the pickle's opcodes,
    else from torch's message."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except (ImportError, AttributeError):  # a torch without that helper: trust only the basics
        allowed = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"}
    try:
        allowed |= {f"{g.__module__}.{g.__qualname__}" for g in torch.serialization.get_safe_globals() if not isinstance(g, tuple)}
    except AttributeError:
        pass
    unsafe: list[str] = []
    for name in pickle_globals(data):
        if name not in allowed and name not in unsafe and not re.fullmatch(r"torch\.(cuda\.)?\w+(Storage|Tensor)|torch\.\w+", name):
            unsafe.append(name)
    if unsafe:
        return ", ".join(_readable_global(name) for name in unsafe[:3]) + (f" (+{len(unsafe) - 3} more)" if len(unsafe) > 3 else "")
    match = re.search(r"GLOBAL\s+([\w.]+)", message)
    return _readable_global(match.group(1)) if match else None


def _readable_global(name: str) -> str:
    module, _, rest = name.partition(".")
    if module in ("posix", "nt") and rest:  # os.system is pickled under the platform module's name
        return f"{name} (os.{rest})"
    return name


# -- unwrapping --------------------------------------------------------------------------------------


def _unwrap(obj: object, label: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, state dict) of what ``torch.load`` returned."""
    metadata: dict[str, str] = {}
    if isinstance(obj, Mapping):
        arch = obj.get("architecture")
        if isinstance(arch, str):
            metadata["architecture"] = arch
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                for meta_key in _METADATA_KEYS:
                    if meta_key in obj:
                        metadata[meta_key] = _as_json(obj[meta_key], meta_key, label)
                obj = inner
                break
    return metadata, _as_state_dict(obj, label)


def _as_json(value: object, key: str, label: str) -> str:
    if isinstance(value, str):
        return value if key != "class_names" else json.dumps([value])
    if isinstance(value, torch.Tensor):
        if value.is_meta or value.numel() > 16:
            raise CheckpointError(f"{label}: its {key!r} entry must be a list, not a tensor of {value.numel()} values")
        value = value.tolist()
    try:
        return json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        raise CheckpointError(f"{label}: its {key!r} entry must be a list of numbers or strings, not {type(value).__name__}") from None


def _check_declared_totals(checkpoint: Checkpoint, caps: settings.Limits) -> None:
    """Count tensors and the bytes their storages would take, from the meta tensors alone."""
    label = checkpoint.label
    if len(checkpoint.state) > caps.max_tensors:
        raise CheckpointError(f"{label} declares {len(checkpoint.state):,} tensors; up to {caps.max_tensors:,} are read here")
    total = checkpoint.declared_bytes
    if total is None:
        total = sum(_storage_bytes(v) for v in checkpoint.state.values())
    if total > caps.max_decompressed_bytes:
        raise CheckpointError(_too_much_data(label, total, caps))
    parameters = sum(t.numel() for t in checkpoint.state.values())
    if parameters > caps.max_checkpoint_parameters:
        raise CheckpointError(
            f"{label} declares {parameters:,} values; models up to {caps.max_checkpoint_parameters:,} parameters "
            f"are loaded here{_shared_note(caps)}. Nothing was allocated. Use a smaller model."
        )


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


def normalise_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Strip wrappers from keys: DataParallel's ``module.`` and a PixelModel's ``net.``.

    Returns the network's state dict and, for a whole PixelModel state, its ``mean``/``std``
    tensors (flattened; on the meta device when the checkpoint was only inspected).
    """
    keys = list(state)
    extras: dict[str, torch.Tensor] = {}
    if keys and all(k.startswith("module.") for k in keys):
        state = {k[len("module."):]: v for k, v in state.items()}
    if "normalize.mean" in state and "normalize.std" in state:
        extras = {"mean": state["normalize.mean"].flatten(), "std": state["normalize.std"].flatten()}
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    return dict(state), extras


def apply_state(
    net: nn.Module,
    state: Mapping[str, torch.Tensor],
    label: str,
    remap: Callable[[str], str] | None = None,
    check_only: bool = False,
) -> None:
    """Load ``state`` into ``net`` strictly, refusing with a precise message on any mismatch.

    ``check_only``: compare keys, shapes and kinds only (``net`` and ``state`` may be on the
    ``meta`` device); nothing is loaded.
    """
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
    if check_only:
        return
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise CheckpointError(f"{label}: tensors with NaN or infinite values: {_listing(nonfinite)}")
    net.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=True)


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", … (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
