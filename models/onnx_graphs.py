"""ONNX graphs built here (not by a converter); the runtime side is
:mod:`models.onnx_runtime` (what an edge imports: it never builds a graph).

``topk_graph``: item embeddings as a constant; inputs ``user`` [1, F] and ``exclude``
[1, N] (1.0 = never recommend); outputs ``scores`` and ``indices`` of the top ``k``:
``TopK(MatMul(user, Yᵀ) − exclude · 1e30)`` — for large catalogs through an int8
first stage re-scored exactly (see :func:`topk_graph`). Used for ALS item factors and
for content-based item embeddings. ``neighbours_graph``: item-based models (EASE,
item-kNN) scoring a visitor's history through each item's neighbours.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.onnx_runtime import MASK_PENALTY

OPSET = 17


#: Below this many items the graph scores every item exactly in one stage.
EXACT_BELOW = 2048


def topk_graph(item_embeddings: np.ndarray, k: int, name: str = "topk") -> bytes:
    """Serialized ONNX model scoring every item against one user vector.

    Large catalogs are scored in two stages: every item with int8 codes (per-item
    scale, ``MatMulInteger`` against the dynamically quantized user: a quarter of the
    memory traffic of float32), then the best ``candidates(k)`` of those again in
    float32, whose top ``k`` is the answer. The float stage makes the scores exact;
    the coarse stage can only miss an item whose int8 rank falls below the candidate
    cut (measured in docs/PERFORMANCE.md: the same lists as exact scoring). Exclusions
    apply to the candidates, so up to ``candidates(k) − k`` of them still leave ``k``
    answers. Small catalogs take one exact stage.
    """
    n = item_embeddings.shape[0]
    k = min(k, n)
    y = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    if n < EXACT_BELOW:
        return _exact_graph(y, k, name)
    return _two_stage_graph(y, k, candidates(k, n), name)


def candidates(k: int, n: int) -> int:
    """How many coarse (int8) winners the exact stage re-scores."""
    return min(n, max(4 * k, k + 128))


def _io(n: int, f: int, k: int) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    inputs = [
        helper.make_tensor_value_info("user", TensorProto.FLOAT, [1, f]),
        helper.make_tensor_value_info("exclude", TensorProto.FLOAT, [1, n]),
    ]
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, k]),
        helper.make_tensor_value_info("indices", TensorProto.INT64, [1, k]),
    ]
    return inputs, outputs


def serialize(graph: onnx.GraphProto) -> bytes:
    """A checked model of ``graph`` (opset ``OPSET``, IR 8), as bytes."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="p13n")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _exact_graph(y: np.ndarray, k: int, name: str) -> bytes:
    n, f = y.shape
    nodes = [
        helper.make_node("MatMul", ["user", "item_embeddings_t"], ["raw_scores"]),
        helper.make_node("Mul", ["exclude", "penalty"], ["mask"]),
        helper.make_node("Sub", ["raw_scores", "mask"], ["masked"]),
        helper.make_node("TopK", ["masked", "k"], ["scores", "indices"], axis=1, largest=1, sorted=1),
    ]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(y.T), "item_embeddings_t"),
        numpy_helper.from_array(np.array([MASK_PENALTY], dtype=np.float32), "penalty"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
    ]
    inputs, outputs = _io(n, f, k)
    return serialize(helper.make_graph(nodes, name, inputs=inputs, outputs=outputs, initializer=inits))


