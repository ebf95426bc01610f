"""A battery of hostile and broken checkpoints, each built here, each refused precisely and cheaply.

Every case asserts the error class and the words of its message. The bombs (a zip bomb, tiny
files declaring huge tensors or a huge architecture, a huge class-name list) are loaded in a
fresh subprocess that measures its peak RSS: a refusal must stay under 200 MB above the
process's baseline (torch imported and one small checkpoint of each format already loaded).
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from neuronviz.core.models import load_model
from neuronviz.core.models.builtin import DigitsCNN, DigitsResNet
from neuronviz.core.models.checkpoints import pickle_globals
from neuronviz.infra import settings
from neuronviz.infra.errors import CheckpointError, ModelNotFoundError, SharedServerError

ROOT = Path(__file__).resolve().parents[2]
RSS_BOUND_MB = 200


# -- building hostile files ---------------------------------------------------------------------


class _Storage:
    """A storage a hand-written torch pickle refers to by persistent id (no data needed here)."""

    def __init__(self, key: str, numel: int, legacy: bool = False) -> None:
        self.key, self.numel, self.legacy = key, numel, legacy


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]) -> None:
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, acc = [], 1
        for size in reversed(self.shape):
            stride.insert(0, acc)
            acc *= size
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            base = ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
            return (*base, None) if obj.legacy else base
        return None


def _torch_pickle(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _write_zip(path: Path, entries: list[tuple[str, bytes | int]]) -> None:
    """A zip written by hand: ``bytes`` entries are stored; an ``int`` entry is that many zero
    bytes, deflated (a real, decompressible zip bomb: 1 GiB of zeros takes about 1 MB)."""
    chunk = bytes(16 * 2**20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)  # repeats exactly
    tail = compressor.flush(zlib.Z_FINISH)
    local, central, offset = bytearray(), bytearray(), 0
    for name, data in entries:
        raw_name = name.encode()
        if isinstance(data, int):
            assert data % len(chunk) == 0
            count = data // len(chunk)
            payload, crc, method, size = block * count + tail, 0, 8, data
            for _ in range(count):
                crc = zlib.crc32(chunk, crc)
        else:
            payload, crc, method, size = data, zlib.crc32(data), 0, len(data)
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, crc, len(payload), size, len(raw_name), 0)
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, crc, len(payload), size, len(raw_name), 0, 0, 0, 0, 0, offset
        ) + raw_name
        local += header + raw_name + payload
        offset += len(header) + len(raw_name) + len(payload)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), offset, 0)
    path.write_bytes(bytes(local) + bytes(central) + end)


def _torch_zip(path: Path, obj, data: dict[str, bytes | int]) -> None:
    """A checkpoint in torch's zip layout with a hand-written pickle and data records."""
    entries: list[tuple[str, bytes | int]] = [
        ("archive/data.pkl", _torch_pickle(obj)),
        ("archive/.format_version", b"1"),
        ("archive/byteorder", b"little"),
        *[(f"archive/data/{key}", value) for key, value in data.items()],
        ("archive/version", b"3\n"),
    ]
    _write_zip(path, entries)


def _legacy_file(path: Path, obj, keys: list[str], data: bytes = b"") -> None:
    """A checkpoint in torch's legacy (pre-1.6) layout: five pickles, then the storages' bytes."""
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [pickle.dumps(MAGIC_NUMBER, protocol=2), pickle.dumps(PROTOCOL_VERSION, protocol=2), pickle.dumps(sys_info, protocol=2)]
    parts += [_torch_pickle(obj), pickle.dumps(keys, protocol=2), data]
    path.write_bytes(b"".join(parts))


