"""Content-based model: TF-IDF over item title, description and tags.

Item vectors = TF-IDF (unigrams and bigrams) → TruncatedSVD → L2-normalised, so the
catalog ships as a dense item × dims matrix through the same MatMul+TopK graph as ALS.
A visitor's vector is the weighted mean of the vectors of items they interacted with;
cosine similarity ranks the catalog, and new (cold) items are served from their text
alone (raw term counts: the converter does not reproduce sublinear tf). The text pipeline itself is exported with skl2onnx so any text (a new item, a
search) can be embedded at the edge; the converter needs an explicit locale (machines
without en_US) and the same token pattern as scikit-learn, or bigrams break.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer

#: scikit-learn's default token pattern without the (?u) flag, which RE2 rejects.
TOKEN_PATTERN = r"\b\w\w+\b"
ONNX_LOCALE = "C.UTF-8"
#: Vocabulary cap (unigrams + bigrams): bounds the text model shipped in every bundle.
MAX_FEATURES = 20_000


@dataclass
class TextModel:
    pipeline: Pipeline
    item_vectors: np.ndarray  # [items, dims] float32, L2-normalised

    @property
    def dims(self) -> int:
        return int(self.item_vectors.shape[1])


def fit_text(texts: Sequence[str], dims: int = 64, seed: int = 42, min_df: int = 1) -> TextModel:
    vectorizer = TfidfVectorizer(
        lowercase=True, token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), min_df=min_df, max_features=MAX_FEATURES
    )
    tfidf = vectorizer.fit_transform(texts)
    n_components = max(1, min(dims, tfidf.shape[1] - 1, len(texts) - 1))
    svd = TruncatedSVD(n_components=n_components, random_state=seed)
    pipeline = Pipeline([("tfidf", vectorizer), ("svd", svd), ("norm", Normalizer())])
    vectors = pipeline.fit_transform(texts).astype(np.float32)
    return TextModel(pipeline, np.ascontiguousarray(vectors))


def user_vector(model: TextModel, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of interacted items' vectors, L2-normalised (zeros if none)."""
    return mean_vector(model.item_vectors, items, weights)


def mean_vector(vectors: np.ndarray, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The ``weights``-weighted mean of ``vectors[items]``, L2-normalised (zeros when
    there is none or it sums to nothing): a visitor's query in an item-vector space."""
    if len(items) == 0:
        return np.zeros(vectors.shape[1], dtype=np.float32)
    v = (vectors[items] * np.asarray(weights, dtype=np.float32)[:, None]).sum(axis=0)
    norm = float(np.linalg.norm(v))
    return np.asarray(v / norm if norm > 0 else v, dtype=np.float32)


def to_onnx(model: TextModel) -> bytes:
    """Text → vector pipeline as ONNX: input ``text`` [N, 1] strings → ``vector``."""
    from skl2onnx import to_onnx as sk_to_onnx
    from skl2onnx.common.data_types import StringTensorType

    vectorizer = model.pipeline.named_steps["tfidf"]
    onx = sk_to_onnx(
        model.pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={id(vectorizer): {"tokenexp": TOKEN_PATTERN, "locale": ONNX_LOCALE}},
    )
    data: bytes = onx.SerializeToString()
    return data
