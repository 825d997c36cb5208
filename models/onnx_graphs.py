"""ONNX graphs built here (not by a converter), and the onnxruntime wrappers.

``topk_graph``: item embeddings as a constant; inputs ``user`` [1, F] and ``exclude``
[1, N] (1.0 = never recommend); outputs ``scores`` and ``indices`` of the top ``k``:
``TopK(MatMul(user, Yᵀ) − exclude · 1e30)``. Used for ALS item factors and for
content-based item embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
MASK_PENALTY = 1e30


def topk_graph(item_embeddings: np.ndarray, k: int, name: str = "topk") -> bytes:
    """Serialized ONNX model scoring every item against one user vector."""
    n, f = item_embeddings.shape
    k = min(k, n)
    yt = numpy_helper.from_array(np.ascontiguousarray(item_embeddings.T, dtype=np.float32), "item_embeddings_t")
    penalty = numpy_helper.from_array(np.array([MASK_PENALTY], dtype=np.float32), "penalty")
    kk = numpy_helper.from_array(np.array([k], dtype=np.int64), "k")
    nodes = [
        helper.make_node("MatMul", ["user", "item_embeddings_t"], ["raw_scores"]),
        helper.make_node("Mul", ["exclude", "penalty"], ["mask"]),
        helper.make_node("Sub", ["raw_scores", "mask"], ["masked"]),
        helper.make_node("TopK", ["masked", "k"], ["scores", "indices"], axis=1, largest=1, sorted=1),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[
            helper.make_tensor_value_info("user", TensorProto.FLOAT, [1, f]),
            helper.make_tensor_value_info("exclude", TensorProto.FLOAT, [1, n]),
        ],
        outputs=[
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, k]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [1, k]),
        ],
        initializer=[yt, penalty, kk],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="p13n")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def topk_embeddings(data: bytes) -> np.ndarray:
    """The item embeddings inside a :func:`topk_graph` model ([items, factors] float32).

    Bundles ship factors once, in the graph; fold-in at the edge reads them from here.
    """
    model = onnx.load_from_string(data)
    for init in model.graph.initializer:
        if init.name == "item_embeddings_t":
            return np.ascontiguousarray(numpy_helper.to_array(init).T, dtype=np.float32)
    raise ValueError("not a top-k graph: no item_embeddings_t initializer")


class OnnxModel:
    """One onnxruntime session, single-threaded (the edge serves one page at a time per
    core and must not fight nginx for CPU)."""

    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, Any]) -> list[Any]:
        result: list[Any] = self.session.run(None, dict(feeds))
        return result


class TopKModel(OnnxModel):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        shape = self.session.get_inputs()[1].shape
        self.n_items = int(shape[1])
        self._no_exclusions = np.zeros((1, self.n_items), dtype=np.float32)

    def top(self, user: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) best first; ``exclude`` is an index array."""
        mask = self._no_exclusions
        if exclude is not None and len(exclude):
            mask = self._no_exclusions.copy()
            mask[0, exclude] = 1.0
        scores, indices = self.run({"user": user.reshape(1, -1).astype(np.float32, copy=False), "exclude": mask})
        return indices[0], scores[0]