def _safetensors_raw(path: Path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def _digits_state() -> dict[str, torch.Tensor]:
    return DigitsCNN().state_dict()


class _Payload:
    """Unpickling this would run ``function(*args)``; each creates a marker file."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


# -- peak RSS of a refusal, in a fresh process ------------------------------------------------------

_RSS_SCRIPT = r"""
import json, os, resource, sys, warnings
warnings.filterwarnings("ignore")
import torch
from neuronviz.core.models import load_model
for warm in sys.argv[3:]:
    load_model(warm, device="cpu")  # the code paths a refusal goes through, imported and warm
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = {"error": None, "message": ""}
try:
    load_model(sys.argv[1], device="cpu", **json.loads(sys.argv[2]))
except Exception as error:
    result = {"error": type(error).__name__, "message": str(error)}
result["delta_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def warm_files(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("warm")
    state = _digits_state()
    torch.save(state, folder / "warm_zip.pt")
    torch.save(state, folder / "warm_legacy.pt", _use_new_zipfile_serialization=False)
    save_file(state, str(folder / "warm.safetensors"))
    return [str(folder / name) for name in ("warm_zip.pt", "warm_legacy.pt", "warm.safetensors")]


def _refusal_in_subprocess(path: Path, warm: list[str], env: dict | None = None, **kwargs) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path), json.dumps(kwargs), *warm],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


# -- the bombs (peak RSS measured) -------------------------------------------------------------------


def test_zip_bomb_declaring_2_gib_is_refused_from_its_directory(tmp_path, warm_files):
    path = tmp_path / "bomb.pt"
    numel = 2**29  # 2 GiB of float32, all zeros, deflated to about 2 MB
    _torch_zip(path, {"features.0.weight": _Tensor(_Storage("0", numel), (numel,))}, {"0": 4 * numel})
    assert path.stat().st_size < 3 * 2**20
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "declares 2.0 GB once extracted" in result["message"] and "before extracting anything" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_zip_bomb_within_the_archive_cap_is_refused_by_its_declared_tensors(tmp_path, warm_files):
    path = tmp_path / "bomb512.pt"
    numel = 2**27  # 512 MiB: passes the archive check, but 134 M values in one tensor fit no model
    _torch_zip(path, {"features.0.weight": _Tensor(_Storage("0", numel), (numel,))}, {"0": 4 * numel})
    result = _refusal_in_subprocess(path, warm_files, architecture="digits-cnn")
    assert result["error"] == "CheckpointError"
    assert "does not fit this architecture" in result["message"] and "features.0.weight" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_tiny_file_declaring_vgg19_is_refused_before_vgg19_is_built(tmp_path, warm_files):
    path = tmp_path / "vgg19.pt"
    torch.save({"architecture": "vgg19", "state_dict": {"features.0.weight": torch.zeros(1)}}, path)
    assert path.stat().st_size < 2000
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "does not fit this architecture" in result["message"] and "missing key" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_safetensors_declaring_vgg19_shapes_without_data_is_refused(tmp_path, warm_files):
    from torchvision import models

    with torch.device("meta"):
        shapes = {k: list(v.shape) for k, v in models.vgg19().state_dict().items()}
    header, offset = {"__metadata__": {"architecture": "vgg19"}}, 0
    for key, shape in shapes.items():
        size = 4 * int(torch.Size(shape).numel())
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    path = tmp_path / "vgg19_header_only.safetensors"
    _safetensors_raw(path, header)
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "the header lies" in result["message"] and "features.0.weight" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_two_million_class_names_are_refused_before_the_head_is_built(tmp_path, warm_files):
    path = tmp_path / "classes.safetensors"
    names = json.dumps([f"class {i}" for i in range(2_000_000)])
    save_file(_digits_state(), str(path), metadata={"architecture": "digits-cnn", "class_names": names})
    assert path.stat().st_size > 20 * 2**20
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"  # the 25 MB of names do not even pass the header cap
    assert "its header declares 35 MB; headers up to 8.0 MB are read here" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_class_names_over_the_cap_within_the_header_cap(tmp_path, warm_files):
    path = tmp_path / "classes150k.safetensors"
    names = json.dumps([f"c{i}" for i in range(150_000)])
    save_file(_digits_state(), str(path), metadata={"architecture": "digits-cnn", "class_names": names})
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "its class_names metadata lists more than 100,000 names" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_legacy_file_declaring_a_huge_storage_is_refused_without_allocating(tmp_path, warm_files):
    path = tmp_path / "legacy_huge.pt"
    numel = 2**30  # 4 GiB declared, no data in the file
    _legacy_file(path, {"features.0.weight": _Tensor(_Storage("0", numel, legacy=True), (numel,))}, ["0"])
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "declares 4.0 GB of tensor data" in result["message"] and "Nothing was allocated" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_zip_declaring_a_huge_storage_with_a_tiny_record_is_refused(tmp_path, warm_files):
    path = tmp_path / "huge_shape.pt"
    numel = 2**33  # 32 GiB declared by the pickle; the record holds 16 bytes
    _torch_zip(path, {"features.0.weight": _Tensor(_Storage("0", numel), (2**17, 2**16))}, {"0": bytes(16)})
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "declares 32.0 GB of tensor data" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


