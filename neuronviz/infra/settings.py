"""Deployment settings and the stated resource caps.

Two modes:

- **local** (the default): one user on their own machine. Weight downloads and checkpoints from
  any local path are allowed; the caps only stop files that would exhaust memory.
- **shared server** (``NEURONVIZ_SHARED_SERVER=1``): many visitors on one process. The library
  refuses weight downloads (:func:`neuronviz.core.models.download_weights`) and models read from local
  paths other than the dashboard's own upload folders, and the caps below are lower.

Every cap is a constant here (the local value, and ``SHARED_*`` for a shared server);
:func:`limits` returns the ones in force. They are checked **before** anything is allocated:
a file's size, a zip archive's declared sizes, a safetensors header, the tensors' declared
shapes (against the architecture built on the ``meta`` device) and the class count.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from neuronviz.infra.errors import InputError

SHARED_SERVER_ENV = "NEURONVIZ_SHARED_SERVER"
TIME_BUDGET_ENV = "NEURONVIZ_TIME_BUDGET_S"

MiB = 2**20

# -- local caps --------------------------------------------------------------------------------
#: Largest upload the dashboard accepts (``server.maxUploadSize`` in .streamlit/config.toml, MB).
MAX_UPLOAD_BYTES = 200 * MiB
#: Largest checkpoint file read from disk (vgg19's published weights are 548 MiB).
MAX_CHECKPOINT_BYTES = 1024 * MiB
#: Most parameters a model built from a checkpoint may have (vgg19: 143.7 M).
MAX_CHECKPOINT_PARAMETERS = 160_000_000
#: Most bytes of tensor data a checkpoint may declare (what loading it would allocate).
MAX_DECOMPRESSED_BYTES = 1024 * MiB
#: Most classes a checkpoint may declare (ImageNet-21k has 21,841).
MAX_CLASSES = 100_000
#: Longest class name, in characters.
MAX_CLASS_NAME_CHARS = 200
#: Largest input side (pixels) a checkpoint's ``input_size`` metadata may ask for.
MAX_INPUT_SIDE = 1024
#: Most tensors in one checkpoint (densenet121 has 1,210 entries).
MAX_TENSORS = 20_000
#: Largest pickle inside a PyTorch checkpoint (the structure, not the tensor data; resnet50's is
#: about 30 KB) and largest safetensors JSON header.
MAX_PICKLE_BYTES = 8 * MiB
MAX_HEADER_BYTES = 8 * MiB
#: Most pickle instructions in that structure (each can build one object: 2 M of them took 316 MB
#: and 18 s to unpickle; densenet121's state dict has about 20,000).
MAX_PICKLE_OPCODES = 300_000
#: Default wall-clock budget of one long computation (attack, sweep, batch chunk), seconds: the
#: dashboard's and the shared server's (a library call has none unless its caller asks).
DEFAULT_TIME_BUDGET_S = 120.0
#: Uploaded models, before and during the load-time test forward (neuronviz.core.models.load_checks):
#: most operator nodes in an ONNX graph (resnet50 has about 120, ViT-B about 1,000);
MAX_ONNX_NODES = 20_000
#: most numbers in any one tensor of the test forward (a batch of two), from ONNX shape inference
#: (2**27 float32 = 512 MiB; resnet50's largest at 224 px is 1.6 M);
MAX_TENSOR_ELEMENTS = 2**27
#: most estimated multiply-accumulates per image (vgg19 at 224 px: 19.6 G; resnet50: 4.1 G);
MAX_MODEL_MACS = 60_000_000_000
#: most seconds the test forward on two images may take (also under the caller's budget).
LOAD_CHECK_S = 60.0

# -- shared-server caps ----------------------------------------------------------------------------
SHARED_MAX_UPLOAD_BYTES = 100 * MiB  # resnet50's weights (98 MB) still fit
SHARED_MAX_CHECKPOINT_BYTES = 128 * MiB
SHARED_MAX_CHECKPOINT_PARAMETERS = 30_000_000  # resnet50 (25.6 M) fits; vgg16/19 do not
SHARED_MAX_DECOMPRESSED_BYTES = 128 * MiB
SHARED_MAX_CLASSES = 25_000
SHARED_MAX_INPUT_SIDE = 512
SHARED_TIME_BUDGET_S = 60.0
SHARED_MAX_ONNX_NODES = 10_000
SHARED_MAX_TENSOR_ELEMENTS = 2**25  # 128 MiB of float32
SHARED_MAX_MODEL_MACS = 15_000_000_000
SHARED_LOAD_CHECK_S = 30.0

#: Folders the dashboard writes uploaded checkpoints into (``tempfile`` folders with this prefix,
#: directly under the system temporary directory): on a shared server the only paths a model
#: may be read from.
UPLOAD_FOLDER_PREFIX = "neuronviz-upload-"

_OFF = {"", "0", "false", "no", "off"}


def shared_server() -> bool:
    """True when ``NEURONVIZ_SHARED_SERVER`` is set to anything but 0/false/no/off (or empty).

    An unrecognised value counts as *on*: a typo must not open up a shared server.
    """
    return os.environ.get(SHARED_SERVER_ENV, "").strip().lower() not in _OFF


@dataclass(frozen=True)
class Limits:
    """The caps in force (see the module constants for what each one bounds)."""

    shared_server: bool
    max_upload_bytes: int
    max_checkpoint_bytes: int
    max_checkpoint_parameters: int
    max_decompressed_bytes: int
    max_classes: int
    max_class_name_chars: int
    max_input_side: int
    max_tensors: int
    max_pickle_bytes: int
    max_pickle_opcodes: int
    max_header_bytes: int
    max_onnx_nodes: int = MAX_ONNX_NODES
    max_tensor_elements: int = MAX_TENSOR_ELEMENTS
    max_model_macs: int = MAX_MODEL_MACS
    load_check_s: float = LOAD_CHECK_S


def limits() -> Limits:
    """The caps for the current mode (read at call time, so tests and servers can switch)."""
    shared = shared_server()
    return Limits(
        shared_server=shared,
        max_upload_bytes=SHARED_MAX_UPLOAD_BYTES if shared else MAX_UPLOAD_BYTES,
        max_checkpoint_bytes=SHARED_MAX_CHECKPOINT_BYTES if shared else MAX_CHECKPOINT_BYTES,
        max_checkpoint_parameters=SHARED_MAX_CHECKPOINT_PARAMETERS if shared else MAX_CHECKPOINT_PARAMETERS,
        max_decompressed_bytes=SHARED_MAX_DECOMPRESSED_BYTES if shared else MAX_DECOMPRESSED_BYTES,
        max_classes=SHARED_MAX_CLASSES if shared else MAX_CLASSES,
        max_class_name_chars=MAX_CLASS_NAME_CHARS,
        max_input_side=SHARED_MAX_INPUT_SIDE if shared else MAX_INPUT_SIDE,
        max_tensors=MAX_TENSORS,
        max_pickle_bytes=MAX_PICKLE_BYTES,
        max_pickle_opcodes=MAX_PICKLE_OPCODES,
        max_header_bytes=MAX_HEADER_BYTES,
        max_onnx_nodes=SHARED_MAX_ONNX_NODES if shared else MAX_ONNX_NODES,
        max_tensor_elements=SHARED_MAX_TENSOR_ELEMENTS if shared else MAX_TENSOR_ELEMENTS,
        max_model_macs=SHARED_MAX_MODEL_MACS if shared else MAX_MODEL_MACS,
        load_check_s=SHARED_LOAD_CHECK_S if shared else LOAD_CHECK_S,
    )


def time_budget_s() -> float:
    """Seconds one long computation may run: ``$NEURONVIZ_TIME_BUDGET_S``, else 120 (60 shared).

    Raises :class:`InputError` when the variable is set to something that is not a positive number.
    """
    raw = os.environ.get(TIME_BUDGET_ENV, "").strip()
    if not raw:
        return SHARED_TIME_BUDGET_S if shared_server() else DEFAULT_TIME_BUDGET_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{TIME_BUDGET_ENV}={raw!r} is not a positive number of seconds; set it to e.g. 120 or unset it")
    return value


def is_upload_path(path: str | os.PathLike) -> bool:
    """True when ``path`` (symlinks resolved) lies in a dashboard upload folder.

    An upload folder is a directory named ``neuronviz-upload-*`` directly under the system
    temporary directory (what ``tempfile.TemporaryDirectory(prefix=UPLOAD_FOLDER_PREFIX)`` makes).
    """
    resolved = Path(path).resolve()
    temp_root = Path(tempfile.gettempdir()).resolve()
    parent = resolved.parent
    return parent.parent == temp_root and parent.name.startswith(UPLOAD_FOLDER_PREFIX)


def format_bytes(n: int) -> str:
    """``n`` bytes in words for messages (``"200 MB"``, ``"1.5 GB"``, ``"812 bytes"``)."""
    if n < 10_000:
        return f"{n:,} bytes"
    if n < 1000 * MiB:
        return f"{n / MiB:,.0f} MB" if n >= 10 * MiB else f"{n / MiB:,.1f} MB"
    return f"{n / 2**30:,.1f} GB"
