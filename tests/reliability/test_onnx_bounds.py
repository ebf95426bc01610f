"""Issue 24.19-24.20: an uploaded ONNX graph is bounded before anything runs (node count, every
tensor's size from ONNX shape inference, estimated compute), its test forward runs under the
caller's budget and Cancel (checked before every node), and an output that is not logits is
refused at load with the reason.

Each hostile graph is built here with ``onnx.helper``; the bombs are loaded in a fresh process
that measures wall time and the growth of peak RSS (:mod:`bounded_run`). Before this fix (issue 24):
``ConstantOfShape`` to 2×5e8 was accepted and allocated 4.1 GB per forward, 61 convolutions at 512²
ran > 150 s at ~5 GB, 200 k Identity nodes took 68 s and +2.4 GB.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bounded_run import run_bounded

from neuronviz.infra import budget
from neuronviz.infra.errors import CancelledError, CheckpointError, TimeLimitError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from neuronviz.core.models.onnx_source import load_onnx  # noqa: E402

#: A refusal before anything runs: a second or two and a few tens of MB (the parsed graph).
REFUSAL_S = 10.0
REFUSAL_MB = 150


def _save(path: Path, nodes, initializers, shape=("N", 1, 28, 28), output_shape=("N", 10), opset=13) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(output_shape))
    graph = helper.make_graph(nodes, "hostile", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _head(source: str, features: int, classes: int = 10, name: str = "logits") -> tuple[list, list]:
    """Flatten + Gemm from ``source`` (features → classes)."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(classes, features)).astype(np.float32), "w_head")
    bias = numpy_helper.from_array(np.zeros(classes, np.float32), "b_head")
    return [
        helper.make_node("Flatten", [source], ["flat"]),
        helper.make_node("Gemm", ["flat", "w_head", "b_head"], [name], transB=1),
    ], [weight, bias]


def _load_in_subprocess(path: Path) -> dict:
    return run_bounded(f"load_onnx({str(path)!r})", "from neuronviz.core.models.onnx_source import load_onnx\nimport onnx2torch")


# -- 24.19: bombs refused before anything runs ----------------------------------------------------------------


@pytest.mark.slow
def test_constant_of_shape_to_2x5e8_is_refused_from_its_inferred_shape(tmp_path):
    shape = numpy_helper.from_array(np.array([2, 500_000_000], np.int64), "shape")
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
    head, weights = _head("x", 784, name="raw")
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=zero),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        *head,
        helper.make_node("Add", ["raw", "total"], ["logits"]),
    ]
    path = _save(tmp_path / "constant.onnx", nodes, [shape, *weights])
    assert path.stat().st_size < 40_000
    out = _load_in_subprocess(path)
    assert out["error"] == "CheckpointError", out
    assert "'big' would hold 1,000,000,000 numbers" in out["message"] and "Nothing was run" in out["message"], out
    assert out["seconds"] < REFUSAL_S and out["delta_mb"] < REFUSAL_MB, out


#: The slow graph of the budget and Cancel tests: 40 convolutions of 32 channels at 360².
SLOW_CONVS, SLOW_SIDE = 40, 360