# -- structure refusals --------------------------------------------------------------------------------


def test_zip_with_too_many_entries(tmp_path):
    path = tmp_path / "many.pt"
    _write_zip(path, [(f"archive/data/{i}", b"") for i in range(settings.MAX_TENSORS + 100)])
    with pytest.raises(CheckpointError, match=r"zip archive with 20,100 entries .* Refused before extracting"):
        load_model(path, device="cpu")


def test_zip_whose_pickle_declares_too_much(tmp_path):
    path = tmp_path / "bigpickle.pt"
    _write_zip(path, [("archive/data.pkl", 16 * 2**20), ("archive/version", b"3\n")])
    with pytest.raises(CheckpointError, match=r"its pickled structure \(data.pkl\) declares 16 MB"):
        load_model(path, device="cpu")


def test_zip_without_a_pickle(tmp_path):
    path = tmp_path / "plain.pt"
    _write_zip(path, [("readme.txt", b"hello")])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint \\(it has no data.pkl\\)"):
        load_model(path, device="cpu")


def test_legacy_pickle_larger_than_the_cap(tmp_path):
    path = tmp_path / "bigpickle_legacy.pth"
    path.write_bytes(pickle.dumps({"w": "x" * (9 * 2**20)}, protocol=2))  # few instructions, many bytes
    assert path.stat().st_size > settings.MAX_PICKLE_BYTES
    with pytest.raises(CheckpointError, match=r"its pickled structure is larger than 8.0 MB.*Refused before unpickling"):
        load_model(path, device="cpu")


@pytest.mark.parametrize("layout", ["zip", "bare"])
def test_pickle_with_millions_of_objects_is_refused_before_unpickling(tmp_path, warm_files, layout):
    # 1 byte per empty dict: 2 MB of pickle unpickled to 316 MB in 18 s before this check
    pickled = b"\x80\x02](" + b"}" * (2 * 2**20) + b"e."
    path = tmp_path / "objects.pt"
    if layout == "zip":
        _write_zip(path, [("archive/data.pkl", pickled), ("archive/version", b"3\n")])
    else:
        path.write_bytes(pickled)
    result = _refusal_in_subprocess(path, warm_files)
    assert result["error"] == "CheckpointError"
    assert "its pickled structure has more than 300,000 instructions" in result["message"]
    assert result["delta_mb"] < RSS_BOUND_MB, result


def test_file_larger_than_the_cap_is_refused_by_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "SHARED_MAX_CHECKPOINT_BYTES", 4096)
    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    monkeypatch.setattr(settings, "is_upload_path", lambda path: True)
    path = tmp_path / "big.safetensors"
    save_file(_digits_state(), str(path))
    with pytest.raises(CheckpointError, match=r"big.safetensors is 111 KB|big.safetensors is .* checkpoints up to 4,096 bytes are read here \(a shared server's limit\)"):
        load_model(path, device="cpu")