def _two_stage_graph(y: np.ndarray, k: int, kc: int, name: str) -> bytes:
    n, f = y.shape
    # symmetric int8 codes over the whole matrix: y ≈ codes · scale (one scale, so the
    # integer scores rank like the real ones and need no per-item multiply)
    peak = float(np.abs(y).max())
    codes = np.clip(np.rint(y * (127.0 / peak if peak > 0 else 1.0)), -127, 127).astype(np.int8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["user"], ["user_q", "user_scale", "user_zero"]),
        helper.make_node("MatMulInteger", ["user_q", "item_codes_t", "user_zero"], ["coarse"]),
        # exclusions are applied to the candidates only (two passes over every item
        # saved): up to kc − k excluded items still leave k answers
        helper.make_node("TopK", ["coarse", "kc"], ["coarse_top", "cand"], axis=1, largest=1, sorted=0),
        helper.make_node("Squeeze", ["cand", "axis0"], ["cand_flat"]),
        helper.make_node("Gather", ["item_embeddings", "cand_flat"], ["cand_vectors"], axis=0),
        helper.make_node("Gemm", ["user", "cand_vectors"], ["exact"], transB=1),
        helper.make_node("GatherElements", ["exclude", "cand"], ["cand_excluded"], axis=1),
        helper.make_node("Mul", ["cand_excluded", "penalty"], ["cand_mask"]),
        helper.make_node("Sub", ["exact", "cand_mask"], ["exact_masked"]),
        helper.make_node("TopK", ["exact_masked", "k"], ["scores", "pos"], axis=1, largest=1, sorted=1),
        helper.make_node("GatherElements", ["cand", "pos"], ["indices"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(codes.T), "item_codes_t"),
        numpy_helper.from_array(y, "item_embeddings"),
        numpy_helper.from_array(np.array([MASK_PENALTY], dtype=np.float32), "penalty"),
        numpy_helper.from_array(np.array([kc], dtype=np.int64), "kc"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
    ]
    inputs, outputs = _io(n, f, k)
    return serialize(helper.make_graph(nodes, name, inputs=inputs, outputs=outputs, initializer=inits))


def neighbours_graph(index: np.ndarray, weight: np.ndarray, k: int, name: str = "item_topk") -> bytes:
    """Serialized ONNX model scoring every item from a visitor's history through item
    neighbours (:mod:`models.item_based`).

    Inputs ``history`` [m] int64 (item indexes), ``weights`` [m] float32 and
    ``exclude`` [1, N]; outputs ``scores`` and ``indices`` of the top ``k``:
    ``TopK(ScatterAdd(0, index[history], weight[history] · weights) − exclude · 1e30)``.
    Indices are stored as int32 (half the bytes) and widened in the graph.
    """
    n = index.shape[0]
    k = min(k, n)
    nodes = [
        helper.make_node("Gather", ["neighbour_index", "history"], ["rows_index32"], axis=0),
        helper.make_node("Cast", ["rows_index32"], ["rows_index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["neighbour_weight", "history"], ["rows_weight"], axis=0),
        helper.make_node("Unsqueeze", ["weights", "axis1"], ["weights_col"]),
        helper.make_node("Mul", ["rows_weight", "weights_col"], ["contributions"]),
        helper.make_node("Reshape", ["rows_index", "flat"], ["flat_index"]),
        helper.make_node("Reshape", ["contributions", "flat"], ["flat_contributions"]),
        helper.make_node("ScatterElements", ["zeros", "flat_index", "flat_contributions"], ["summed"], axis=0, reduction="add"),
        helper.make_node("Unsqueeze", ["summed", "axis0"], ["raw_scores"]),
        helper.make_node("Mul", ["exclude", "penalty"], ["mask"]),
        helper.make_node("Sub", ["raw_scores", "mask"], ["masked"]),
        helper.make_node("TopK", ["masked", "k"], ["scores", "indices"], axis=1, largest=1, sorted=1),
    ]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(index, dtype=np.int32), "neighbour_index"),
        numpy_helper.from_array(np.ascontiguousarray(weight, dtype=np.float32), "neighbour_weight"),
        numpy_helper.from_array(np.zeros(n, dtype=np.float32), "zeros"),
        numpy_helper.from_array(np.array([MASK_PENALTY], dtype=np.float32), "penalty"),
        numpy_helper.from_array(np.array([k], dtype=np.int64), "k"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    inputs = [
        helper.make_tensor_value_info("history", TensorProto.INT64, ["m"]),
        helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["m"]),
        helper.make_tensor_value_info("exclude", TensorProto.FLOAT, [1, n]),
    ]
    outputs = [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, k]),
        helper.make_tensor_value_info("indices", TensorProto.INT64, [1, k]),
    ]
    return serialize(helper.make_graph(nodes, name, inputs=inputs, outputs=outputs, initializer=inits))
