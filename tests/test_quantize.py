"""Which nodes the int8 export quantises (export/quantize.py), on hand-built ONNX graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.errors import ExportError
from export.quantize import backbone_nodes, feature_nodes, quantize_int8
from qpm_zoo.onnx_model import INPUT_NAME


def _graph(nodes, weights: dict[str, np.ndarray]):
    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what onnxruntime reads (onnx's newest IR can be ahead of it)
    return model


def _block(shortcut: str):
    """conv1 → relu1 → conv2 → add(shortcut) → relu2 → mean → matmul: a last residual block,
    its shortcut a 1×1 convolution ("projection") or relu1 itself ("identity"), then a head."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "short"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("ReduceMean", ["r2"], ["p"], name="pool", axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["p", "head"], ["logits"], name="head"),
    ]
    weights = {
        "w1": rng.normal(size=(2, 2, 3, 3)),
        "w2": rng.normal(size=(2, 2, 3, 3)),
        "head": rng.normal(size=(2, 3)),
    }
    if shortcut == "projection":
        nodes.insert(3, helper.make_node("Conv", ["r1", "ws"], ["short"], name="conv_short"))
        weights["ws"] = rng.normal(size=(2, 2, 1, 1))
    else:
        nodes.insert(3, helper.make_node("Identity", ["r1"], ["short"], name="identity"))
    return _graph(nodes, weights)


def test_feature_nodes_of_a_block_with_a_projection_shortcut():
    graph = _block("projection").graph
    # the backbone is what a Conv depends on; what follows the last convolutions is the head's
    assert backbone_nodes(graph) == ["conv1", "relu1", "conv2", "conv_short"]
    assert feature_nodes(graph) == ["conv2", "conv_short"]


def test_feature_nodes_follow_an_identity_shortcut():
    """relu1 reaches the head through the shortcut with no Conv in between, and so does conv1:
    their output is part of the features."""
    graph = _block("identity").graph
    assert feature_nodes(graph) == ["conv1", "relu1", "conv2"]


def test_a_backbone_whose_only_convolution_computes_the_features_is_refused():
    """onnxruntime would read the empty node list as 'quantise everything', head included."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c"], ["p"], name="pool", axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["p", "head"], ["logits"], name="head"),
    ]
    model = _graph(nodes, {"w": rng.normal(size=(2, 2, 3, 3)), "head": rng.normal(size=(2, 3))})
    batches = [rng.normal(size=(1, 2, 4, 4)).astype(np.float32)]
    with pytest.raises(ExportError, match="nothing to quantise.*--int8-features"):
        quantize_int8(model.SerializeToString(), batches)
    quantized = onnx.load_from_string(
        quantize_int8(model.SerializeToString(), batches, float_features=False)
    )
    assert "DequantizeLinear" in {n.op_type for n in quantized.graph.node}
