"""Running the ONNX models of a bundle: onnxruntime sessions, single-threaded, and the
item embeddings read back from a top-k graph. The edge imports this, never the graph
builders (:mod:`models.onnx_graphs`, used when training)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Score subtracted from excluded items in a top-k graph.
MASK_PENALTY = 1e30


def topk_embeddings(data: bytes) -> np.ndarray:
    """The item embeddings inside a :func:`topk_graph` model ([items, factors] float32).

    Bundles ship factors once, in the graph; fold-in at the edge reads them from here.
    """
    name, stored = _embeddings_initializer(data)
    return stored if name == "item_embeddings" else np.ascontiguousarray(stored.T)


def _embeddings_initializer(data: bytes) -> tuple[str, np.ndarray]:
    """The top-k graph's float item embeddings as stored: ``item_embeddings`` [items,
    factors] (two-stage graph) or ``item_embeddings_t`` [factors, items] (one exact
    stage, and bundles from before)."""
    import onnx  # reading the protobuf only; loaded with the first bundle
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    for init in model.graph.initializer:
        if init.name in ("item_embeddings", "item_embeddings_t"):
            return init.name, np.ascontiguousarray(numpy_helper.to_array(init), dtype=np.float32)
    raise ValueError("not a top-k graph: no item embeddings initializer")


class OnnxModel:
    """One onnxruntime session, single-threaded (the edge serves one page at a time per
    core and must not fight nginx for CPU). ``shared``: initializers the session reads
    from the given arrays in place instead of a copy of its own (kept alive with it)."""

    def __init__(self, data: bytes, shared: Mapping[str, np.ndarray] | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        self._shared: list[tuple[np.ndarray, Any]] = []
        for name, array in (shared or {}).items():
            value = ort.OrtValue.ortvalue_from_numpy(array)
            opts.add_initializer(name, value)
            self._shared.append((array, value))
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


class _Ranking(OnnxModel):
    """A session whose ``exclude`` input ([1, items], 1.0 = never recommend) masks items."""

    def __init__(self, data: bytes, shared: Mapping[str, np.ndarray] | None = None) -> None:
        super().__init__(data, shared)
        shape = next(i for i in self.session.get_inputs() if i.name == "exclude").shape
        self.n_items = int(shape[1])
        self._no_exclusions = np.zeros((1, self.n_items), dtype=np.float32)

    def mask(self, exclude: np.ndarray | None) -> np.ndarray:
        """The ``exclude`` input for an index array (shared zeros when nothing is excluded)."""
        if exclude is None or not len(exclude):
            return self._no_exclusions
        mask = self._no_exclusions.copy()
        mask[0, exclude] = 1.0
        return mask


class TopKModel(_Ranking):
    @classmethod
    def with_embeddings(cls, data: bytes) -> tuple[TopKModel, np.ndarray]:
        """The session and its item embeddings ([items, factors]) as one copy: the
        session reads the very array returned (a transposed view for an exact-stage
        graph), not a second copy of its own."""
        name, stored = _embeddings_initializer(data)
        return cls(data, shared={name: stored}), stored if name == "item_embeddings" else stored.T

    def top(self, user: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) best first; ``exclude`` is an index array."""
        scores, indices = self.run({"user": user.reshape(1, -1).astype(np.float32, copy=False), "exclude": self.mask(exclude)})
        return indices[0], scores[0]


class NeighboursModel(_Ranking):
    """A :func:`models.onnx_graphs.neighbours_graph` session: top items from a history."""

    def top(self, history: np.ndarray, weights: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, scores) best first; ``exclude`` is an index array."""
        feeds = {
            "history": history.astype(np.int64, copy=False),
            "weights": weights.astype(np.float32, copy=False),
            "exclude": self.mask(exclude),
        }
        scores, indices = self.run(feeds)
        return indices[0], scores[0]
