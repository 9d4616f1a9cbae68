"""The dense baseline: the same model's document embeddings in FAISS, exact cosine search.

It reads the embeddings a sparse index folder stores (`embeddings.npy`), so sparse and dense
compare one-to-one with no second encoding pass, and it has the sparse index's signature:
`search(query vectors, k) -> (scores, ids)`. Vectors are L2-normalised and searched by exact
inner product (faiss.IndexFlatIP). Like the sparse index, it knows no model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import scipy.sparse as sp

from tokretrieve.errors import TokretrieveError, check_count
from tokretrieve.index.sparse import NO_SCORE, SparseIndex, check_threads


class DenseIndex:
    """Exact cosine search over one model's document embeddings."""

    def __init__(self, doc_ids: np.ndarray, embeddings: np.ndarray):
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(doc_ids):
            raise TokretrieveError(f"{len(doc_ids)} document ids but embeddings of shape "
                                   f"{vectors.shape}")
        # Empty documents have zero vectors: no content, so they are never returned (as in the
        # sparse index), rather than ranked at cosine 0 above documents with negative cosine.
        self._rows = np.flatnonzero(np.any(vectors, axis=1))
        vectors = vectors[self._rows]
        faiss.normalize_L2(vectors)
        self.doc_ids = doc_ids
        self.dimension = int(vectors.shape[1])
        self.faiss_index = faiss.IndexFlatIP(self.dimension)
        self.faiss_index.add(vectors)

    @classmethod
    def from_sparse(cls, sparse: SparseIndex,
                    transform: Callable[[np.ndarray], np.ndarray] | None = None) -> DenseIndex:
        """The dense side of a sparse index: the embeddings its bags were projected from, sent
        through `transform` where the model's sentence embedding is more than its pooled
        state (Encoder.sentence_embedding: Dense layers, Normalize); deleted documents' rows
        zeroed, so that they are never returned."""
        embeddings = np.asarray(sparse.embeddings)
        if len(embeddings) != sparse.positions:
            raise TokretrieveError(f"{sparse.path or 'this index'} stores no embeddings for "
                                   "its documents (its bags came without them): it has no "
                                   "dense side to search")
        if transform is not None:
            embeddings = transform(embeddings)
        if len(sparse.deleted):
            embeddings = np.array(embeddings, dtype=np.float32)
            embeddings[sparse.deleted] = 0
        return cls(sparse.doc_ids, embeddings)

    @classmethod
    def load(cls, path: str | Path,
             transform: Callable[[np.ndarray], np.ndarray] | None = None) -> DenseIndex:
        """Open the dense side of an index folder written by the build step."""
        return cls.from_sparse(SparseIndex.load(path), transform)

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def search(self, queries: np.ndarray, k: int = 10,
               threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k by cosine of a batch of query vectors (queries x dimension).

        Returns (scores, ids) as the sparse index does: ids are document positions, -1 with
        score -inf where fewer than k documents exist; a zero query vector gets no hits.
        """
        k = check_count(k, "k")
        n_threads = check_threads(threads)
        if sp.issparse(queries):
            raise TokretrieveError("a dense index searches query vectors (a queries x dimension "
                                   "array, as Encoder.embed returns), not sparse bags")
        vectors = np.array(queries, dtype=np.float32, ndmin=2, order="C")
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise TokretrieveError(f"query vectors have shape {vectors.shape}, the index's "
                                   f"dimension is {self.dimension}: embed them with its model")
        if not np.all(np.isfinite(vectors)):
            raise TokretrieveError("query vectors must be finite numbers")
        present = np.any(vectors, axis=1)
        faiss.normalize_L2(vectors)
        scores = np.full((len(vectors), k), NO_SCORE, dtype=np.float32)
        ids = np.full((len(vectors), k), -1, dtype=np.int64)
        if len(self) == 0 or not present.any():
            return scores, ids
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(n_threads)
        try:
            found, rows = self.faiss_index.search(vectors[present], min(k, len(self)))
        finally:
            faiss.omp_set_num_threads(before)
        width = found.shape[1]
        valid = rows >= 0
        scores[present, :width] = np.where(valid, found, NO_SCORE)
        ids[present, :width] = np.where(valid, self._rows[np.maximum(rows, 0)], -1)
        return scores, ids
