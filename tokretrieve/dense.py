"""The dense baseline: the same model's embeddings in FAISS, behind the sparse index's API.

It reads the embeddings a SparseIndex stored, so the two compare one-to-one with no second
encoding pass. Vectors are L2-normalised and searched by exact inner product (cosine).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from tokretrieve.encoder import Encoder
from tokretrieve.errors import EmptyQueryError, TokretrieveError
from tokretrieve.projection import check_top_k
from tokretrieve.search import Hit
from tokretrieve.sparse_index import SparseIndex


class DenseIndex:
    """Exact cosine search (faiss.IndexFlatIP) over one model's document embeddings."""

    def __init__(self, doc_ids: np.ndarray, embeddings: np.ndarray, encoder: Encoder | None):
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        # Empty documents have zero vectors: no content, so they are never returned (as in the
        # sparse index), rather than ranked at cosine 0 above documents with negative cosine.
        self._rows = np.flatnonzero(np.any(vectors, axis=1))
        vectors = vectors[self._rows]
        faiss.normalize_L2(vectors)
        self.doc_ids = doc_ids
        self.faiss_index = faiss.IndexFlatIP(vectors.shape[1])
        self.faiss_index.add(vectors)
        self._encoder = encoder
        self._sparse: SparseIndex | None = None

    @classmethod
    def from_sparse(cls, sparse: SparseIndex) -> DenseIndex:
        """Share the sparse index's stored embeddings and (lazily loaded) model."""
        dense = cls(sparse.doc_ids, np.asarray(sparse.embeddings), None)
        dense._sparse = sparse
        return dense

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None) -> DenseIndex:
        """Open the dense side of an index folder written by SparseIndex.build."""
        return cls.from_sparse(SparseIndex.load(path, encoder=encoder))

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            if self._sparse is None:
                raise TokretrieveError("this DenseIndex has no encoder to embed text queries; "
                                       "pass one, or use search_vectors")
            self._encoder = self._sparse.encoder
        return self._encoder

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The k nearest documents by cosine; `matched` is empty (dense has no tokens)."""
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError(f"query {query!r} is empty")
        return self.batch_search([query], k)[0]

    def batch_search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        k = check_top_k(k)
        vectors = self.encoder.embed(queries, is_query=True)
        return self.search_vectors(vectors, k)

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Search with query embeddings already computed; zero vectors get no hits."""
        k = check_top_k(k)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).copy()
        faiss.normalize_L2(vectors)
        if len(self) == 0:
            return [[] for _ in range(len(vectors))]
        scores, rows = self.faiss_index.search(vectors, min(k, len(self)))
        present = np.any(vectors, axis=1)
        return [
            [Hit(str(self.doc_ids[self._rows[r]]), float(s), [])
             for s, r in zip(srow, rrow, strict=True) if r >= 0] if present[q] else []
            for q, (srow, rrow) in enumerate(zip(scores, rows, strict=True))
        ]