@pytest.mark.parametrize(
    "name,header,data,words",
    [
        ("header_too_long.safetensors", None, b"", "header declares 1.0 MB but the file has only 10 bytes"),
        ("offsets_past_end.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8, "ends at byte 16 of the data, but the file holds only 8 bytes"),
        ("shape_vs_offsets.safetensors", {"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 16]}}, b"\0" * 16, "declares shape (100000, 100000) (37.3 GB) but data_offsets 0–16"),
        ("dtype.safetensors", {"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 4]}}, b"\0" * 4, "dtype 'Q4', which is not supported"),
        ("negative.safetensors", {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, b"\0" * 16, "malformed shape [-4]"),
        ("no_tensors.safetensors", {"__metadata__": {"architecture": "digits-cnn"}}, b"", "holds no tensors"),
        ("metadata_types.safetensors", {"__metadata__": {"mean": [0.5]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, "__metadata__ must map names to strings"),
    ],
)
def test_safetensors_with_a_lying_header(tmp_path, name, header, data, words):
    path = tmp_path / name
    if header is None:
        path.write_bytes(struct.pack("<Q", 2**20) + b"{}")
    else:
        _safetensors_raw(path, header, data)
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu")
    assert words in str(info.value), str(info.value)


def test_safetensors_header_larger_than_the_cap(tmp_path):
    path = tmp_path / "header_cap.safetensors"
    path.write_bytes(struct.pack("<Q", 9 * 2**20) + b" " * (9 * 2**20))
    with pytest.raises(CheckpointError, match=r"header declares 9.0 MB; headers up to 8.0 MB are read here"):
        load_model(path, device="cpu")


# -- pickles that would run code (nothing may run) ------------------------------------------------------


@pytest.mark.parametrize("layout", ["zip", "legacy", "bare"])
@pytest.mark.parametrize(
    "global_name,make",
    [
        ("posix.system", lambda marker: _Payload(os.system, f"touch {marker}")),
        ("builtins.exec", lambda marker: _Payload(exec, f"open({str(marker)!r}, 'w').close()")),
        ("subprocess.Popen", lambda marker: _Payload(subprocess.Popen, ["touch", str(marker)])),
        ("io.open", lambda marker: _Payload(open, str(marker), "w")),
    ],
)
def test_code_carrying_pickles_are_refused_and_name_the_global(tmp_path, layout, global_name, make):
    marker = tmp_path / "pwned"
    payload = {"features.0.weight": torch.zeros(1), "payload": make(marker)}
    path = tmp_path / "evil.pt"
    if layout == "zip":
        torch.save(payload, path)
    elif layout == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu")
    message = str(info.value)
    assert "would run code" in message and global_name in message and "nothing in it was run" in message, message
    assert not marker.exists()


def test_payload_is_live_when_unpickled_unsafely(tmp_path):
    """The payloads above are real: unsafe unpickling of the same file does create the marker."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"p": _Payload(os.system, f"touch {marker}")}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pickle_globals_reads_stack_global_and_memo():
    data = pickle.dumps([_Payload(os.system, "true"), _Payload(os.getcwd)], protocol=4)
    assert pickle_globals(data) == [f"{os.name if os.name == 'nt' else 'posix'}.system", f"{'nt' if os.name == 'nt' else 'posix'}.getcwd"]
    assert pickle_globals(pickle.dumps(_Payload(eval, "1"), protocol=0)) == ["builtins.eval"]  # __builtin__ in the file
    assert pickle_globals(pickle.dumps(_Payload(subprocess.Popen, ["true"]), protocol=2)) == ["subprocess.Popen"]


# -- metadata ----------------------------------------------------------------------------------------------


def _with_metadata(tmp_path, **metadata) -> Path:
    path = tmp_path / "meta.safetensors"
    save_file(_digits_state(), str(path), metadata={"architecture": "digits-cnn", **metadata})
    return path


@pytest.mark.parametrize(
    "metadata,words",
    [
        ({"mean": "0.5"}, "its mean metadata must be a list of 1 number (one per input channel), e.g. [0.5]; found the float 0.5"),
        ({"mean": '["a"]'}, "its mean metadata must hold numbers only, e.g. [0.5]; found 'a'"),
        ({"std": "[NaN]"}, "its std metadata holds a value that is not a finite number ([nan]): every prediction would be NaN"),
        ({"mean": "[Infinity]"}, "its mean metadata holds a value that is not a finite number ([inf])"),
        ({"std": "[0]"}, "its std metadata must be positive in every channel (found [0.0])"),
        ({"std": "[-0.2]"}, "must be positive in every channel"),
        ({"mean": "[0.5, 0.5, 0.5]"}, "lists 3 numbers, but this architecture takes 1 input channel"),
        ({"mean": "[true]"}, "must hold numbers only"),
        ({"mean": "{bad json"}, "its 'mean' metadata is not valid JSON"),
        ({"mean": json.dumps([0.5] * 100_000)}, "its 'mean' metadata is 500,000 characters long; it should be a short JSON list"),
        ({"class_names": '"digits"'}, "its class_names metadata is not a JSON list of strings"),
        ({"class_names": "[1, 2, 3]"}, "holds something other than strings"),
        ({"class_names": json.dumps([str(i) for i in range(9)])}, "its output layer has 10 classes but its class_names metadata lists 9 names"),
        ({"class_names": json.dumps(["x" * 300] + [str(i) for i in range(9)])}, "class name 0 is 300 characters long; names up to 200"),
        ({"class_names": json.dumps([" "] + [str(i) for i in range(9)])}, "class name 0 is empty"),
        ({"class_names": "[]"}, "is an empty list"),
        ({"input_size": "[0, 28]"}, "its input_size [0, 28] is out of range: each side must be between 1 and 1024"),
        ({"input_size": "[5000, 5000]"}, "between 1 and 1024 pixels"),
        ({"input_size": '"big"'}, "its input_size metadata must be [height, width] in pixels, e.g. [28, 28]; found 'big'"),
        ({"input_size": "[1, 1]"}, "its input_size 1×1 is too small for digits-cnn"),
    ],
)
def test_bad_metadata_is_refused_in_words_a_user_can_act_on(tmp_path, metadata, words):
    path = _with_metadata(tmp_path, **metadata)
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu")
    assert words in str(info.value), str(info.value)
    assert "meta.safetensors" in str(info.value)


def test_valid_metadata_is_used(tmp_path):
    names = [f"digit {i}" for i in range(10)]
    path = _with_metadata(tmp_path, mean="[0.25]", std="[0.5]", class_names=json.dumps(names), input_size="[32, 32]")
    model = load_model(path, device="cpu")
    assert model.class_names == tuple(names) and model.input_size == (32, 32)
    assert model.normalize.mean.flatten().tolist() == [0.25] and model.normalize.std.flatten().tolist() == [0.5]
    assert torch.isfinite(model(torch.rand(2, 1, 32, 32))).all()


def test_pt_wrapper_metadata_is_read_and_validated(tmp_path):
    path = tmp_path / "wrapped.pt"
    state = DigitsCNN(num_classes=3).state_dict()
    torch.save({"architecture": "digits-cnn", "class_names": ["a", "b", "c"], "mean": [0.1], "std": [0.2], "state_dict": state}, path)
    model = load_model(path, device="cpu")
    assert model.class_names == ("a", "b", "c") and model.normalize.std.item() == pytest.approx(0.2)
    torch.save({"architecture": "digits-cnn", "std": [float("nan")], "state_dict": _digits_state()}, path)
    with pytest.raises(CheckpointError, match="its std metadata holds a value that is not a finite number"):
        load_model(path, device="cpu")


def test_pixel_model_state_with_nan_std_is_refused(tmp_path, digits_cnn):
    state = {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    state["normalize.std"].fill_(float("nan"))
    path = tmp_path / "whole_nan.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="its std metadata holds a value that is not a finite number"):
        load_model(path, device="cpu")


def test_head_size_without_class_names_says_what_to_add(tmp_path):
    path = tmp_path / "five.pt"
    torch.save(DigitsCNN(num_classes=5).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"its output layer has 5 classes \(classifier.2.weight: checkpoint \(5, 64\) vs model \(10, 64\)\).* Add a class_names entry .*a JSON list of 5 names"):
        load_model(path, device="cpu", architecture="digits-cnn")


def test_head_with_too_many_classes_is_refused_before_building(tmp_path):
    header, offset = {"__metadata__": {"architecture": "digits-cnn"}}, 0
    shapes = {k: list(v.shape) for k, v in _digits_state().items()}
    shapes["classifier.2.weight"], shapes["classifier.2.bias"] = [200_000, 64], [200_000]
    for key, shape in shapes.items():
        size = 4 * int(torch.Size(shape).numel())
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    path = tmp_path / "wide_head.safetensors"
    _safetensors_raw(path, header, bytes(offset))
    with pytest.raises(CheckpointError, match="its output layer has 200,000 classes; models with up to 100,000 classes"):
        load_model(path, device="cpu")


# -- the architecture messages (15.7): true in the dashboard and in Python -----------------------------


def test_no_architecture_at_all_says_so_without_a_0_percent_closest(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(path))
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu")
    message = str(info.value)
    assert "is not a checkpoint for any architecture this tool knows" in message and "0%" not in message
    assert info.value.ui_hint == "Upload a checkpoint of one of the listed architectures."


def test_closest_architecture_message_names_the_sidebar_box_and_the_api(tmp_path):
    state = DigitsResNet().state_dict()
    state.pop("fc.bias")
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu")
    message = str(info.value)
    assert "closest: digits-resnet" in message and "Architecture box in the sidebar" in message and "architecture=" in message
    assert "Name one with architecture=" not in message
    assert info.value.ui_hint == "Pick digits-resnet in the sidebar's Architecture box to see which tensors differ."


def test_unknown_declared_architecture(tmp_path):
    path = _with_metadata(tmp_path, architecture="alexnet")
    with pytest.raises(CheckpointError, match="declares architecture 'alexnet', which this tool does not know"):
        load_model(path, device="cpu")
    with pytest.raises(ModelNotFoundError, match="unknown architecture 'alexnet'"):
        load_model(path, device="cpu", architecture="alexnet")


# -- shared-server mode ------------------------------------------------------------------------------------


def test_shared_server_refuses_local_paths_but_reads_uploads(tmp_path, monkeypatch):
    import tempfile

    path = tmp_path / "mine.safetensors"
    save_file(_digits_state(), str(path))
    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    with pytest.raises(SharedServerError, match="models are not read from local paths such as mine.safetensors. Upload the checkpoint"):
        load_model(path, device="cpu")
    with pytest.raises(SharedServerError):
        load_model("digits-cnn", device="cpu", weights=path)
    with tempfile.TemporaryDirectory(prefix=settings.UPLOAD_FOLDER_PREFIX) as folder:
        upload = Path(folder) / "mine.safetensors"
        upload.write_bytes(path.read_bytes())
        assert load_model(upload, device="cpu", architecture="digits-cnn").meta.architecture == "digits-cnn"
        link = Path(folder) / "link.safetensors"  # a link out of the upload folder is a local path
        link.symlink_to(path)
        with pytest.raises(SharedServerError):
            load_model(link, device="cpu")
    assert load_model("digits-cnn", device="cpu").name == "digits-cnn"  # embedded models still load


def test_shared_server_refuses_downloads_and_big_models(monkeypatch):
    from neuronviz.core.models import download_weights

    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    with pytest.raises(SharedServerError, match="weights are not downloaded here") as info:
        download_weights("resnet18")
    assert info.value.ui_hint
    with pytest.raises(CheckpointError, match=r"vgg19 has 143,667,240 parameters; models up to 30,000,000 are loaded here \(a shared server's limit\)"):
        load_model("vgg19", device="cpu", weights=None)


def test_shared_server_lower_class_cap(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    monkeypatch.setattr(settings, "is_upload_path", lambda path: True)
    path = _with_metadata(tmp_path, class_names=json.dumps([str(i) for i in range(30_000)]))
    with pytest.raises(CheckpointError, match="more than 25,000 names"):
        load_model(path, device="cpu")


def test_another_architectures_file_lists_what_differs_not_the_class_names(tmp_path):
    path = tmp_path / "narrow.pt"  # a different body *and* a 5-class head under the same key name
    torch.save(DigitsResNet(num_classes=5, widths=(8, 16, 32)).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path, device="cpu", architecture="digits-resnet")
    message = str(info.value)
    assert "does not fit this architecture" in message and "conv1.weight: checkpoint (8, 1, 3, 3) vs model (16, 1, 3, 3)" in message
    assert "class_names" not in message