def _conv_stack(path: Path, count: int, side: int, channels: int = 32) -> Path:
    rng = np.random.default_rng(0)
    first = numpy_helper.from_array((rng.normal(size=(channels, 3, 3, 3)) * 0.1).astype(np.float32), "w_first")
    shared = numpy_helper.from_array((rng.normal(size=(channels, channels, 3, 3)) * 0.05).astype(np.float32), "w_shared")
    nodes = [helper.make_node("Conv", ["x", "w_first"], ["c0"], pads=[1, 1, 1, 1])]
    for i in range(1, count):
        nodes.append(helper.make_node("Conv", [f"c{i - 1}", "w_shared"], [f"c{i}"], pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("GlobalAveragePool", [f"c{count - 1}"], ["pooled"]))
    head, weights = _head("pooled", channels)
    return _save(path, nodes + head, [first, shared, *weights], shape=("N", 3, side, side))


@pytest.mark.slow
def test_61_convolutions_at_512_are_refused_from_their_estimated_compute(tmp_path):
    path = _conv_stack(tmp_path / "convs.onnx", 61, 512)
    assert path.stat().st_size < 60_000
    out = _load_in_subprocess(path)
    assert out["error"] == "CheckpointError", out
    assert "G multiply-accumulates at 512×512" in out["message"] and "up to 60 G" in out["message"], out
    assert out["seconds"] < REFUSAL_S and out["delta_mb"] < REFUSAL_MB, out


@pytest.mark.slow
def test_200k_identity_nodes_are_refused_by_the_node_cap(tmp_path):
    nodes = [helper.make_node("Identity", ["x" if i == 0 else f"i{i - 1}"], [f"i{i}"]) for i in range(200_000)]
    head, weights = _head("i199999", 784)
    path = _save(tmp_path / "identity.onnx", nodes + head, weights)
    out = _load_in_subprocess(path)
    assert out["error"] == "CheckpointError", out
    assert "200,002 operator nodes" in out["message"] and "up to 20,000" in out["message"], out
    assert out["seconds"] < REFUSAL_S and out["delta_mb"] < 400, out  # the parsed protobuf itself is ~100 MB


# -- 24.19: the test forward under the budget and Cancel ------------------------------------------------------


def test_a_slow_graph_within_the_caps_stops_at_the_callers_budget(tmp_path):
    # ~48 G MACs per image (under the 60 G cap): seconds of forward on any CPU, so the 0.25 s budget
    # always ends it mid-forward (at 30 convolutions of 256² a quiet fast CPU finished inside 1 s).
    path = _conv_stack(tmp_path / "slow.onnx", SLOW_CONVS, SLOW_SIDE)
    started = time.perf_counter()
    with pytest.raises(TimeLimitError, match="the test forward of slow.onnx"):
        with budget.limit(0.25):
            load_onnx(path)
    assert time.perf_counter() - started < 0.25 + 8.0  # conversion + at most one convolution past the deadline


def test_a_slow_graph_stops_when_cancelled(tmp_path):
    path = _conv_stack(tmp_path / "slow.onnx", SLOW_CONVS, SLOW_SIDE)
    stop = threading.Event()
    timer = threading.Timer(0.25, stop.set)
    timer.start()
    started = time.perf_counter()
    try:
        with pytest.raises(CancelledError):
            with budget.limit(cancel=stop):
                load_onnx(path)
    finally:
        timer.cancel()
    assert time.perf_counter() - started < 0.25 + 8.0


# -- 24.20: outputs that are not logits ---------------------------------------------------------------------


def test_an_n_by_1_output_is_refused_as_not_a_classifier(tmp_path):
    head, weights = _head("x", 784, classes=1)
    path = _save(tmp_path / "score.onnx", head, weights, output_shape=("N", 1))
    with pytest.raises(CheckpointError, match=r"its output is \(N, 1\).*not a classifier's logits"):
        load_onnx(path)


def test_nan_logits_are_refused(tmp_path):
    head, weights = _head("x", 784, name="raw")
    nan = numpy_helper.from_array(np.array([np.nan], np.float32), "nan")
    path = _save(tmp_path / "nan.onnx", [*head, helper.make_node("Mul", ["raw", "nan"], ["logits"])], [*weights, nan])
    with pytest.raises(CheckpointError, match="20 NaN value"):
        load_onnx(path)


def test_an_output_independent_of_the_input_is_refused(tmp_path):
    zero = numpy_helper.from_array(np.zeros(1, np.float32), "zero")
    head, weights = _head("muted", 784)
    path = _save(tmp_path / "deaf.onnx", [helper.make_node("Mul", ["x", "zero"], ["muted"]), *head], [zero, *weights])
    with pytest.raises(CheckpointError, match="same for a blank image and a noise image"):
        load_onnx(path)


def test_a_plain_classifier_still_loads(tmp_path):
    head, weights = _head("x", 784)
    model = load_onnx(_save(tmp_path / "fine.onnx", head, weights))
    assert model.num_classes == 10


# -- own hostile cases -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_resize_by_1000_is_refused_from_its_inferred_shape(tmp_path):
    """Another operator than ConstantOfShape that makes a huge tensor from a tiny file."""
    scales = numpy_helper.from_array(np.array([1, 1, 1000, 1000], np.float32), "scales")
    head, weights = _head("small", 784)
    nodes = [
        helper.make_node("Resize", ["x", "", "scales"], ["huge"], mode="nearest"),
        helper.make_node("MaxPool", ["huge"], ["small"], kernel_shape=[1000, 1000], strides=[1000, 1000]),
        *head,
    ]
    path = _save(tmp_path / "resize.onnx", nodes, [scales, *weights])
    out = _load_in_subprocess(path)
    assert out["error"] == "CheckpointError", out
    assert "'huge' would hold 1,568,000,000 numbers" in out["message"], out
    assert out["seconds"] < REFUSAL_S and out["delta_mb"] < REFUSAL_MB, out


def test_an_output_with_no_gradient_path_from_the_image_is_refused(tmp_path):
    """Logits built from the input's shape only (Shape → ConstantOfShape): different numbers per
    batch size, none per image; the raw RuntimeError of an attack before this check."""
    ten = numpy_helper.from_array(np.array([10], np.int64), "ten")
    index = numpy_helper.from_array(np.array([0], np.int64), "index")
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "index"], ["batch"], axis=0),
        helper.make_node("Concat", ["batch", "ten"], ["out_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["out_shape"], ["logits"], value=one),
    ]
    path = _save(tmp_path / "shape-only.onnx", nodes, [ten, index])
    with pytest.raises(CheckpointError, match="does not depend on the input"):
        load_onnx(path)


def test_deeply_nested_metadata_or_fields_are_refused_not_a_recursion_error(tmp_path):
    """The session file's class of defect in an ONNX file's metadata and in the upload's fields
    (a link's opt.mean of 2,000 characters nests 1,000 levels: json raised RecursionError)."""
    head, weights = _head("x", 784)
    path = _save(tmp_path / "meta.onnx", head, weights)
    model = onnx.load(str(path))
    helper.set_model_props(model, {"neuronviz.mean": "[" * 100_000 + "]" * 100_000})
    onnx.save(model, str(path))
    with pytest.raises(CheckpointError, match=r"its neuronviz.mean metadata nests 100,000 levels deep"):
        load_onnx(path)
    plain = _save(tmp_path / "plain.onnx", head, weights)
    from neuronviz.infra.errors import InputError

    with pytest.raises(InputError, match="the mean field nests 1,000 levels deep"):
        load_onnx(plain, {"mean": "[" * 1000 + "]" * 1000})


def test_a_torch_export_program_with_deeply_nested_facts_is_refused_not_a_recursion_error(tmp_path):
    """The same class in the other uploaded model format: a program's neuronviz.json."""
    import torch

    from neuronviz.core.models.local_source import load_program

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    exported = torch.export.export(net, (torch.rand(2, 1, 28, 28),))
    path = tmp_path / "deep.pt2"
    torch.export.save(exported, path, extra_files={"neuronviz.json": "[" * 50_000 + "]" * 50_000})
    with pytest.raises(CheckpointError, match="neuronviz.json nests 50,000 levels deep"):
        load_program(path)
