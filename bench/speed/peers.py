"""The peers on the same documents: BM25S over the same token-id bags, FAISS over dense vectors.

BM25S indexes each document's bag tokens as its terms (term frequency 1: a bag names a token
once), through its own id path (`bm25s.tokenization.Tokenized`), so it walks exactly the posting
lists tokretrieve walks and the comparison is between the two engines, not two vocabularies. Its
queries are the tokens-mode query ids, repeated by their count as a tokenized query would be.

FAISS is what the dense side of the same model costs: IndexFlatIP (exact, like tokretrieve) over
L2-normalised float32 vectors of the model's width, the real embeddings where they exist (the
real collection) and random unit vectors otherwise (a flat index's speed depends only on the
vector count and width, not the values).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

BM25_BACKENDS = ("numba", "numpy")


def _quiet_bm25s() -> None:
    """bm25s logs a warning per call about ignored parameters; keep the report readable."""
    logging.getLogger("bm25s").setLevel(logging.ERROR)


class BM25Peer:
    """A bm25s.BM25 over doc-major bags, plus the mapping from vocabulary ids to its term ids."""

    def __init__(self, retriever: Any, term_of_token: np.ndarray, n_docs: int):
        self.retriever = retriever
        self.term_of_token = term_of_token   # vocab id -> bm25s term id (-1: not a term)
        self.n_docs = n_docs

    @classmethod
    def build(cls, indptr: np.ndarray, tokens: np.ndarray, vocab_size: int,
              backend: str = "numba", progress: bool = False) -> BM25Peer:
        """Index doc-major bag tokens (CSR indptr + token ids) as terms.

        The term ids are the vocabulary ids themselves (every vocabulary entry is a term, most
        with no document), so each document is a zero-copy view into `tokens`: at 1 M documents
        of 512 tokens a remapped copy, or Python ints, would cost gigabytes.
        """
        import bm25s
        from bm25s.tokenization import Tokenized

        _quiet_bm25s()
        ids = [tokens[indptr[i]:indptr[i + 1]] for i in range(len(indptr) - 1)]
        vocab = {str(token): token for token in range(vocab_size)}
        retriever = bm25s.BM25(backend=backend)
        retriever.index(Tokenized(ids=ids, vocab=vocab), show_progress=progress)
        return cls(retriever, np.arange(vocab_size, dtype=np.int64), len(ids))

    @classmethod
    def load(cls, folder: Path, term_of_token: np.ndarray, n_docs: int,
             backend: str = "numba") -> BM25Peer:
        """bm25s's own loader, memory-mapped like tokretrieve's."""
        import bm25s

        _quiet_bm25s()
        retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False,
                                    override_params={"backend": backend})
        return cls(retriever, term_of_token, n_docs)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder), show_progress=False)

    def queries(self, bags: sp.csr_matrix) -> list[list[int]]:
        """Token-mode query bags with count weights (queries x vocabulary) as bm25s term-id
        lists, count-repeated (a tokenized query names a repeated word twice)."""
        bags = sp.csr_matrix(bags)
        out = []
        for q in range(bags.shape[0]):
            start, end = bags.indptr[q], bags.indptr[q + 1]
            terms = self.term_of_token[bags.indices[start:end].astype(np.int64)]
            repeats = np.maximum(np.rint(bags.data[start:end].astype(np.float64)), 1).astype(int)
            out.append([int(t) for t, r in zip(terms, repeats, strict=True) if t >= 0
                        for _ in range(r)])
        return out

    def search(self, queries: list[list[int]], k: int, n_threads: int) -> Any:
        return self.retriever.retrieve(queries, k=min(k, self.n_docs), n_threads=n_threads,
                                       show_progress=False)


class DensePeer:
    """faiss.IndexFlatIP over unit vectors, the exact dense baseline tokretrieve.DenseIndex
    wraps."""

    def __init__(self, index: Any):
        self.index = index

    @classmethod
    def from_vectors(cls, vectors: np.ndarray) -> DensePeer:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).copy()
        faiss.normalize_L2(vectors)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index)

    @classmethod
    def random(cls, n: int, dim: int, seed: int, chunk: int = 65_536,
               progress: bool = False) -> DensePeer:
        """n random unit vectors, generated and added in chunks (no second full-size copy)."""
        rng = np.random.default_rng(seed)
        index = faiss.IndexFlatIP(dim)
        for start in tqdm(range(0, n, chunk), desc=f"dense vectors ({n:,})", unit="chunk",
                          disable=not progress, leave=False):
            block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
            faiss.normalize_L2(block)
            index.add(block)
        return cls(index)

    def save(self, file: Path) -> None:
        faiss.write_index(self.index, str(file))

    @classmethod
    def load(cls, file: Path) -> DensePeer:
        """Memory-map the flat codes where this FAISS can (IO_FLAG_MMAP_IFC), else read."""
        flag = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
        if flag is not None:
            try:
                return cls(faiss.read_index(str(file), flag))
            except RuntimeError:
                pass
        return cls(faiss.read_index(str(file)))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(vectors, min(k, int(self.index.ntotal)))


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """A float32, C-contiguous, L2-normalised copy (what DenseIndex feeds FAISS)."""
    out = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    faiss.normalize_L2(out)
    return out
