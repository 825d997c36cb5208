"""Item-based recommenders: EASE for small and medium catalogs, cosine item-kNN above.

Both end as the same thing: each item's ``K`` best neighbours with a weight, and a
visitor's score for item ``j`` is ``Σᵢ wᵢ · W[i, j]`` over the items ``i`` of their
history (weights ``wᵢ``). That is what the edge runs (an ONNX graph of gathers and a
scatter-add, :func:`models.onnx_graphs.neighbours_graph`), with no user factors.

* **EASE** (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019): the item × item
  weights minimising ``‖X − XB‖² + λ‖B‖²`` with ``diag(B) = 0`` have a closed form,
  ``P = (XᵀX + λI)⁻¹``, ``B = −P / diag(P)`` (column-wise), ``diag(B) = 0``. It needs a
  dense ``n × n`` inverse: ``EASE_MAX_ITEMS`` bounds it (6,000 items: 288 MB, seconds).
* **Item-kNN** (Sarwar et al. 2001; Deshpande & Karypis 2004) for larger catalogs:
  cosine similarity of item columns with shrinkage, ``cᵢⱼ / (‖xᵢ‖‖xⱼ‖ + s)``, from the
  sparse ``XᵀX``.

Only the ``K`` largest weights of each item are kept (all of them when the catalog has
at most ``K + 1`` items, so small catalogs score exact EASE); the bundle carries
``n × K`` indices and weights (20,000 items × 100 neighbours: 16 MB), never ``n × n``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # training only
    import scipy.sparse as sp

#: Largest catalog EASE is fitted on (its dense inverse grows as n² memory, n³ time);
#: larger catalogs use item-kNN.
EASE_MAX_ITEMS = 6000
KINDS = ("ease", "knn")


@dataclass(frozen=True)
class ItemParams:
    kind: str = "ease"
    #: EASE's λ (L2 on the item weights; larger = closer to popularity)
    l2: float = 250.0
    #: neighbours kept per item
    neighbours: int = 100
    #: item-kNN's shrinkage (damps similarities of rarely seen items)
    shrink: float = 10.0

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    @classmethod
    def for_catalog(cls, items: int) -> ItemParams:
        """EASE when the catalog allows it, item-kNN above :data:`EASE_MAX_ITEMS`."""
        return cls(kind="ease" if items <= EASE_MAX_ITEMS else "knn")

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> ItemParams:
        return cls(
            kind=str(d.get("kind", "ease")),
            l2=float(str(d.get("l2", 250.0))),
            neighbours=int(str(d.get("neighbours", 100))),
            shrink=float(str(d.get("shrink", 10.0))),
        )


@dataclass(frozen=True)
class ItemNeighbours:
    index: np.ndarray  # [items, K] int32: the neighbours of each item
    weight: np.ndarray  # [items, K] float32: their weights (0 where an item has fewer)
    params: ItemParams

    def matrix(self) -> sp.csr_matrix:
        """The neighbour weights as a sparse items × items matrix."""
        import scipy.sparse as sp

        n, k = self.index.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        return sp.csr_matrix((self.weight.ravel(), (rows, self.index.ravel().astype(np.int64))), shape=(n, n))


def train_items(user_items: sp.csr_matrix, params: ItemParams) -> ItemNeighbours:
    """Fit the item model named by ``params.kind`` on a users × items weight matrix."""
    if params.kind not in KINDS:
        raise ValueError(f"unknown item model {params.kind!r}; expected one of {KINDS}")
    x = user_items.astype(np.float64).tocsr()
    n = x.shape[1]
    if params.kind == "ease":
        if n > EASE_MAX_ITEMS:
            raise ValueError(f"EASE is bounded to {EASE_MAX_ITEMS} items (catalog: {n}); use knn")
        return _prune_dense(_ease(x, params.l2), params)
    return _prune_sparse(_cosine(x, params.shrink), params)


def _ease(x: sp.csr_matrix, l2: float) -> np.ndarray:
    g: np.ndarray = np.asarray((x.T @ x).toarray(), dtype=np.float64)
    g[np.diag_indices_from(g)] += l2
    p = np.linalg.inv(g)
    b: np.ndarray = p / (-np.diag(p))  # column j divided by −P_jj
    np.fill_diagonal(b, 0.0)
    return b


def _cosine(x: sp.csr_matrix, shrink: float) -> sp.csr_matrix:
    import scipy.sparse as sp

    c = (x.T @ x).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
    c.setdiag(0.0)
    c.eliminate_zeros()
    coo = c.tocoo()
    data = coo.data / (norms[coo.row] * norms[coo.col] + shrink)
    return sp.csr_matrix((data, (coo.row, coo.col)), shape=c.shape)


def _width(n: int, params: ItemParams) -> int:
    return max(1, min(params.neighbours, n - 1))


def _prune_dense(b: np.ndarray, params: ItemParams) -> ItemNeighbours:
    n = b.shape[0]
    k = _width(n, params)
    if k >= n - 1:  # keep every weight, negatives too: exact EASE
        order = np.argsort(-b, axis=1, kind="stable")
        keep = np.array([row[row != i][:k] for i, row in enumerate(order)], dtype=np.int64).reshape(n, k)
    else:
        keep = np.argpartition(-b, k - 1, axis=1)[:, :k]
    weights = np.take_along_axis(b, keep, axis=1)
    return ItemNeighbours(keep.astype(np.int32), weights.astype(np.float32), params)


def _prune_sparse(s: sp.csr_matrix, params: ItemParams) -> ItemNeighbours:
    n = s.shape[0]
    k = _width(n, params)
    index = np.zeros((n, k), dtype=np.int32)
    weight = np.zeros((n, k), dtype=np.float32)
    for i in range(n):
        lo, hi = s.indptr[i], s.indptr[i + 1]
        cols, vals = s.indices[lo:hi], s.data[lo:hi]
        if len(vals) > k:
            top = np.argpartition(-vals, k - 1)[:k]
            cols, vals = cols[top], vals[top]
        index[i, : len(cols)] = cols
        weight[i, : len(vals)] = vals
        index[i, len(cols) :] = i  # padding points at the item itself with weight 0
    return ItemNeighbours(index, weight, params)


def scores(neighbours: ItemNeighbours, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A visitor's score for every item from their history (the edge graph's arithmetic)."""
    n = neighbours.index.shape[0]
    idx = neighbours.index[items].ravel()
    vals = (neighbours.weight[items] * np.asarray(weights, dtype=np.float32)[:, None]).ravel()
    return np.bincount(idx, weights=vals, minlength=n).astype(np.float32)
